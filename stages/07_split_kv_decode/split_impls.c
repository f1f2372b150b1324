/* Stage 07's implementation as the driver sees it (attn_impl_t): the split
 * count for the shape (split_plan), the CPU run (split_cpu.c), the GPU run
 * (split_gpu.cu), the traffic model, the shapes it declines, and the line it
 * prints under the table (the split choice and the partial states' share of
 * the traffic).
 *
 * Run: build/bin/07_split_kv_decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "report.h"
#include "rng.h"
#include "split.h"
#include "timing.h"

static int split_splits(const attn_shape_t *s)
{
    split_plan_t p;
    split_plan(s, &p);
    return p.splits;
}

static size_t split_ws(const attn_shape_t *s) { return split_partial_bytes(s, split_splits(s)); }

/* The functions named _n take the split count of their kernel: split's
 * (split_splits) or split-tc's (tc_splits, below). */
static double model_n(const attn_shape_t *s, int S)
{
    double b = split_blocks_bytes(s, NULL, S);
    if (S > 1) /* the combine: reads the partial states, writes O */
        b += (double)split_partial_bytes(s, S) + (double)attn_q_elems(s) * (double)dtype_size(s->dt);
    return b;
}
static double split_model(const attn_shape_t *s) { return model_n(s, split_splits(s)); }

static int cpu_n(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws, int S)
{
    return split_decode_cpu(s, q, k, v, o, NULL, S, ws);
}
static int split_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    return cpu_n(s, q, k, v, o, ws, split_splits(s));
}

/* The tiles column: rows per block x keys per tile / splits. */
static const char *tiles_of(const split_plan_t *p) { return fmt("%dx%d/%d", p->hpb, GQA_BC, p->splits); }

static int split_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (s->seq_q != 1) {
        snprintf(why, n, "split-KV decoding is for one query token per sequence (seq_q = 1); a prefill launch has "
                         "B H Nq/Br blocks, enough for the chip");
        return 0;
    }
    return gpu ? gqa_decode_supports(s, why, n) : 1;
}

/* ---- split-tc: the tensor-core decode kernel (decode_tc.cuh) with the same
 * splits machinery; its split count from the bandwidth model (split_tc_plan).
 * The CPU run is the same algorithm as split's (stage 06's blocks with the
 * partial-state epilogue) with split-tc's split count. */

/* The plan of the last shape asked about: the launcher asks before every
 * timed launch, and the model's scan over up to 1024 split counts is host
 * time the GPU would wait for. */
static split_plan_t tc_plan(const attn_shape_t *s)
{
    static attn_shape_t last;
    static split_plan_t plan;
    static int have;
    if (!have || last.batch != s->batch || last.heads != s->heads || last.kv_heads != s->kv_heads ||
        last.seq_q != s->seq_q || last.seq_kv != s->seq_kv || last.dim != s->dim || last.dt != s->dt ||
        last.varlen != s->varlen || last.tune.splits != s->tune.splits || last.tune.br != s->tune.br) {
        split_tc_plan(s, &plan);
        last = *s;
        have = 1;
    }
    return plan;
}

static int tc_splits(const attn_shape_t *s) { return tc_plan(s).splits; }

static size_t tc_ws(const attn_shape_t *s) { return split_partial_bytes(s, tc_splits(s)); }

static double tc_model(const attn_shape_t *s) { return model_n(s, tc_splits(s)); }

static int tc_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    return cpu_n(s, q, k, v, o, ws, tc_splits(s));
}

static int tc_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (s->seq_q != 1) return split_supports(s, gpu, why, n);
    return gpu ? split_tc_supports(s, why, n) : 1;
}

/* On the GPU: P is rounded to the storage type to enter the P V product, and
 * both products run on tensor cores with fp32 accumulation. */
static unsigned tc_rounding(const attn_shape_t *s, int gpu)
{
    (void)s;
    return gpu ? (ATT_ROUND_P | ATT_MMA_LOWP) : 0u;
}

