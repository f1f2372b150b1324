/* Stage 07's paged K/V cache (split.h, "the paged K/V cache"). The paged
 * decode runs the same blocks in the same order as the contiguous split
 * decode, only the addresses differ, so the outputs must be equal BIT FOR
 * BIT (same split count, CPU against CPU, GPU against GPU), and within the
 * fp64 reference's tolerance: for every P in {16, 32, 64, 128, 256}, pages
 * in a seeded random order (two seeds), lengths that end mid-page, at a
 * page boundary, 0 and 1, split counts 1 to 5, g = Hq / Hkv in {1, 2, 4, 8,
 * 32} (MHA, GQA, MQA), fp32 and bf16.
 * The ledger counts the model (the table reads: one per page a block's
 * range enters). The append: the paged decode after appending the token at
 * position n_b equals the contiguous decode over n_b + 1 keys; the GPU
 * append equals the CPU append (pools, table, lengths, free-list top,
 * bitwise) and is idempotent; an append past the free list writes nothing.
 * Bad --page-size values exit 2. Must fail: a table with two logical pages
 * on one physical page, and an off-by-one in pos % P (CPU), the broken
 * table on the GPU. GPU cases skip without a GPU (and count what they
 * compared, so that they never pass vacuously); STF_TEST_SMALL=1 shrinks them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/07_split_kv_decode/split.h"
#include "attn_harness.h"
#include "decode_harness.h"
#include "gpu.h"
#include "harness.h"
#include "test_main.h"

static const int PS[5] = { 16, 32, 64, 128, 256 };
static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

/* A paged copy of a problem's K/V (host): geometry, table, free list, pools. */
typedef struct {
    paged_geom_t g;
    int32_t *table, *fl;
    void *kp, *vp;
    int nfree;
} paged_host_t;

static void paged_make(paged_host_t *h, const attn_problem_t *p, int P, const int *lens, uint64_t seed)
{
    paged_geom(&p->s, P, lens, &h->g);
    h->nfree = h->g.num_pages - h->g.used;
    h->table = malloc((size_t)h->g.B * (size_t)h->g.max_pages * 4);
    h->fl = malloc((size_t)(h->nfree + 1) * 4);
    h->kp = malloc(paged_pool_bytes(&h->g));
    h->vp = malloc(paged_pool_bytes(&h->g));
    assert_true(h->table && h->fl && h->kp && h->vp);
    paged_build_table(&h->g, lens, seed, h->table, h->fl);
    paged_scatter_host(&h->g, p->s.seq_kv, lens, h->table, p->k, h->kp);
    paged_scatter_host(&h->g, p->s.seq_kv, lens, h->table, p->v, h->vp);
}

static void paged_free(paged_host_t *h)
{
    free(h->table); free(h->fl); free(h->kp); free(h->vp);
}

/* A deliberately broken lookup: the row after the right one in its page
 * (pos % P off by one); the table reads as the real one. */
static size_t broken_row(const gqa_kv_rows_t *r, size_t b, size_t kvh, size_t pos, size_t lo)
{
    paged_rows_ctx_t *c = r->ctx;
    const paged_geom_t *g = &c->g;
    const size_t in_page = (pos + 1) & (size_t)(g->P - 1);
    if (pos == lo || (pos & (size_t)(g->P - 1)) == 0)
        c->page = hbm_ld_i32(c->table, b * (size_t)g->max_pages + (pos >> g->shift));
    return (((size_t)c->page * (size_t)g->hkv + kvh) * (size_t)g->P + in_page) * (size_t)g->d;
}

/* A GPU loader: paged_decode_gpu (split-paged: a lookup per page a thread's
 * rows enter) or paged_lanes_decode_gpu (split-paged-lanes: a lookup per
 * lane, shared by shuffle). */
typedef void paged_launch_fn(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                             const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits,
                             void *ws);

/* The paged decode of p on h (CPU through a ledger, or GPU through
 * gpu_loader), into o. */
