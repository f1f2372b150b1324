/* Stage 04, standard attention on the CPU: the formula of Q1 evaluated as
 * written, one N x N array at a time, the way a framework without a fused
 * kernel does it:
 *     S = Q K^T * scale       (a GEMM; written to device memory)
 *     [causal: S_ij = -inf for j > i, written after the GEMM, which cannot skip them]
 *     P = softmax(S)          (stage 03's softmax on the B H N rows of S)
 *     O = P V                 (a GEMM)
 * What changes from stage 03: the softmax is now the middle of three steps,
 * and its rows are the logits of one query against all keys.
 *
 * Memory traffic (elements; es = element size; the ledger counts it exactly):
 *   S = Q K^T   reads Q and K once each (B H N d each), writes S (B H N^2)
 *   mask        writes B H N (N - 1) / 2 elements of S (causal only)
 *   softmax     reads S once (row on chip, N <= 32768) or twice (two-sweep
 *               online softmax), writes P (B H N^2)
 *   O = P V     reads P (B H N^2) and V (B H N d), writes O (B H N d)
 *   bytes = es (4 B H N d + (3 + r) B H N^2 + [causal] B H N (N - 1) / 2),  r = loads of S by the softmax
 * (with Nq queries and Nk keys: N^2 becomes Nq Nk, and the mask writes the
 * Nq Nk - pairs masked elements)
 * "Once each" for the GEMM operands is the ideal of a GEMM whose operands stay
 * in cache: here each (b, h) slice of Q, K, V is loaded into a local buffer
 * once, which the ledger counts as one read; cuBLAS on the GPU tiles and
 * re-reads from its L2, and the measured HBM bytes show how close it gets.
 * The N^2 terms are the point: at d = 64 they outweigh everything else once
 * N > 64, and S and P (2 B H N^2 es bytes) must fit in device memory.
 *
 * Which softmax: the same rule as the GPU (onchip_applies, stage 02), so that a
 * CPU ledger and a GPU measurement of one shape count the same algorithm.
 *
 * Run: build/bin/04_one_pass_attention --device cpu [--seq 512] [--causal] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../03_online_softmax/online.h"
#include "attention.h"

size_t attention_standard_ws_bytes(const attn_shape_t *s)
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
    const double r = attention_standard_onchip(s) ? 1.0 : 2.0;
    const double mask = s->causal ? nn - (double)attn_pairs(s) : 0.0;
    /* Q and O: E elements each; K and V: the K/V elements, once each */
    return es * (2.0 * E + 2.0 * (double)attn_kv_elems(s) + (3.0 + r) * nn + mask);
}

int attention_standard_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, d = s->dim, bhs = s->batch * s->heads, nn = Nq * Nk;
    const size_t es = dtype_size(s->dt);
    if (!ws) {
        fprintf(stderr, "standard: no memory for S and P\n");
        return -1;
    }
    hbm_t S = hbm_wrap(q->lg, "S", ws, bhs * nn, s->dt);
    hbm_t P = hbm_wrap(q->lg, "P", (char *)ws + bhs * nn * es, bhs * nn, s->dt);
    /* a, b: one (b, h) slice of the GEMM operands, the cache; acc: one output row */
    float *a = malloc(Nq * d * sizeof *a), *b = malloc(Nk * d * sizeof *b), *acc = malloc(d * sizeof *acc);
    if (!a || !b || !acc) {
        fprintf(stderr, "standard: out of host memory\n");
        free(a); free(b); free(acc);
        return -1;
    }

    /* [snippet:standard-steps] */
    /* 1. S = Q K^T * scale, then the causal mask */
    for (size_t bh = 0; bh < bhs; bh++) {
        const size_t kv = (size_t)attn_kv_slice(s, (uint64_t)bh * Nq) * Nk * d;
        for (size_t x = 0; x < Nq * d; x++) a[x] = hbm_ld(q, bh * Nq * d + x);
        for (size_t x = 0; x < Nk * d; x++) b[x] = hbm_ld(k, kv + x);
        for (size_t i = 0; i < Nq; i++)
            for (size_t j = 0; j < Nk; j++) {
                float dot = 0.0f;
                for (size_t c = 0; c < d; c++) dot += a[i * d + c] * b[j * d + c];
                hbm_st(&S, bh * nn + i * Nk + j, s->scale * dot);
            }
        if (s->causal) /* bottom-right: query i sees keys j < attn_visible_keys(i) */
            for (size_t i = 0; i < Nq; i++)
                for (size_t j = attn_visible_keys(s, i); j < Nk; j++) hbm_st(&S, bh * nn + i * Nk + j, -INFINITY);
    }

    /* 2. P = softmax(S), row by row: stage 03 */
    int rc = attention_standard_onchip(s) ? softmax_merge_onchip_cpu(&S, &P, bhs * Nq, Nk)
                                          : softmax_online_cpu(&S, &P, bhs * Nq, Nk);

    /* 3. O = P V: a row of P at a time against the V slice */
    for (size_t bh = 0; bh < bhs && !rc; bh++) {
        const size_t kv = (size_t)attn_kv_slice(s, (uint64_t)bh * Nq) * Nk * d;
        for (size_t x = 0; x < Nk * d; x++) b[x] = hbm_ld(v, kv + x);
        for (size_t i = 0; i < Nq; i++) {
            memset(acc, 0, d * sizeof *acc);
            for (size_t j = 0; j < Nk; j++) {
                const float p = hbm_ld(&P, bh * nn + i * Nk + j);
                for (size_t c = 0; c < d; c++) acc[c] += p * b[j * d + c];
            }
            for (size_t c = 0; c < d; c++) hbm_st(o, (bh * Nq + i) * d + c, acc[c]);
        }
    }
    /* [/snippet] */
    free(a);
    free(b);
    free(acc);
    return rc;
}

static const char *standard_describe(const attn_shape_t *s)
{
    static char buf[320];
    const double nn = (double)s->batch * (double)s->heads * (double)s->seq_q * (double)s->seq_kv;
    snprintf(buf, sizeof buf,
             "standard: S and P hold B H N^2 = %.4g elements each (%.4g MB together); softmax: stage 03's %s%s",
             nn, (double)attention_standard_ws_bytes(s) / 1e6,
             attention_standard_onchip(s) ? "merge-onchip (a row of S fits on chip: read once)"
                                          : "two-sweep online softmax (S read twice)",
             s->causal ? "; causal: -inf written above the diagonal after the full GEMM" : "");
    return buf;
}

static int standard_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    (void)gpu;
    if (s->kv_heads != s->heads) {
        snprintf(why, n, "standard attention here is MHA (Hkv = H); grouped K/V heads are stage 06's");
        return 0;
    }
    if (s->causal && s->seq_q > s->seq_kv) {
        snprintf(why, n, "causal with Nq > Nk leaves query rows with no visible key: a softmax over all -inf is "
                         "0/0 = NaN; the fused kernels write FlashAttention's 0 there");
        return 0;
    }
    return 1;
}

const attn_impl_t IMPL_ATTN_STANDARD = {
    .supports = standard_supports,
    .name = "standard", .stage = "04", .rounding = ATT_ROUND_S | ATT_ROUND_P | ATT_MMA_LOWP,
    .ws_bytes = attention_standard_ws_bytes, .model_bytes = attention_standard_model_bytes,
    .cpu = attention_standard_cpu, .gpu = GPU_FN(attention_standard_gpu), .describe = standard_describe,
};
