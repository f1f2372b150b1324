/* Stage 02 on the GPU: safe softmax, one block per row, three sweeps (max,
 * sum of e^{x - m}, normalise), each followed by a block-wide reduction.
 * Compared with stage 01 it adds the max sweep: 3 loads + 1 store per
 * element, and no overflow in any storage type.
 * safe-onchip (at the end): the same sweeps over the row held in registers.
 * Run: build/bin/02_safe_softmax [--dtype fp16] [--sweep] */
#include "gpu_check.h"
#include "onchip.cuh"
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

/* ---- safe-onchip: the row in registers (onchip.cuh), read once.
 * The three sweeps of safe_kernel run over registers instead of memory: the
 * maximum (one reduction across the row's threads), the sum against it (a
 * second reduction), then the outputs. 1 load + 1 store per element. */
struct stats_safe {
    template <typename T, int VEC, int RT, int PER>
    static __device__ __forceinline__ void get(const vec_t<T, VEC> (&v)[PER], int lane, int nvec, float &ms,
                                               float &inv)
    {
        __shared__ float scratch[32];
        float m = -INFINITY;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * RT + lane < nvec)
#pragma unroll
                for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v[p].v[k]));
        ms = row_reduce<RT>(m, op_max(), scratch);
        float d = 0.0f;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * RT + lane < nvec)
#pragma unroll
                for (int k = 0; k < VEC; k++) d += fexp(to_f(v[p].v[k]) - ms);
        inv = 1.0f / row_reduce<RT>(d, op_add(), scratch);
    }
};

extern "C" void softmax_safe_onchip_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    char why[256];
    if (!onchip_applies(cols, dt, why, sizeof why)) {
        fprintf(stderr, "safe-onchip: %s\n", why); /* the driver asks applies() first */
        exit(2);
    }
    onchip_softmax<stats_safe>(x, y, rows, cols, dt);
}