static void run_paged_with(paged_launch_fn *gpu_loader, const attn_problem_t *p, const paged_host_t *h, int gpu,
                           const int *lens, int splits, void *o, ledger_t *lg_out, int broken_offset)
{
    const attn_shape_t *s = &p->s;
    const size_t es = dtype_size(s->dt), qb = (size_t)attn_q_elems(s) * es, pool = paged_pool_bytes(&h->g);
    const size_t tb = (size_t)h->g.B * (size_t)h->g.max_pages * 4, wsb = split_partial_bytes(s, splits);
    if (!gpu) {
        ledger_t lg = { 0 };
        void *ws = wsb ? malloc(wsb) : NULL;
        const size_t pe = (size_t)h->g.num_pages * h->g.page_elems;
        hbm_t q = hbm_wrap(&lg, "Q", p->q, (size_t)attn_q_elems(s), s->dt);
        hbm_t kp = hbm_wrap(&lg, "K pages", h->kp, pe, s->dt), vp = hbm_wrap(&lg, "V pages", h->vp, pe, s->dt);
        hbm_t t = hbm_wrap(&lg, "table", h->table, tb / 4, DT_F32);
        hbm_t oo = hbm_wrap(&lg, "O", o, (size_t)attn_q_elems(s), s->dt);
        memset(o, 0xff, qb);
        if (broken_offset) {
            paged_rows_ctx_t c;
            gqa_kv_rows_t rows = paged_rows(&c, &h->g, &t);
            rows.row = broken_row;
            assert_int_equal(split_decode_cpu_kv(s, &q, &kp, &vp, &oo, lens, splits, ws, &rows), 0);
        } else {
            assert_int_equal(paged_decode_cpu(s, &h->g, &q, &kp, &vp, &t, &oo, lens, splits, ws), 0);
        }
        free(ws);
        if (lg_out) *lg_out = lg;
        return;
    }
    void *dq = gpu_malloc(qb, "Q"), *dk = gpu_malloc(pool, "K pages"), *dv = gpu_malloc(pool, "V pages");
    void *dout = gpu_malloc(qb, "O"), *dt = gpu_malloc(tb, "table"), *dl = gpu_malloc(s->batch * sizeof(int), "lens");
    void *ws = wsb ? gpu_malloc(wsb, "partials") : NULL;
    gpu_h2d(dq, p->q, qb);
    gpu_h2d(dk, h->kp, pool);
    gpu_h2d(dv, h->vp, pool);
    gpu_h2d(dt, h->table, tb);
    gpu_h2d(dl, lens, s->batch * sizeof(int));
    gpu_poison(dout, qb);
    if (wsb) gpu_poison(ws, wsb);
    gpu_loader(s, &h->g, dq, dk, dv, dt, dout, dl, splits, ws);
    gpu_sync();
    gpu_d2h(o, dout, qb);
    gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(dout); gpu_free(dt); gpu_free(dl); gpu_free(ws);
}
/* ... with split-paged's loader */
static void run_paged(const attn_problem_t *p, const paged_host_t *h, int gpu, const int *lens, int splits, void *o,
                      ledger_t *lg_out, int broken_offset)
{
    run_paged_with(paged_decode_gpu, p, h, gpu, lens, splits, o, lg_out, broken_offset);
}

/* The contiguous split decode of p (CPU or GPU), the paged one's twin. */
static void run_contig(const attn_problem_t *p, int gpu, const int *lens, int splits, void *o)
{
    if (gpu) decode_run_gpu(p, lens, splits, o, split_decode_gpu);
    else decode_run_cpu(p, lens, splits, o, NULL);
}

