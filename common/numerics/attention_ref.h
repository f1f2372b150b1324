/* The fp64 reference for the attention stages (04-06), the error measure and
 * the tolerance, with its derivation (notes/04_one_pass_attention.md, section
 * "How results are checked").
 *
 *   O = softmax(Q K^T * scale) V,  scale = 1/sqrt(d)
 *
 * Layout: Q and O are [B, H, Nq, d], K and V are [B, Hkv, Nk, d], row-major,
 * in the storage type (Nq = seq_q query rows, Nk = seq_kv keys; decode is
 * Nq = 1). Query head h reads K/V head h / (H / Hkv) (stage 06; Hkv = H is
 * MHA). Causal masks align bottom-right, as FlashAttention does: key j is
 * visible to query i iff j <= i + (Nk - Nq), so the last query sees every
 * key. A query row with no visible key (causal, Nq > Nk, i < Nq - Nk) has
 * output 0, FlashAttention's convention. */
#ifndef STF_ATTENTION_REF_H
#define STF_ATTENTION_REF_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tuning knobs of the tiled stages (05-07), set from --br, --bc, --sram,
 * --splits, --page-size; 0 means "the implementation chooses". Not part of the problem:
 * the reference ignores them, and the output must not depend on them beyond
 * rounding. */
typedef struct {
    size_t br, bc;  /* query rows and key rows per tile */
    size_t sram;    /* simulated on-chip bytes (CPU tiling) */
    size_t splits;  /* K/V splits (split-KV decoding) */
    size_t page;    /* tokens per page of a paged K/V cache (stage 07, --page-size); 0: none */
} attn_tune_t;

typedef struct {
    size_t batch, heads, kv_heads, seq_q, seq_kv, dim; /* B, H, Hkv, Nq, Nk, d */
    int causal;
    /* 1/sqrt(d) rounded to fp32 once: every implementation multiplies its fp32
     * dot products by this value and the reference uses the same value, so the
     * problem solved is identical and the scale's own rounding is no error. */
    float scale;
    dtype_t dt;
    attn_tune_t tune;
    /* Stage 07, --varlen: batch element b holds only the first attn_kv_len(s, b)
     * keys of its K/V slices (a serving batch of sequences of different
     * lengths; the layout keeps seq_kv rows per slice, the capacity). 0: every
     * element holds seq_kv keys. */
    int varlen;
} attn_shape_t;

/* Fills every field; scale = (float)(1/sqrt(dim)); tune all 0. */
void attn_shape_init(attn_shape_t *s, size_t B, size_t H, size_t Hkv, size_t Nq, size_t Nk, size_t d, int causal,
                     dtype_t dt);

/* Element counts: of Q (= of O), of K (= of V); query rows B H Nq; visible
 * (query, key) pairs: B H Nq Nk, or when causal B H times the sum over i of
 * attn_visible_keys(i) (B H N (N+1)/2 when Nq = Nk = N). */
uint64_t attn_q_elems(const attn_shape_t *s);
uint64_t attn_kv_elems(const attn_shape_t *s);
uint64_t attn_rows(const attn_shape_t *s);
uint64_t attn_pairs(const attn_shape_t *s);
/* Keys visible to query i (0 <= i < Nq) of one head, with all seq_kv keys
 * held (the varlen lengths are not applied: see attn_visible). */
size_t attn_visible_keys(const attn_shape_t *s, size_t i);
/* Keys held by batch element b: seq_kv, or with varlen the deterministic
 * pattern Nk - floor(b Nk / (2B)) (from Nk for b = 0 down to just over Nk/2). */
size_t attn_kv_len(const attn_shape_t *s, size_t b);
/* Keys visible to query i when n keys are held: n, or when causal (bottom-right)
 * i + 1 + n - Nq clamped to [0, n]. */
size_t attn_visible_of(const attn_shape_t *s, size_t i, size_t n);
/* FLOPs as every table counts them: 4 d per visible (query, key) pair (two
 * GEMMs of 2 d each): 4 B H Nq Nk d, or when causal, with Nq = Nk = N,
 * 4 B H d N (N+1)/2, which is the "halved when causal" of FlashAttention's
 * benchmarks up to a factor 1 + 1/N. */
double attn_flops(const attn_shape_t *s);

/* Row statistics the tolerance is built from, computed in fp64 alongside the
 * reference output. */
