/* Stage 05: tiled attention. FA1 and FA2 loop orders on the CPU (tiles in a
 * simulated on-chip memory, traffic through the ledger) and the GPU kernels,
 * against the fp64 reference with the driver's tolerance (attention_ref.h),
 * over odd shapes, every head dimension, causal or not, GQA, and several tile
 * shapes (the result must not depend on the tiles beyond rounding: the same
 * tolerance for each). The ledger against the closed forms of tiles.c, and
 * those against hand-written formulas; the causal blocks the CPU code skips
 * and masks against their closed form and a brute-force count; on-chip
 * budgets that are too small rejected (by the implementation, by supports(),
 * by the program with exit 2); and deliberately broken tiled implementations
 * that the same check must reject.
 * GPU cases skip (cmocka skip) where no GPU can be used; STF_TEST_SMALL=1
 * shrinks them (for compute-sanitizer). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../stages/05_tiled_attention/tiled.h"
#include "attention_ref.h"
#include "attn_harness.h"
#include "gpu.h"
#include "harness.h"
#include "rng.h"

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }
/* STF_TEST_SMALL=2: fewer still (racecheck instruments every shared-memory access) */
static int tiny_mode(void) { return small_mode() && !strcmp(getenv("STF_TEST_SMALL"), "2"); }

static const dtype_t DTYPES[] = { DT_F32, DT_F16, DT_BF16 };

/* ---- accuracy */

typedef struct { size_t nq, nk; } lens_t;
static const lens_t LENS[] = { { 1, 1 }, { 17, 17 }, { 100, 100 }, { 1000, 1000 }, { 113, 203 }, { 203, 113 }, { 1, 300 } };
#define NLENS (sizeof LENS / sizeof *LENS)

/* CPU tile shapes (br, bc, sram): the default, odd ones, and tiles from an
 * on-chip budget (the paper's rule). */
typedef struct { size_t br, bc, sram; } tune_t;
/* (1 x 1 tiles, the extreme, are in test_tile_shapes_cpu: at N = 1000 they
 * would cost FA1 a million block visits per head) */
static const tune_t CPU_TUNES[] = { { 0, 0, 0 }, { 7, 13, 0 }, { 32, 16, 0 }, { 0, 0, 24000 }, { 200, 300, 0 } };
#define NCPU_TUNES (sizeof CPU_TUNES / sizeof *CPU_TUNES)

static void set_tune(attn_shape_t *s, tune_t t)
{
    s->tune.br = t.br;
    s->tune.bc = t.bc;
    s->tune.sram = t.sram;
}

static double worst_seen;

static void check_one(const attn_impl_t *im, int gpu, attn_problem_t *p, void *o, const char *what)
{
    assert_int_equal(attn_run_impl(im, gpu, p, o, NULL), 0);
    attn_check_t c;
    const double ratio = attn_check_rows(p, o, im->rounding, &c);
    if (ratio > worst_seen) worst_seen = ratio;
    if (getenv("STF_DEBUG_WORST") && ratio > 0.5)
        print_message("DBG %s %s Nq=%zu Nk=%zu d=%zu causal=%d %s tiles %zux%zu sram %zu ratio %.3g\n", gpu ? "gpu" : "cpu",
                      im->name, p->s.seq_q, p->s.seq_kv, p->s.dim, p->s.causal, dtype_name(p->s.dt), p->s.tune.br,
                      p->s.tune.bc, p->s.tune.sram, ratio);
    if (!(ratio <= 1.0) || c.nonfinite || !attn_check_ok(&c))
        print_message("%s %s %s Nq=%zu Nk=%zu d=%zu H=%zu/%zu causal=%d %s tiles %zux%zu sram %zu: error %.3g, tolerance "
                      "%.3g (ratio %.3g), %zu non-finite, %zu unresolved\n",
                      gpu ? "gpu" : "cpu", im->name, what, p->s.seq_q, p->s.seq_kv, p->s.dim, p->s.heads, p->s.kv_heads,
                      p->s.causal, dtype_name(p->s.dt), p->s.tune.br, p->s.tune.bc, p->s.tune.sram, c.max_err,
                      c.max_tol, ratio, c.nonfinite, c.unresolved);
    assert_true(ratio <= 1.0);
    assert_int_equal(c.nonfinite, 0);
    assert_true(attn_check_ok(&c));
}

