/* Stage 07 on the CPU, and the split choice. What changes from stage 06's
 * packed decode (gqa_cpu.c): the keys of each (batch, K/V head) are cut into
 * S ranges of whole 64-key tiles; each (block, range) leaves its partial
 * state in simulated HBM, and the combine merges the S states of every row
 * with attn_merge (stage 04, merge.c) and writes O.
 *
 * Extra traffic of the split (fp32 partial states, d + 2 floats per row and
 * split), against unsplit packed decode:
 *     written by the blocks    S R (d + 2) 4      (R = B Hq query rows)
 *     read by the combine      S R (d + 2) 4
 *     Q re-read per split      (S - 1) R d es
 *   and O is written by the combine instead of the blocks (same bytes).
 * Against the K/V bytes, 2 B Hkv n d es (n keys), the extra is
 *     S R (d + 2) 8 / (2 B Hkv n d es) ~ 4 S g / (n es)   (g = Hq / Hkv),
 * e.g. S = 4, g = 4, n = 32768, bf16: 0.1%. It matters only for short caches
 * with many splits (n ~ 4 S g / es keys: n = 512 at S = 64, g = 8, bf16, is
 * 25%), which is where the heuristic asks for few splits anyway.
 *
 * Run: build/bin/07_split_kv_decode --device cpu --decode --seq-kv 4096 --heads 8 --kv-heads 2 [--splits 4] [--varlen] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "report.h"
#include "split.h"

int split_heuristic(long blocks, long slots, long tiles, int max_splits)
{
    if (blocks >= 0.8 * (double)slots) return 1;
    long top = max_splits;
    if (slots < top) top = slots;
    if (tiles < top) top = tiles;
    if (top < 1) return 1;
    double eff[1024], best = 0.0;
    if (top > 1023) top = 1023;
    for (long s = 1; s <= top; s++) {
        /* a split count that does not change the tiles per split only adds blocks */
        const int eligible = s == 1 || (tiles + s - 1) / s != (tiles + s - 2) / (s - 1);
        const double waves = (double)(blocks * s) / (double)slots;
        eff[s] = eligible ? waves / ceil(waves) : 0.0;
        if (eff[s] > best) best = eff[s];
    }
    for (long s = 1; s <= top; s++)
        if (eff[s] >= 0.85 * best) return (int)s;
    return 1;
}

void split_plan(const attn_shape_t *s, split_plan_t *p)
{
    memset(p, 0, sizeof *p);
    p->hpb = gqa_packed_hpb(s);
    p->blocks = (long)(s->batch * (s->heads / (size_t)p->hpb));
    p->tiles = (long)((s->seq_kv + GQA_BC - 1) / GQA_BC);
    static int sms = -1; /* asked once: this runs before every launch */
    if (sms < 0) {
        sms = 0;
        if (gpu_available()) {
            gpu_info_t info;
            gpu_info(&info);
            sms = info.sm_count;
        }
    }
    if (sms > 0) {
        p->sms = sms;
        p->per_sm = gqa_decode_blocks_per_sm(s, p->hpb);
    }
    if (p->sms <= 0 || p->per_sm <= 0) { /* no GPU: what an H200 runs (132 SMs; 2 blocks per SM, 1 for fp32) */
        p->sms = 132;
        p->per_sm = s->dt == DT_F32 ? 1 : 2;
    }
    p->slots = (long)p->sms * p->per_sm;
    if (s->tune.splits) {
        p->splits = (int)s->tune.splits;
        p->chosen_by = 1;
    } else {
        p->splits = split_heuristic(p->blocks, p->slots, p->tiles, 128);
    }
}

size_t split_partial_bytes(const attn_shape_t *s, int splits)
{
    if (splits <= 1) return 0;
    return (size_t)splits * (size_t)attn_rows(s) * (s->dim + 2) * sizeof(float);
}

