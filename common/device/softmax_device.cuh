/* Device helpers shared by the softmax kernels of stages 01-03 (and reused by
 * stage 04): storage-type conversion, 16-byte vector access, block-wide
 * reductions and row sweeps. The (max, sum) state and its merge, the idea of
 * stage 03, live in stages/03_online_softmax/md.h; the -inf guard in
 * common/numerics/exp_base.h.
 *
 * Storage types: float, __half, __nv_bfloat16; arithmetic is always fp32. */
#ifndef STF_SOFTMAX_DEVICE_CUH
#define STF_SOFTMAX_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "dtype.h"
#include "exp_base.h"

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/* VEC consecutive elements moved as one access: 16 bytes when VEC * sizeof(T)
 * is 16 (one LDG.128 per thread, the widest load), a single element when
 * VEC is 1 (rows whose length breaks 16-byte alignment). */
template <typename T, int VEC> struct alignas(sizeof(T) * VEC) vec_t { T v[VEC]; };

template <typename T, int VEC>
__device__ __forceinline__ vec_t<T, VEC> ld_vec(const T *p) { return *reinterpret_cast<const vec_t<T, VEC> *>(p); }
template <typename T, int VEC>
__device__ __forceinline__ void st_vec(T *p, const vec_t<T, VEC> &v) { *reinterpret_cast<vec_t<T, VEC> *>(p) = v; }

/* Streaming loads for data read exactly once (evict-first): keeps a kernel's
 * single pass from pushing re-read data out of L2. */
template <typename T, int VEC>
__device__ __forceinline__ vec_t<T, VEC> ld_vec_stream(const T *p)
{
    vec_t<T, VEC> r;
    if constexpr (sizeof(T) * VEC == 16) {
        int4 q = __ldcs(reinterpret_cast<const int4 *>(p));
        r = *reinterpret_cast<vec_t<T, VEC> *>(&q);
    } else {
        r = *reinterpret_cast<const vec_t<T, VEC> *>(p);
    }
    return r;
}

/* e^x as 2^(x log2 e): one multiply and one MUFU.EX2, against about nine
 * instructions for the libdevice expf. Softmax of fp16 rows moves two
 * elements per 4 bytes, and at 4 TB/s the precise expf made those kernels
 * compute-bound (measured: fp16 online softmax at 54% of copy bandwidth).
 * Error: exp2f is within 2 ulp (CUDA C++ Programming Guide, mathematical
 * functions), and rounding x * log2 e costs a relative u |x| more; see
 * softmax_tolerance() in common/numerics/reference.h. Not flushed to zero: subnormal
 * results stay (the build does not use -ftz). */
__device__ __forceinline__ float fexp(float x) { return exp2f(x * STF_LOG2E_F); }

/* Reduction operators with their identity elements (stage 03 adds op_md). */
struct op_max {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ __forceinline__ float identity() const { return -INFINITY; }
};
struct op_add {
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
    __device__ __forceinline__ float identity() const { return 0.0f; }
};

template <typename V> __device__ __forceinline__ V shfl_xor(V v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }

template <typename V, typename Op> __device__ __forceinline__ V warp_reduce(V v, Op op)
{
    for (int o = 16; o; o >>= 1) v = op(v, shfl_xor(v, o));
    return v;
}

/* Reduces v over the whole block (blockDim.x a multiple of 32, at most 1024)
 * and returns the result to every thread: a shuffle tree in each warp, then
 * one more tree over the warps' results in warp 0. (Merging the 32 partial
 * results one after another in every thread cost online softmax a fifth of
 * its speed at 16384 columns: each merge of (max, sum) states waits on two
 * exponentials.)
 * `scratch` holds 32 values; the trailing barrier lets the caller reuse it. */
template <typename V, typename Op> __device__ __forceinline__ V block_reduce(V v, Op op, V *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_reduce(v, op);
    if (nwarps == 1) return v;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        V w = lane < nwarps ? scratch[lane] : op.identity();
        w = warp_reduce(w, op);
        if (lane == 0) scratch[0] = w;
    }
    __syncthreads();
    V r = scratch[0];
    __syncthreads();
    return r;
}

/* Threads per block for the multi-pass kernels (one block per row): about
 * four vectors per thread per pass, between 64 and 1024 threads. */
static inline int multipass_threads(size_t nvec)
{
    size_t t = 64;
    while (t < 1024 && t * 4 < nvec) t *= 2;
    return (int)t;
}

/* Dispatch on the storage type and on whether rows allow 16-byte vectors
 * (cols a multiple of 16 / sizeof(T); cudaMalloc'd bases are 256-byte aligned). */
#define STF_DISPATCH(dt, cols, ...)                                                \
    do {                                                                                    \
        if ((dt) == DT_F16) {                                                               \
            typedef __half T;                                                               \
            if ((cols) % 8 == 0) { const int VEC = 8; __VA_ARGS__; }                        \
            else { const int VEC = 1; __VA_ARGS__; }                                        \
        } else if ((dt) == DT_BF16) {                                                       \
            typedef __nv_bfloat16 T;                                                        \
            if ((cols) % 8 == 0) { const int VEC = 8; __VA_ARGS__; }                        \
            else { const int VEC = 1; __VA_ARGS__; }                                        \
        } else {                                                                            \
            typedef float T;                                                                \
            if ((cols) % 4 == 0) { const int VEC = 4; __VA_ARGS__; }                        \
            else { const int VEC = 1; __VA_ARGS__; }                                        \
        }                                                                                   \
    } while (0)



/* One sweep of a block over a row of nvec vectors: thread t takes vectors
 * t, t + blockDim, ...; U of them are loaded before any is used, so each
 * thread keeps U independent 16-byte loads in flight. f(i, v) gets the vector
 * index and the loaded vector. STREAM selects evict-first loads for a sweep
 * whose data is not read again. */
template <typename T, int VEC, int U, bool STREAM = false, typename F>
__device__ __forceinline__ void sweep_row(const T *row, int nvec, F f)
{
    int i = threadIdx.x;
    const int s = blockDim.x;
    for (; i + (U - 1) * s < nvec; i += U * s) {
        vec_t<T, VEC> v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            v[u] = STREAM ? ld_vec_stream<T, VEC>(row + (size_t)(i + u * s) * VEC)
                          : ld_vec<T, VEC>(row + (size_t)(i + u * s) * VEC);
#pragma unroll
        for (int u = 0; u < U; u++) f(i + u * s, v[u]);
    }
    for (; i < nvec; i += s) f(i, STREAM ? ld_vec_stream<T, VEC>(row + (size_t)i * VEC) : ld_vec<T, VEC>(row + (size_t)i * VEC));
}
/* The last sweep of safe and online softmax: y = e^(x - ms) / d, written as a
 * multiplication by inv = 1/d. The row is not read again: evict-first loads. */
template <typename T, int VEC>
__device__ __forceinline__ void normalise_row(const T *xr, T *yr, int nvec, float ms, float inv)
{
    sweep_row<T, VEC, 4, true>(xr, nvec, [&](int i, const vec_t<T, VEC> &v) {
        vec_t<T, VEC> o;
#pragma unroll
        for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(fexp(to_f(v.v[k]) - ms) * inv);
        st_vec<T, VEC>(yr + (size_t)i * VEC, o);
    });
}

#endif
