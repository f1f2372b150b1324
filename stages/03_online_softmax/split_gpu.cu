/* Stage 03 on the GPU, online-split: few long rows, each cut into P chunks
 * on separate blocks (the plan and the exactness argument: split_cpu.c).
 *
 *   split_state_kernel      one block per chunk: the chunk's online (m, d)
 *                           (online.cuh, as online_kernel's pass 1), stored
 *                           as a partial state; the last block of each row to
 *                           finish (a counter per row) merges the row's P
 *                           partial states, in chunk order, into the row's
 *                           (m, d)
 *   split_normalise_kernel  one block per chunk: y = e^{x - m} / d over its
 *                           chunk, with the row's (m, d)
 * 2 loads + 1 store per element, plus rows (24 P + 8) bytes of partial
 * states. The second load of x comes from the L2 when the rows (few, by
 * construction) fit there: 1 x 1048576 fp32 is 4 MB, the L2 60 MB.
 *
 * Why two kernels and a last block, and not the alternatives:
 *  - a cooperative grid (one kernel, a grid-wide barrier between the sweeps)
 *    must have every block resident at once, which caps the grid at what the
 *    SMs hold and couples this path to occupancy; the barrier itself costs
 *    about as much as the second launch it saves.
 *  - a third, merging kernel would cost one more launch (a few microseconds,
 *    as much as a 4 MB row takes to read) for P tiny states.
 *  - the last block to finish needs no co-residency: a __threadfence and an
 *    atomic counter tell it that every other chunk's state is in memory.
 *    The merge order is fixed (chunk order), so the result does not depend
 *    on which block happened to be last.
 * The normalising sweep cannot wait inside kernel 1 for the merge (a block
 * spinning on a flag needs the flag's writer to be resident), hence kernel 2,
 * launched with programmatic dependent launch (sm_90): its blocks are
 * scheduled while kernel 1 drains, and wait (griddepcontrol.wait) for kernel
 * 1's memory before reading the row states. STF_SPLIT_PDL=0 turns it off.
 *
 * Run: build/bin/03_online_softmax --rows 1 --cols 1048576 */
#include "gpu_check.h"
#include "online.cuh"
#include "online.h"
#include "softmax_device.cuh"

/* Partial states, row states and per-row arrival counters, grown on demand
 * and freed at exit (registered after the CUDA runtime's own handler, so it
 * runs before the runtime's teardown). The counters start at 0 and the last
 * block of each row sets its counter back to 0 for the next launch. */
static md_t *g_part, *g_row;
static unsigned *g_count;
static size_t g_part_cap, g_row_cap;

static void free_workspace(void)
{
    if (g_part) (void)cudaFree(g_part); /* at exit: nothing useful to do on failure */
    if (g_row) (void)cudaFree(g_row);
    if (g_count) (void)cudaFree(g_count);
    g_part = g_row = NULL;
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
        if (g_row) CUDA_CHECK(cudaFree(g_row));
        if (g_count) CUDA_CHECK(cudaFree(g_count));
        CUDA_CHECK(cudaMalloc(&g_row, rows * sizeof(md_t)));
        CUDA_CHECK(cudaMalloc(&g_count, rows * sizeof(unsigned)));
        CUDA_CHECK(cudaMemset(g_count, 0, rows * sizeof(unsigned)));
        g_row_cap = rows;
    }
}

/* md_t through the L2 (ld.global.cg): states written by other blocks of the
 * same launch must not come from a stale L1 line. */
__device__ __forceinline__ md_t ld_md_cg(const md_t *p)
{
    const float2 v = __ldcg(reinterpret_cast<const float2 *>(p));
    return md_t{ v.x, v.y };
}

template <typename T, int VEC>
__global__ void __launch_bounds__(SPLIT_THREADS) split_state_kernel(const T *__restrict__ x, int cols, int P, int chunk,
                                                                    md_t *part, md_t *rowst, unsigned *count)
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;"); /* kernel 2 may be scheduled: it waits for our memory */
#endif
    __shared__ md_t scratch[32];
    __shared__ int last;
    const size_t row = blockIdx.x / (unsigned)P;
    const int b = (int)(blockIdx.x % (unsigned)P), nvec = cols / VEC;
    const int v0 = min(nvec, b * chunk), v1 = min(nvec, v0 + chunk);

    md_t s = online_thread_state<T, VEC>(x + row * cols + (size_t)v0 * VEC, v1 - v0);
    s = block_reduce(s, op_md(), scratch);
    if (threadIdx.x == 0) {
        part[row * P + b] = s;
        __threadfence(); /* the state is visible device-wide before the count says so */
        last = atomicAdd(&count[row], 1u) == (unsigned)P - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence(); /* the last block: every other block's state is now readable */
    md_t t = md_empty();
    for (int i = threadIdx.x; i < P; i += blockDim.x) t = md_merge(t, ld_md_cg(part + row * P + i));
    t = block_reduce(t, op_md(), scratch);
    if (threadIdx.x == 0) {
        rowst[row] = t;
        count[row] = 0; /* ready for the next launch */
    }
}

template <typename T, int VEC>
__global__ void __launch_bounds__(SPLIT_THREADS) split_normalise_kernel(const T *__restrict__ x, T *__restrict__ y,
                                                                        int cols, int P, int chunk, const md_t *rowst)
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory"); /* kernel 1 has finished and its writes are visible */
#endif
    const size_t row = blockIdx.x / (unsigned)P;
    const int b = (int)(blockIdx.x % (unsigned)P), nvec = cols / VEC;
    const int v0 = min(nvec, b * chunk), v1 = min(nvec, v0 + chunk);
    const md_t s = ld_md_cg(rowst + row);
    const size_t off = row * cols + (size_t)v0 * VEC;
    normalise_row<T, VEC>(x + off, y + off, v1 - v0, exp_base(s.m), 1.0f / s.d);
}

static int use_pdl(void)
{
    static int v = -1;
    if (v < 0) {
        int major = 0;
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
        const char *e = getenv("STF_SPLIT_PDL");
        v = major >= 9 && !(e && e[0] == '0');
    }
    return v;
}

template <typename T, int VEC>
static void launch_split(const T *x, T *y, size_t rows, int cols, int P)
{
    const int nvec = cols / VEC, chunk = (nvec + P - 1) / P;
    const unsigned grid = (unsigned)(rows * (size_t)P);
    split_state_kernel<T, VEC><<<grid, SPLIT_THREADS>>>(x, cols, P, chunk, g_part, g_row, g_count);
    LAUNCH_CHECK();
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(SPLIT_THREADS);
    cfg.stream = 0;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = use_pdl() ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, split_normalise_kernel<T, VEC>, x, y, cols, P, chunk, (const md_t *)g_row));
}

extern "C" void softmax_online_split_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    static int sms;
    if (!sms) CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    char why[256];
    const size_t P = softmax_split_chunks(rows, cols, dt, sms, why, sizeof why);
    if (P < 2 && !softmax_split_forced()) {
        fprintf(stderr, "online-split: %s\n", why); /* the driver asks applies() first */
        exit(2);
    }
    if (rows * P > 0x7fffffffull || P > 0x7fffffffull) {
        fprintf(stderr, "online-split: %zu rows x %zu chunks exceed a grid of 2^31 - 1 blocks\n", rows, P);
        exit(2);
    }
    ensure_workspace(rows, P);
    STF_DISPATCH(dt, cols, { launch_split<T, VEC>((const T *)x, (T *)y, rows, (int)cols, (int)P); });
}
