/* Stage 03's device pieces shared by its kernels (online_gpu.cu,
 * split_gpu.cu): the online (m, d) of a stretch of a row, per thread. */
#ifndef STF_STAGE03_ONLINE_CUH
#define STF_STAGE03_ONLINE_CUH

#include "md.h"
#include "softmax_device.cuh"

/* This thread's online state over vectors threadIdx.x, threadIdx.x + blockDim.x,
 * ... < nvec of xr. U vectors at a time: their joint maximum first, then one
 * rescaling of d for all U * VEC elements. Updating per vector made each
 * update wait on the previous one's exponential (measured: 63% of copy
 * bandwidth at 16384 columns, against 99% for the three-sweep safe kernel). */
template <typename T, int VEC, int U = 4>
__device__ __forceinline__ md_t online_thread_state(const T *__restrict__ xr, int nvec)
{
    md_t s = md_empty();
    const int stride = blockDim.x;
    for (int i = threadIdx.x; i < nvec; i += U * stride) {
        vec_t<T, VEC> v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * stride < nvec) v[u] = ld_vec<T, VEC>(xr + (size_t)(i + u * stride) * VEC);
        float bm = -INFINITY;
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * stride < nvec)
#pragma unroll
                for (int k = 0; k < VEC; k++) bm = fmaxf(bm, to_f(v[u].v[k]));
        const float mn = fmaxf(s.m, bm), ms = exp_base(mn);
        float add = 0.0f;
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * stride < nvec)
#pragma unroll
                for (int k = 0; k < VEC; k++) add += fexp(to_f(v[u].v[k]) - ms);
        s.d = s.d * fexp(s.m - ms) + add;
        s.m = mn;
    }
    return s;
}

#endif
