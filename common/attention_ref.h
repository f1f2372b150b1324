/* The fp64 reference for the attention stages (04-06), the error measure and
 * the tolerance, with its derivation (notes/04_one_pass_attention.md, section
 * "How results are checked").
 *
 *   O = softmax(Q K^T * scale) V,  scale = 1/sqrt(d),  on [B, H, N, d] arrays
 *
 * Layout: Q and O are [B, H, N, d], K and V are [B, Hkv, N, d], row-major,
 * in the storage type. Query head h reads K/V head h / (H / Hkv) (stage 06;
 * until then Hkv = H). Causal: key j is visible to query i iff j <= i. */
#ifndef STF_ATTENTION_REF_H
#define STF_ATTENTION_REF_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    size_t batch, heads, kv_heads, seq, dim; /* B, H, Hkv, N, d */
    int causal;
    /* 1/sqrt(d) rounded to fp32 once: every implementation multiplies its fp32
     * dot products by this value and the reference uses the same value, so the
     * problem solved is identical and the scale's own rounding is no error. */
    float scale;
    dtype_t dt;
} attn_shape_t;

/* Fills every field; scale = (float)(1/sqrt(dim)). */
void attn_shape_init(attn_shape_t *s, size_t B, size_t H, size_t Hkv, size_t N, size_t d, int causal, dtype_t dt);

/* Element counts: of Q (= of O), of K (= of V); query rows B*H*N; (query, key)
 * pairs that are visible: B H N^2, or B H N (N+1)/2 when causal. */
uint64_t attn_q_elems(const attn_shape_t *s);
uint64_t attn_kv_elems(const attn_shape_t *s);
uint64_t attn_rows(const attn_shape_t *s);
uint64_t attn_pairs(const attn_shape_t *s);
/* FLOPs as every table counts them: 4 B H N^2 d (two GEMMs of 2 N^2 d per
 * head), halved when causal. */
double attn_flops(const attn_shape_t *s);

/* Row statistics the tolerance is built from, computed in fp64 alongside the
 * reference output. */
typedef struct {
    size_t n;    /* visible keys */
    double amax; /* A = max_k sum_j p_j |v_jk|: the scale of the output's terms */
    double cmax; /* C = scale * max_j sum_k |q_k k_jk|: bounds every |s_j| and the
                    condition of each fp32 dot product */
    double vmax; /* max |v_jk| over the visible keys */
} attn_row_stats_t;

/* The fp64 reference for one query row: q (d stored elements), k and v (the
 * first n rows, of d stored elements each, of its K/V slice), n visible keys.
 * out: d doubles; st (may be NULL): the row's statistics. A NaN anywhere in
 * the inputs gives a NaN output row. */
void attention_ref_row(const void *q, const void *k, const void *v, dtype_t dt, size_t n, size_t d, float scale,
                       double *out, attn_row_stats_t *st);

/* The same for row r of the whole problem (r = (b H + h) N + i) of full
 * arrays Q, K, V in the shape's layout. */
void attention_ref_at(const attn_shape_t *s, const void *Q, const void *K, const void *V, uint64_t r, double *out,
                      attn_row_stats_t *st);
/* Index (in rows of d elements) of the K/V slice row r reads, and how many of
 * its keys are visible. */
uint64_t attn_kv_slice(const attn_shape_t *s, uint64_t r);
size_t attn_visible(const attn_shape_t *s, uint64_t r);

/* What an implementation rounds to the storage type, or computes on tensor
 * cores, on the way to O; the tolerance grows accordingly. */
enum {
    ATT_ROUND_S = 1u,  /* the logits S are stored in the storage type */
    ATT_ROUND_P = 2u,  /* the probabilities P are stored (or fed to an MMA) in it */
    ATT_MMA_LOWP = 4u, /* fp16/bf16 GEMMs run on tensor cores */
};

