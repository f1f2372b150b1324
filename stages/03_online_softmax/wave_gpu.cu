/* Stage 03 on the GPU, merge-wave: online-split cut to one wave (the plan
 * and why it is exact: wave_cpu.c). What changes from split_gpu.cu: the grid
 * is at most what the GPU holds at once, launched as a cooperative launch
 * (the runtime refuses it unless every block can be resident), so a block
 * may wait in the kernel for the other blocks of its row. One kernel, each
 * block of WAVE_THREADS threads:
 *   1. loads its chunk into registers (thread t: vectors t, t + THREADS,
 *      ..., 32 elements at most; every load issued before the first is used)
 *   2. its chunk's (m, d) from registers (each thread's max, then its sum;
 *      one merge across the block), published as one 64-bit store into the
 *      block's slot: the state is its own "ready" flag, so there is no
 *      counter, no fence and no second read of the states
 *   3. thread i polls slot i of its row until it is filled (every block is
 *      resident: the writer is running), and the block merges the P states
 *      with one tree, the same in every block, so all hold the same (m, d)
 *   4. normalises its chunk from registers and stores it
 * Slots alternate between two buffers by launch parity; each launch empties
 * the other buffer for the next one (WAVE_SLOT_CAP slots of 8 bytes).
 * 1 load + 1 store per element, plus rows (8 P + 8 P^2) bytes of partial
 * states (softmax_wave_extra_bytes), L2 hits, and the 32 KiB of slots
 * emptied. online-split's second kernel, its second read of x, its 1.3-1.6
 * waves and its lone merging block are gone; what is left is one launch,
 * one wait on the slowest block of a row, and each thread's instructions:
 * in one wave nothing overlaps one block's reductions with another's loads.
 *
 * Run: build/bin/03_online_softmax --rows 1 --cols 1048576 */
#include "gpu_check.h"
#include "online.h"
#include "softmax_device.cuh"

/* The published states: two buffers of WAVE_SLOT_CAP slots, one per launch
 * parity. A slot holds a state packed into 64 bits (m low, d high) and is
 * empty while m's bits are WAVE_EMPTY, a NaN: m is never NaN (it is a max
 * that starts at -inf, and fmaxf drops NaN). A launch uses slots blockIdx.x
 * of its buffer and empties the other buffer for the next launch: the two
 * launches are ordered by the stream, so no slot is emptied while read. */
#define WAVE_SLOT_CAP 4096
#define WAVE_EMPTY 0xffffffffu
static unsigned long long *g_slots;
static unsigned g_launches;

static void free_workspace(void)
{
    if (g_slots) (void)cudaFree(g_slots); /* at exit: nothing useful to do on failure */
    g_slots = NULL;
}

static void ensure_workspace(void)
{
    if (g_slots) return;
    atexit(free_workspace);
    CUDA_CHECK(cudaMalloc(&g_slots, 2 * WAVE_SLOT_CAP * sizeof *g_slots));
    CUDA_CHECK(cudaMemset(g_slots, 0xff, 2 * WAVE_SLOT_CAP * sizeof *g_slots)); /* all empty */
}