void split_combine_cpu(const attn_shape_t *s, int splits, gqa_partials_t *part, hbm_t *o)
{
    const size_t d = s->dim, rows = (size_t)attn_rows(s);
    float *acc = malloc(d * sizeof *acc), *other = malloc(d * sizeof *other); /* a GPU keeps these in registers */
    if (!acc || !other) {
        fprintf(stderr, "split: out of host memory\n");
        exit(1);
    }
    for (size_t r = 0; r < rows; r++) {
        attn_state_t a;
        attn_state_init(&a, acc, d);
        for (int z = 0; z < splits; z++) { /* stage 04's merge, split by split: exact in any order */
            const size_t at = (size_t)z * rows + r;
            attn_state_t b = { hbm_ld(&part->m, at), hbm_ld(&part->l, at), other };
            for (size_t e = 0; e < d; e++) other[e] = hbm_ld(&part->o, at * d + e);
            attn_merge(&a, &b, d);
        }
        attn_state_finish(&a, d, acc); /* o / l; 0 for a row that saw no key */
        for (size_t e = 0; e < d; e++) hbm_st(o, r * d + e, acc[e]);
    }
    free(acc);
    free(other);
}

static gqa_partials_t partials_of(const attn_shape_t *s, ledger_t *lg, void *ws, int splits)
{
    const size_t n = (size_t)splits * (size_t)attn_rows(s);
    gqa_partials_t p;
    float *f = ws;
    p.o = hbm_wrap(lg, "partial o", f, n * s->dim, DT_F32);
    p.m = hbm_wrap(lg, "partial m", f + n * s->dim, n, DT_F32);
    p.l = hbm_wrap(lg, "partial l", f + n * s->dim + n, n, DT_F32);
    return p;
}

int split_decode_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, const int *lens, int splits,
                     void *ws)
{
    if (splits <= 1) return gqa_run_blocks(s, q, k, v, o, GQA_PACKED, lens, 1, NULL);
    gqa_partials_t part = partials_of(s, q->lg, ws, splits);
    if (gqa_run_blocks(s, q, k, v, o, GQA_PACKED, lens, (size_t)splits, &part)) return -1;
    split_combine_cpu(s, splits, &part, o);
    return 0;
}

/* ---- the implementation for the driver */

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
    double b = gqa_blocks_bytes(s, GQA_PACKED, NULL, (size_t)S);
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
    if (s->tune.splits > 65535) {
        snprintf(why, n, "--splits %zu: at most 65535 (grid z)", s->tune.splits);
        return 0;
    }
    return gpu ? gqa_decode_supports(s, why, n) : 1;
}

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
    const size_t kps = gqa_keys_per_split(s->seq_kv, (size_t)p.splits);
    const double part = 2.0 * (double)split_partial_bytes(s, p.splits), kv = attn_kv_bytes_once(s);
    snprintf(buf, sizeof buf,
             "split: %ld blocks unsplit (B %zu x %zu head blocks of %d) on %d SMs x %d resident = %ld slots%s; "
             "%d split%s (%s) of %zu keys (%zu tiles) -> %ld blocks; partial states %.4g MB written + read = %.2f%% "
             "of the %.4g MB of K/V",
             p.blocks, s->batch, s->heads / (size_t)p.hpb, p.hpb, p.sms, p.per_sm, p.slots,
             gpu_available() ? "" : " (no GPU here: an H200's figures)", p.splits, p.splits == 1 ? "" : "s",
             p.chosen_by ? "--splits" : "FA2's heuristic: 1 if blocks >= 0.8 slots, else the fewest within 85% of the best wave efficiency",
             kps, kps / GQA_BC, p.blocks * p.splits, part / 1e6, 100.0 * part / kv, kv / 1e6);
    return buf;
}

const attn_impl_t IMPL_SPLIT_KV = {
    .name = "split", .stage = "07", .rounding = 0, .ws_bytes = split_ws, .model_bytes = split_model,
    .supports = split_supports, .cpu = split_cpu, .gpu = GPU_FN(split_gpu), .describe = split_describe,
    .tiles = split_tiles,
};
