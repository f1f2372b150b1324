/* Stage 08, the standard backward on the CPU: what autograd does with stage
 * 04's standard attention. The forward keeps P (B H Nq Nk elements) for the
 * backward; the backward is five GEMMs and one elementwise pass, each
 * through device memory:
 *     D  = rowsum(dO * O)                    (fp32, one per query row)
 *     dV = P^T dO                            (summed over the group's query heads)
 *     dP = dO V^T                            (N x N, fp32, written over S)
 *     dS = P * (dP - D)                      (N x N, in dt, over dP)
 *     dQ = scale dS K,   dK = scale dS^T Q   (summed over the group's query heads)
 * The forward here is stage 04's (S written, then masked, softmax S -> P,
 * O = P V), with grouped K/V heads, rows that see no key (P = 0, O = 0,
 * L = -inf), and L written for the checks. What is stored in which type
 * follows the GPU's standard backward (bwd_standard.cu: cuBLAS writes an
 * fp32 C from 16-bit operands): S and dP in fp32, P and dS in the storage
 * type, the operands of the next GEMMs.
 *
 * Memory traffic (es = element size, E = B H Nq d, E' = B H Nk d (K or V
 * read per query head), Ekv = B Hkv Nk d, nn = B H Nq Nk, R = B H Nq; the
 * ledger counts exactly this):
 *   forward  es (2 E + 2 E') + (8 + 2 es) nn + 4 [causal] (nn - visible pairs) + 4 R
 *   backward es (6 E + 2 E' + 2 Ekv) + (8 + 5 es) nn + 8 R
 * Each GEMM operand slice is loaded once into a local buffer (the ideal of
 * a GEMM whose operands stay in cache, as in stage 04). The nn terms of the
 * backward: P read by dV and by dS (2 es), dP written and read (8), dS
 * written and read twice (3 es). At N = 16384 that term is everything.
 *
 * Run: build/bin/08_backward --device cpu --kernel bwd-standard [--causal] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"

static size_t nn_of(const attn_shape_t *s) { return s->batch * s->heads * s->seq_q * s->seq_kv; }

/* Where D starts in the workspace: after S (fp32) and P (storage type),
 * rounded up to 16 bytes, since B H Nq Nk 16-bit elements of P can leave
 * the offset at 2 mod 4 and D is fp32. */
static size_t d_offset(const attn_shape_t *s)
{
    return (nn_of(s) * (4 + dtype_size(s->dt)) + 15) / 16 * 16;
}

size_t bwd_standard_ws_bytes(const attn_shape_t *s)
{
    return d_offset(s) + 4 * (size_t)attn_rows(s); /* S = dP = dS (fp32 room), P; D */
}

double bwd_standard_fwd_bytes(const attn_shape_t *s)
{
    const double es = (double)dtype_size(s->dt), E = (double)attn_q_elems(s), nn = (double)nn_of(s);
    const double Ep = (double)(s->batch * s->heads * s->seq_kv * s->dim);
    const double mask = s->causal ? nn - (double)attn_pairs(s) : 0.0;
    return es * (2.0 * E + 2.0 * Ep) + (8.0 + 2.0 * es) * nn + 4.0 * mask + 4.0 * (double)attn_rows(s);
}

double bwd_standard_bwd_bytes(const attn_shape_t *s)
{
    const double es = (double)dtype_size(s->dt), E = (double)attn_q_elems(s), nn = (double)nn_of(s);
    const double Ep = (double)(s->batch * s->heads * s->seq_kv * s->dim), Ekv = (double)attn_kv_elems(s);
    return es * (6.0 * E + 2.0 * Ep + 2.0 * Ekv) + (8.0 + 5.0 * es) * nn + 8.0 * (double)attn_rows(s);
}

int bwd_standard_forward_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, d = s->dim, bhs = s->batch * s->heads, nn = Nq * Nk;
    if (!ws) {
        fprintf(stderr, "bwd-standard: no memory for S and P\n");
        return -1;
    }
    hbm_t S = hbm_wrap(a->q.lg, "S", ws, bhs * nn, DT_F32);
    hbm_t P = hbm_wrap(a->q.lg, "P", (char *)ws + bhs * nn * 4, bhs * nn, s->dt);
    float *qa = malloc((Nq * d + 1) * sizeof *qa), *kb = malloc((Nk * d + 1) * sizeof *kb);
    float *row = malloc((Nk ? Nk : 1) * sizeof *row), *acc = malloc((d ? d : 1) * sizeof *acc);
    if (!qa || !kb || !row || !acc) {
        fprintf(stderr, "bwd-standard: out of host memory\n");
        free(qa); free(kb); free(row); free(acc);
        return -1;
    }
    for (size_t bh = 0; bh < bhs; bh++) { /* S = scale Q K^T, then the mask */
        attention_gemm_nt_head(s, &a->q, &a->k, &S, s->scale, bh, qa, kb);
        if (s->causal)
            for (size_t i = 0; i < Nq; i++)
                for (size_t j = attn_visible_keys(s, i); j < Nk; j++) hbm_st(&S, bh * nn + i * Nk + j, -INFINITY);
    }
    for (size_t r = 0; r < bhs * Nq; r++) { /* P = softmax(S) (a row on chip), and L */
        float m = -INFINITY, l = 0.0f;
        for (size_t j = 0; j < Nk; j++) row[j] = hbm_ld(&S, r * Nk + j), m = fmaxf(m, row[j]);
        for (size_t j = 0; j < Nk; j++) l += m == -INFINITY ? 0.0f : expf(row[j] - m);
        for (size_t j = 0; j < Nk; j++) hbm_st(&P, r * Nk + j, l == 0.0f ? 0.0f : expf(row[j] - m) / l);
        hbm_st(&a->lse, r, l == 0.0f ? -INFINITY : m + logf(l));
    }
    for (size_t bh = 0; bh < bhs; bh++) /* O = P V */
        attention_gemm_nn_head(s, &P, &a->v, &a->o, 1.0f, bh, kb, acc);
    free(qa); free(kb); free(row); free(acc);
    return 0;
}