/* Heads: GQA (6 query heads on 2 K/V heads) where cheap; one head at N = 1000. */
static void heads_for(lens_t L, size_t *B, size_t *H, size_t *Hkv)
{
    const int big = L.nq >= 1000 || L.nk >= 1000;
    *B = 1;
    *H = big ? 1 : 6;
    *Hkv = big ? 1 : 2;
}

static void test_accuracy_cpu(void **state)
{
    (void)state;
    static const size_t dims[] = { 16, 32, 64, 80, 96, 128, 256 };
    const attn_impl_t *impls[] = { &IMPL_ATTN_FA1, &IMPL_ATTN_FA2 };
    worst_seen = 0;
    unsigned n = 0;
    for (size_t a = 0; a < NLENS; a++)
        for (size_t b = 0; b < sizeof dims / sizeof *dims; b++)
            for (int causal = 0; causal < 2; causal++, n++) {
                size_t B, H, Hkv;
                heads_for(LENS[a], &B, &H, &Hkv);
                /* the types and tiles rotate through the matrix */
                const dtype_t dt = DTYPES[n % 3];
                attn_problem_t p;
                attn_problem_make(&p, B, H, Hkv, LENS[a].nq, LENS[a].nk, dims[b], causal, dt, 1.5f, 1000 + 10 * n);
                attn_problem_ref(&p, NULL);
                void *o = malloc((size_t)attn_q_elems(&p.s) * dtype_size(dt));
                const int big = LENS[a].nq >= 1000; /* one tiling there (alternating), two elsewhere */
                for (size_t t = big ? n % 2 : 0; t < 2; t++) {
                    set_tune(&p.s, t == 0 ? CPU_TUNES[0] : CPU_TUNES[1 + n % (NCPU_TUNES - 1)]);
                    for (int k = 0; k < 2; k++) check_one(impls[k], 0, &p, o, "accuracy");
                }
                free(o);
                attn_problem_free(&p);
            }
    print_message("cpu fa1/fa2: worst error/tolerance %.3g\n", worst_seen);
}

/* Every tile shape on the same inputs: each output meets the same tolerance
 * (tiling changes the order of the fp32 sums, nothing else). */
static void test_tile_shapes_cpu(void **state)
{
    (void)state;
    static const size_t brs[] = { 1, 3, 16, 64, 113, 256 }, bcs[] = { 1, 5, 32, 64, 203, 512 };
    const attn_impl_t *impls[] = { &IMPL_ATTN_FA1, &IMPL_ATTN_FA2 };
    worst_seen = 0;
    for (int causal = 0; causal < 2; causal++) {
        attn_problem_t p;
        attn_problem_make(&p, 1, 2, 2, 203, 250, 64, causal, DT_F32, 2.0f, 2000 + causal);
        attn_problem_ref(&p, NULL);
        void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
        for (size_t a = 0; a < 6; a++)
            for (size_t b = 0; b < 6; b++) {
                const tune_t t = { brs[a], bcs[b], 0 };
                set_tune(&p.s, t);
                for (int k = 0; k < 2; k++) check_one(impls[k], 0, &p, o, "tile shapes");
            }
        free(o);
        attn_problem_free(&p);
    }
    print_message("cpu, 36 tile shapes: worst error/tolerance %.3g\n", worst_seen);
}

/* The GPU kernels, each with its compiled tile variants. */
typedef struct {
    const attn_impl_t *im;
    size_t br, bc;
    int fp32_only;
} gpu_case_t;

