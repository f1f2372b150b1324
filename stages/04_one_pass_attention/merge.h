/* Stage 04, the merge of two partial attention states, written once for every
 * caller: the CPU merge (merge.c, attn_merge), stage 06's decode kernel (its
 * warps' states) and stage 07's combine (the splits' states). Plain C, and
 * __host__ __device__ under nvcc.
 *
 * Two states over disjoint key sets, (m1, l1, o1) and (m2, l2, o2), each taken
 * against its own maximum, become the state of the union by bringing both to
 * the common maximum M = max(m1, m2):
 *     l = l1 e^{m1 - M} + l2 e^{m2 - M},   o = o1 e^{m1 - M} + o2 e^{m2 - M}
 * attn_merge_ml does the (m, l) part and returns the two factors; the caller
 * applies them to the o elements it holds (all d of them on the CPU, the
 * columns of one thread on the GPU). The derivation and why the merge is
 * associative: merge.c and notes/04_one_pass_attention.md.
 *
 * An empty state (m = -inf, l = 0) merges as the identity: the exponents are
 * taken against 0 while M = -inf (exp_base), so e^{-inf - (-inf)} = NaN never
 * appears. Memory traffic: none (registers only). */
#ifndef STF_STAGE04_MERGE_H
#define STF_STAGE04_MERGE_H

#include <math.h>

#include "exp_base.h"

/* e^x: expf on the host; on the device exp2f(x log2 e), the kernels' fast
 * exponential (common/device/softmax_device.cuh's fexp). */
STF_HD float merge_exp(float x)
{
#if defined(__CUDA_ARCH__)
    return exp2f(x * STF_LOG2E_F);
#else
    return expf(x);
#endif
}

/* [snippet:attn-merge] */
/* (m, l) <- the state of the union of (m, l) and (mb, lb); then
 * o <- o * fa + ob * fb for each element of o. */
STF_HD void attn_merge_ml(float *m, float *l, float mb, float lb, float *fa, float *fb)
{
    const float M = fmaxf(*m, mb);
    const float base = exp_base(M); /* M itself, or 0 while both states are empty */
    *fa = merge_exp(*m - base);
    *fb = merge_exp(mb - base);
    *l = *l * *fa + lb * *fb;
    *m = M;
}
/* [/snippet] */

#endif