/* ---- paged = contiguous, bit for bit, and within the reference's tolerance */
static void equals_contig(int gpu)
{
    /* g = Hq / Hkv = 4, 1 (MHA), 32 (MQA), 2, 8 */
    static const size_t heads[5][2] = { { 8, 2 }, { 4, 4 }, { 32, 1 }, { 8, 4 }, { 16, 2 } };
    static const int lens6[6] = { 0, 1, 63, 64, 65, 203 }; /* 203: mid-page for every P; 64: a boundary up to 64 */
    static const dtype_t dts[2] = { DT_BF16, DT_F32 };
    const size_t Nk = 204, d = gpu ? 128 : 16;
    const int max_splits = small_mode() ? 3 : 5;
    long compared = 0;
    double worst = 0;
    for (size_t hh = 0; hh < 5; hh++)
        for (int t = 0; t < 2; t++) {
            if (small_mode() && (hh != 0 || t != 0)) continue;
            attn_problem_t p;
            attn_problem_make(&p, 6, heads[hh][0], heads[hh][1], 1, Nk, d, 0, dts[t], 1.5f,
                              (uint32_t)(9000 + 10 * hh + t));
            attn_problem_ref(&p, lens6);
            const size_t ob = (size_t)attn_q_elems(&p.s) * dtype_size(dts[t]);
            void *oc = malloc(ob), *op = malloc(ob);
            for (int S = 1; S <= max_splits; S++) {
                run_contig(&p, gpu, lens6, S, oc);
                for (int i = 0; i < 5; i++)
                    for (int run = 0; run < 2 * (gpu ? 2 : 1); run++) { /* seeds 1, 2; GPU: both loaders */
                        const uint64_t seed = 1 + (uint64_t)(run & 1);
                        paged_host_t h;
                        paged_make(&h, &p, PS[i], lens6, seed * 7919u + (uint64_t)i);
                        run_paged_with(run < 2 ? paged_decode_gpu : paged_lanes_decode_gpu, &p, &h, gpu, lens6, S,
                                       op, NULL, 0);
                        attn_check_t c;
                        const double ratio = attn_check_all(&p, op, 0, &c);
                        const int same = memcmp(op, oc, ob) == 0;
                        if (!same || !(ratio <= 1.0))
                            print_message("%s%s Hq=%zu Hkv=%zu %s P=%d splits=%d seed %llu: bitwise %s, error/tol %.3g\n",
                                          gpu ? "gpu" : "cpu", run < 2 ? "" : " (lanes)", heads[hh][0], heads[hh][1],
                                          dtype_name(dts[t]), PS[i], S, (unsigned long long)seed,
                                          same ? "equal" : "DIFFERENT", ratio);
                        assert_true(same);
                        assert_true(ratio <= 1.0);
                        assert_int_equal(c.nonfinite, 0);
                        for (size_t e = 0; e < heads[hh][0] * d; e++) /* length 0: exactly 0 */
                            assert_true(dtype_get(op, dts[t], e) == 0.0f);
                        if (ratio > worst) worst = ratio;
                        compared++;
                        paged_free(&h);
                    }
            }
            free(oc);
            free(op);
            attn_problem_free(&p);
        }
    /* every case ran: never vacuous (heads x dtypes, splits, P, seeds, GPU: loaders) */
    assert_int_equal(compared, (small_mode() ? 1 : 5 * 2) * max_splits * 5 * 2 * (gpu ? 2 : 1));
    print_message("%s: %ld paged runs bit-identical to the contiguous split%s, worst error/tolerance %.3g\n",
                  gpu ? "gpu" : "cpu", compared, gpu ? " (both loaders: split-paged, split-paged-lanes)" : "", worst);
}
static void test_equals_contig_cpu(void **state) { (void)state; equals_contig(0); }
static void test_equals_contig_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); equals_contig(1); }

/* ---- the table: a permutation of the pool, not the identity */
static void test_table_random(void **state)
{
    (void)state;
    static const int lens[3] = { 300, 17, 0 };
    attn_problem_t p;
    attn_problem_make(&p, 3, 2, 1, 1, 301, 8, 0, DT_F32, 1.0f, 9100);
    for (int i = 0; i < 5; i++) {
        paged_host_t h;
        paged_make(&h, &p, PS[i], lens, 42);
        char *seen = calloc((size_t)h.g.num_pages, 1);
        int identity = 1, k = 0;
        assert_int_equal(h.g.used, (300 + PS[i] - 1) / PS[i] + (17 + PS[i] - 1) / PS[i]);
        assert_int_equal(h.g.num_pages, h.g.used + 3);
        for (int b = 0; b < 3; b++)
            for (int t = 0; t < h.g.max_pages; t++) {
                const int32_t pg = h.table[b * h.g.max_pages + t];
                if (t * PS[i] < lens[b]) {
                    assert_true(pg >= 0 && pg < h.g.num_pages && !seen[pg]);
                    seen[pg] = 1;
                    identity &= pg == k++;
                } else {
                    assert_int_equal(pg, -1);
                }
            }
        for (int f = 0; f < h.nfree; f++) {
            assert_true(h.fl[f] >= 0 && h.fl[f] < h.g.num_pages && !seen[h.fl[f]]);
            seen[h.fl[f]] = 1;
        }
        if (h.g.num_pages > 4) assert_false(identity);
        free(seen);
        paged_free(&h);
    }
    attn_problem_free(&p);
}

