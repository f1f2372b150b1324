/* Stage 04, standard attention on the CPU: the formula of Q1 evaluated as
 * written, one N x N array at a time, the way a framework without a fused
 * kernel does it, and the way careful ones store it (PyTorch's math path
 * keeps the logits in fp32 through the softmax):
 *     S = Q K^T * scale       (a GEMM; S written to device memory in fp32)
 *     [causal: S_ij = -inf for j > i, written after the GEMM, which cannot skip them]
 *     P = softmax(S)          (stage 03's (m, d) state, md.h: one sweep for the
 *                              state, one writing P in the storage type)
 *     O = P V                 (a GEMM on P in the storage type)
 * What changes from stage 03: the softmax is now the middle of three steps,
 * and its rows are the logits of one query against all keys. A row whose
 * logits are all -inf (every key masked) gets P = 0, as PyTorch's SDPA
 * writes (its _safe_softmax), where softmax alone gives 0/0.
 *
 * Why S in fp32: the logits' rounding is amplified by the exponential; an
 * fp16 S costs u_16 |s_j| in each weight, and at q, k of standard deviation
 * 4 (d = 128) that was 25x PyTorch's error on the H200. standard-s16 keeps
 * S and P in the storage type (and stage 03's softmax on it) as the
 * demonstration of that (its check is reported, never the run's failure).
 *
 * Memory traffic (elements; es = element size; the ledger counts it exactly):
 *   S = Q K^T   reads Q and K once each (B H N d each), writes S (B H N^2, 4 bytes)
 *   mask        writes B H N (N - 1) / 2 elements of S (causal only, 4 bytes)
 *   softmax     reads S twice (4 bytes), writes P (B H N^2, es bytes)
 *   O = P V     reads P (B H N^2) and V (B H N d), writes O (B H N d)
 *   bytes = es (4 B H N d + 2 B H N^2) + 4 (3 B H N^2 + [causal] B H N (N - 1) / 2)
 * standard-s16: bytes = es (4 B H N d + (3 + r) B H N^2 + [causal] B H N (N - 1) / 2),
 * r = loads of S by stage 03's softmax (1 on chip, N <= 32768; else 2).
 * (with Nq queries and Nk keys: N^2 becomes Nq Nk, and the mask writes the
 * Nq Nk - pairs masked elements)
 * "Once each" for the GEMM operands is the ideal of a GEMM whose operands stay
 * in cache: here each (b, h) slice of Q, K, V is loaded into a local buffer
 * once, which the ledger counts as one read; cuBLAS on the GPU tiles and
 * re-reads from its L2, and the measured HBM bytes show how close it gets.
 * The N^2 terms are the point: at d = 64 they outweigh everything else once
 * N > 64, and S and P must fit in device memory.
 *
 * Run: build/bin/04_one_pass_attention --device cpu [--seq 512] [--causal] [--kernel standard,standard-s16] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../03_online_softmax/md.h"
#include "../03_online_softmax/online.h"
#include "attention.h"

size_t attention_standard_ws_bytes(const attn_shape_t *s)
{
    return (size_t)s->batch * s->heads * s->seq_q * s->seq_kv * (sizeof(float) + dtype_size(s->dt));
}

size_t attention_standard_s16_ws_bytes(const attn_shape_t *s)
{
    return 2 * (size_t)s->batch * s->heads * s->seq_q * s->seq_kv * dtype_size(s->dt);
}

int attention_standard_onchip(const attn_shape_t *s)
{
    char why[256];
    return onchip_applies(s->seq_kv, s->dt, why, sizeof why);
}

double attention_standard_model_bytes(const attn_shape_t *s)
{
    const double es = (double)dtype_size(s->dt), E = (double)attn_q_elems(s);
    const double bh = (double)s->batch * (double)s->heads, nn = bh * (double)s->seq_q * (double)s->seq_kv;
    const double mask = s->causal ? nn - (double)attn_pairs(s) : 0.0;
    /* Q and O: E elements each; K and V: the K/V elements, once each; P written and read */
    return es * (2.0 * E + 2.0 * (double)attn_kv_elems(s) + 2.0 * nn) + 4.0 * (3.0 * nn + mask);
}

double attention_standard_s16_model_bytes(const attn_shape_t *s)
{
    const double es = (double)dtype_size(s->dt), E = (double)attn_q_elems(s);
    const double bh = (double)s->batch * (double)s->heads, nn = bh * (double)s->seq_q * (double)s->seq_kv;
    const double r = attention_standard_onchip(s) ? 1.0 : 2.0;
    const double mask = s->causal ? nn - (double)attn_pairs(s) : 0.0;
    return es * (2.0 * E + 2.0 * (double)attn_kv_elems(s) + (3.0 + r) * nn + mask);
}

/* The K/V head of (batch, head) bh: bh / H picks the batch, its head h the
 * group h / G (attn_kv_slice, by head instead of by row: also with Nq = 0). */