static void test_accuracy_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    const gpu_case_t cases[] = {
        { &IMPL_ATTN_FA1, 0, 0, 0 },         { &IMPL_ATTN_FA1, 64, 32, 1 },  { &IMPL_ATTN_FA1, 64, 128, 1 },
        { &IMPL_ATTN_FA2, 0, 0, 0 },         { &IMPL_ATTN_FA2, 32, 64, 1 },  { &IMPL_ATTN_FA2, 128, 0, 1 },
        { &IMPL_ATTN_FA2_REGTILE, 0, 0, 0 }, { &IMPL_ATTN_FA2_REGTILE128, 0, 0, 0 },
    };
    static const size_t dims[] = { 32, 64, 80, 96, 128 };
    const size_t ndims = small_mode() ? 2 : 5;
    worst_seen = 0;
    unsigned n = 0;
    for (size_t a = 0; a < NLENS; a++) {
        if (small_mode() && (LENS[a].nq > 203 || LENS[a].nk > 203 || LENS[a].nq == 100)) continue;
        if (tiny_mode() && LENS[a].nq != 17 && LENS[a].nq != 113) continue;
        for (size_t b = 0; b < (tiny_mode() ? 1 : ndims); b++)
            for (int causal = 0; causal < 2; causal++)
                for (size_t t = 0; t < (small_mode() ? 2u : 3u); t++, n++) {
                    size_t B, H, Hkv;
                    heads_for(LENS[a], &B, &H, &Hkv);
                    const size_t d = small_mode() ? dims[(b + a) % 5] : dims[b];
                    attn_problem_t p;
                    attn_problem_make(&p, B, H, Hkv, LENS[a].nq, LENS[a].nk, d, causal, DTYPES[t], 1.5f, 3000 + 10 * n);
                    attn_problem_ref(&p, NULL);
                    void *o = malloc((size_t)attn_q_elems(&p.s) * dtype_size(DTYPES[t]));
                    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
                        if (cases[c].fp32_only && DTYPES[t] != DT_F32) continue;
                        p.s.tune.br = cases[c].br;
                        p.s.tune.bc = cases[c].bc;
                        char why[256] = "";
                        const int ok = cases[c].im->supports(&p.s, 1, why, sizeof why);
                        if (!ok) print_message("%s %zux%zu d=%zu %s: declined: %s\n", cases[c].im->name, cases[c].br,
                                               cases[c].bc, d, dtype_name(DTYPES[t]), why);
                        assert_true(ok); /* every case here has a compiled instance */
                        check_one(cases[c].im, 1, &p, o, "accuracy");
                    }
                    free(o);
                    attn_problem_free(&p);
                }
    }
    print_message("gpu fa1/fa2/fa2-regtile(-br128): worst error/tolerance %.3g\n", worst_seen);
}

/* Large logits (30 U[-1,1): logits of several hundred): the running maximum
 * moves by large steps between blocks, and every rescale must be right. */
static void large_logits(int gpu)
{
    const attn_impl_t *impls[] = { &IMPL_ATTN_FA1, &IMPL_ATTN_FA2, &IMPL_ATTN_FA2_REGTILE, &IMPL_ATTN_FA2_REGTILE128 };
    for (int causal = 0; causal < 2; causal++) {
        attn_problem_t p;
        attn_problem_make(&p, 1, 2, 2, 300, 300, 64, causal, DT_F32, 30.0f, 4000 + causal);
        attn_problem_ref(&p, NULL);
        void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
        for (int k = 0; k < (gpu ? 4 : 2); k++) check_one(impls[k], gpu, &p, o, "large logits");
        free(o);
        attn_problem_free(&p);
    }
}
static void test_large_logits_cpu(void **state) { (void)state; large_logits(0); }
static void test_large_logits_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    if (tiny_mode()) skip();
    large_logits(1);
}

/* ---- the tiles from an on-chip budget */