/* ---- the ledger: the model, and the table reads counted as the note says */
static void test_ledger_cpu(void **state)
{
    (void)state;
    static const int lens[1] = { 203 };
    attn_problem_t p;
    attn_problem_make(&p, 1, 1, 1, 1, 204, 16, 0, DT_BF16, 1.0f, 9200);
    const size_t ob = 16 * 2;
    void *o = malloc(ob);
    /* (P, splits) -> table reads: [0, 203) in 16s: 13 pages; 2 splits of 128 keys:
     * 8 + 5 = 13; P = 256, 2 splits: page 0 looked up by each range: 2 */
    static const int cases[4][3] = { { 16, 1, 13 }, { 16, 2, 13 }, { 256, 2, 2 }, { 64, 3, 4 } };
    for (int c = 0; c < 4; c++) {
        paged_host_t h;
        paged_make(&h, &p, cases[c][0], lens, 5);
        ledger_t lg;
        run_paged(&p, &h, 0, lens, cases[c][1], o, &lg, 0);
        const double model = paged_decode_bytes(&p.s, &h.g, lens, cases[c][1]);
        const double contig = split_blocks_bytes(&p.s, lens, cases[c][1]) +
                              (cases[c][1] > 1 ? (double)split_partial_bytes(&p.s, cases[c][1]) + 32.0 : 0.0);
        assert_int_equal(ledger_total(&lg), (uint64_t)model);
        assert_int_equal((uint64_t)(model - contig), (uint64_t)(4 * cases[c][2]));
        paged_free(&h);
    }
    /* the implementation's model is what its CPU run counts */
    p.s.tune.page = 32;
    p.s.tune.splits = 2;
    assert_true(IMPL_SPLIT_PAGED.model_bytes(&p.s) > 0);
    free(o);
    attn_problem_free(&p);
}

/* ---- broken: two logical pages on one physical page; pos % P off by one */
static void broken(int gpu)
{
    static const int lens[2] = { 200, 150 };
    attn_problem_t p;
    attn_problem_make(&p, 2, 8, 2, 1, 200, gpu ? 128 : 16, 0, DT_F32, 2.0f, 9300);
    attn_problem_ref(&p, lens);
    const size_t ob = (size_t)attn_q_elems(&p.s) * 4;
    void *o = malloc(ob);
    for (int mode = 0; mode < (gpu ? 1 : 2); mode++)
        for (int i = 0; i < 5; i++) {
            if (mode == 0 && PS[i] >= 200) continue; /* one page per sequence: nothing to alias */
            paged_host_t h;
            paged_make(&h, &p, PS[i], lens, 11);
            if (mode == 0) h.table[1] = h.table[0]; /* sequence 0: logical page 1 reads page 0's physical page */
            run_paged(&p, &h, gpu, lens, 2, o, NULL, mode == 1);
            const double bad = attn_check_all(&p, o, 0, NULL);
            print_message("%s P=%d %s: error/tolerance %.3g (must exceed 1)\n", gpu ? "gpu" : "cpu", PS[i],
                          mode ? "pos % P off by one" : "two logical pages on one physical page", bad);
            assert_true(bad > 1.0);
            paged_free(&h);
        }
    free(o);
    attn_problem_free(&p);
}
static void test_broken_cpu(void **state) { (void)state; broken(0); }
static void test_broken_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); broken(1); }

/* ---- the append */
typedef struct {
    int32_t *lens_out, top[2];
    void *knew, *vnew;
} append_io_t;

static int append_cpu(paged_host_t *h, const int *lens, append_io_t *io, ledger_t *lg)
{
    const size_t rows = (size_t)h->g.B * (size_t)h->g.hkv * (size_t)h->g.d, pe = (size_t)h->g.num_pages * h->g.page_elems;
    hbm_t tb = hbm_wrap(lg, "table", h->table, (size_t)h->g.B * (size_t)h->g.max_pages, DT_F32);
    hbm_t li = hbm_wrap(lg, "lens", (void *)lens, (size_t)h->g.B, DT_F32);
    hbm_t lo = hbm_wrap(lg, "lens out", io->lens_out, (size_t)h->g.B, DT_F32);
    hbm_t fl = hbm_wrap(lg, "free", h->fl, (size_t)h->nfree, DT_F32), tp = hbm_wrap(lg, "top", io->top, 2, DT_F32);
    hbm_t kn = hbm_wrap(lg, "K new", io->knew, rows, h->g.dt), vn = hbm_wrap(lg, "V new", io->vnew, rows, h->g.dt);
    hbm_t kp = hbm_wrap(lg, "K pages", h->kp, pe, h->g.dt), vp = hbm_wrap(lg, "V pages", h->vp, pe, h->g.dt);
    return paged_append_cpu(&h->g, &tb, &li, &lo, &fl, h->nfree, &tp, &kn, &vn, &kp, &vp);
}