typedef struct {
    size_t n;    /* visible keys */
    double amax; /* A = max_k sum_j p_j |v_jk|: the scale of the output's terms */
    double cmax; /* C = scale * max_j sum_k |q_k k_jk|: bounds every |s_j| and the
                    condition of each fp32 dot product */
    double vmax; /* max |v_jk| over the visible keys */
    double smax; /* max_j |s_j|, the largest scaled logit: where storing S overflows */
    double psq;  /* sum_j p_j^2 of the normalised weights: 1/n for uniform attention, 1 for one key */
    double pv;   /* max_k sqrt(sum_j p_j^2 v_jk^2): the scale of independent errors in the weights */
    double dev;  /* max_k sqrt(sum_j p_j^2 (v_jk - o_k)^2): the same for errors in the logits */
    double rmax; /* max_k |r_k| of the reference output row: the error an all-zero row would have is rmax / A' */
} attn_row_stats_t;

/* The fp64 reference for one query row: q (d stored elements), k and v (the
 * first n rows, of d stored elements each, of its K/V slice), n visible keys.
 * out: d doubles; st (may be NULL): the row's statistics. PyTorch's SDPA
 * semantics (notes/04_one_pass_attention.md, "NaN and -inf in Q, K, V"): a
 * NaN logit (NaN in q or a visible key row) makes the row NaN; a NaN or inf
 * in V[j, c] of a visible key reaches column c only (also through a zero
 * weight: 0 * NaN is NaN, as in P V); a -inf logit is a masked key; n = 0, or
 * every logit -inf, gives zeros (PyTorch >= 2.5 and FlashAttention). Only
 * finite logits enter smax and cmax. */
void attention_ref_row(const void *q, const void *k, const void *v, dtype_t dt, size_t n, size_t d, float scale,
                       double *out, attn_row_stats_t *st);

/* The same for row r of the whole problem (r = (b H + h) Nq + i) of full
 * arrays Q, K, V in the shape's layout. */
void attention_ref_at(const attn_shape_t *s, const void *Q, const void *K, const void *V, uint64_t r, double *out,
                      attn_row_stats_t *st);