static size_t kv_head(const attn_shape_t *s, size_t bh)
{
    return (bh / s->heads) * s->kv_heads + (bh % s->heads) / (s->heads / s->kv_heads);
}

/* [snippet:standard-gemms] */
void attention_gemm_nt_head(const attn_shape_t *s, hbm_t *X, hbm_t *Y, hbm_t *out, float mult, size_t bh, float *xs,
                            float *ys)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, d = s->dim, nn = Nq * Nk, kv = kv_head(s, bh) * Nk * d;
    for (size_t x = 0; x < Nq * d; x++) xs[x] = hbm_ld(X, bh * Nq * d + x);
    for (size_t x = 0; x < Nk * d; x++) ys[x] = hbm_ld(Y, kv + x);
    for (size_t i = 0; i < Nq; i++)
        for (size_t j = 0; j < Nk; j++) {
            float dot = 0.0f;
            for (size_t c = 0; c < d; c++) dot += xs[i * d + c] * ys[j * d + c];
            hbm_st(out, bh * nn + i * Nk + j, mult * dot);
        }
}

void attention_gemm_nn_head(const attn_shape_t *s, hbm_t *M, hbm_t *Y, hbm_t *out, float mult, size_t bh, float *ys,
                            float *acc)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, d = s->dim, nn = Nq * Nk, kv = kv_head(s, bh) * Nk * d;
    for (size_t x = 0; x < Nk * d; x++) ys[x] = hbm_ld(Y, kv + x);
    for (size_t i = 0; i < Nq; i++) {
        memset(acc, 0, d * sizeof *acc);
        for (size_t j = 0; j < Nk; j++) {
            const float m = hbm_ld(M, bh * nn + i * Nk + j);
            for (size_t c = 0; c < d; c++) acc[c] += m * ys[j * d + c];
        }
        for (size_t c = 0; c < d; c++) hbm_st(out, (bh * Nq + i) * d + c, mult * acc[c]);
    }
}
/* [/snippet] */

/* standard-s16's three steps: S and P in the storage type, stage 03's softmax. */
static int steps_s16(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, hbm_t S, hbm_t P, float *a,
                     float *b, float *acc)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, bhs = s->batch * s->heads, nn = Nq * Nk;
    /* [snippet:standard-steps] */
    /* 1. S = Q K^T * scale, then the causal mask */
    for (size_t bh = 0; bh < bhs; bh++) {
        attention_gemm_nt_head(s, q, k, &S, s->scale, bh, a, b);
        if (s->causal) /* bottom-right: query i sees keys j < attn_visible_keys(i) */
            for (size_t i = 0; i < Nq; i++)
                for (size_t j = attn_visible_keys(s, i); j < Nk; j++) hbm_st(&S, bh * nn + i * Nk + j, -INFINITY);
    }

    /* 2. P = softmax(S), row by row: stage 03 */
    int rc = attention_standard_onchip(s) ? softmax_merge_onchip_cpu(&S, &P, bhs * Nq, Nk)
                                          : softmax_online_cpu(&S, &P, bhs * Nq, Nk);

    /* 3. O = P V: a row of P at a time against the V slice */
    for (size_t bh = 0; bh < bhs && !rc; bh++) attention_gemm_nn_head(s, &P, v, o, 1.0f, bh, b, acc);
    /* [/snippet] */
    return rc;
}

/* Steps 1 and 3 are the same for both variants; s16 selects S in the
 * storage type and stage 03's softmax on it (the demonstration). */