/* dst (Nk x d, fp32) = sum over the group's query heads of M^T X, M the
 * head's N x N array (Nq x Nk), X its Nq x d slice (dO for dV, Q for dK);
 * written to out times mult. */
static void gemm_tn_group(const attn_shape_t *s, hbm_t *M, hbm_t *X, hbm_t *out, float mult, size_t g, float *xs,
                          float *dst)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, d = s->dim, G = s->heads / s->kv_heads, nn = Nq * Nk;
    const size_t b = g / s->kv_heads, hkv = g % s->kv_heads;
    memset(dst, 0, Nk * d * sizeof *dst);
    for (size_t h = hkv * G; h < (hkv + 1) * G; h++) {
        const size_t bh = b * s->heads + h;
        for (size_t x = 0; x < Nq * d; x++) xs[x] = hbm_ld(X, bh * Nq * d + x);
        for (size_t i = 0; i < Nq; i++)
            for (size_t j = 0; j < Nk; j++) {
                const float m = hbm_ld(M, bh * nn + i * Nk + j);
                for (size_t c = 0; c < d; c++) dst[j * d + c] += m * xs[i * d + c];
            }
    }
    for (size_t x = 0; x < Nk * d; x++) hbm_st(out, g * Nk * d + x, mult * dst[x]);
}

int bwd_standard_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, d = s->dim, bhs = s->batch * s->heads, nn = Nq * Nk;
    const size_t R = (size_t)attn_rows(s);
    if (!ws) {
        fprintf(stderr, "bwd-standard: no P from the forward\n");
        return -1;
    }
    ledger_t *lg = a->q.lg;
    hbm_t dP = hbm_wrap(lg, "dP", ws, bhs * nn, DT_F32); /* over S: the forward no longer needs it */
    hbm_t dS = hbm_wrap(lg, "dS", ws, bhs * nn, s->dt);  /* over dP, each element after it is read */
    hbm_t P = hbm_wrap(lg, "P", (char *)ws + bhs * nn * 4, bhs * nn, s->dt);
    hbm_t D = hbm_wrap(lg, "D", (char *)ws + d_offset(s), R, DT_F32);
    float *xs = malloc((Nq * d + 1) * sizeof *xs), *ys = malloc((Nk * d + 1) * sizeof *ys);
    float *acc = malloc(((Nk > 1 ? Nk : 1) * d + 1) * sizeof *acc); /* dV, dK rows; a dQ row */
    if (!xs || !ys || !acc) {
        fprintf(stderr, "bwd-standard: out of host memory\n");
        free(xs); free(ys); free(acc);
        return -1;
    }
    /* [snippet:standard-backward] */
    for (size_t r = 0; r < R; r++) { /* D = rowsum(dO * O) */
        float acc1 = 0.0f;
        for (size_t c = 0; c < d; c++) acc1 += hbm_ld(&a->dout, r * d + c) * hbm_ld(&a->o, r * d + c);
        hbm_st(&D, r, acc1);
    }
    for (size_t g = 0; g < s->batch * s->kv_heads; g++) /* dV = P^T dO */
        gemm_tn_group(s, &P, &a->dout, &a->dv, 1.0f, g, xs, acc);
    for (size_t bh = 0; bh < bhs; bh++) /* dP = dO V^T */
        attention_gemm_nt_head(s, &a->dout, &a->v, &dP, 1.0f, bh, xs, ys);
    for (size_t r = 0; r < R; r++) { /* dS = P * (dP - D) over dP: element x of dS (es bytes at es x) overlaps dP's
                                       * element es x / 4 <= x, already read */
        const float Dr = hbm_ld(&D, r);
        for (size_t j = 0; j < Nk; j++) {
            const float p = hbm_ld(&P, r * Nk + j), dp = hbm_ld(&dP, r * Nk + j);
            hbm_st(&dS, r * Nk + j, p * (dp - Dr));
        }
    }
    for (size_t bh = 0; bh < bhs; bh++) /* dQ = scale dS K */
        attention_gemm_nn_head(s, &dS, &a->k, &a->dq, s->scale, bh, ys, acc);
    for (size_t g = 0; g < s->batch * s->kv_heads; g++) /* dK = scale dS^T Q */
        gemm_tn_group(s, &dS, &a->q, &a->dk, s->scale, g, xs, acc);
    /* [/snippet] */
    free(xs); free(ys); free(acc);
    return 0;
}