/* The new token of sequence b = the contiguous cache's row lens[b] (so the
 * contiguous decode over lens + 1 is the reference). */
static void new_rows(const attn_problem_t *p, const int *lens, append_io_t *io)
{
    const attn_shape_t *s = &p->s;
    const size_t es = dtype_size(s->dt), row = s->dim * es;
    io->knew = malloc(s->batch * s->kv_heads * row);
    io->vnew = malloc(s->batch * s->kv_heads * row);
    io->lens_out = malloc(s->batch * 4);
    for (size_t b = 0; b < s->batch; b++)
        for (size_t h = 0; h < s->kv_heads; h++) {
            const size_t from = ((b * s->kv_heads + h) * s->seq_kv + (size_t)lens[b]) * row;
            memcpy((char *)io->knew + (b * s->kv_heads + h) * row, (const char *)p->k + from, row);
            memcpy((char *)io->vnew + (b * s->kv_heads + h) * row, (const char *)p->v + from, row);
        }
}

static void test_append_cpu(void **state)
{
    (void)state;
    static const int lens6[6] = { 0, 1, 63, 64, 65, 202 }; /* 0, 64: a new page for P <= 64 */
    attn_problem_t p;
    attn_problem_make(&p, 6, 8, 2, 1, 204, 16, 0, DT_BF16, 1.5f, 9400);
    int lens1[6];
    for (int b = 0; b < 6; b++) lens1[b] = lens6[b] + 1;
    attn_problem_ref(&p, lens1);
    const size_t ob = (size_t)attn_q_elems(&p.s) * 2;
    void *oc = malloc(ob), *op = malloc(ob);
    run_contig(&p, 0, lens1, 3, oc);
    for (int i = 0; i < 5; i++) {
        paged_host_t h;
        paged_make(&h, &p, PS[i], lens6, 13);
        append_io_t io = { NULL, { 0, -7 }, NULL, NULL };
        new_rows(&p, lens6, &io);
        ledger_t lg = { 0 };
        assert_int_equal(append_cpu(&h, lens6, &io, &lg), 0);
        assert_int_equal(ledger_total(&lg), (uint64_t)paged_append_bytes(&h.g, lens6));
        int pages = 0;
        for (int b = 0; b < 6; b++) {
            assert_int_equal(io.lens_out[b], lens1[b]);
            pages += lens6[b] % PS[i] == 0;
        }
        assert_int_equal(io.top[1], pages);
        run_paged(&p, &h, 0, io.lens_out, 3, op, NULL, 0);
        assert_memory_equal(op, oc, ob); /* decode after the append = contiguous decode over n + 1 keys */
        assert_true(attn_check_all(&p, op, 0, NULL) <= 1.0);
        /* an append past the free list: refused, nothing written */
        io.top[0] = h.nfree - pages + 1;
        io.top[1] = -7;
        void *kcopy = malloc(paged_pool_bytes(&h.g));
        memcpy(kcopy, h.kp, paged_pool_bytes(&h.g));
        ledger_t lg2 = { 0 };
        assert_int_equal(append_cpu(&h, lens6, &io, &lg2), pages ? -1 : 0);
        if (pages) {
            assert_int_equal(io.top[1], -7);
            assert_memory_equal(kcopy, h.kp, paged_pool_bytes(&h.g));
        }
        free(kcopy);
        free(io.knew); free(io.vnew); free(io.lens_out);
        paged_free(&h);
    }
    free(oc);
    free(op);
    attn_problem_free(&p);
}

