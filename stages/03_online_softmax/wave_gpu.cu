/* Stage 03 on the GPU, merge-wave: online-split cut to one wave (the plan
 * and why it is exact: wave_cpu.c). What changes from split_gpu.cu: the grid
 * is at most what the GPU holds at once, launched as a cooperative launch
 * (the runtime refuses it unless every block can be resident), so a block
 * may wait in the kernel for the other blocks of its row. One kernel, each
 * block of WAVE_THREADS threads:
 *   1. loads its chunk into registers (thread t: vectors t, t + THREADS,
 *      ..., 32 elements at most; every load issued before the first is used)
 *   2. its chunk's (m, d) from registers (each thread's max, then its sum;
 *      one merge across the block), stored; __threadfence; the row's arrival
 *      counter incremented
 *   3. thread 0 waits (ld.acquire, nanosleep) until the counter reaches P;
 *      then every block loads the row's P states (one a thread) and merges
 *      them with the same tree, so every block holds the same (m, d)
 *   4. normalises its chunk from registers and stores it
 * The last block to leave a row (a second counter) resets both counters for
 * the next launch: every block has passed the wait by then.
 * 1 load + 1 store per element, plus rows (8 P + 8 P^2) bytes of partial
 * states (softmax_wave_extra_bytes), L2 hits. online-split's second kernel,
 * its second read of x, its 1.3-1.6 waves and its lone merging block are
 * gone; what is left is one launch and one wait on the slowest block of a
 * row.
 *
 * Run: build/bin/03_online_softmax --rows 1 --cols 1048576 */
#include "gpu_check.h"
#include "online.h"
#include "softmax_device.cuh"

/* Partial states and the two counters per row, grown on demand, freed at
 * exit; the counters start at 0 and are 0 again after every launch. */
static md_t *g_part;
static unsigned *g_count; /* rows arrival counters, then rows departure counters */
static size_t g_part_cap, g_row_cap;

static void free_workspace(void)
{
    if (g_part) (void)cudaFree(g_part); /* at exit: nothing useful to do on failure */
    if (g_count) (void)cudaFree(g_count);
    g_part = NULL;
    g_count = NULL;
}

static void ensure_workspace(size_t rows, size_t chunks)
{
    static int registered;
    if (!registered) {
        atexit(free_workspace);
        registered = 1;
    }
    if (rows * chunks > g_part_cap) {
        if (g_part) CUDA_CHECK(cudaFree(g_part));
        CUDA_CHECK(cudaMalloc(&g_part, rows * chunks * sizeof(md_t)));
        g_part_cap = rows * chunks;
    }
    if (rows > g_row_cap) {
        if (g_count) CUDA_CHECK(cudaFree(g_count));
        CUDA_CHECK(cudaMalloc(&g_count, 2 * rows * sizeof(unsigned)));
        CUDA_CHECK(cudaMemset(g_count, 0, 2 * rows * sizeof(unsigned)));
        g_row_cap = rows;
    }
}

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

template <typename T, int VEC>
__global__ void __launch_bounds__(WAVE_THREADS, WAVE_BLOCKS_PER_SM)
merge_wave_kernel(const T *__restrict__ x, T *__restrict__ y, int cols, int P, int chunk, md_t *part, unsigned *arrive,
                  unsigned *depart)
{
    constexpr int PER = WAVE_PER_THREAD / VEC;
    __shared__ md_t scratch[32];
    const size_t row = blockIdx.x / (unsigned)P;
    const int b = (int)(blockIdx.x % (unsigned)P), nvec = cols / VEC;
    const int v0 = min(nvec, b * chunk), n = min(nvec, v0 + chunk) - v0;
    const T *xr = x + row * cols + (size_t)v0 * VEC;
    T *yr = y + row * cols + (size_t)v0 * VEC;

    vec_t<T, VEC> v[PER];
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * WAVE_THREADS + (int)threadIdx.x;
        if (i < n) v[p] = ld_vec_stream<T, VEC>(xr + (size_t)i * VEC);
        else
            for (int k = 0; k < VEC; k++) v[p].v[k] = from_f<T>(0.0f);
    }
    float m = -INFINITY;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * WAVE_THREADS + (int)threadIdx.x < n)
