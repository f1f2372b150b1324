/* Stage 03's idea in one type and one function: the online-softmax state of
 * a set of elements and the merge of two such states. Used by stage 03's CPU
 * and GPU code, and by stage 04 (through online.h), where the same merge
 * carries an output vector along.
 *
 * The state of a set S: m = max_{k in S} x_k and d = sum_{k in S} e^{x_k - m}.
 * Two states of disjoint sets merge into the state of their union:
 *     M = max(m1, m2),   d = d1 e^{m1 - M} + d2 e^{m2 - M}
 * exactly, in exact arithmetic, whatever the two sets were; so the merge is
 * associative and commutative, and any split of a row (threads, blocks, a
 * cluster, chunks on separate blocks), merged in any order, gives the row's
 * state up to rounding. The recurrence of online softmax is the special case
 * of a one-element second set: md_push(s, x) = md_merge(s, {x, 1}).
 *
 * While no finite element has been seen m = -inf; exponents are then taken
 * against 0 (exp_base, common/numerics/exp_base.h), so an empty or all -inf state
 * merges as the identity. fmaxf ignores NaN: a NaN element poisons d instead,
 * and with it the whole row, as the reference does.
 *
 * e^x: expf on the CPU, fexp (exp2f of x log2 e, common/device/softmax_device.cuh)
 * on the GPU. */
#ifndef STF_STAGE03_MD_H
#define STF_STAGE03_MD_H

#include <math.h>
#include <stdint.h>

#include "dtype.h"
#include "exp_base.h"

#ifdef __CUDACC__
#include "softmax_device.cuh"
#endif

typedef struct {
    float m, d;
} md_t;

STF_HD float md_exp(float x)
{
#ifdef __CUDA_ARCH__
    return fexp(x);
#else
    return expf(x);
#endif
}

STF_HD md_t md_empty(void)
{
    md_t r = { -INFINITY, 0.0f };
    return r;
}

/* [snippet:md-merge] */
STF_HD md_t md_merge(md_t a, md_t b)
{
    const float M = fmaxf(a.m, b.m), ms = exp_base(M);
    md_t r = { M, a.d * md_exp(a.m - ms) + b.d * md_exp(b.m - ms) };
    return r;
}

/* The recurrence: the state of S and one more element x. Written out rather
 * than as md_merge(s, {x, 1}) so that it costs one rescaling exponential and
 * one for the new term, as in Milakov & Gimelshein's Algorithm 3. */
STF_HD md_t md_push(md_t s, float x)
{
    const float mn = fmaxf(s.m, x), ms = exp_base(mn);
    md_t r = { mn, s.d * md_exp(s.m - ms) + md_exp(x - ms) };
    return r;
}
/* [/snippet] */

#ifndef __CUDA_ARCH__
/* ---- CPU: merging many states the way the GPU does, pairwise.
 * A left-to-right chain of N merges accumulates N roundings in d; a binary
 * counter (level k holds the merge of 2^k states) keeps it to about log2 N,
 * like the GPU's shuffle trees. See common/numerics/blocked_sum.h for the bound. */
typedef struct {
    uint64_t count;
    md_t level[64];
} md_tree_t;

static inline void md_tree_init(md_tree_t *t) { t->count = 0; }

static inline void md_tree_push(md_tree_t *t, md_t s)
{
    int k = 0;
    for (uint64_t c = t->count; c & 1; c >>= 1, k++) s = md_merge(t->level[k], s);
    t->level[k] = s;
    t->count++;
}

static inline md_t md_tree_result(const md_tree_t *t)
{
    md_t s = md_empty();
    int k = 0;
    for (uint64_t c = t->count; c; c >>= 1, k++)
        if (c & 1) s = md_merge(t->level[k], s);
    return s;
}

/* The online recurrence over a stream of elements, in blocks of MD_BLOCK
 * (md_push inside a block, as one GPU thread does), the blocks' states merged
 * pairwise. */
#define MD_BLOCK 256u
typedef struct {
    md_t blk;
    unsigned in_blk;
    md_tree_t tree;
} md_acc_t;

static inline void md_acc_init(md_acc_t *a)
{
    a->blk = md_empty();
    a->in_blk = 0;
    md_tree_init(&a->tree);
}

static inline void md_acc_push(md_acc_t *a, float x)
{
    a->blk = md_push(a->blk, x);
    if (++a->in_blk < MD_BLOCK) return;
    md_tree_push(&a->tree, a->blk);
    a->blk = md_empty();
    a->in_blk = 0;
}

static inline md_t md_acc_result(const md_acc_t *a) { return md_merge(md_tree_result(&a->tree), a->blk); }

/* The state of elements j0 .. j1-1 of a row already on chip (storage type
 * dt), the way the GPU's on-chip kernels form it: one segment of
 * MD_SEGMENT elements per "thread" (what a GPU thread holds in registers),
 * each by its maximum first, then its sum against that maximum (no
 * rescaling: the data is already there), the segments merged pairwise. */
#define MD_SEGMENT 32u
static inline md_t md_of_onchip(const void *row, dtype_t dt, size_t j0, size_t j1)
{
    md_tree_t tree;
    md_tree_init(&tree);
    for (size_t a = j0; a < j1; a += MD_SEGMENT) {
        const size_t b = a + MD_SEGMENT < j1 ? a + MD_SEGMENT : j1;
        md_t s = { -INFINITY, 0.0f };
        for (size_t j = a; j < b; j++) s.m = fmaxf(s.m, dtype_get(row, dt, j));
        const float ms = exp_base(s.m);
        for (size_t j = a; j < b; j++) s.d += expf(dtype_get(row, dt, j) - ms);
        md_tree_push(&tree, s);
    }
    return md_tree_result(&tree);
}
#endif

#ifdef __CUDACC__
/* ---- GPU: the merge as a reduction operator (warp_reduce, block_reduce). */
struct op_md {
    __device__ __forceinline__ md_t operator()(md_t a, md_t b) const { return md_merge(a, b); }
    __device__ __forceinline__ md_t identity() const { return md_empty(); }
};

template <> __device__ __forceinline__ md_t shfl_xor<md_t>(md_t v, int o)
{
    md_t r;
    r.m = __shfl_xor_sync(0xffffffffu, v.m, o);
    r.d = __shfl_xor_sync(0xffffffffu, v.d, o);
    return r;
}
#endif

#endif