__device__ __forceinline__ void st_slot(unsigned long long *p, unsigned long long v)
{
    asm volatile("st.relaxed.gpu.global.b64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ unsigned long long ld_slot(const unsigned long long *p)
{
    unsigned long long v;
    asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

/* E elements a thread at most (32, or 8 when the chunk is that short: the
 * loops over unused registers are predicated off but still issued, and at
 * one row of 1048576 a thread holds 8). Four partial maxima and sums, so
 * that a thread's 32 elements are not one dependent chain. */
template <typename T, int VEC, int E>
__global__ void __launch_bounds__(WAVE_THREADS, WAVE_BLOCKS_PER_SM)
merge_wave_kernel(const T *__restrict__ x, T *__restrict__ y, int cols, int P, int chunk, unsigned long long *mine,
                  unsigned long long *next, int cap)
{
    constexpr int PER = E / VEC, A = PER >= 4 ? 4 : PER;
    __shared__ md_t scratch[32];
    const size_t row = blockIdx.x / (unsigned)P;
    const int nvec = cols / VEC, tid = (int)threadIdx.x;
    const int v0 = min(nvec, (int)(blockIdx.x % (unsigned)P) * chunk), n = min(nvec, v0 + chunk) - v0;
    const T *xr = x + row * cols + (size_t)v0 * VEC;
    T *yr = y + row * cols + (size_t)v0 * VEC;

    vec_t<T, VEC> v[PER];
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * WAVE_THREADS + tid;
        if (i < n) v[p] = ld_vec_stream<T, VEC>(xr + (size_t)i * VEC);
    }
    for (int i = (int)blockIdx.x * WAVE_THREADS + tid; i < cap; i += (int)gridDim.x * WAVE_THREADS)
        next[i] = ~0ull; /* the next launch's slots: empty */

    float mm[A];
#pragma unroll
    for (int a = 0; a < A; a++) mm[a] = -INFINITY;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * WAVE_THREADS + tid < n)
#pragma unroll
            for (int k = 0; k < VEC; k++) mm[p % A] = fmaxf(mm[p % A], to_f(v[p].v[k]));
    float m = mm[0];
#pragma unroll
    for (int a = 1; a < A; a++) m = fmaxf(m, mm[a]);
    const float mt = exp_base(m);
    float dd[A];
#pragma unroll
    for (int a = 0; a < A; a++) dd[a] = 0.0f;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * WAVE_THREADS + tid < n)
#pragma unroll
            for (int k = 0; k < VEC; k++) dd[p % A] += fexp(to_f(v[p].v[k]) - mt);
    float d = dd[0];
#pragma unroll
    for (int a = 1; a < A; a++) d += dd[a];
    md_t s = { m, d };
    s = block_reduce(s, op_md(), scratch);
    if (tid == 0)
        st_slot(mine + blockIdx.x, (unsigned long long)__float_as_uint(s.m) | (unsigned long long)__float_as_uint(s.d) << 32);

    /* every block of the grid is resident (cooperative launch): wait for the
     * row's P states, thread i for state i, and merge them in one tree */
    md_t t = md_empty();
    for (int i = tid; i < P; i += WAVE_THREADS) {
        unsigned long long q;
        while ((unsigned)(q = ld_slot(mine + row * P + i)) == WAVE_EMPTY) __nanosleep(32);
        t = md_merge(t, md_t{ __uint_as_float((unsigned)q), __uint_as_float((unsigned)(q >> 32)) });
    }
    t = block_reduce(t, op_md(), scratch);

    const float ms = exp_base(t.m), inv = 1.0f / t.d;
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * WAVE_THREADS + tid;
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
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, merge_wave_kernel<T, VEC, WAVE_PER_THREAD>, WAVE_THREADS, 0));
    slots = coop ? (size_t)per * (size_t)sms : 0; /* the 8-element instance fits at least as many */
    if (slots > WAVE_SLOT_CAP) slots = WAVE_SLOT_CAP;
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
    ensure_workspace();
    unsigned long long *mine = g_slots + (g_launches & 1) * WAVE_SLOT_CAP, *next = g_slots + (~g_launches & 1) * WAVE_SLOT_CAP;
    g_launches++;
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
        if (chunk <= WAVE_THREADS * (8 / VEC > 0 ? 8 / VEC : 1))
            CUDA_CHECK(cudaLaunchKernelEx(&cfg, merge_wave_kernel<T, VEC, 8>, (const T *)x, (T *)y,
                                          (int)cols, (int)P, chunk, mine, next, WAVE_SLOT_CAP));
        else
            CUDA_CHECK(cudaLaunchKernelEx(&cfg, merge_wave_kernel<T, VEC, WAVE_PER_THREAD>, (const T *)x, (T *)y,
                                          (int)cols, (int)P, chunk, mine, next, WAVE_SLOT_CAP));
    });
}
