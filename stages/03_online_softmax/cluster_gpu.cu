/* Stage 03 on the GPU, merge-cluster: one row held in the registers of a
 * thread-block cluster (sm_90), read once and written once. The plan and
 * the CPU simulation: cluster_cpu.c.
 *
 * For each of its rows, each block of a cluster of C:
 *   1. has its chunk of the row in registers: thread t holds vectors
 *      t, t + THREADS, ... of the chunk (32 elements), so every load is
 *      coalesced
 *   2. its threads' (m, d) from registers (max, then sum), one merge across
 *      the block (block_reduce), the block's state into its shared memory
 *   3. cluster barrier (barrier.cluster arrive.release / wait.acquire): all
 *      C states are written; each warp reads the C states from the blocks'
 *      shared memory (cluster.map_shared_rank, distributed shared memory:
 *      an SM-to-SM read inside the GPC, no device memory) and merges them
 *      with a shuffle tree, so every block gets the same (m, d) bit for bit
 *   4. writes its chunk from registers
 * 1 load + 1 store per element; what crosses between blocks is C states of
 * 8 bytes a row.
 *
 * Persistent clusters, pipelined (what the first H200 run taught): launched
 * as one cluster per row, every block loading, waiting at the barrier and
 * storing in lockstep with its cluster, the kernel ran at 44-57% of copy at
 * 2^28 elements (ncu: 14 clusters of 16 resident; every block's slot idle
 * until its whole cluster had finished and a new one could be placed in the
 * GPC). Now the grid holds as many clusters as fit at once
 * (cudaOccupancyMaxActiveClusters), each loops over rows, and with 16-byte
 * vectors the next row's chunk is already on its way into shared memory
 * (cp.async, one 16-byte copy per vector, each thread copying and later
 * reading only its own vectors, so no block barrier is needed) while the
 * current row is reduced, exchanged and written. The block states are double
 * buffered, so one cluster barrier per row suffices: a block writes state
 * k + 2 only after barrier k + 1, which every block passes only after
 * reading states k. A last barrier keeps every block's shared memory alive
 * until the others have read it.
 * STF_CLUSTER_PERSISTENT=0 (one cluster per row) and STF_CLUSTER_PIPE=0 (no
 * staging) select the first version's behaviour, for comparison.
 * Non-Hopper devices and builds decline (merge_cluster_gpu_limits).
 *
 * Run: build/bin/03_online_softmax --rows 1024 --cols 262144 */
#include <cooperative_groups.h>

#include "gpu_check.h"
#include "online.h"
#include "softmax_device.cuh"

namespace cg = cooperative_groups;

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

template <typename T, int VEC, int THREADS, bool PIPE>
__global__ void __launch_bounds__(THREADS, THREADS == CLUSTER_THREADS_S ? 2 : 1)
merge_cluster_kernel(const T *__restrict__ x, T *__restrict__ y, size_t rows, int cols, int chunk)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int PER = CLUSTER_PER_THREAD / VEC; /* fp32: 8 vectors of 16 bytes; fp16/bf16: 4 */
    static_assert(!PIPE || VEC * sizeof(T) == 16, "staging copies 16-byte vectors");
    extern __shared__ int4 stage[]; /* PIPE: THREADS * PER vectors; this thread's are p * THREADS + t */
    __shared__ md_t scratch[32];
    __shared__ md_t block_state[2];
    cg::cluster_group cluster = cg::this_cluster();
    const int C = (int)cluster.num_blocks(), rank = (int)cluster.block_rank(), t = (int)threadIdx.x;
    const size_t first = blockIdx.x / (unsigned)C, step = gridDim.x / (unsigned)C;
    const int nvec = cols / VEC, v0 = min(nvec, rank * chunk), n = min(nvec, v0 + chunk) - v0;

    if constexpr (PIPE) {
        if (first < rows) {
            const T *xr = x + first * cols + (size_t)v0 * VEC;
#pragma unroll
            for (int p = 0; p < PER; p++)
                if (p * THREADS + t < n) cp_async16(&stage[p * THREADS + t], xr + (size_t)(p * THREADS + t) * VEC);
            cp_async_commit();
        }
    }
    int parity = 0;
    for (size_t row = first; row < rows; row += step, parity ^= 1) {
        const size_t base = row * cols + (size_t)v0 * VEC;
        vec_t<T, VEC> v[PER];
        if constexpr (PIPE) cp_async_wait_all();
#pragma unroll
        for (int p = 0; p < PER; p++) {
            const int i = p * THREADS + t;
            if (i < n) {
                if constexpr (PIPE) v[p] = *reinterpret_cast<const vec_t<T, VEC> *>(&stage[i]);
                else v[p] = ld_vec_stream<T, VEC>(x + base + (size_t)i * VEC);
            } else {
                for (int k = 0; k < VEC; k++) v[p].v[k] = from_f<T>(0.0f);
            }
        }
        float m = -INFINITY;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * THREADS + t < n)