static const char *tc_tiles(const attn_shape_t *s, int gpu)
{
    (void)gpu;
    const split_plan_t p = tc_plan(s);
    return tiles_of(&p);
}

static const char *tc_describe(const attn_shape_t *s)
{
    static char buf[768];
    const split_plan_t p = tc_plan(s);
    const size_t g = s->heads / s->kv_heads, kps = split_keys_per_split(s->seq_kv, (size_t)p.splits);
    char how[256];
    if (p.clamped_from)
        snprintf(how, sizeof how, "--splits %zu clamped to %d (the cache holds %ld tiles of %d keys)", p.clamped_from,
                 p.splits, p.tiles, GQA_BC);
    else if (p.chosen_by)
        snprintf(how, sizeof how, "--splits; the bandwidth model would take %d", p.model_splits);
    else
        snprintf(how, sizeof how, "the bandwidth model: time ~ (K/V + partials + combine) / wave efficiency = %.3gx "
                 "the K/V time at full rate, against %.3gx unsplit", p.costS, p.cost1);
    const double part = 2.0 * (double)split_partial_bytes(s, p.splits), kv = attn_kv_bytes_once(s);
    snprintf(buf, sizeof buf,
             "split-tc: g = %zu query heads as the M rows of m16n8k16 (%d rows per block, %zu padded); %ld blocks "
             "unsplit on %d SMs x %d resident = %ld slots%s; %d split%s (%s) of %zu keys -> %ld blocks; partial "
             "states %.4g MB written + read = %.2f%% of the %.4g MB of K/V",
             g, p.hpb, (g + (size_t)p.hpb - 1) / (size_t)p.hpb * (size_t)p.hpb - g, p.blocks, p.sms, p.per_sm,
             p.slots, gpu_available() ? "" : " (no GPU here: an H200's figures)", p.splits, p.splits == 1 ? "" : "s",
             how, kps, p.blocks * p.splits, part / 1e6, 100.0 * part / kv, kv / 1e6);
    return buf;
}

#if HAVE_CUDA
static void split_tc_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    split_tc_decode_gpu(s, q, k, v, o, gqa_device_lengths(s), tc_splits(s), ws);
}
#endif

const attn_impl_t IMPL_SPLIT_TC = {
    .name = "split-tc", .stage = "07", .rounding = 0, .ws_bytes = tc_ws, .model_bytes = tc_model,
    .supports = tc_supports, .cpu = tc_cpu, .gpu = GPU_FN(split_tc_gpu), .describe = tc_describe,
    .tiles = tc_tiles, .rounding_for = tc_rounding,
};

#if HAVE_CUDA
static void split_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    split_decode_gpu(s, q, k, v, o, gqa_device_lengths(s), split_splits(s), ws);
}
#endif

static const char *split_tiles(const attn_shape_t *s, int gpu)
{
    (void)gpu;
    split_plan_t p;
    split_plan(s, &p);
    return tiles_of(&p);
}

static const char *split_describe(const attn_shape_t *s)
{
    static char buf[768];
    split_plan_t p;
    split_plan(s, &p);
    const size_t kps = split_keys_per_split(s->seq_kv, (size_t)p.splits);
    char how[192];
    if (p.clamped_from)
        snprintf(how, sizeof how, "--splits %zu clamped to %d: the cache holds %ld tiles of %d keys, and more splits "
                 "would only add empty ranges (at most 65535: grid z)", p.clamped_from, p.splits, p.tiles, GQA_BC);
    else
        snprintf(how, sizeof how, "%s", p.chosen_by ? "--splits" : "FA2's heuristic: 1 if blocks >= 0.8 slots, else the fewest within 85% of the best wave efficiency");
    const double part = 2.0 * (double)split_partial_bytes(s, p.splits), kv = attn_kv_bytes_once(s);
    snprintf(buf, sizeof buf,
             "split: %ld blocks unsplit (B %zu x %zu head blocks of %d) on %d SMs x %d resident = %ld slots%s; "
             "%d split%s (%s) of %zu keys (%zu tiles) -> %ld blocks; partial states %.4g MB written + read = %.2f%% "
             "of the %.4g MB of K/V",
             p.blocks, s->batch, s->heads / (size_t)p.hpb, p.hpb, p.sms, p.per_sm, p.slots,
             gpu_available() ? "" : " (no GPU here: an H200's figures)", p.splits, p.splits == 1 ? "" : "s",
             how,
             kps, kps / GQA_BC, p.blocks * p.splits, part / 1e6, 100.0 * part / kv, kv / 1e6);
    return buf;
}