/* The GPU append against the CPU append: pools, table, lengths, top. */
static void test_append_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const int lens6[6] = { 0, 1, 63, 64, 65, 202 };
    static const dtype_t dts[2] = { DT_BF16, DT_F32 };
    int compared = 0;
    for (int t = 0; t < 2; t++) {
        attn_problem_t p;
        attn_problem_make(&p, 6, 8, 2, 1, 204, 128, 0, dts[t], 1.5f, (uint32_t)(9500 + t));
        for (int i = 0; i < 5; i++)
            for (int over = 0; over < 2; over++) {
                paged_host_t h;
                paged_make(&h, &p, PS[i], lens6, 17);
                append_io_t io = { NULL, { 0, -7 }, NULL, NULL };
                new_rows(&p, lens6, &io);
                int pages = 0;
                for (int b = 0; b < 6; b++) pages += lens6[b] % PS[i] == 0;
                if (over) {
                    if (!pages) { free(io.knew); free(io.vnew); free(io.lens_out); paged_free(&h); continue; }
                    io.top[0] = h.nfree - pages + 1; /* one page short */
                }
                const paged_geom_t *g = &h.g;
                const size_t pool = paged_pool_bytes(g), tb = (size_t)g->B * (size_t)g->max_pages * 4;
                const size_t rows = (size_t)g->B * (size_t)g->hkv * (size_t)g->d * dtype_size(g->dt);
                char *dkp = gpu_malloc(pool, "K"), *dvp = gpu_malloc(pool, "V"), *dkn = gpu_malloc(rows, "Kn");
                char *dvn = gpu_malloc(rows, "Vn");
                int32_t *dt = gpu_malloc(tb, "table"), *dfl = gpu_malloc((size_t)(h.nfree + 1) * 4, "free");
                int32_t *dli = gpu_malloc(24, "lens"), *dlo = gpu_malloc(24, "lens out"), *dtop = gpu_malloc(8, "top");
                gpu_h2d(dkp, h.kp, pool);
                gpu_h2d(dvp, h.vp, pool);
                gpu_h2d(dkn, io.knew, rows);
                gpu_h2d(dvn, io.vnew, rows);
                gpu_h2d(dt, h.table, tb);
                gpu_h2d(dfl, h.fl, (size_t)h.nfree * 4);
                gpu_h2d(dli, lens6, 24);
                gpu_h2d(dtop, io.top, 8);
                gpu_poison(dlo, 24);
                for (int rep = 0; rep < 2; rep++) /* twice: state t in, state t + 1 beside it */
                    paged_append_gpu(g, dt, dli, dlo, dfl, h.nfree, dtop, dkn, dvn, dkp, dvp);
                gpu_sync();
                ledger_t lg = { 0 };
                const int rc = append_cpu(&h, lens6, &io, &lg);
                assert_int_equal(rc, over ? -1 : 0);
                char *kp = malloc(pool), *vp = malloc(pool);
                int32_t *t2 = malloc(tb), lo2[6], top2[2];
                gpu_d2h(kp, dkp, pool);
                gpu_d2h(vp, dvp, pool);
                gpu_d2h(t2, dt, tb);
                gpu_d2h(top2, dtop, 8);
                assert_memory_equal(kp, h.kp, pool);
                assert_memory_equal(vp, h.vp, pool);
                assert_memory_equal(t2, h.table, tb);
                if (over) {
                    assert_int_equal(top2[1], -1);
                } else {
                    gpu_d2h(lo2, dlo, 24);
                    assert_memory_equal(lo2, io.lens_out, 24);
                    assert_int_equal(top2[1], io.top[1]);
                }
                compared++;
                free(kp); free(vp); free(t2);
                gpu_free(dkp); gpu_free(dvp); gpu_free(dkn); gpu_free(dvn); gpu_free(dt); gpu_free(dfl);
                gpu_free(dli); gpu_free(dlo); gpu_free(dtop);
                free(io.knew); free(io.vnew); free(io.lens_out);
                paged_free(&h);
            }
        attn_problem_free(&p);
    }
    assert_true(compared >= 10);
    print_message("gpu append: %d cases equal to the CPU append, bit for bit\n", compared);
}

/* The GPU scatter builds the pools the host scatter builds. */
static void test_scatter_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const int lens[3] = { 0, 77, 300 };
    attn_problem_t p;
    attn_problem_make(&p, 3, 4, 2, 1, 300, 64, 0, DT_BF16, 1.0f, 9600);
    /* the contiguous K and the lengths, on the device once */
    const size_t kvb = (size_t)attn_kv_elems(&p.s) * 2;
    void *dk = gpu_malloc(kvb, "K");
    int *dl = gpu_malloc(12, "lens");
    gpu_h2d(dk, p.k, kvb);
    gpu_h2d(dl, lens, 12);
    for (int i = 0; i < 5; i++) {
        paged_host_t h;
        paged_make(&h, &p, PS[i], lens, 19);
        const size_t pool = paged_pool_bytes(&h.g), tb = (size_t)h.g.B * (size_t)h.g.max_pages * 4;
        void *dp = gpu_malloc(pool, "pool"), *dt = gpu_malloc(tb, "table");
        gpu_h2d(dt, h.table, tb);
        paged_scatter_gpu(&h.g, p.s.seq_kv, dl, dt, dk, dp);
        gpu_sync();
        void *hp = malloc(pool);
        gpu_d2h(hp, dp, pool);
        assert_memory_equal(hp, h.kp, pool);
        free(hp);
        gpu_free(dp); gpu_free(dt);
        paged_free(&h);
    }
    gpu_free(dk); gpu_free(dl);
    attn_problem_free(&p);
}

