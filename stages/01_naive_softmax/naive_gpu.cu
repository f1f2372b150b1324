/* Stage 01 on the GPU: naive softmax, one block per row, two sweeps.
 *   sweep 1: d = sum_j e^{x_j}   (block-wide sum)
 *   sweep 2: y_j = e^{x_j} / d
 * Compared with the copy it adds the first sweep: 2 loads + 1 store per
 * element. Whether the second load comes from DRAM depends on the row: a row
 * the L2 can still hold when sweep 2 starts is re-read from cache.
 *
 * As in the CPU version, e^{x} is rounded to the storage type (fp16 overflows
 * above 11.09) and the sum is fp32.
 * Run: build/bin/01_naive_softmax [--dtype fp16] [--sweep] */
#include "gpu_check.h"
#include "naive.h"
#include "softmax_device.cuh"

template <typename T>
__device__ __forceinline__ float exp_in_type(float x) { return to_f<T>(from_f<T>(fexp(x))); }

template <typename T, int VEC>
__global__ void naive_kernel(const T *__restrict__ x, T *__restrict__ y, int cols)
{
    __shared__ float scratch[32];
    const T *xr = x + (size_t)blockIdx.x * cols;
    T *yr = y + (size_t)blockIdx.x * cols;
    const int nvec = cols / VEC;

    float d = 0.0f;
    sweep_row<T, VEC, 4>(xr, nvec, [&](int, const vec_t<T, VEC> &v) {
#pragma unroll
        for (int k = 0; k < VEC; k++) d += exp_in_type<T>(to_f(v.v[k]));
    });
    d = block_reduce(d, op_add(), scratch);
    const float inv = 1.0f / d;

    sweep_row<T, VEC, 4, true>(xr, nvec, [&](int i, const vec_t<T, VEC> &v) {
        vec_t<T, VEC> o;
#pragma unroll
        for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(exp_in_type<T>(to_f(v.v[k])) * inv);
        st_vec<T, VEC>(yr + (size_t)i * VEC, o);
    });
}

extern "C" void softmax_naive_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    STF_DISPATCH(dt, cols, {
        naive_kernel<T, VEC><<<(unsigned)rows, multipass_threads(cols / VEC)>>>((const T *)x, (T *)y, (int)cols);
    });
    LAUNCH_CHECK();
}
