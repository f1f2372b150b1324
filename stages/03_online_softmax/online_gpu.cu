/* Stage 03 on the GPU.
 *
 * online_kernel: what changes from stage 02 is that the max sweep and the sum
 * sweep are one: each thread carries (m, d) and updates it once per group of
 * four 16-byte vectors (the group's own maximum first, so one rescaling
 * exponential per group instead of one per element: online.cuh); the block
 * merges the threads' states with md_merge (md.h), then a second sweep
 * normalises. 2 loads + 1 store per element.
 *
 * merge-onchip: the row stays in registers between the sweeps (stage 02's
 * onchip.cuh), so it is read from memory once: 1 load + 1 store, the floor.
 * What it computes from the registers is not the online recurrence: each
 * thread takes the maximum of its own elements, then their sum against it
 * (two short loops, no rescaling: the data is already there), and a single
 * merge reduction of the threads' (m, d) states across the row replaces
 * safe-onchip's two reductions (max, then sum). Both are 2 accesses: once
 * the row is on chip, the online trick has no traffic left to save.
 *
 * Run: build/bin/03_online_softmax [--dtype fp16] [--cols 8192] [--sweep] */
#include "../02_safe_softmax/onchip.cuh"
#include "gpu_check.h"
#include "online.cuh"
#include "online.h"
#include "softmax_device.cuh"

template <typename T, int VEC>
__global__ void online_kernel(const T *__restrict__ x, T *__restrict__ y, int cols)
{
    __shared__ md_t scratch[32];
    const T *xr = x + (size_t)blockIdx.x * cols;
    T *yr = y + (size_t)blockIdx.x * cols;
    const int nvec = cols / VEC;

    md_t s = online_thread_state<T, VEC>(xr, nvec); /* pass 1 */
    s = block_reduce(s, op_md(), scratch);
    normalise_row<T, VEC>(xr, yr, nvec, exp_base(s.m), 1.0f / s.d); /* pass 2 */
}

extern "C" void softmax_online_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    STF_DISPATCH(dt, cols, {
        online_kernel<T, VEC><<<(unsigned)rows, multipass_threads(cols / VEC)>>>((const T *)x, (T *)y, (int)cols);
    });
    LAUNCH_CHECK();
}

/* merge-onchip's statistics from registers: per thread max then sum, one
 * merge reduction across the row. */
struct stats_merge {
    template <typename T, int VEC, int RT, int PER>
    static __device__ __forceinline__ void get(const vec_t<T, VEC> (&v)[PER], int lane, int nvec, float &ms,
                                               float &inv)
    {
        __shared__ md_t scratch[32];
        float m = -INFINITY;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * RT + lane < nvec)
#pragma unroll
                for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v[p].v[k]));
        const float mt = exp_base(m);
        float d = 0.0f;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * RT + lane < nvec)
#pragma unroll
                for (int k = 0; k < VEC; k++) d += fexp(to_f(v[p].v[k]) - mt);
        md_t s = { m, d };
        s = row_reduce<RT>(s, op_md(), scratch);
        ms = exp_base(s.m);
        inv = 1.0f / s.d;
    }
};

extern "C" void softmax_merge_onchip_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    char why[256];
    if (!onchip_applies(cols, dt, why, sizeof why)) {
        fprintf(stderr, "merge-onchip: %s\n", why); /* the driver asks applies() first */
        exit(2);
    }
    onchip_softmax<stats_merge>(x, y, rows, cols, dt);
}