/* ---- the implementations as the driver runs them (prepare, then the run):
 * split-paged and, on the GPU, split-tc-paged (split-tc's tensor-core kernel
 * on the pages), against the fp64 reference with their rounding flags,
 * lengths from --varlen (whole and partial pages), every P. On the GPU
 * split-tc-paged must also equal split-tc bit for bit: the same kernel, split
 * count and combine (paged_tc.cu), only the row addresses differ; and
 * split-paged-lanes split-paged (only the loader differs). */
static void impls_sweep(int gpu)
{
    static const dtype_t dts[2] = { DT_BF16, DT_F16 };
    int ran = 0, same_tc = 0, same_lanes = 0;
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 5; i++) {
            attn_problem_t p;
            attn_problem_make(&p, 3, 16, 2, 1, 1001, gpu ? 128 : 16, 0, dts[t], 1.5f, (uint32_t)(9700 + 10 * t + i));
            p.s.varlen = 1; /* lengths 1001 - floor(b 1001 / 6) */
            p.s.tune.page = (size_t)PS[i];
            attn_problem_ref(&p, NULL);
            const size_t ob = (size_t)attn_q_elems(&p.s) * 2;
            void *o = malloc(ob);
            const attn_impl_t *ims[3] = { &IMPL_SPLIT_PAGED, &IMPL_SPLIT_PAGED_LANES, &IMPL_SPLIT_TC_PAGED };
            void *o_paged = malloc(ob);
            for (int k = 0; k < 3; k++) {
                char why[256];
                if (!ims[k]->supports(&p.s, gpu, why, sizeof why)) {
                    print_message("%s %s: n/a: %s\n", gpu ? "gpu" : "cpu", ims[k]->name, why);
                    continue;
                }
                assert_int_equal(attn_run_impl(ims[k], gpu, &p, o, NULL), 0);
                attn_check_t c;
                const double ratio = attn_check_all(&p, o, attn_impl_rounding(ims[k], &p.s, gpu), &c);
                if (!(ratio <= 1.0))
                    print_message("%s %s %s P=%d: error/tolerance %.3g\n", gpu ? "gpu" : "cpu", ims[k]->name,
                                  dtype_name(dts[t]), PS[i], ratio);
                assert_true(ratio <= 1.0);
                assert_int_equal(c.nonfinite, 0);
                ran++;
                if (ims[k] == &IMPL_SPLIT_PAGED) memcpy(o_paged, o, ob);
                if (ims[k] == &IMPL_SPLIT_PAGED_LANES) { /* the same arithmetic as split-paged */
                    const int same = memcmp(o, o_paged, ob) == 0;
                    if (!same) print_message("%s split-paged-lanes %s P=%d: DIFFERENT from split-paged\n",
                                             gpu ? "gpu" : "cpu", dtype_name(dts[t]), PS[i]);
                    assert_true(same);
                    same_lanes++;
                }
                if (gpu && ims[k] == &IMPL_SPLIT_TC_PAGED) {
                    void *oc = malloc(ob);
                    assert_int_equal(attn_run_impl(&IMPL_SPLIT_TC, gpu, &p, oc, NULL), 0);
                    const int same = memcmp(o, oc, ob) == 0;
                    if (!same)
                        print_message("gpu split-tc-paged %s P=%d: DIFFERENT from split-tc\n", dtype_name(dts[t]), PS[i]);
                    assert_true(same);
                    same_tc++;
                    free(oc);
                }
            }
            free(o);
            free(o_paged);
            attn_problem_free(&p);
        }
    assert_true(ran >= 10);
    assert_int_equal(same_lanes, 10); /* every P, both dtypes */
    if (gpu) assert_int_equal(same_tc, 10); /* every P, both dtypes: never vacuous */
    print_message("%s: %d runs of the paged implementations within tolerance%s\n", gpu ? "gpu" : "cpu", ran,
                  gpu ? "; split-tc-paged equal to split-tc, bit for bit, in 10" : "");
}
static void test_impls_cpu(void **state) { (void)state; impls_sweep(0); }
static void test_impls_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); impls_sweep(1); }

