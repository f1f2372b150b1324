/* Stage 03 on the GPU.
 *
 * online_kernel: what changes from stage 02 is that the max sweep and the sum
 * sweep are one: each thread carries (m, d) and updates it once per group of
 * four 16-byte vectors (the group's own maximum first, so one rescaling
 * exponential per group instead of one per element); the block merges the
 * threads' states with md_merge, then a second sweep normalises.
 * 2 loads + 1 store per element.
 *
 * onchip_kernel: the row stays in registers between the two sweeps, so it is
 * read from memory once: 1 load + 1 store, the floor. RT threads share a row,
 * each holding PER vectors; rows of up to 1024 elements (fp32) take one warp
 * each, four rows per block, and need no shared memory at all. Each thread
 * reduces its own registers to (m, d) in two short loops (max, then sum: no
 * rescaling needed, the data is already there), and a single merge reduction
 * across the row replaces stage 02's two reductions.
 *
 * Run: build/bin/03_online_softmax [--dtype fp16] [--cols 8192] [--sweep] */
#include "gpu_check.h"
#include "online.h"
#include "softmax_device.cuh"

template <typename T, int VEC>
__global__ void online_kernel(const T *__restrict__ x, T *__restrict__ y, int cols)
{
    __shared__ md_t scratch[32];
    const T *xr = x + (size_t)blockIdx.x * cols;
    T *yr = y + (size_t)blockIdx.x * cols;
    const int nvec = cols / VEC;

    md_t s = { -INFINITY, 0.0f };
    /* Pass 1, U vectors at a time: their joint maximum first, then one
     * rescaling of d for all U * VEC elements. Updating per vector made each
     * update wait on the previous one's exponential (measured: 63% of copy
     * bandwidth at 16384 columns, against 99% for the three-sweep safe
     * kernel). */
    constexpr int U = 4;
    int i = threadIdx.x;
    const int stride = blockDim.x;
    for (; i < nvec; i += U * stride) {
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
        const float mn = fmaxf(s.m, bm), ms = finite_or_zero(mn);
        float add = 0.0f;
#pragma unroll
        for (int u = 0; u < U; u++)
            if (i + u * stride < nvec)
#pragma unroll
                for (int k = 0; k < VEC; k++) add += fexp(to_f(v[u].v[k]) - ms);
        s.d = s.d * fexp(s.m - ms) + add;
        s.m = mn;
    }
    s = block_reduce(s, op_md(), scratch);
    const float ms = finite_or_zero(s.m), inv = 1.0f / s.d;

    normalise_row<T, VEC>(xr, yr, nvec, ms, inv);
}

extern "C" void softmax_online_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    STF_DISPATCH(dt, cols, {
        online_kernel<T, VEC><<<(unsigned)rows, multipass_threads(cols / VEC)>>>((const T *)x, (T *)y, (int)cols);
    });
    LAUNCH_CHECK();
}

template <int RT> struct onchip_rows { static constexpr int value = RT == 32 ? 4 : 1; };
/* Ask for at least 1024 resident threads per SM (64 registers a thread):
 * with a whole row in flight per block, a second block is what keeps memory
 * busy while the first reduces. 1024-thread blocks holding at most 64 bytes
 * a thread (16-bit rows) are asked to fit twice (32 registers a thread). */
template <int RT, int BYTES> struct onchip_min_blocks {
    static constexpr int value = RT >= 1024 ? (BYTES <= 64 ? 2 : 1) : 1024 / (RT * onchip_rows<RT>::value);
};

template <typename T, int VEC, int RT, int PER>
__global__ void __launch_bounds__(RT * onchip_rows<RT>::value, onchip_min_blocks<RT, PER * VEC * (int)sizeof(T)>::value)
onchip_kernel(const T *__restrict__ x, T *__restrict__ y, size_t rows, int cols)
{
    constexpr int RPB = onchip_rows<RT>::value;
    __shared__ md_t scratch[32];
    const int lane = threadIdx.x % RT;
    const size_t row = (size_t)blockIdx.x * RPB + threadIdx.x / RT;
    if (RPB > 1 && row >= rows) return; /* warp-per-row: no block barrier follows */
    const T *xr = x + row * cols;
    T *yr = y + row * cols;
    const int nvec = cols / VEC;

    vec_t<T, VEC> v[PER];
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * RT + lane;
        if (i < nvec) v[p] = ld_vec_stream<T, VEC>(xr + (size_t)i * VEC);
        else
            for (int k = 0; k < VEC; k++) v[p].v[k] = from_f<T>(0.0f);
    }
    float m = -INFINITY;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * RT + lane < nvec)