#pragma unroll
            for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v[p].v[k]));
    const float mt = exp_base(m);
    float d = 0.0f;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * WAVE_THREADS + (int)threadIdx.x < n)
#pragma unroll
            for (int k = 0; k < VEC; k++) d += fexp(to_f(v[p].v[k]) - mt);
    md_t s = { m, d };
    s = block_reduce(s, op_md(), scratch);
    if (threadIdx.x == 0) {
        __stcg(reinterpret_cast<float2 *>(part + row * P + b), make_float2(s.m, s.d));
        __threadfence(); /* the state is visible device-wide before the count says so */
        atomicAdd(&arrive[row], 1u);
        while (ld_acquire(&arrive[row]) < (unsigned)P) __nanosleep(64); /* every block of the grid is resident */
        __threadfence();
    }
    __syncthreads();

    md_t t = md_empty();
    for (int i = threadIdx.x; i < P; i += WAVE_THREADS) {
        const float2 q = __ldcg(reinterpret_cast<const float2 *>(part + row * P + i)); /* through the L2 */
        t = md_merge(t, md_t{ q.x, q.y });
    }
    t = block_reduce(t, op_md(), scratch);
    if (threadIdx.x == 0 && atomicAdd(&depart[row], 1u) == (unsigned)P - 1) {
        arrive[row] = 0; /* every block of the row is past its wait: ready for the next launch */
        depart[row] = 0;
    }

    const float ms = exp_base(t.m), inv = 1.0f / t.d;
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * WAVE_THREADS + (int)threadIdx.x;
        if (i < n) {
            vec_t<T, VEC> o;
#pragma unroll
            for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(fexp(to_f(v[p].v[k]) - ms) * inv);
            st_vec<T, VEC>(yr + (size_t)i * VEC, o);
        }
    }
}

template <typename T, int VEC>
static size_t slots_of()
{
    static size_t slots = (size_t)-1;
    if (slots != (size_t)-1) return slots;
    int sms = 0, per = 0, coop = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, 0));
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, merge_wave_kernel<T, VEC>, WAVE_THREADS, 0));
    slots = coop ? (size_t)per * (size_t)sms : 0;
    return slots;
}

extern "C" size_t merge_wave_gpu_slots(dtype_t dt, size_t cols)
{
    size_t s = 0;
    STF_DISPATCH(dt, cols, { s = slots_of<T, VEC>(); });
    return s;
}

/* STF_WAVE_COOP=0: an ordinary launch (experiments: what the cooperative
 * launch costs). Safe only while nothing else occupies the GPU, since the
 * runtime then no longer refuses a grid that cannot be resident. */
static int coop_launch(void)
{
    const char *e = getenv("STF_WAVE_COOP");
    return !(e && e[0] == '0');
}

extern "C" void softmax_merge_wave_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    char why[256];
    const size_t slots = merge_wave_gpu_slots(dt, cols);
    const size_t P = softmax_wave_chunks(rows, cols, dt, slots, why, sizeof why);
    if (!P) {
        fprintf(stderr, "merge-wave: %s\n", why); /* the driver asks applies() first */
        exit(2);
    }
    ensure_workspace(rows, P);
    STF_DISPATCH(dt, cols, {
        const int nvec = (int)cols / VEC, chunk = (int)((nvec + P - 1) / P);
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3((unsigned)(rows * P));
        cfg.blockDim = dim3(WAVE_THREADS);
        cfg.stream = 0;
        cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeCooperative; /* refused unless every block is resident at once */
        at[0].val.cooperative = 1;
        cfg.attrs = at;
        cfg.numAttrs = coop_launch() ? 1 : 0;
        CUDA_CHECK(cudaLaunchKernelEx(&cfg, merge_wave_kernel<T, VEC>, (const T *)x, (T *)y, (int)cols, (int)P, chunk,
                                      g_part, g_count, g_count + g_row_cap));
    });
}