#pragma unroll
                for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v[p].v[k]));
        if constexpr (PIPE) { /* the next row into the stage: its old contents are in registers (m used them) */
            if (row + step < rows) {
                const T *xn = x + (row + step) * cols + (size_t)v0 * VEC;
#pragma unroll
                for (int p = 0; p < PER; p++)
                    if (p * THREADS + t < n) cp_async16(&stage[p * THREADS + t], xn + (size_t)(p * THREADS + t) * VEC);
                cp_async_commit();
            }
        }
        const float mt = exp_base(m);
        float d = 0.0f;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * THREADS + t < n)
#pragma unroll
                for (int k = 0; k < VEC; k++) d += fexp(to_f(v[p].v[k]) - mt);
        md_t s = { m, d };
        s = block_reduce(s, op_md(), scratch);
        if (t == 0) block_state[parity] = s;
        cluster.sync(); /* every block's state of this row is in its shared memory */

        md_t r = md_empty();
        const int lane = t & 31;
        if (lane < C) r = *cluster.map_shared_rank(&block_state[parity], lane);
        r = warp_reduce(r, op_md());

        const float ms = exp_base(r.m), inv = 1.0f / r.d;
#pragma unroll
        for (int p = 0; p < PER; p++) {
            const int i = p * THREADS + t;
            if (i < n) {
                vec_t<T, VEC> o;
#pragma unroll
                for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(fexp(to_f(v[p].v[k]) - ms) * inv);
                st_vec<T, VEC>(y + base + (size_t)i * VEC, o);
            }
        }
    }
    cluster.sync(); /* no block leaves while another may still read its block_state */
#endif
}

/* Environment switches for experiments (read once). */
static int env_on(const char *name)
{
    const char *e = getenv(name);
    return !(e && e[0] == '0');
}

/* One kernel instance: its shared-memory opt-in, the non-portable size, and
 * the device's limits, set and queried once. */
struct cluster_limits {
    int known, ok, max_cluster;
    size_t smem;
};

template <typename T, int VEC, int THREADS, bool PIPE>
static cluster_limits &limits_of()
{
    static cluster_limits l;
    if (l.known) return l;
    l.known = 1;
    auto k = merge_cluster_kernel<T, VEC, THREADS, PIPE>;
    cudaFuncAttributes fa;
    CUDA_CHECK(cudaFuncGetAttributes(&fa, k));
    if (fa.ptxVersion < 90) return l; /* built for an older architecture: no cluster code in it */
    l.smem = PIPE ? (size_t)THREADS * (CLUSTER_PER_THREAD / VEC) * 16 : 0;
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)l.smem));
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(CLUSTER_NONPORTABLE_MAX * 64);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = l.smem;
    CUDA_CHECK(cudaOccupancyMaxPotentialClusterSize(&l.max_cluster, k, &cfg));
    l.ok = l.max_cluster >= 1;
    return l;
}

/* Resident clusters of C blocks for one instance, queried once per C. */
template <typename T, int VEC, int THREADS, bool PIPE>
static int resident_clusters(int C)
{
    static int n[CLUSTER_NONPORTABLE_MAX + 1];
    if (n[C]) return n[C];
    const cluster_limits &l = limits_of<T, VEC, THREADS, PIPE>();
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)C * 64);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = l.smem;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)C;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    int k = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveClusters(&k, merge_cluster_kernel<T, VEC, THREADS, PIPE>, &cfg));
    n[C] = k > 0 ? k : 1;
    return n[C];
}