static void test_tile_choice(void **state)
{
    (void)state;
    attn_shape_t s;
    attn_shape_init(&s, 1, 1, 1, 4096, 4096, 64, 0, DT_F32);
    size_t br, bc;
    char why[384];
    /* the note's worked example: M = 100 KB, d = 64: the paper's Bc = M/4d =
     * 100 words-per-row blocks, Br = min(Bc, d) = 64, cut to the working set */
    s.tune.sram = 102400;
    assert_int_equal(tiled_choose(TILED_FA1, &s, &br, &bc, why, sizeof why), 0);
    assert_int_equal(br, 64);
    assert_int_equal(bc, 90);
    assert_int_equal(tiled_choose(TILED_FA2, &s, &br, &bc, why, sizeof why), 0);
    assert_int_equal(br, 89);
    assert_int_equal(bc, 64);
    /* every budget: the tiles fit, and one more outer row would not (or the paper's cap holds) */
    for (size_t d = 16; d <= 256; d *= 2)
        for (size_t M = 100; M <= (1u << 20); M = M * 5 / 4 + 1) {
            attn_shape_init(&s, 1, 1, 1, 64, 64, d, 0, DT_F32);
            s.tune.sram = M;
            for (int ord = TILED_FA1; ord <= TILED_FA2; ord++) {
                if (tiled_choose((tiled_order_t)ord, &s, &br, &bc, why, sizeof why)) {
                    assert_true(tiled_onchip_bytes(1, 1, d) > M); /* refused only when nothing fits */
                    continue;
                }
                assert_true(br >= 1 && bc >= 1);
                assert_true(tiled_onchip_bytes(br, bc, d) <= M);
                const size_t big = ord == TILED_FA1 ? bc : br, small = ord == TILED_FA1 ? br : bc;
                assert_true(small <= d && small <= big);
                assert_true(big == (M / 4 / (4 * d) ? M / 4 / (4 * d) : 1) ||
                            tiled_onchip_bytes(ord == TILED_FA1 ? br : br + 1, ord == TILED_FA1 ? bc + 1 : bc, d) > M);
            }
        }
    /* given tiles against a budget */
    attn_shape_init(&s, 1, 1, 1, 64, 64, 64, 0, DT_F32);
    s.tune.br = 64;
    s.tune.bc = 64;
    s.tune.sram = tiled_onchip_bytes(64, 64, 64);
    assert_int_equal(tiled_choose(TILED_FA2, &s, &br, &bc, why, sizeof why), 0);
    s.tune.sram -= 1;
    assert_int_equal(tiled_choose(TILED_FA2, &s, &br, &bc, why, sizeof why), -1);
    assert_non_null(strstr(why, "--sram"));
}

/* ---- budget violations */

static void test_budget_rejected(void **state)
{
    (void)state;
    attn_problem_t p;
    attn_problem_make(&p, 1, 1, 1, 50, 50, 64, 0, DT_F32, 1.0f, 5000);
    void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
    char why[256];
    const attn_impl_t *impls[] = { &IMPL_ATTN_FA1, &IMPL_ATTN_FA2 };
    for (int k = 0; k < 2; k++) {
        /* tiles given, budget one byte short */
        p.s.tune.br = 16;
        p.s.tune.bc = 16;
        p.s.tune.sram = tiled_onchip_bytes(16, 16, 64) - 1;
        assert_int_equal(impls[k]->supports(&p.s, 0, why, sizeof why), 0);
        assert_int_equal(attn_run_impl(impls[k], 0, &p, o, NULL), -1);
        /* exactly enough: runs, and the simulated chip peaks at the budget */
        p.s.tune.sram += 1;
        attn_counts_t c;
        assert_int_equal(attn_run_impl(impls[k], 0, &p, o, &c), 0);
        assert_int_equal(c.lg.sram_peak, tiled_onchip_bytes(16, 16, 64));
        assert_int_equal(c.lg.sram_live, 0);
        /* a budget that holds nothing */
        p.s.tune.br = p.s.tune.bc = 0;
        p.s.tune.sram = 500;
        assert_int_equal(impls[k]->supports(&p.s, 0, why, sizeof why), 0);
        assert_non_null(strstr(why, "cannot hold"));
        assert_int_equal(attn_run_impl(impls[k], 0, &p, o, NULL), -1);
    }
    free(o);
    attn_problem_free(&p);
}