#pragma unroll
            for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v[p].v[k]));
    float ms = finite_or_zero(m), d = 0.0f;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * RT + lane < nvec)
#pragma unroll
            for (int k = 0; k < VEC; k++) d += fexp(to_f(v[p].v[k]) - ms);
    md_t s = { m, d };
    s = RT == 32 ? warp_reduce(s, op_md()) : block_reduce(s, op_md(), scratch);
    ms = finite_or_zero(s.m);
    const float inv = 1.0f / s.d;
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * RT + lane;
        if (i < nvec) {
            vec_t<T, VEC> o;
#pragma unroll
            for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(fexp(to_f(v[p].v[k]) - ms) * inv);
            st_vec<T, VEC>(yr + (size_t)i * VEC, o);
        }
    }
}

template <typename T, int VEC, int RT, int PER>
static void launch_onchip(const T *x, T *y, size_t rows, int cols)
{
    constexpr int RPB = onchip_rows<RT>::value;
    onchip_kernel<T, VEC, RT, PER><<<(unsigned)((rows + RPB - 1) / RPB), RT * RPB>>>(x, y, rows, cols);
}

/* The smallest (threads per row, vectors per thread) that holds the row:
 * few threads per row with full registers keep the reduction short. Rows of
 * 16-bit elements take at most 32 elements a thread (4 vectors) until 1024
 * threads are in use, as fp32 rows do: at 64 a thread the per-thread
 * conversions and exponentials held fp16 rows of 16384 to 89% of copy. */
template <typename T, int VEC>
static void dispatch_onchip(const T *x, T *y, size_t rows, int cols)
{
    constexpr int P = VEC == 1 ? 32 : 8;          /* vectors per thread at full size */
    constexpr int Q = VEC * sizeof(T) == 16 && sizeof(T) == 2 ? 4 : P; /* below 1024 threads */
    const int nvec = cols / VEC;
    if (nvec <= 32 * 1) launch_onchip<T, VEC, 32, 1>(x, y, rows, cols);
    else if (nvec <= 32 * (Q / 4)) launch_onchip<T, VEC, 32, Q / 4>(x, y, rows, cols);
    else if (nvec <= 32 * (Q / 2)) launch_onchip<T, VEC, 32, Q / 2>(x, y, rows, cols);
    else if (nvec <= 32 * Q) launch_onchip<T, VEC, 32, Q>(x, y, rows, cols);
    else if (nvec <= 64 * Q) launch_onchip<T, VEC, 64, Q>(x, y, rows, cols);
    else if (nvec <= 128 * Q) launch_onchip<T, VEC, 128, Q>(x, y, rows, cols);
    else if (nvec <= 256 * Q) launch_onchip<T, VEC, 256, Q>(x, y, rows, cols);
    else if (nvec <= 512 * Q) launch_onchip<T, VEC, 512, Q>(x, y, rows, cols);
    else if (nvec <= 1024 * Q) launch_onchip<T, VEC, 1024, Q>(x, y, rows, cols);
    else launch_onchip<T, VEC, 1024, P>(x, y, rows, cols);
}

extern "C" void softmax_online_onchip_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    char why[256];
    if (!online_onchip_applies(cols, dt, why, sizeof why)) {
        fprintf(stderr, "online-onchip: %s\n", why); /* the driver asks applies() first */
        exit(2);
    }
    STF_DISPATCH(dt, cols, { dispatch_onchip<T, VEC>((const T *)x, (T *)y, rows, (int)cols); });
    LAUNCH_CHECK();
}