extern "C" int merge_cluster_gpu_limits(dtype_t dt, size_t cols, int *max_s, int *max_l, char *why, size_t n)
{
    static int major = -1, minor, cluster_launch;
    if (major < 0) {
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
        CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
        CUDA_CHECK(cudaDeviceGetAttribute(&cluster_launch, cudaDevAttrClusterLaunch, 0));
    }
    if (major < 9 || !cluster_launch) {
        snprintf(why, n, "compute capability %d.%d has no thread-block clusters (sm_90, Hopper, or newer)", major, minor);
        return 0;
    }
    cluster_limits s = {}, l = {};
    STF_DISPATCH(dt, cols, {
        constexpr bool P = VEC * sizeof(T) == 16;
        s = env_on("STF_CLUSTER_PIPE") ? limits_of<T, VEC, CLUSTER_THREADS_S, P>() : limits_of<T, VEC, CLUSTER_THREADS_S, false>();
        l = env_on("STF_CLUSTER_PIPE") ? limits_of<T, VEC, CLUSTER_THREADS_L, P>() : limits_of<T, VEC, CLUSTER_THREADS_L, false>();
    });
    if (!s.ok && !l.ok) {
        snprintf(why, n, "this build's kernels are not compiled for sm_90: build with CUDA_ARCH=90 for clusters");
        return 0;
    }
    *max_s = s.ok ? s.max_cluster : 0;
    *max_l = l.ok ? l.max_cluster : 0;
    return 1;
}

template <typename T, int VEC, int THREADS, bool PIPE>
static void launch_cluster(const T *x, T *y, size_t rows, int cols, int C)
{
    const cluster_limits &l = limits_of<T, VEC, THREADS, PIPE>();
    const int nvec = cols / VEC, chunk = (nvec + C - 1) / C;
    size_t clusters = rows;
    if (env_on("STF_CLUSTER_PERSISTENT")) {
        const int forced = softmax_cluster_resident();
        const size_t fit = forced > 0 ? (size_t)forced : (size_t)resident_clusters<T, VEC, THREADS, PIPE>(C);
        if (fit < clusters) clusters = fit;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(clusters * (size_t)C));
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = l.smem;
    cfg.stream = 0;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)C;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, merge_cluster_kernel<T, VEC, THREADS, PIPE>, x, y, rows, cols, chunk));
}

template <typename T, int VEC, int THREADS>
static void launch_cluster_pipe(const T *x, T *y, size_t rows, int cols, int C)
{
    constexpr bool P = VEC * sizeof(T) == 16;
    if (P && env_on("STF_CLUSTER_PIPE")) launch_cluster<T, VEC, THREADS, P>(x, y, rows, cols, C);
    else launch_cluster<T, VEC, THREADS, false>(x, y, rows, cols, C);
}

extern "C" void softmax_merge_cluster_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    char why[256];
    int max_s = 0, max_l = 0;
    cluster_plan_t p;
    if (!merge_cluster_gpu_limits(dt, cols, &max_s, &max_l, why, sizeof why) ||
        !merge_cluster_plan(cols, dt, max_s, max_l, &p, why, sizeof why)) {
        fprintf(stderr, "merge-cluster: %s\n", why); /* the driver asks applies() first */
        exit(2);
    }
    if (rows * (size_t)p.blocks > 0x7fffffffull) {
        fprintf(stderr, "merge-cluster: %zu rows x %d blocks exceed a grid of 2^31 - 1 blocks\n", rows, p.blocks);
        exit(2);
    }
    STF_DISPATCH(dt, cols, {
        if (p.threads == CLUSTER_THREADS_S) launch_cluster_pipe<T, VEC, CLUSTER_THREADS_S>((const T *)x, (T *)y, rows, (int)cols, p.blocks);
        else launch_cluster_pipe<T, VEC, CLUSTER_THREADS_L>((const T *)x, (T *)y, rows, (int)cols, p.blocks);
    });
}
