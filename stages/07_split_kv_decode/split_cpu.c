/* Stage 07 on the CPU, and the split choice. What changes from stage 06's
 * packed decode (gqa_cpu.c): the keys of each (batch, K/V head) are cut into
 * S ranges of whole 64-key tiles (this stage's epilogue for stage 06's CPU
 * blocks: S key ranges, and a store of the partial state); each (block,
 * range) leaves its partial state in simulated HBM, and the combine merges
 * the S states of every row with attn_merge (stage 04, merge.c) and writes O.
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

size_t split_keys_per_split(size_t nk, size_t splits)
{
    if (splits < 1) splits = 1;
    const size_t per = (nk + splits - 1) / splits;
    return (per + GQA_BC - 1) / GQA_BC * GQA_BC;
}

/* The device's SM count, asked once (a split choice runs before every launch); 0 without a GPU. */
static int device_sms(void)
{
    static int sms = -1;
    if (sms < 0) {
        sms = 0;
        if (gpu_available()) {
            gpu_info_t info;
            gpu_info(&info);
            sms = info.sm_count;
        }
    }
    return sms;
}

/* slots, and --splits clamped to the tiles and the grid (0 when not given) */
static void plan_common(const attn_shape_t *s, split_plan_t *p, int per_sm)
{
    p->tiles = (long)((s->seq_kv + GQA_BC - 1) / GQA_BC);
    const int sms = device_sms();
    if (sms > 0) {
        p->sms = sms;
        p->per_sm = per_sm;
    }
    if (p->sms <= 0 || p->per_sm <= 0) { /* no GPU: what an H200 runs (132 SMs; 2 blocks per SM, 1 for fp32) */
        p->sms = 132;
        p->per_sm = s->dt == DT_F32 ? 1 : 2;
    }
    p->slots = (long)p->sms * p->per_sm;
    if (s->tune.splits) {
        /* more splits than tiles would only add empty ranges (the same
         * partition of the keys); the grid's z dimension stops at 65535 */
        size_t S = s->tune.splits;
        if (S > (size_t)p->tiles) S = (size_t)p->tiles;
        if (S > 65535) S = 65535;
        if (S != s->tune.splits) p->clamped_from = s->tune.splits;
        p->splits = (int)S;
        p->chosen_by = 1;
    }
}

void split_plan(const attn_shape_t *s, split_plan_t *p)
{
    memset(p, 0, sizeof *p);
    p->hpb = gqa_packed_hpb(s);
    p->blocks = (long)(s->batch * (s->heads / (size_t)p->hpb));
    plan_common(s, p, device_sms() > 0 ? split_blocks_per_sm(s) : 0);
    if (!p->chosen_by) p->splits = split_heuristic(p->blocks, p->slots, p->tiles, 128);
}

/* [snippet:split-heuristic-bw] */
int split_heuristic_bw(long blocks, long slots, long tiles, double kv, double part, double fixed, int max_splits,
                       double *cost1, double *costS)
{
    long top = max_splits < tiles ? max_splits : tiles;
    if (top > 65535) top = 65535;
    if (top < 1 || blocks < 1 || slots < 1 || kv <= 0) {
        if (cost1) *cost1 = 1.0;
        if (costS) *costS = 1.0;
        return 1;
    }
    double best = INFINITY, c1 = INFINITY;
    double *cost = malloc((size_t)(top + 1) * sizeof *cost);
    if (!cost) return 1;
    for (long S = 1; S <= top; S++) {
        cost[S] = INFINITY;
        if (S > 1 && (tiles + S - 1) / S == (tiles + S - 2) / (S - 1)) continue; /* same tiles per split */
        const double waves = (double)(blocks * S) / (double)slots;
        const double eff = waves < 1.0 ? waves : waves / ceil(waves);
        cost[S] = (kv + (S > 1 ? (double)S * part + fixed : 0.0)) / eff;
        if (S == 1) c1 = cost[S];
        if (cost[S] < best) best = cost[S];
    }
    int pick = 1;
    for (long S = 1; S <= top; S++)
        if (cost[S] <= 1.03 * best) {
            pick = (int)S;
            break;
        }
    if (cost1) *cost1 = c1 / kv;
    if (costS) *costS = cost[pick] / kv;
    free(cost);
    return pick;
}
/* [/snippet] */

int split_tc_supports(const attn_shape_t *s, char *why, size_t n)
{
    if (s->seq_q != 1) {
        snprintf(why, n, "the tensor-core decode kernel takes one query row per head (seq_q = 1), not %zu", s->seq_q);
        return 0;
    }
    if (s->dt == DT_F32) {
        snprintf(why, n, "fp32: mma.sync m16n8k16 takes 16-bit inputs (fp16, bf16); the CUDA-core kernel serves fp32");
        return 0;
    }
    if (s->dim != 64 && s->dim != 128) {
        snprintf(why, n, "head dim %zu: the tensor-core decode kernel is built for d = 64, 128 (swizzled tiles of 8 "
                         "or 16 chunks; at d = 256 a lane's 128 accumulators and 64 Q registers would spill)", s->dim);
        return 0;
    }
    if (s->batch > 65535 || s->seq_kv > (1u << 30) || s->heads > 65535) {
        snprintf(why, n, "batch or heads above 65535 (grid) or more than 2^30 keys");
        return 0;
    }
    return 1;
}

