/* Stage 04: attention, O = softmax(Q K^T / sqrt(d)) V (Q1), two ways.
 *
 *  standard  S = Q K^T * scale and P = softmax(S) are materialised in device
 *            memory (N x N per head), built on stage 03's softmax.
 *  one-pass  for each query row, one loop over the keys carrying (m, l, o):
 *            the running maximum, the running denominator, and the running
 *            unnormalised output, rescaled whenever m grows (Q4). Nothing of
 *            size N x N exists.
 *
 * The merge of two partial states (merge.c) is what makes the recurrence
 * associative: any split of the keys, merged in any order, gives the same
 * O. Stages 05 (tiling) and 06 (grouped K/V heads) reuse it.
 *
 * Every implementation has a CPU version (plain C through the traffic ledger)
 * and a GPU launcher (asynchronous, stream 0, C linkage). */
#ifndef STF_STAGE04_H
#define STF_STAGE04_H

#include <stddef.h>

#include "attention_bench.h"
#include "attention_ref.h"
#include "dtype.h"
#include "ledger.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Head dimensions the one-pass GPU kernel is compiled for (0-terminated);
 * the CPU code takes any d (the driver: 1 to ATTN_DIM_MAX). */
extern const int ATTN04_DIMS[];

/* ---- the merge (merge.c) */

/* The partial result of attention over a set of keys, for one query row:
 *   m = max_j s_j,  l = sum_j e^{s_j - m},  o[c] = sum_j e^{s_j - m} v_jc
 * (o is unnormalised: the output is o / l). The empty set: m = -inf, l = 0,
 * o = 0. */
typedef struct {
    float m, l;
    float *o; /* d floats, owned by the caller */
} attn_state_t;

void attn_state_init(attn_state_t *st, float *o, size_t d);
/* a <- the state of the union of a's keys and b's keys. */
void attn_merge(attn_state_t *a, const attn_state_t *b, size_t d);
/* out[c] = o[c] / l; 0 for the empty state (l = 0). out may be st->o. */
void attn_state_finish(const attn_state_t *st, size_t d, float *out);

/* ---- one-pass (one_pass_cpu.c, one_pass_gpu.cu) */

/* The recurrence over keys j0 .. j1-1 of one K/V slice (k, v: the slice's
 * arrays; base: its first element), folded into st, for the query row q
 * (d floats, already loaded). Every K and V element goes through the ledger. */
void attention_one_pass_range(hbm_t *k, hbm_t *v, size_t base, size_t d, float scale, const float *q, size_t j0,
                              size_t j1, attn_state_t *st);
int attention_one_pass_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws);
void attention_one_pass_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);
/* Bytes: (2 B H N d + 2 d * pairs) elements; pairs = B H N^2 or B H N (N+1)/2. */
double attention_one_pass_model_bytes(const attn_shape_t *s);

/* ---- standard (standard_cpu.c, standard_gpu.cu) */

/* standard: S in fp32 and P in the storage type, B H N^2 elements each. */
size_t attention_standard_ws_bytes(const attn_shape_t *s);
int attention_standard_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws);
void attention_standard_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);
double attention_standard_model_bytes(const attn_shape_t *s);
/* standard-s16, the demonstration: S and P both in the storage type, stage
 * 03's softmax on S. */
size_t attention_standard_s16_ws_bytes(const attn_shape_t *s);
int attention_standard_s16_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws);
void attention_standard_s16_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);
double attention_standard_s16_model_bytes(const attn_shape_t *s);
/* The standard algorithm's two GEMM shapes for one (batch, head) bh, through
 * the ledger (also stage 08's standard backward):
 *   nt: head bh's N x N array out (Nq x Nk) = mult X Y^T, X the head's Nq x d
 *       slice (Q; dO), Y its K/V head's Nk x d (K; V), loaded once into xs, ys;
 *   nn: head bh's Nq x d slice of out = mult M Y, M the head's N x N array
 *       (P; dS), Y its K/V head's Nk x d (V; K), loaded once into ys; acc: a row. */
void attention_gemm_nt_head(const attn_shape_t *s, hbm_t *X, hbm_t *Y, hbm_t *out, float mult, size_t bh, float *xs,
                            float *ys);
void attention_gemm_nn_head(const attn_shape_t *s, hbm_t *M, hbm_t *Y, hbm_t *out, float mult, size_t bh, float *ys,
                            float *acc);
/* 1 when stage 03's row-on-chip softmax takes rows of N elements (one load
 * of S), 0 when its two-sweep online softmax runs (two loads): standard-s16. */
int attention_standard_onchip(const attn_shape_t *s);

extern const attn_impl_t IMPL_ATTN_STANDARD;
extern const attn_impl_t IMPL_ATTN_STANDARD_S16;
extern const attn_impl_t IMPL_ATTN_ONE_PASS;

#ifdef __cplusplus
}
#endif

/* The GPU one-pass layout: G lanes of a warp share one query row, each holding
 * d / G elements of q and o. G is the largest power of two <= 32 that divides
 * d and still gives each lane at least 16 bytes of a K or V row (one 16-byte
 * load where the elements allow it): fewer lanes per row means fewer shuffles
 * per key, and 32 / G rows of the same warp share each K/V load. Compile-time
 * in the kernel (a template argument), run-time here for the notes. */
#if defined(__CUDACC__)
#define STF_CONSTEXPR_FN static constexpr __host__ __device__
#elif defined(__cplusplus)
#define STF_CONSTEXPR_FN static constexpr
#else
#define STF_CONSTEXPR_FN static inline
#endif
STF_CONSTEXPR_FN int attn04_lanes_per_row(int d, int elem_bytes)
{
    int g = 32;
    while (g > 1 && (d % g != 0 || (d / g) * elem_bytes < 16)) g /= 2;
    return g;
}

#endif