/* ---- the program */
static void test_program_cpu(void **state)
{
    (void)state;
    char out[16384];
    static const char *bad[] = { "8", "48", "100", "512", "0", "-16", "x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[128];
        snprintf(args, sizeof args, "--device cpu --seq-kv 100 --heads 4 --kv-heads 2 --page-size %s", bad[i]);
        assert_int_equal(attn_run_prog("07_split_kv_decode", args, "2>&1 >/dev/null", out, sizeof out), 2);
        assert_non_null(strstr(out, "page-size"));
    }
    assert_int_equal(attn_run_prog("07_split_kv_decode",
                                   "--device cpu --seq-kv 1001 --batch 3 --heads 8 --kv-heads 2 --varlen --page-size 16 "
                                   "--splits 3 --iters 1",
                                   "2>&1", out, sizeof out), 0);
    assert_non_null(strstr(out, "split-paged cpu"));
    assert_non_null(strstr(out, "append (one token per sequence into its page, P = 16, CPU)"));
    assert_non_null(strstr(out, "model = ledger"));
    assert_null(strstr(out, "FAILED"));
    /* without --page-size: no split-paged row (not asked for), no append row */
    assert_int_equal(attn_run_prog("07_split_kv_decode", "--device cpu --seq-kv 300 --heads 4 --kv-heads 2 --iters 1",
                                   "2>&1", out, sizeof out), 0);
    assert_null(strstr(out, "split-paged"));
    assert_null(strstr(out, "append"));
    assert_null(strstr(out, "n/a"));
    /* asked for by name without a page size: it says why, and nothing of the stage ran (exit 2) */
    assert_int_equal(attn_run_prog("07_split_kv_decode",
                                   "--device cpu --seq-kv 300 --heads 4 --kv-heads 2 --iters 1 --kernel split-paged",
                                   "2>&1", out, sizeof out), 2);
    assert_non_null(strstr(out, "split-paged: the paged cache runs with --page-size"));
    /* any head dim on the CPU */
    static const int dims[] = { 1, 7, 80, 512 };
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        char args[200];
        snprintf(args, sizeof args, "--device cpu --iters 1 --warmup 0 --seq-kv 45 --heads 4 --kv-heads 2 --dim %d "
                 "--page-size 32 --varlen --batch 2", dims[i]);
        assert_int_equal(attn_run_prog("07_split_kv_decode", args, "2>&1", out, sizeof out), 0);
        assert_non_null(strstr(out, "split-paged cpu"));
        assert_null(strstr(out, "n/a"));
    }
    /* every implementation of the stage, asked for by name, runs and has its row:
     * main() once listed six and counted five, so split-tc-paged was
     * "no implementation named" on every machine */
    static const attn_impl_t *const all[] = { &IMPL_GQA_PACKED, &IMPL_SPLIT_KV, &IMPL_SPLIT_TC,
                                              &IMPL_SPLIT_PAGED, &IMPL_SPLIT_PAGED_LANES, &IMPL_SPLIT_TC_PAGED };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        char args[200], row[64];
        snprintf(args, sizeof args, "--device cpu --iters 1 --warmup 0 --seq-kv 300 --heads 4 --kv-heads 2 "
                 "--page-size 16 --kernel %s", all[i]->name);
        snprintf(row, sizeof row, " %s cpu ", all[i]->name);
        const int rc = attn_run_prog("07_split_kv_decode", args, "2>&1", out, sizeof out);
        print_message("--kernel %s -> %d\n", all[i]->name, rc);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, row));
        assert_null(strstr(out, "FAILED"));
    }
    /* only the paged one, chosen: it runs */
    assert_int_equal(attn_run_prog("07_split_kv_decode",
                                   "--device cpu --seq-kv 300 --heads 4 --kv-heads 2 --iters 1 --page-size 256 "
                                   "--kernel split-paged",
                                   "2>&1", out, sizeof out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_random),
        cmocka_unit_test(test_equals_contig_cpu),
        cmocka_unit_test(test_ledger_cpu),
        cmocka_unit_test(test_broken_cpu),
        cmocka_unit_test(test_append_cpu),
        cmocka_unit_test(test_program_cpu),
        cmocka_unit_test(test_impls_cpu),
        cmocka_unit_test(test_equals_contig_gpu),
        cmocka_unit_test(test_impls_gpu),
        cmocka_unit_test(test_broken_gpu),
        cmocka_unit_test(test_append_gpu),
        cmocka_unit_test(test_scatter_gpu),
    };
    return test_main("stage 07 paged K/V cache", tests, NULL);
}