/* ---- the ledger against the closed forms */

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static void test_ledger_closed_forms(void **state)
{
    (void)state;
    static const lens_t lens[] = { { 50, 50 }, { 64, 64 }, { 113, 203 }, { 203, 113 }, { 1, 300 }, { 256, 256 } };
    static const tune_t tunes[] = { { 16, 16, 0 }, { 7, 13, 0 }, { 64, 32, 0 }, { 0, 0, 20000 }, { 300, 300, 0 } };
    for (size_t a = 0; a < sizeof lens / sizeof *lens; a++)
        for (size_t b = 0; b < sizeof tunes / sizeof *tunes; b++)
            for (int causal = 0; causal < 2; causal++)
                for (size_t t = 0; t < 2; t++) {
                    attn_problem_t p;
                    attn_problem_make(&p, 2, 3, 3, lens[a].nq, lens[a].nk, 32, causal, DTYPES[t], 1.0f, 6000);
                    attn_shape_t *s = &p.s;
                    set_tune(s, tunes[b]);
                    const uint64_t es = dtype_size(s->dt), d = s->dim, bh = s->batch * s->heads;
                    const uint64_t Nq = s->seq_q, Nk = s->seq_kv;
                    void *o = malloc((size_t)attn_q_elems(s) * es);
                    attn_counts_t c;
                    size_t br, bc;
                    char why[384];

                    /* FA2 */
                    assert_int_equal(tiled_choose(TILED_FA2, s, &br, &bc, why, sizeof why), 0);
                    assert_int_equal(attn_run_impl(&IMPL_ATTN_FA2, 0, &p, o, &c), 0);
                    assert_int_equal(ledger_total(&c.lg), (uint64_t)IMPL_ATTN_FA2.model_bytes(s));
                    assert_int_equal(ledger_total(&c.lg), (uint64_t)tiled_fa2_bytes(s, br, bc));
                    assert_int_equal(c.o.bytes_written, bh * Nq * d * es); /* O once */
                    assert_int_equal(c.o.bytes_read + c.q.bytes_written + c.k.bytes_written + c.v.bytes_written, 0);
                    assert_int_equal(ledger_total(&c.lg),
                                     c.q.bytes_read + c.k.bytes_read + c.v.bytes_read + c.o.bytes_written);
                    assert_int_equal(c.k.bytes_read, c.v.bytes_read);
                    if (!causal) { /* by hand: Q once, K and V once per query block */
                        const uint64_t Tr = ceil_div(Nq, br < Nq ? br : Nq);
                        assert_int_equal(c.q.bytes_read, bh * Nq * d * es);
                        assert_int_equal(c.k.bytes_read, bh * Tr * Nk * d * es);
                        assert_int_equal(ledger_total(&c.lg), bh * es * (2 * Nq * d + 2 * Tr * Nk * d));
                    }
                    /* every tile was on the simulated chip at once, within the budget */
                    assert_int_equal(c.lg.sram_peak, tiled_onchip_bytes(br < Nq ? br : Nq, bc < Nk ? bc : Nk, d));
                    if (s->tune.sram) assert_true(c.lg.sram_peak <= s->tune.sram);

                    /* FA1 */
                    assert_int_equal(tiled_choose(TILED_FA1, s, &br, &bc, why, sizeof why), 0);
                    assert_int_equal(attn_run_impl(&IMPL_ATTN_FA1, 0, &p, o, &c), 0);
                    assert_int_equal(ledger_total(&c.lg), (uint64_t)IMPL_ATTN_FA1.model_bytes(s));
                    assert_int_equal(ledger_total(&c.lg), (uint64_t)tiled_fa1_bytes(s, br, bc));
                    assert_int_equal(c.o.bytes_written, bh * Nq * d * es);
                    /* K and V once: bottom-right, the last query row sees every key */
                    assert_int_equal(c.k.bytes_read, bh * Nk * d * es);
                    assert_int_equal(c.v.bytes_read, bh * Nk * d * es);
                    if (!causal) { /* by hand */
                        const uint64_t Tc = ceil_div(Nk, bc < Nk ? bc : Nk);
                        const uint64_t want = bh * (4 * Nq * (d + 2) + es * 2 * Nk * d + (es * d + 4 * (d + 2)) * Nq * Tc +
                                                    4 * (d + 2) * Nq * (Tc - 1) + es * Nq * d);
                        assert_int_equal(c.q.bytes_read, bh * Tc * Nq * d * es);
                        assert_int_equal(ledger_total(&c.lg), want);
                    }
                    assert_int_equal(IMPL_ATTN_FA1.ws_bytes(s), bh * Nq * (d + 2) * 4);
                    free(o);
                    attn_problem_free(&p);
                }
}