const attn_impl_t IMPL_SPLIT_KV = {
    .name = "split", .stage = "07", .rounding = 0, .ws_bytes = split_ws, .model_bytes = split_model,
    .supports = split_supports, .cpu = split_cpu, .gpu = GPU_FN(split_gpu), .describe = split_describe,
    .tiles = split_tiles,
};

/* ---- the paged cache: split-paged (--page-size P). The same split count
 * and kernel as `split`, K/V read through a block table from pools of
 * pages in a seeded random order (split.h; paged_cpu.c, paged_gpu.cu). The
 * pools are built once per shape before the checked run (prepare: a
 * serving system's cache exists before the decode step), untimed. */

#define PAGED_SEED 20261202u /* the page permutation's seed */

static void paged_geom_of(const attn_shape_t *s, paged_geom_t *g) { paged_geom(s, (int)s->tune.page, NULL, g); }

/* The paged functions below take the split count of their kernel: split's
 * (split_splits) or split-tc's (tc_splits). */
static size_t paged_ws_n(const attn_shape_t *s, int splits)
{
    paged_geom_t g;
    paged_ws_t w;
    paged_geom_of(s, &g);
    paged_ws_layout(s, &g, splits, &w);
    return w.total;
}
static size_t paged_ws(const attn_shape_t *s) { return paged_ws_n(s, split_splits(s)); }

static double paged_model_n(const attn_shape_t *s, int splits)
{
    paged_geom_t g;
    paged_geom_of(s, &g);
    return paged_decode_bytes(s, &g, NULL, splits);
}
static double paged_model(const attn_shape_t *s) { return paged_model_n(s, split_splits(s)); }

static int paged_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (!s->tune.page) {
        snprintf(why, n, "the paged cache runs with --page-size P (P = %d ... %d, a power of two)", PAGED_P_MIN,
                 PAGED_P_MAX);
        return 0;
    }
    if (!paged_size_ok(s->tune.page, why, n)) return 0;
    if ((double)(s->seq_kv / s->tune.page + 2) * (double)s->batch > 2147483647.0) {
        snprintf(why, n, "more pages than an int32 block table holds");
        return 0;
    }
    return split_supports(s, gpu, why, n);
}

static int *lens_of(const attn_shape_t *s)
{
    int *l = malloc(s->batch * sizeof *l);
    if (!l) {
        fprintf(stderr, "paged: out of host memory\n");
        return NULL;
    }
    for (size_t b = 0; b < s->batch; b++) l[b] = (int)attn_kv_len(s, b);
    return l;
}

