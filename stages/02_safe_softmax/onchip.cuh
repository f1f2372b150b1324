/* A softmax row held in registers: the kernel skeleton shared by stage 02's
 * safe-onchip and stage 03's merge-onchip. The row is loaded from device
 * memory once, its statistics (the maximum m and the sum d) are computed from
 * the registers, and the outputs are written from the same registers:
 * 1 load + 1 store per element, whatever happens in between.
 *
 * What happens in between is the policy Stats, with one static function
 *     get(v, lane, nvec, ms, inv)
 * that turns a thread's registers into the row's exponent base ms and 1/d:
 *   stats_safe (safe_gpu.cu)     max over the row (one reduction), then the
 *                                sum against it (a second reduction)
 *   stats_merge (online_gpu.cu)  each thread's own (max, sum), then one
 *                                merge reduction of the (m, d) states
 *
 * Layout: RT threads share a row, each holding PER vectors (vector p of
 * thread t is vector p * RT + t of the row, so every load is coalesced). Rows
 * of up to 1024 fp32 elements take one warp each, four rows per block, and
 * need no shared memory at all. Capacity: onchip_capacity() in safe.h. */
#ifndef STF_STAGE02_ONCHIP_CUH
#define STF_STAGE02_ONCHIP_CUH

#include "exp_base.h"
#include "gpu_check.h"
#include "softmax_device.cuh"

template <int RT> struct onchip_rows { static constexpr int value = RT == 32 ? 4 : 1; };
/* Ask for at least 1024 resident threads per SM (64 registers a thread):
 * with a whole row in flight per block, a second block is what keeps memory
 * busy while the first reduces. 1024-thread blocks holding at most 64 bytes
 * a thread (16-bit rows) are asked to fit twice (32 registers a thread). */
template <int RT, int BYTES> struct onchip_min_blocks {
    static constexpr int value = RT >= 1024 ? (BYTES <= 64 ? 2 : 1) : 1024 / (RT * onchip_rows<RT>::value);
};

/* A reduction over the RT threads of one row: a warp's shuffle tree when the
 * row has one warp, else the block-wide reduction. */
template <int RT, typename V, typename Op> __device__ __forceinline__ V row_reduce(V v, Op op, V *scratch)
{
    if constexpr (RT == 32) return warp_reduce(v, op);
    else return block_reduce(v, op, scratch);
}

template <typename T, int VEC, int RT, int PER, typename Stats>
__global__ void __launch_bounds__(RT * onchip_rows<RT>::value, onchip_min_blocks<RT, PER * VEC * (int)sizeof(T)>::value)
onchip_kernel(const T *__restrict__ x, T *__restrict__ y, size_t rows, int cols)
{
    constexpr int RPB = onchip_rows<RT>::value;
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
    float ms, inv;
    Stats::template get<T, VEC, RT, PER>(v, lane, nvec, ms, inv);
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

template <typename Stats, typename T, int VEC, int RT, int PER>
static void launch_onchip(const T *x, T *y, size_t rows, int cols)
{
    constexpr int RPB = onchip_rows<RT>::value;
    onchip_kernel<T, VEC, RT, PER, Stats><<<(unsigned)((rows + RPB - 1) / RPB), RT * RPB>>>(x, y, rows, cols);
}

/* The smallest (threads per row, vectors per thread) that holds the row:
 * few threads per row with full registers keep the reduction short. Rows of
 * 16-bit elements take at most 32 elements a thread (4 vectors) until 1024
 * threads are in use, as fp32 rows do: at 64 a thread the per-thread
 * conversions and exponentials held fp16 rows of 16384 to 89% of copy. */
template <typename Stats, typename T, int VEC>
static void dispatch_onchip(const T *x, T *y, size_t rows, int cols)
{
    constexpr int P = VEC == 1 ? 32 : 8;          /* vectors per thread at full size */
    constexpr int Q = VEC * sizeof(T) == 16 && sizeof(T) == 2 ? 4 : P; /* below 1024 threads */
    const int nvec = cols / VEC;
    if (nvec <= 32 * 1) launch_onchip<Stats, T, VEC, 32, 1>(x, y, rows, cols);
    else if (nvec <= 32 * (Q / 4)) launch_onchip<Stats, T, VEC, 32, Q / 4>(x, y, rows, cols);
    else if (nvec <= 32 * (Q / 2)) launch_onchip<Stats, T, VEC, 32, Q / 2>(x, y, rows, cols);
    else if (nvec <= 32 * Q) launch_onchip<Stats, T, VEC, 32, Q>(x, y, rows, cols);
    else if (nvec <= 64 * Q) launch_onchip<Stats, T, VEC, 64, Q>(x, y, rows, cols);
    else if (nvec <= 128 * Q) launch_onchip<Stats, T, VEC, 128, Q>(x, y, rows, cols);
    else if (nvec <= 256 * Q) launch_onchip<Stats, T, VEC, 256, Q>(x, y, rows, cols);
    else if (nvec <= 512 * Q) launch_onchip<Stats, T, VEC, 512, Q>(x, y, rows, cols);
    else if (nvec <= 1024 * Q) launch_onchip<Stats, T, VEC, 1024, Q>(x, y, rows, cols);
    else launch_onchip<Stats, T, VEC, 1024, P>(x, y, rows, cols);
}

/* The launcher both stages call: the caller has checked onchip_applies(). */
template <typename Stats>
static void onchip_softmax(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    STF_DISPATCH(dt, cols, { dispatch_onchip<Stats, T, VEC>((const T *)x, (T *)y, rows, (int)cols); });
    LAUNCH_CHECK();
}

#endif