/* ---- causal: the blocks skipped and masked */

/* Brute force over every (query, key) pair of every block. */
static void brute_blocks(const attn_shape_t *s, size_t br, size_t bc, tiled_counts_t *c)
{
    memset(c, 0, sizeof *c);
    const size_t Nq = s->seq_q, Nk = s->seq_kv;
    for (size_t r0 = 0; r0 < Nq; r0 += br)
        for (size_t k0 = 0; k0 < Nk; k0 += bc) {
            size_t vis = 0, hid = 0;
            for (size_t r = r0; r < r0 + br && r < Nq; r++)
                for (size_t kk = k0; kk < k0 + bc && kk < Nk; kk++) {
                    if (kk < attn_visible_keys(s, r)) vis++;
                    else hid++;
                }
            c->total++;
            if (vis == 0) c->skipped++;
            else {
                c->computed++;
                c->masked += hid > 0;
            }
        }
    const uint64_t bh = (uint64_t)s->batch * s->heads;
    c->total *= bh;
    c->skipped *= bh;
    c->computed *= bh;
    c->masked *= bh;
}

static void test_causal_blocks(void **state)
{
    (void)state;
    static const lens_t lens[] = { { 256, 256 }, { 250, 250 }, { 113, 203 }, { 203, 113 }, { 1, 300 }, { 64, 64 } };
    static const size_t tiles[][2] = { { 64, 64 }, { 32, 64 }, { 64, 16 }, { 7, 13 }, { 1, 1 }, { 500, 500 } };
    for (size_t a = 0; a < sizeof lens / sizeof *lens; a++)
        for (size_t b = 0; b < sizeof tiles / sizeof *tiles; b++)
            for (int causal = 0; causal < 2; causal++) {
                attn_problem_t p;
                attn_problem_make(&p, 1, 2, 2, lens[a].nq, lens[a].nk, 16, causal, DT_F32, 1.0f, 7000);
                p.s.tune.br = tiles[b][0];
                p.s.tune.bc = tiles[b][1];
                const size_t br = tiles[b][0] < p.s.seq_q ? tiles[b][0] : p.s.seq_q;
                const size_t bc = tiles[b][1] < p.s.seq_kv ? tiles[b][1] : p.s.seq_kv;
                tiled_counts_t want, closed;
                brute_blocks(&p.s, br, bc, &want);
                tiled_count_blocks(&p.s, tiles[b][0], tiles[b][1], &closed);
                assert_memory_equal(&want, &closed, sizeof want);
                void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
                const attn_impl_t *impls[] = { &IMPL_ATTN_FA1, &IMPL_ATTN_FA2 };
                for (int k = 0; k < 2; k++) {
                    assert_int_equal(attn_run_impl(impls[k], 0, &p, o, NULL), 0);
                    assert_memory_equal(&tiled_cpu_counts, &want, sizeof want);
                }
                if (!causal) assert_int_equal(want.skipped + want.masked, 0);
                free(o);
                attn_problem_free(&p);
            }
    /* the square case by hand: N = T B, T = 4 query and key blocks: T (T + 1) / 2
     * computed, T (T - 1) / 2 skipped, T of them (the diagonal) masked */
    attn_shape_t s;
    attn_shape_init(&s, 1, 1, 1, 256, 256, 16, 1, DT_F32);
    tiled_counts_t c;
    tiled_count_blocks(&s, 64, 64, &c);
    assert_int_equal(c.total, 16);
    assert_int_equal(c.computed, 10);
    assert_int_equal(c.skipped, 6);
    assert_int_equal(c.masked, 4);
    /* and the traffic it saves: FA2 reads K (and V) blocks 1 + 2 + 3 + 4 times */
    s.tune.br = s.tune.bc = 64;
    assert_int_equal((uint64_t)tiled_fa2_bytes(&s, 64, 64), 4 * (2 * 256 * 16 + 2 * 16 * 64 * 10));
}