static int paged_prepare_n(const attn_shape_t *s, int gpu, const void *k, const void *v, void *ws, int splits)
{
    paged_geom_t g;
    paged_ws_t w;
    paged_geom_of(s, &g);
    paged_ws_layout(s, &g, splits, &w);
    int *lens = lens_of(s);
    int32_t *table = malloc((size_t)g.B * (size_t)g.max_pages * sizeof *table);
    int32_t *fl = malloc((size_t)(g.num_pages - g.used + 1) * sizeof *fl);
    if (!lens || !table || !fl) {
        free(lens); free(table); free(fl);
        return -1;
    }
    paged_build_table(&g, lens, PAGED_SEED, table, fl);
    char *base = ws;
    if (gpu) {
        gpu_h2d(base + w.table, table, (size_t)g.B * (size_t)g.max_pages * sizeof *table);
        gpu_h2d(base + w.free_list, fl, (size_t)(g.num_pages - g.used) * sizeof *fl);
        paged_scatter_gpu(&g, s->seq_kv, gqa_device_lengths(s), (const int32_t *)(base + w.table), k, base + w.kpool);
        paged_scatter_gpu(&g, s->seq_kv, gqa_device_lengths(s), (const int32_t *)(base + w.table), v, base + w.vpool);
        gpu_sync();
    } else {
        memcpy(base + w.table, table, (size_t)g.B * (size_t)g.max_pages * sizeof *table);
        memcpy(base + w.free_list, fl, (size_t)(g.num_pages - g.used) * sizeof *fl);
        paged_scatter_host(&g, s->seq_kv, lens, table, k, base + w.kpool);
        paged_scatter_host(&g, s->seq_kv, lens, table, v, base + w.vpool);
    }
    free(lens); free(table); free(fl);
    return 0;
}

static int paged_prepare(const attn_shape_t *s, int gpu, const void *k, const void *v, void *ws)
{
    return paged_prepare_n(s, gpu, k, v, ws, split_splits(s));
}

static int paged_cpu_n(const attn_shape_t *s, hbm_t *q, hbm_t *o, void *ws, int splits)
{
    paged_geom_t g;
    paged_ws_t w;
    paged_geom_of(s, &g);
    paged_ws_layout(s, &g, splits, &w);
    char *base = ws;
    const size_t pe = (size_t)g.num_pages * g.page_elems;
    hbm_t kp = hbm_wrap(q->lg, "K pages", base + w.kpool, pe, s->dt);
    hbm_t vp = hbm_wrap(q->lg, "V pages", base + w.vpool, pe, s->dt);
    hbm_t tb = hbm_wrap(q->lg, "block table", base + w.table, (size_t)g.B * (size_t)g.max_pages, DT_F32);
    return paged_decode_cpu(s, &g, q, &kp, &vp, &tb, o, NULL, splits, ws);
}

static int paged_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)k; (void)v; /* the cache is the pools in ws, built by paged_prepare */
    return paged_cpu_n(s, q, o, ws, split_splits(s));
}

#if HAVE_CUDA
typedef void paged_gpu_fn(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                          const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits, void *ws);

/* The pools in ws (built by prepare) through `run`, S splits. */
static void paged_gpu_n(const attn_shape_t *s, const void *q, void *o, void *ws, int S, paged_gpu_fn *run)
{
    paged_geom_t g;
    paged_ws_t w;
    paged_geom_of(s, &g);
    paged_ws_layout(s, &g, S, &w);
    char *base = ws;
    run(s, &g, q, base + w.kpool, base + w.vpool, (const int32_t *)(base + w.table), o, gqa_device_lengths(s), S, ws);
}

static void paged_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    (void)k; (void)v; /* the cache is the pools in ws */
    paged_gpu_n(s, q, o, ws, split_splits(s), paged_decode_gpu);
}

static void lanes_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    (void)k; (void)v;
    paged_gpu_n(s, q, o, ws, split_splits(s), paged_lanes_decode_gpu);
}

static void tc_paged_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    (void)k; (void)v;
    paged_gpu_n(s, q, o, ws, tc_splits(s), paged_tc_decode_gpu);
}
#endif

static const char *paged_tiles(const attn_shape_t *s, int gpu)
{
    return fmt("%s:p%zu", split_tiles(s, gpu), s->tune.page);
}

/* The line under the table for both CUDA-core loaders: NAME, the layout
 * and the table's bytes, then the loader's own clause. */