int split_tc_rows(const attn_shape_t *s)
{
    if (s->tune.br == 16 || s->tune.br == 32) return (int)s->tune.br; /* --br: one m16 tile or two */
    return s->heads / s->kv_heads <= 16 ? 16 : 32;
}

/* The combine's launch, as bytes at the chip's rate: about 2 us of an H200's
 * ~4.5 TB/s (a kernel launch and its drain; an estimate, not a measurement). */
#define SPLIT_COMBINE_FIXED_BYTES 9e6

void split_tc_plan(const attn_shape_t *s, split_plan_t *p)
{
    memset(p, 0, sizeof *p);
    const size_t g = s->heads / s->kv_heads, rb = (size_t)split_tc_rows(s);
    p->hpb = (int)rb;
    p->blocks = (long)(s->batch * s->kv_heads * ((g + rb - 1) / rb));
    plan_common(s, p, device_sms() > 0 ? split_tc_blocks_per_sm(s) : 0);
    /* per split: the partial states written and read (d + 2 floats per row), Q read again */
    const double rows = (double)attn_rows(s);
    const double part = rows * (2.0 * 4.0 * ((double)s->dim + 2.0) + (double)s->dim * (double)dtype_size(s->dt));
    const int S = split_heuristic_bw(p->blocks, p->slots, p->tiles, attn_kv_bytes_once(s), part,
                                     SPLIT_COMBINE_FIXED_BYTES, 1024, &p->cost1, &p->costS);
    p->model_splits = S;
    if (!p->chosen_by) p->splits = S;
}

size_t split_partial_bytes(const attn_shape_t *s, int splits)
{
    if (splits <= 1) return 0;
    return (size_t)splits * (size_t)attn_rows(s) * (s->dim + 2) * sizeof(float);
}

void split_combine_cpu(const attn_shape_t *s, int splits, split_partials_t *part, hbm_t *o)
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

/* This stage's epilogue for stage 06's CPU blocks: the splits are the key
 * ranges, and each (row, split) state goes to the partial arrays. */
static void store_partial(const gqa_epilogue_t *e, const attn_shape_t *s, uint64_t row, size_t z, attn_state_t *st)
{
    split_partials_t *part = e->ctx;
    const size_t at = (size_t)(z * attn_rows(s) + row);
    hbm_st(&part->m, at, st->m);
    hbm_st(&part->l, at, st->l);
    for (size_t c = 0; c < s->dim; c++) hbm_st(&part->o, at * s->dim + c, st->o[c]);
}

static gqa_epilogue_t epilogue_split(const attn_shape_t *s, int splits, split_partials_t *part)
{
    gqa_epilogue_t e = { (size_t)splits, split_keys_per_split(s->seq_kv, (size_t)splits),
                         4.0 * ((double)s->dim + 2.0), store_partial, part };
    return e;
}

int split_partials_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, const int *lens, int splits,
                       split_partials_t *part)
{
    const gqa_epilogue_t e = epilogue_split(s, splits, part);
    return gqa_run_blocks(s, q, k, v, NULL, GQA_PACKED, lens, &e);
}

double split_blocks_bytes(const attn_shape_t *s, const int *lens, int splits)
{
    return split_blocks_bytes_kv(s, lens, splits, NULL);
}

double split_blocks_bytes_kv(const attn_shape_t *s, const int *lens, int splits, const gqa_kv_rows_t *rows)
{
    if (splits <= 1) return gqa_blocks_bytes_kv(s, GQA_PACKED, lens, NULL, rows);
    const gqa_epilogue_t e = epilogue_split(s, splits, NULL);
    return gqa_blocks_bytes_kv(s, GQA_PACKED, lens, &e, rows);
}

static split_partials_t partials_of(const attn_shape_t *s, ledger_t *lg, void *ws, int splits)
{
    const size_t n = (size_t)splits * (size_t)attn_rows(s);
    split_partials_t p;
    float *f = ws;
    p.o = hbm_wrap(lg, "partial o", f, n * s->dim, DT_F32);
    p.m = hbm_wrap(lg, "partial m", f + n * s->dim, n, DT_F32);
    p.l = hbm_wrap(lg, "partial l", f + n * s->dim + n, n, DT_F32);
    return p;
}

int split_decode_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, const int *lens, int splits,
                     void *ws)
{
    return split_decode_cpu_kv(s, q, k, v, o, lens, splits, ws, NULL);
}

int split_decode_cpu_kv(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, const int *lens, int splits,
                        void *ws, const gqa_kv_rows_t *rows)
{
    if (splits <= 1) return gqa_run_blocks_kv(s, q, k, v, o, GQA_PACKED, lens, NULL, rows); /* stage 06's packed decode */
    split_partials_t part = partials_of(s, q->lg, ws, splits);
    const gqa_epilogue_t e = epilogue_split(s, splits, &part);
    if (gqa_run_blocks_kv(s, q, k, v, NULL, GQA_PACKED, lens, &e, rows)) return -1;
    split_combine_cpu(s, splits, &part, o);
    return 0;
}