/* ---- the program: budgets that cannot hold the tiles are bad input */
static int run_prog(const char *args, char *out, size_t n)
{
    const char *dir = getenv("STF_BIN_DIR") ? getenv("STF_BIN_DIR") : "build/bin";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/05_tiled_attention %s 2>&1; echo \"rc=$?\"", dir, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = 0;
    out[0] = 0;
    while (len + 1 < n && fgets(out + len, (int)(n - len), p)) len += strlen(out + len);
    assert_true(WIFEXITED(pclose(p)));
    const char *rc = strstr(out, "rc=");
    while (rc && strstr(rc + 1, "rc=")) rc = strstr(rc + 1, "rc=");
    assert_non_null(rc);
    return atoi(rc + 3);
}

static void test_program(void **state)
{
    (void)state;
    static const char *bad[][2] = {
        { "--device cpu --sram 500", "cannot hold" },
        { "--device cpu --sram 65536 --br 64 --bc 64", "more than --sram 65536" },
        { "--device cpu --dim 128 --sram 2000", "cannot hold" },
        { "--device cpu --kernel fa3", "no implementation named 'fa3'" },
        { "--device cpu --dim 600", "1 to 512" },
    };
    char out[16384];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const int rc = run_prog(bad[i][0], out, sizeof out);
        print_message("%s -> %d: %s", bad[i][0], rc, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(out, bad[i][1]));
    }
    /* a small run end to end, tiles from a budget, GQA, causal, odd lengths */
    const int rc = run_prog("--device cpu --seq-q 37 --seq-kv 91 --heads 4 --kv-heads 2 --causal --sram 20000 "
                            "--kernel one-pass,fa1,fa2 --iters 1 --warmup 0", out, sizeof out);
    if (rc) print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "fa2 cpu"));
}

/* ---- broken tiled implementations: the check must reject each */

typedef enum { BROKEN_NO_RESCALE, BROKEN_SKIP_DIAGONAL, BROKEN_DIVIDE_BY_LAST_L } broken_t;
static broken_t g_broken;