static const char *paged_describe_as(const attn_shape_t *s, const char *name, const char *loader, char *buf,
                                     size_t n)
{
    paged_geom_t g;
    paged_geom_of(s, &g);
    const double lookups = paged_model(s) - split_model(s);
    snprintf(buf, n,
             "%s: the split's kernel and split count, K/V read through a block table: pages of %d tokens "
             "[%d pages][Hkv %d][%d][d %d] per pool (%d held + %d free, seeded random order), table %d x %d int32; "
             "table reads (model) %.4g KB = %.3f%% of the K/V bytes%s",
             name, g.P, g.num_pages, g.hkv, g.P, g.d, g.used, g.num_pages - g.used, g.B, g.max_pages, lookups / 1e3,
             100.0 * lookups / attn_kv_bytes_once(s), loader);
    return buf;
}

static const char *paged_describe(const attn_shape_t *s)
{
    static char buf[640];
    return paged_describe_as(s, "split-paged", "", buf, sizeof buf);
}

static int paged_listed(const attn_shape_t *s) { return s->tune.page != 0; }

const attn_impl_t IMPL_SPLIT_PAGED = {
    .name = "split-paged", .stage = "07", .rounding = 0, .ws_bytes = paged_ws, .model_bytes = paged_model,
    .supports = paged_supports, .cpu = paged_cpu, .gpu = GPU_FN(paged_gpu), .describe = paged_describe,
    .tiles = paged_tiles, .prepare = paged_prepare, .listed = paged_listed,
};

/* split-paged-lanes: split-paged with the lane loader (kv_paged_lanes): the
 * same kernel, split count and arithmetic, so the same CPU run and output. */
static const char *lanes_describe(const attn_shape_t *s)
{
    static char buf[768];
    char loader[160];
    snprintf(loader, sizeof loader, "; a tile that crosses pages (P < 64) reads its %d table entries once per warp, "
             "one per lane, and each row takes its page by shuffle",
             s->tune.page && s->tune.page < 64 ? 64 / (int)s->tune.page : 1);
    return paged_describe_as(s, "split-paged-lanes", loader, buf, sizeof buf);
}

const attn_impl_t IMPL_SPLIT_PAGED_LANES = {
    .name = "split-paged-lanes", .stage = "07", .rounding = 0, .ws_bytes = paged_ws, .model_bytes = paged_model,
    .supports = paged_supports, .cpu = paged_cpu, .gpu = GPU_FN(lanes_gpu), .describe = lanes_describe,
    .tiles = paged_tiles, .prepare = paged_prepare, .listed = paged_listed,
};

/* split-tc-paged: split-tc's kernel and split count on the paged cache
 * (paged_tc.cu); the CPU run is the paged CPU decode with split-tc's splits. */
static size_t tc_paged_ws(const attn_shape_t *s) { return paged_ws_n(s, tc_splits(s)); }
static double tc_paged_model(const attn_shape_t *s) { return paged_model_n(s, tc_splits(s)); }
static int tc_paged_prepare(const attn_shape_t *s, int gpu, const void *k, const void *v, void *ws)
{
    return paged_prepare_n(s, gpu, k, v, ws, tc_splits(s));
}
static int tc_paged_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)k; (void)v;
    return paged_cpu_n(s, q, o, ws, tc_splits(s));
}
static int tc_paged_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    return paged_supports(s, 0, why, n) && tc_supports(s, gpu, why, n);
}
static const char *tc_paged_tiles(const attn_shape_t *s, int gpu) { return fmt("%s:p%zu", tc_tiles(s, gpu), s->tune.page); }

const attn_impl_t IMPL_SPLIT_TC_PAGED = {
    .name = "split-tc-paged", .stage = "07", .rounding = 0, .ws_bytes = tc_paged_ws, .model_bytes = tc_paged_model,
    .supports = tc_paged_supports, .cpu = tc_paged_cpu, .gpu = GPU_FN(tc_paged_gpu), .tiles = tc_paged_tiles,
    .rounding_for = tc_rounding, .prepare = tc_paged_prepare, .listed = paged_listed,
};