/* The error of one output row, normwise against the scale of its terms:
 *   e = max_k |o_k - r_k| / max(A, min_normal(dt))
 * Why not max_k |r_k| as the denominator: O is an average of V rows, and for
 * spread-out attention over random V it cancels towards 0 (like 1/sqrt(N)),
 * while rounding errors scale with sum_j p_j |v_j|, the size of the terms.
 * Dividing by |r| would make the tolerance grow with N for no arithmetic
 * reason. The floor: below fp16's smallest normal the spacing is absolute.
 * NaN in the reference matched by NaN is no error; any other non-finite value
 * is an infinite error. */
double attention_row_error(const void *o, dtype_t dt, const double *ref, const attn_row_stats_t *st, size_t d);

/* The tolerance for that error (u = 2^-24, u_s = unit roundoff of dt,
 * n = visible keys, C, A, vmax from the row's statistics, A' = max(A, min_normal)):
 *
 *   tol = (1 + u_s) [(e^{2 D} - 1) + u (8 C + 16 + 16 sqrt(n))] + u_s + [P] u_s (1 + n min_normal vmax / A')
 *         + [MMA, dt != fp32] 2 u (ceil(d/16) + ceil(n/16))
 *   D   = (8 sqrt(d) + 1) u C + [S] u_s (C + min_normal)
 *
 * Derivation (first order, fp32 arithmetic everywhere):
 *  - D bounds the absolute error of every logit s_j: an fp32 dot product of d
 *    terms (Higham & Mary's probabilistic bound, lambda = 8, as in stage 03:
 *    8 sqrt(d) u sum_k |q_k k_jk|) and the scale multiply (u |s_j| <= u C);
 *    when S is stored, its rounding (u_s |s_j|, or the absolute half-spacing
 *    u_s min_normal of subnormals).
 *  - Logit errors delta_j change p_j to p_j e^{delta_j} / sum_i p_i e^{delta_i}:
 *    relative change at most e^{2 max|delta|} - 1, hence an output change of
 *    at most (e^{2D} - 1) sum_j p_j |v_j| <= (e^{2D} - 1) A.
 *  - The softmax in fp32: each exponent argument s_j - m rounds when formed
 *    and again when a GPU kernel scales it by log2 e for exp2f (stage 03's
 *    fexp): 2u |s_j - m| <= 4u C; the rescalings e^{m - m'} telescope (their
 *    arguments sum to at most 2C, each rounded twice: another 4u C); exp and
 *    the division contribute 16 u as in stage 03; the two n-term sums l and
 *    sum p_j v_j, each 8 sqrt(n) u.
 *    The rescale count is O(log n) for keys in random order; an adversarial
 *    order (logits sorted increasingly) rescales at every key and could exceed
 *    the sqrt(n) model, which assumes independent rounding errors.
 *  - O stored: u_s |o_k| <= u_s A; the fp32 error before it is scaled by
 *    (1 + u_s), since |fl(x) - r| <= u_s |x| + |x - r| and |x| <= A + |x - r|.
 *  - P stored: relative u_s per p_j gives u_s A; below the smallest normal the
 *    error is absolute, u_s min_normal per p_j, n of them times vmax.
 *  - Tensor cores may truncate (round toward zero) inside each k = 16 step of
 *    the accumulation (Fasi et al., PeerJ CS 2021): up to 2u per step, all of
 *    one sign, so linear in the step count, not sqrt.
 * The probabilistic terms hold except with probability below 2n e^{-32}. */
double attention_tolerance(dtype_t dt, size_t d, const attn_row_stats_t *st, unsigned rounding);

/* Accumulates checked rows (like reference.h's check_t for softmax). */
typedef struct {
    double max_err;     /* worst row error */
    double worst_ratio; /* max over rows of error / tolerance */
    double max_tol;     /* largest tolerance used */
    size_t nonfinite;   /* inf or NaN elements in the checked rows */
    size_t rows;
} attn_check_t;

void attn_check_init(attn_check_t *c);
/* Checks one output row o (d stored elements) against ref; returns its error. */
double attn_check_row(attn_check_t *c, const void *o, dtype_t dt, const double *ref, const attn_row_stats_t *st,
                      size_t d, unsigned rounding);
int attn_check_ok(const attn_check_t *c);

#ifdef __cplusplus
}
#endif

#endif
