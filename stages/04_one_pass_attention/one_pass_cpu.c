/* Stage 04, one-pass attention on the CPU. What changes from standard
 * attention (standard_cpu.c): S and P are never stored. For each query row,
 * one loop over its visible keys carries (m, l, o), the running maximum, the
 * running denominator and the running unnormalised output:
 *     s  = scale * q . k_j
 *     m' = max(m, s)
 *     l' = l e^{m - m'} + e^{s - m'}
 *     o' = o e^{m - m'} + e^{s - m'} v_j
 * and after the last key the output is o / l. This is stage 03's online
 * softmax with one more accumulator: the output is a weighted SUM of V rows,
 * and a sum can be rescaled after the fact, so o needs no second sweep
 * (Q4; the derivation is in notes/04_one_pass_attention.md). Each step is
 * attn_merge (merge.c) with the one-key state (s, 1, v_j), operation for
 * operation, so the two give bit-identical results (a test checks it).
 *
 * Memory traffic (elements of the storage type; the ledger counts it exactly):
 * per query row q once (d), every visible K row and V row (2 n_i d, n_i = Nk,
 * or i + 1 + Nk - Nq clamped to [0, Nk] when causal), o once (d):
 *     bytes = es (2 B H Nq d + 2 d pairs),  pairs = B H Nq Nk (causal, Nq = Nk = N: B H N(N+1)/2)
 * Without tiling every query row re-reads all of K and V: 2 N^2 d elements
 * per head, against standard attention's O(N^2 + N d). The GPU's caches
 * (L1 across the warps of a block, the L2 across blocks) hide much of it;
 * stage 05 removes it by tiling.
 *
 * -inf: while m = -inf (no key seen), exponents are taken against 0, as in
 * stage 03, so that e^{-inf - (-inf)} = NaN never appears.
 *
 * Run: build/bin/04_one_pass_attention --device cpu [--seq 1024] [--causal] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.h"
#include "exp_base.h"

const int ATTN04_DIMS[] = { 16, 32, 64, 80, 96, 128, 192, 256, 0 };

void attention_one_pass_range(hbm_t *k, hbm_t *v, size_t base, size_t d, float scale, const float *q, size_t j0,
                              size_t j1, attn_state_t *st)
{
    float m = st->m, l = st->l, *o = st->o;
    /* [snippet:one-pass-loop] */
    for (size_t j = j0; j < j1; j++) {
        const size_t row = base + j * d;
        float dot = 0.0f;
        for (size_t c = 0; c < d; c++) dot += q[c] * hbm_ld(k, row + c);
        const float s = scale * dot;
        const float mn = fmaxf(m, s), ms = exp_base(mn);
        const float alpha = expf(m - ms), p = expf(s - ms); /* alpha = 1 exactly unless m grew */
        l = l * alpha + p;
        for (size_t c = 0; c < d; c++) o[c] = o[c] * alpha + p * hbm_ld(v, row + c);
        m = mn;
    }
    /* [/snippet] */
    st->m = m;
    st->l = l;
}

int attention_one_pass_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws; /* nothing of size N x N */
    const size_t d = s->dim, Nk = s->seq_kv;
    const uint64_t rows = attn_rows(s);
    float *qr = malloc(d * sizeof *qr), *acc = malloc(d * sizeof *acc); /* a GPU keeps these in registers */
    if (!qr || !acc) {
        fprintf(stderr, "one-pass: out of host memory\n");
        free(qr);
        free(acc);
        return -1;
    }
    for (uint64_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < d; c++) qr[c] = hbm_ld(q, (size_t)r * d + c);
        attn_state_t st;
        attn_state_init(&st, acc, d);
        attention_one_pass_range(k, v, (size_t)attn_kv_slice(s, r) * Nk * d, d, s->scale, qr, 0, attn_visible(s, r), &st);
        attn_state_finish(&st, d, acc); /* o / l; zeros for a row with no visible key */
        for (size_t c = 0; c < d; c++) hbm_st(o, (size_t)r * d + c, acc[c]);
    }
    free(qr);
    free(acc);
    return 0;
}

double attention_one_pass_model_bytes(const attn_shape_t *s)
{
    const double es = (double)dtype_size(s->dt);
    return es * (2.0 * (double)attn_q_elems(s) + 2.0 * (double)s->dim * (double)attn_pairs(s));
}

static const char *one_pass_describe(const attn_shape_t *s)
{
    static char buf[320];
    const int g = attn04_lanes_per_row((int)s->dim, (int)dtype_size(s->dt));
    const double kv = 2.0 * (double)s->dim * (double)attn_pairs(s);
    snprintf(buf, sizeof buf,
             "one-pass: K and V are re-read for every query row: 2 d x pairs = %.4g elements, %.0fx the %.4g of Q, K, V, O "
             "(GPU layout: %d lanes per query row holding %d elements of q and o each; query rows per warp: %d)",
             kv, kv / (4.0 * (double)attn_q_elems(s)), 4.0 * (double)attn_q_elems(s), g, (int)s->dim / g, 32 / g);
    return buf;
}

static int one_pass_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (gpu && !attn_dim_listed(ATTN04_DIMS, s->dim)) {
        snprintf(why, n, "head dim %zu: the kernel is compiled for d = 16, 32, 64, 80, 96, 128, 192, 256 (the CPU "
                         "version takes any d)", s->dim);
        return 0;
    }
    if (gpu && attn_rows(s) > 0x7fffffffull) {
        snprintf(why, n, "%llu query rows: the kernel's grid holds at most 2^31 - 1 of them",
                 (unsigned long long)attn_rows(s));
        return 0;
    }
    return 1;
}

const attn_impl_t IMPL_ATTN_ONE_PASS = {
    .supports = one_pass_supports,
    .name = "one-pass", .stage = "04", .rounding = 0, .ws_bytes = NULL,
    .model_bytes = attention_one_pass_model_bytes, .cpu = attention_one_pass_cpu,
    .gpu = GPU_FN(attention_one_pass_gpu), .describe = one_pass_describe,
};