static int standard_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws, int s16)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, d = s->dim, bhs = s->batch * s->heads, nn = Nq * Nk;
    const dtype_t sdt = s16 ? s->dt : DT_F32;
    if (!ws) {
        fprintf(stderr, "standard: no memory for S and P\n");
        return -1;
    }
    hbm_t S = hbm_wrap(q->lg, "S", ws, bhs * nn, sdt);
    hbm_t P = hbm_wrap(q->lg, "P", (char *)ws + bhs * nn * dtype_size(sdt), bhs * nn, s->dt);
    /* a, b: one (b, h) slice of the GEMM operands, the cache; acc: one output row */
    float *a = malloc(Nq * d * sizeof *a), *b = malloc(Nk * d * sizeof *b), *acc = malloc(d * sizeof *acc);
    if (!a || !b || !acc) {
        fprintf(stderr, "standard: out of host memory\n");
        free(a); free(b); free(acc);
        return -1;
    }
    if (s16) {
        const int rc = steps_s16(s, q, k, v, o, S, P, a, b, acc);
        free(a);
        free(b);
        free(acc);
        return rc;
    }

    /* [snippet:standard-f32s-steps] */
    /* 1. S = Q K^T * scale in fp32 (the GEMM's accumulator, stored as it is), then the causal mask */
    for (size_t bh = 0; bh < bhs; bh++) {
        attention_gemm_nt_head(s, q, k, &S, s->scale, bh, a, b);
        if (s->causal) /* bottom-right: query i sees keys j < attn_visible_keys(i) */
            for (size_t i = 0; i < Nq; i++)
                for (size_t j = attn_visible_keys(s, i); j < Nk; j++) hbm_st(&S, bh * nn + i * Nk + j, -INFINITY);
    }

    /* 2. P = softmax(S) in the storage type: stage 03's (m, d) state over a
     * row of S, then each weight; every logit -inf (no key visible) gives 0 */
    for (size_t r = 0; r < bhs * Nq; r++) {
        md_t st = md_empty();
        for (size_t j = 0; j < Nk; j++) st = md_push(st, hbm_ld(&S, r * Nk + j));
        const float ms = exp_base(st.m), inv = 1.0f / st.d;
        for (size_t j = 0; j < Nk; j++)
            hbm_st(&P, r * Nk + j, st.d == 0.0f ? 0.0f : md_exp(hbm_ld(&S, r * Nk + j) - ms) * inv);
    }

    /* 3. O = P V: a row of P at a time against the V slice */
    for (size_t bh = 0; bh < bhs; bh++) attention_gemm_nn_head(s, &P, v, o, 1.0f, bh, b, acc);
    /* [/snippet] */
    free(a);
    free(b);
    free(acc);
    return 0;
}

int attention_standard_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    return standard_cpu(s, q, k, v, o, ws, 0);
}

int attention_standard_s16_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    return standard_cpu(s, q, k, v, o, ws, 1);
}

static const char *standard_describe(const attn_shape_t *s)
{
    static char buf[320];
    const double nn = (double)s->batch * (double)s->heads * (double)s->seq_q * (double)s->seq_kv;
    snprintf(buf, sizeof buf,
             "standard: S (fp32) and P (%s) hold B H N^2 = %.4g elements each (%.4g MB together); softmax: two "
             "sweeps of S with stage 03's (m, d) state%s",
             dtype_name(s->dt), nn, (double)attention_standard_ws_bytes(s) / 1e6,
             s->causal ? "; causal: -inf written above the diagonal after the full GEMM" : "");
    return buf;
}

static const char *standard_s16_describe(const attn_shape_t *s)
{
    static char buf[320];
    snprintf(buf, sizeof buf, "standard-s16: S and P in %s (%.4g MB together); softmax: stage 03's %s",
             dtype_name(s->dt), (double)attention_standard_s16_ws_bytes(s) / 1e6,
             attention_standard_onchip(s) ? "merge-onchip (a row of S fits on chip: read once)"
                                          : "two-sweep online softmax (S read twice)");
    return buf;
}

static int standard_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (s->kv_heads != s->heads) {
        snprintf(why, n, "standard attention here is MHA (Hkv = H); grouped K/V heads are stage 06's");
        return 0;
    }
    if (gpu && (s->seq_q > 0x7fffffffu / (s->seq_kv ? s->seq_kv : 1) || s->dim > 0x7fffffffu / s->seq_kv ||
                s->batch * s->heads > 0x7fffffffu)) {
        snprintf(why, n, "cuBLAS takes int sizes and strides: Nq Nk and Nk d must stay below 2^31");
        return 0;
    }
    return 1;
}

static int standard_s16_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (!standard_supports(s, gpu, why, n)) return 0;
    if (s->causal && s->seq_q > s->seq_kv) {
        snprintf(why, n, "causal with Nq > Nk leaves query rows with no visible key: stage 03's softmax over all "
                         "-inf is 0/0 = NaN there");
        return 0;
    }
    return 1;
}

const attn_impl_t IMPL_ATTN_STANDARD = {
    .supports = standard_supports,
    .name = "standard", .stage = "04", .rounding = ATT_ROUND_P | ATT_MMA_LOWP,
    .ws_bytes = attention_standard_ws_bytes, .model_bytes = attention_standard_model_bytes,
    .cpu = attention_standard_cpu, .gpu = GPU_FN(attention_standard_gpu), .describe = standard_describe,
};

/* Checked against standard attention's tolerance (S in fp32: no ATT_ROUND_S),
 * so its error shows what storing S in 16 bits costs. */
const attn_impl_t IMPL_ATTN_STANDARD_S16 = {
    .supports = standard_s16_supports,
    .name = "standard-s16", .stage = "04", .rounding = ATT_ROUND_P | ATT_MMA_LOWP,
    .ws_bytes = attention_standard_s16_ws_bytes, .model_bytes = attention_standard_s16_model_bytes,
    .cpu = attention_standard_s16_cpu, .gpu = GPU_FN(attention_standard_s16_gpu), .describe = standard_s16_describe,
    .demo = "S stored in the 16-bit storage type, checked against the tolerance of S in fp32: the error "
            "FlashAttention avoids by keeping S in registers",
};