int split_validate(const attn_shape_t *s, char *why, size_t n)
{
    return s->tune.page ? paged_size_ok(s->tune.page, why, n) : 1;
}

/* ---- the append's own row (after each table, with --page-size): one new
 * token's K/V row for every (b, h) into the cache of the shape's lengths,
 * on the CPU through the ledger (ledger against the model) or on the GPU
 * (checked against the CPU append: table, lengths, free-list top and every
 * written row, bit for bit; then timed like the kernels, L2 flushed). */

typedef struct {
    const paged_geom_t *g;
    int32_t *table, *lens_in, *lens_out, *fl, *top;
    void *knew, *vnew, *kpool, *vpool;
    int nfree, rc;
    ledger_t *lg;
} append_arg_t;

static void append_run_cpu(void *p)
{
    append_arg_t *a = p;
    const paged_geom_t *g = a->g;
    const size_t pe = (size_t)g->num_pages * g->page_elems, rows = (size_t)g->B * (size_t)g->hkv * (size_t)g->d;
    hbm_t tb = hbm_wrap(a->lg, "block table", a->table, (size_t)g->B * (size_t)g->max_pages, DT_F32);
    hbm_t li = hbm_wrap(a->lg, "lengths", a->lens_in, (size_t)g->B, DT_F32);
    hbm_t lo = hbm_wrap(a->lg, "new lengths", a->lens_out, (size_t)g->B, DT_F32);
    hbm_t fl = hbm_wrap(a->lg, "free list", a->fl, (size_t)a->nfree, DT_F32);
    hbm_t tp = hbm_wrap(a->lg, "free top", a->top, 2, DT_F32);
    hbm_t kn = hbm_wrap(a->lg, "new K", a->knew, rows, g->dt), vn = hbm_wrap(a->lg, "new V", a->vnew, rows, g->dt);
    hbm_t kp = hbm_wrap(a->lg, "K pages", a->kpool, pe, g->dt), vp = hbm_wrap(a->lg, "V pages", a->vpool, pe, g->dt);
    a->rc = paged_append_cpu(g, &tb, &li, &lo, &fl, a->nfree, &tp, &kn, &vn, &kp, &vp);
}

#if HAVE_CUDA
static void append_run_gpu(void *p)
{
    append_arg_t *a = p;
    paged_append_gpu(a->g, a->table, a->lens_in, a->lens_out, a->fl, a->nfree, a->top, a->knew, a->vnew, a->kpool,
                     a->vpool);
}
#endif