/* Index of the K/V slice (one (b, kv head) pair: Nk rows of d elements) that
 * query row r reads, and how many of its keys are visible (the varlen length
 * of its batch element applied). */
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
 * n = visible keys, C, A, vmax, smax, psq, rmax from the row's statistics,
 * A' = max(A, min_normal), lambda = 8):
 *
 *   tol = (1 + u_s) [(e^{2 D} - 1) + u (8 C + 16 + 16 sqrt(n))] + u_s rmax / A'
 *         + [S] min(lambda u_s smax dev / A', e^{2 u_s (smax + min_normal)} - 1)
 *         + [P] min(lambda u_s pv / A', u_s) + u_s n min_normal vmax / A'
 *         + [MMA, dt != fp32] 2 u (ceil(d/16) + ceil(n/16))
 *   D   = (8 sqrt(d) + 1) u C
 *
 * Derivation (first order, fp32 arithmetic everywhere):
 *  - D bounds the absolute error of every logit s_j: an fp32 dot product of d
 *    terms (Higham & Mary's probabilistic bound, lambda = 8, as in stage 03:
 *    8 sqrt(d) u sum_k |q_k k_jk|) and the scale multiply (u |s_j| <= u C).
 *  - Logit errors delta_j change p_j to p_j e^{delta_j} / sum_i p_i e^{delta_i}:
 *    relative change at most e^{2 max|delta|} - 1, hence an output change of
 *    at most (e^{2D} - 1) sum_j p_j |v_j| <= (e^{2D} - 1) A.
 *  - The softmax in fp32: each exponent argument s_j - m rounds when formed
 *    and again when a GPU kernel scales it by log2 e for exp2f (stage 03's
 *    fexp): 2u |s_j - m| <= 4u C; the rescalings e^{m - m'} telescope (their
 *    arguments sum to at most 2C, each rounded twice: another 4u C); exp and
 *    the division contribute 16 u as in stage 03; the two n-term sums l and
 *    sum p_j v_j, each 8 sqrt(n) u.
 *  - O stored: the rounding of the output itself is u_s |o_k| <= u_s rmax
 *    (relative to its own size, not to A: attention over many random V rows
 *    averages towards 0, and a bound in units of A would exceed the output);
 *    the fp32 error before it is scaled by (1 + u_s).
 *  - S stored (ATT_ROUND_S): delta_j = s_j eps_j, |eps_j| <= u_s, which to first
 *    order moves the output by sum_j p_j delta_j (v_j - o). Round-to-nearest
 *    errors are modelled as independent and mean zero (the model of every
 *    sqrt(n) term here), so per output element
 *    |sum| <= lambda sqrt(sum_j p_j^2 delta_j^2 (v_jk - o_k)^2) <= lambda u_s smax dev.
 *    (With one key, v_j - o = 0: a logit error cannot move the output.)
 *    The worst case, all errors of one sign, is e^{2 u_s (smax + min_normal)} - 1
 *    (relative change of the weights, as for D); for few keys it is the
 *    smaller of the two. When u_s smax > 1/16 the first order
 *    no longer holds and the deterministic bound is used instead:
 *    D += u_s (smax + min_normal), the absolute error of the stored logit.
 *  - P stored or fed to an MMA in dt (ATT_ROUND_P): p_j eps_j per weight (the
 *    denominator keeps the unrounded weights), the same model:
 *    lambda sqrt(sum_j p_j^2 eps_j^2 v_jk^2) <= lambda u_s pv, or at worst
 *    u_s sum_j p_j |v_jk| <= u_s A; below the smallest normal the error
 *    is absolute, u_s min_normal per p_j, n of them times vmax.
 *  - Tensor cores may truncate (round toward zero) inside each k = 16 step of
 *    the accumulation (Fasi et al., PeerJ CS 2021): up to 2u per step, all of
 *    one sign, so linear in the step count, not sqrt.
 * The probabilistic terms hold except with probability below 2n e^{-32}.
 * The rescale count is O(log n) for keys in random order; an adversarial
 * order (logits sorted increasingly) rescales at every key and could exceed
 * the sqrt(n) model. */
double attention_tolerance(dtype_t dt, size_t d, const attn_row_stats_t *st, unsigned rounding);

/* Accumulates checked rows (like reference.h's check_t for softmax; the same
 * rules: NaN is a failure, a tolerance above CHECK_TOL_CAP is a failure). */
typedef struct {
    double max_err;     /* worst row error (NaN and inf propagate) */
    double worst_ratio; /* max over judged rows of error / tolerance; inf when unresolved */
    double max_tol;     /* largest tolerance used */
    size_t nonfinite;   /* inf or NaN elements in the checked rows */
    size_t rows;        /* rows checked */
    size_t excused;     /* rows not judged: S stored in a 16-bit type overflows there (the lesson) */
    size_t unresolved;  /* rows whose tolerance is not finite or above CHECK_TOL_CAP */
    size_t zero_rows;   /* rows whose exact result is 0, judged by the absolute bound |o| <= tol A' */
    size_t capped;      /* rows judged at half the all-zero error (the derived tolerance was not below it) */
    size_t nan_rows;    /* rows whose exact result is NaN everywhere: judged by exact match (NaN for NaN) */
} attn_check_t;

/* 1 when storing this row's logits in a 16-bit dt overflows (max |s_j| > the
 * largest finite value) and the implementation does store them (ATT_ROUND_S):
 * the only case in which a wrong row is excused. */
int attn_row_overflows_s(dtype_t dt, const attn_row_stats_t *st, unsigned rounding);

void attn_check_init(attn_check_t *c);
/* Checks one output row o (d stored elements) against ref; returns its error. */
double attn_check_row(attn_check_t *c, const void *o, dtype_t dt, const double *ref, const attn_row_stats_t *st,
                      size_t d, unsigned rounding);
/* 1 when every judged row is within its tolerance, no row was unresolved,
 * and at least one row was checked. A row is unresolved when its tolerance is
 * not finite or above CHECK_TOL_CAP. A row whose exact result is 0 is judged
 * by the absolute bound |o_k| <= tol A'; a row whose tolerance is not below
 * half the error an all-zero output would have (rmax / A') is judged at that
 * half instead, so that no check can pass an all-zero answer to a nonzero
 * row (attn_check_t.capped counts them). */
int attn_check_ok(const attn_check_t *c);

#ifdef __cplusplus
}
#endif

#endif
