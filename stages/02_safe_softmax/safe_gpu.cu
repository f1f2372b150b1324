/* Stage 02 on the GPU: safe softmax, one block per row, three sweeps (max,
 * sum of e^{x - m}, normalise), each followed by a block-wide reduction.
 * Compared with stage 01 it adds the max sweep: 3 loads + 1 store per
 * element, and no overflow in any storage type.
 * Run: build/bin/02_safe_softmax [--dtype fp16] [--sweep] */
#include "gpu_check.h"
#include "safe.h"
#include "softmax_device.cuh"

template <typename T, int VEC>
__global__ void safe_kernel(const T *__restrict__ x, T *__restrict__ y, int cols)
{
    __shared__ float scratch[32];
    const T *xr = x + (size_t)blockIdx.x * cols;
    T *yr = y + (size_t)blockIdx.x * cols;
    const int nvec = cols / VEC;

    float m = -INFINITY;
    sweep_row<T, VEC, 4>(xr, nvec, [&](int, const vec_t<T, VEC> &v) {
#pragma unroll
        for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v.v[k]));
    });
    m = block_reduce(m, op_max(), scratch);

    float d = 0.0f;
    sweep_row<T, VEC, 4>(xr, nvec, [&](int, const vec_t<T, VEC> &v) {
#pragma unroll
        for (int k = 0; k < VEC; k++) d += fexp(to_f(v.v[k]) - m);
    });
    d = block_reduce(d, op_add(), scratch);
    const float inv = 1.0f / d;

    normalise_row<T, VEC>(xr, yr, nvec, m, inv);
}

extern "C" void softmax_safe_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    STF_DISPATCH(dt, cols, {
        safe_kernel<T, VEC><<<(unsigned)rows, multipass_threads(cols / VEC)>>>((const T *)x, (T *)y, (int)cols);
    });
    LAUNCH_CHECK();
}