int paged_append_report(const attn_shape_t *s, int gpu)
{
    if (!s->tune.page || s->seq_q != 1 || !paged_size_ok(s->tune.page, (char[8]){ 0 }, 8)) return 0;
    paged_geom_t g;
    paged_geom_of(s, &g);
    const size_t es = dtype_size(s->dt), rows = (size_t)g.B * (size_t)g.hkv * (size_t)g.d;
    const size_t tn = (size_t)g.B * (size_t)g.max_pages, pool = paged_pool_bytes(&g);
    const int nfree = g.num_pages - g.used;
    int *lens = lens_of(s);
    int32_t *table = malloc(tn * 4), *fl = malloc((size_t)(nfree + 1) * 4);
    int32_t *lo = malloc((size_t)g.B * 4), top[2] = { 0, -7 };
    void *knew = malloc(rows * es), *vnew = malloc(rows * es), *kp = malloc(pool), *vp = malloc(pool);
    int fail = 0;
    if (!lens || !table || !fl || !lo || !knew || !vnew || !kp || !vp) {
        fprintf(stderr, "paged: out of host memory for the append\n");
        fail = 1;
        goto out;
    }
    paged_build_table(&g, lens, PAGED_SEED, table, fl);
    for (size_t i = 0; i < rows; i++) {
        dtype_set(knew, s->dt, i, rng_sym(77, 1, i));
        dtype_set(vnew, s->dt, i, rng_sym(77, 2, i));
    }
    int32_t *table0 = malloc(tn * 4);
    if (!table0) { fail = 1; goto out; }
    memcpy(table0, table, tn * 4);
    ledger_t lg = { 0 };
    append_arg_t a = { &g, table, (int32_t *)lens, lo, fl, top, knew, vnew, kp, vp, nfree, 0, &lg };
    append_run_cpu(&a); /* the reference (and the CPU row) */
    const double model = paged_append_bytes(&g, lens);
    int pages = 0;
    for (int b = 0; b < g.B; b++) pages += lens[b] % g.P == 0;
    double ms = 0;
    const char *how = "CPU";
    if (a.rc) {
        printf("append: the free list or the table ran out (a sizing error): FAILED\n");
        fail = 1;
    } else if (!gpu) {
        fail = (double)ledger_total(&lg) != model;
        ledger_t lg2 = { 0 };
        a.lg = &lg2;
        ms = cpu_time_median_ms(append_run_cpu, &a, 1, 5);
    }
#if HAVE_CUDA
    if (gpu && !a.rc) {
        how = "GPU";
        char *d = gpu_malloc(2 * pool + 2 * rows * es + tn * 4 + (size_t)(nfree + 1) * 4 + (size_t)g.B * 8 + 8 + 1024,
                             "append");
        append_arg_t ga = a;
        char *at = d;
        ga.kpool = at; at += pool;
        ga.vpool = at; at += pool;
        ga.knew = at; at += rows * es;
        ga.vnew = at; at += rows * es;
        ga.table = (int32_t *)at; at += tn * 4;
        ga.fl = (int32_t *)at; at += (size_t)(nfree + 1) * 4;
        ga.lens_in = (int32_t *)at; at += (size_t)g.B * 4;
        ga.lens_out = (int32_t *)at; at += (size_t)g.B * 4;
        ga.top = (int32_t *)at;
        const int32_t top0[2] = { 0, -7 };
        gpu_h2d(ga.knew, knew, rows * es);
        gpu_h2d(ga.vnew, vnew, rows * es);
        gpu_h2d(ga.table, table0, tn * 4);
        gpu_h2d(ga.fl, fl, (size_t)nfree * 4);
        gpu_h2d(ga.lens_in, lens, (size_t)g.B * 4);
        gpu_h2d(ga.top, top0, 8);
        gpu_poison(ga.lens_out, (size_t)g.B * 4);
        append_run_gpu(&ga);
        gpu_sync();
        /* the check: table, lengths, top, and each (b, h)'s new row where the CPU put it */
        int32_t *t2 = malloc(tn * 4), *l2 = malloc((size_t)g.B * 4), top2[2];
        char *row = malloc(2 * (size_t)g.d * es);
        if (!t2 || !l2 || !row) { fail = 1; goto gout; }
        gpu_d2h(t2, ga.table, tn * 4);
        gpu_d2h(l2, ga.lens_out, (size_t)g.B * 4);
        gpu_d2h(top2, ga.top, 8);
        fail |= memcmp(t2, table, tn * 4) != 0 || memcmp(l2, lo, (size_t)g.B * 4) != 0 || top2[1] != top[1];
        for (int b = 0; b < g.B && !fail; b++)
            for (int h = 0; h < g.hkv; h++) {
                const int n = lens[b];
                const size_t page = (size_t)table[(size_t)b * g.max_pages + (n >> g.shift)];
                const size_t off = ((page * (size_t)g.hkv + (size_t)h) * (size_t)g.P + (size_t)(n & (g.P - 1))) *
                                   (size_t)g.d * es;
                gpu_d2h(row, (char *)ga.kpool + off, (size_t)g.d * es);
                gpu_d2h(row + (size_t)g.d * es, (char *)ga.vpool + off, (size_t)g.d * es);
                const size_t src = ((size_t)b * g.hkv + (size_t)h) * (size_t)g.d * es;
                fail |= memcmp(row, (char *)knew + src, (size_t)g.d * es) != 0 ||
                        memcmp(row + (size_t)g.d * es, (char *)vnew + src, (size_t)g.d * es) != 0;
            }
        ms = gpu_time_median_ms(append_run_gpu, &ga, 10, 200, 1);
    gout:
        free(t2); free(l2); free(row);
        gpu_free(d);
    }
#endif
    printf("append (one token per sequence into its page, P = %d, %s): %.4f ms, %.4g KB moved (model%s), "
           "%.3g GB/s; %d of %d sequences took a new page from the free list: %s\n",
           g.P, how, ms, model / 1e3, gpu ? "" : fail ? " != ledger" : " = ledger", model / (ms * 1e-3) / 1e9, pages,
           g.B, fail ? (gpu ? "FAILED: GPU append differs from the CPU's" : "FAILED") : "ok");
    free(table0);
out:
    free(lens); free(table); free(fl); free(lo); free(knew); free(vnew); free(kp); free(vp);
    return fail;
}

