/* Stage 07's implementation as the driver sees it (attn_impl_t): the split
 * count for the shape (split_plan), the CPU run (split_cpu.c), the GPU run
 * (split_gpu.cu), the traffic model, the shapes it declines, and the line it
 * prints under the table (the split choice and the partial states' share of
 * the traffic).
 *
 * Run: build/bin/07_split_kv_decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include <stdio.h>

#include "gpu.h"
#include "report.h"
#include "split.h"

static int split_splits(const attn_shape_t *s)
{
    split_plan_t p;
    split_plan(s, &p);
    return p.splits;
}

static size_t split_ws(const attn_shape_t *s) { return split_partial_bytes(s, split_splits(s)); }

static double split_model(const attn_shape_t *s)
{
    const int S = split_splits(s);
    double b = split_blocks_bytes(s, NULL, S);
    if (S > 1) /* the combine: reads the partial states, writes O */
        b += (double)split_partial_bytes(s, S) + (double)attn_q_elems(s) * (double)dtype_size(s->dt);
    return b;
}

static int split_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    return split_decode_cpu(s, q, k, v, o, NULL, split_splits(s), ws);
}

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

static double tc_model(const attn_shape_t *s)
{
    const int S = tc_splits(s);
    double b = split_blocks_bytes(s, NULL, S);
    if (S > 1) b += (double)split_partial_bytes(s, S) + (double)attn_q_elems(s) * (double)dtype_size(s->dt);
    return b;
}

static int tc_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    return split_decode_cpu(s, q, k, v, o, NULL, tc_splits(s), ws);
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
    return fmt("%dx%d/%d", p.hpb, GQA_BC, p.splits);
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
#else
void split_tc_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                         const int *dev_lens, int splits, void *ws)
{
    (void)s; (void)q; (void)k; (void)v; (void)o; (void)dev_lens; (void)splits; (void)ws;
}
int split_tc_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, const int *dev_lens,
                          int splits, float *pm, float *pl, float *po)
{
    (void)s; (void)q; (void)k; (void)v; (void)dev_lens; (void)splits; (void)pm; (void)pl; (void)po;
    return -1;
}
int split_tc_blocks_per_sm(const attn_shape_t *s) { (void)s; return 0; }
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
#else
void split_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                      const int *dev_lens, int splits, void *ws)
{
    (void)s; (void)q; (void)k; (void)v; (void)o; (void)dev_lens; (void)splits; (void)ws;
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
int split_blocks_per_sm(const attn_shape_t *s) { (void)s; return 0; }
#endif

static const char *split_tiles(const attn_shape_t *s, int gpu)
{
    (void)gpu;
    split_plan_t p;
    split_plan(s, &p);
    return fmt("%dx%d/%d", p.hpb, GQA_BC, p.splits);
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