/* FA2 order with one deliberate mistake (everything else as fa2_cpu.c). */
static int broken_fa2(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    const size_t d = s->dim, Nq = s->seq_q, Nk = s->seq_kv, br = 32, bc = 32;
    float *Q = malloc(br * d * 4), *O = malloc(br * d * 4), *K = malloc(bc * d * 4), *V = malloc(bc * d * 4);
    float m[32], l[32], S[32];
    for (size_t bh = 0; bh < s->batch * s->heads; bh++) {
        const size_t qb = bh * Nq * d, kvb = (size_t)attn_kv_slice(s, bh * Nq) * Nk * d;
        for (size_t r0 = 0; r0 < Nq; r0 += br) {
            const size_t rows = r0 + br <= Nq ? br : Nq - r0;
            size_t ct = tiled_keys_needed(s, br, bc, r0 / br);
            if (g_broken == BROKEN_SKIP_DIAGONAL && ct > 0 && s->causal) ct--; /* treats diagonal blocks as masked out */
            for (size_t x = 0; x < rows * d; x++) Q[x] = hbm_ld(q, qb + r0 * d + x), O[x] = 0;
            for (size_t r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0;
            float lastl[32] = { 0 };
            for (size_t j = 0; j < ct; j++) {
                const size_t k0 = j * bc, cols = k0 + bc <= Nk ? bc : Nk - k0;
                for (size_t x = 0; x < cols * d; x++) K[x] = hbm_ld(k, kvb + k0 * d + x), V[x] = hbm_ld(v, kvb + k0 * d + x);
                for (size_t r = 0; r < rows; r++) {
                    const size_t vis = attn_visible_keys(s, r0 + r);
                    float mx = m[r], rs = 0;
                    for (size_t t = 0; t < cols; t++) {
                        float dot = 0;
                        for (size_t x = 0; x < d; x++) dot += Q[r * d + x] * K[t * d + x];
                        S[t] = k0 + t < vis ? s->scale * dot : -INFINITY;
                        mx = fmaxf(mx, S[t]);
                    }
                    const float base = mx == -INFINITY ? 0 : mx, alpha = expf(m[r] - base);
                    for (size_t t = 0; t < cols; t++) S[t] = expf(S[t] - base), rs += S[t];
                    l[r] = l[r] * alpha + rs;
                    lastl[r] = rs;
                    if (g_broken != BROKEN_NO_RESCALE)
                        for (size_t x = 0; x < d; x++) O[r * d + x] *= alpha;
                    for (size_t t = 0; t < cols; t++)
                        for (size_t x = 0; x < d; x++) O[r * d + x] += S[t] * V[t * d + x];
                    m[r] = mx;
                }
            }
            for (size_t r = 0; r < rows; r++) {
                const float den = g_broken == BROKEN_DIVIDE_BY_LAST_L ? lastl[r] : l[r];
                for (size_t x = 0; x < d; x++) hbm_st(o, qb + (r0 + r) * d + x, den == 0 ? 0 : O[r * d + x] / den);
            }
        }
    }
    free(Q); free(O); free(K); free(V);
    return 0;
}

static void test_checks_reject_broken(void **state)
{
    (void)state;
    static const char *names[] = { "no rescale of O between K/V blocks", "diagonal blocks skipped",
                                   "divided by the last block's l" };
    for (int b = 0; b < 3; b++) {
        g_broken = (broken_t)b;
        attn_impl_t broken = IMPL_ATTN_FA2;
        broken.cpu = broken_fa2;
        attn_problem_t p;
        attn_problem_make(&p, 1, 2, 2, 200, 300, 64, b == BROKEN_SKIP_DIAGONAL, DT_F32, 2.0f, 8000);
        attn_problem_ref(&p, NULL);
        void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
        assert_int_equal(attn_run_impl(&broken, 0, &p, o, NULL), 0);
        attn_check_t c;
        const double ratio = attn_check_rows(&p, o, broken.rounding, &c);
        print_message("broken tiled attention (%s): error/tolerance = %.3g (must exceed 1)\n", names[b], ratio);
        assert_true(ratio > 1.0);
        assert_false(attn_check_ok(&c));
        /* and the real one passes on the same input */
        check_one(&IMPL_ATTN_FA2, 0, &p, o, "control");
        free(o);
        attn_problem_free(&p);
    }
}

int main(void)
{
    test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tile_choice),
        cmocka_unit_test(test_budget_rejected),
        cmocka_unit_test(test_ledger_closed_forms),
        cmocka_unit_test(test_causal_blocks),
        cmocka_unit_test(test_checks_reject_broken),
        cmocka_unit_test(test_accuracy_cpu),
        cmocka_unit_test(test_tile_shapes_cpu),
        cmocka_unit_test(test_large_logits_cpu),
        cmocka_unit_test(test_program),
        cmocka_unit_test(test_accuracy_gpu),
        cmocka_unit_test(test_large_logits_gpu),
    };
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    return cmocka_run_group_tests_name("tiled attention stage 05", tests, NULL, NULL);
}