/* ---- the CPU build: the GPU entry points of split.h as stubs (the tests
 * link them and skip their GPU cases) */
#if !HAVE_CUDA
void split_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                      const int *dev_lens, int splits, void *ws)
{
    (void)s; (void)q; (void)k; (void)v; (void)o; (void)dev_lens; (void)splits; (void)ws;
}
void split_tc_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                         const int *dev_lens, int splits, void *ws)
{
    split_decode_gpu(s, q, k, v, o, dev_lens, splits, ws);
}
void split_combine_gpu(const attn_shape_t *s, int splits, const float *pm, const float *pl, const float *po, void *o)
{
    (void)s; (void)splits; (void)pm; (void)pl; (void)po; (void)o;
}
int split_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, const int *dev_lens,
                       int splits, float *pm, float *pl, float *po)
{
    (void)s; (void)q; (void)k; (void)v; (void)dev_lens; (void)splits; (void)pm; (void)pl; (void)po;
    return -1;
}
int split_tc_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, const int *dev_lens,
                          int splits, float *pm, float *pl, float *po)
{
    return split_partials_gpu(s, q, k, v, dev_lens, splits, pm, pl, po);
}
int split_blocks_per_sm(const attn_shape_t *s) { (void)s; return 0; }
int split_tc_blocks_per_sm(const attn_shape_t *s) { (void)s; return 0; }
void paged_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                      const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits, void *ws)
{
    (void)s; (void)g; (void)q; (void)kpool; (void)vpool; (void)table; (void)o; (void)dev_lens; (void)splits; (void)ws;
}
void paged_tc_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                         const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits, void *ws)
{
    paged_decode_gpu(s, g, q, kpool, vpool, table, o, dev_lens, splits, ws);
}
void paged_lanes_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                            const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits,
                            void *ws)
{
    paged_decode_gpu(s, g, q, kpool, vpool, table, o, dev_lens, splits, ws);
}
void paged_scatter_gpu(const paged_geom_t *g, size_t nk, const int *dev_lens, const int32_t *dev_table,
                       const void *src, void *pool)
{
    (void)g; (void)nk; (void)dev_lens; (void)dev_table; (void)src; (void)pool;
}
void paged_append_gpu(const paged_geom_t *g, int32_t *table, const int32_t *lens_in, int32_t *lens_out,
                      const int32_t *free_list, int nfree, int32_t *top, const void *knew, const void *vnew,
                      void *kpool, void *vpool)
{
    (void)g; (void)table; (void)lens_in; (void)lens_out; (void)free_list; (void)nfree; (void)top; (void)knew;
    (void)vnew; (void)kpool; (void)vpool;
}
#endif
