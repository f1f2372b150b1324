/* Stage 03 on the GPU, merge-persist: merge-cluster's clusters made
 * persistent (the plan: cluster_cpu.c, merge_cluster_plan; the CPU twin:
 * persist_cpu.c). What changes from cluster_gpu.cu: the grid is as many
 * clusters as fit at once (cudaOccupancyMaxActiveClusters), and each loops
 * over rows (cluster c takes rows c, c + G, ...), staging its next row while
 * it works on the current one. Profiled, merge-cluster lost to the cluster
 * launch itself: a finished cluster's slots stayed empty until a whole
 * cluster's worth was free in a GPC, and all blocks of a cluster loaded,
 * waited and stored in lockstep, so loads and stores did not overlap.
 *
 * Each block of a cluster of C, per row:
 *   1. waits for its staged chunk (cp.async.wait_group), copies it from
 *      shared memory into registers (thread t: the vectors it staged itself,
 *      t, t + THREADS, ...: no block barrier needed), takes its maximum
 *   2. issues the copies of its chunk of the next row into the same shared
 *      memory (cp.async, 16 bytes a copy: they stay in flight through steps
 *      3-5); the registers' maximum was taken first, so the loads from
 *      shared memory have returned before the copies may overwrite them
 *   3. its (m, d) from registers, one merge across the block, the block's
 *      state into shared memory (double buffered: slot row & 1)
 *   4. one cluster barrier; every warp reads the C states through
 *      distributed shared memory and merges them (as merge-cluster)
 *   5. normalises and stores its chunk from registers
 * A block rewrites state slot k two rows later, after the next row's
 * barrier, which every block passes only once it has read slot k: one
 * cluster barrier a row suffices. A last barrier keeps every block's shared
 * memory alive until the others have read it.
 * 1 load + 1 store per element, as merge-cluster; shared memory: one chunk a
 * block (64 KiB of fp32 for 512 threads, 128 KiB for 1024).
 * Clusters of small blocks stop at 8 (PERSIST_SMALL_MAX): 16 small blocks a
 * row fitted 14 clusters on the H200, 224 of its 264 block slots, and ran
 * 1024 x 262144 fp32 at 68% of copy; 8 large blocks fitted 16 clusters on
 * 128 SMs and ran at 80% (STF_CLUSTER_THREADS=1024, the same session).
 *
 * Run: build/bin/03_online_softmax --rows 1024 --cols 262144 */
#include <cooperative_groups.h>

#include "gpu_check.h"
#include "online.h"
#include "cluster_limits.cuh"
#include "softmax_device.cuh"

namespace cg = cooperative_groups;

/* One vector of the next row into shared memory, asynchronously where the
 * size allows (cp.async copies 4, 8 or 16 bytes); 16-bit single elements
 * (rows not a multiple of 8) are copied through a register, synchronously. */
template <typename T, int VEC>
__device__ __forceinline__ void stage_vec(vec_t<T, VEC> *dst, const T *src)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    if constexpr (sizeof(T) * VEC == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src) : "memory");
    } else if constexpr (sizeof(T) * VEC == 4) {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(src) : "memory");
    } else {
        *dst = ld_vec<T, VEC>(src);
    }
#else
    *dst = ld_vec<T, VEC>(src);
#endif
}

__device__ __forceinline__ void stage_commit()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void stage_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

template <typename T, int VEC, int THREADS>
__global__ void __launch_bounds__(THREADS, THREADS == CLUSTER_THREADS_S ? 2 : 1)
merge_persist_kernel(const T *__restrict__ x, T *__restrict__ y, size_t rows, int cols, int chunk)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int PER = 32 / VEC;
    extern __shared__ __align__(16) unsigned char stage_raw[];
    vec_t<T, VEC> *stage = reinterpret_cast<vec_t<T, VEC> *>(stage_raw); /* PER x THREADS vectors */
    __shared__ md_t scratch[32];
    __shared__ md_t block_state[2];
    cg::cluster_group cluster = cg::this_cluster();
    const int C = (int)cluster.num_blocks(), rank = (int)cluster.block_rank();
    const size_t G = gridDim.x / (unsigned)C, first = blockIdx.x / (unsigned)C;
    const int nvec = cols / VEC, v0 = min(nvec, rank * chunk), n = min(nvec, v0 + chunk) - v0;
    const int tid = (int)threadIdx.x;

    if (first < rows) {
        const T *xr = x + first * cols + (size_t)v0 * VEC;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * THREADS + tid < n) stage_vec<T, VEC>(stage + p * THREADS + tid, xr + (size_t)(p * THREADS + tid) * VEC);
    }
    stage_commit();

    int slot = 0;
    for (size_t row = first; row < rows; row += G, slot ^= 1) {
        stage_wait(); /* this thread's copies of this row have landed */
        vec_t<T, VEC> v[PER];
        float m = -INFINITY;
#pragma unroll
        for (int p = 0; p < PER; p++) {
            const int i = p * THREADS + tid;
            if (i < n) {
                v[p] = stage[i];
#pragma unroll
                for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v[p].v[k]));
            }
        }
        if (row + G < rows) { /* the next row's chunk, in flight while this one is finished */
            const T *xn = x + (row + G) * cols + (size_t)v0 * VEC;
#pragma unroll
            for (int p = 0; p < PER; p++)
                if (p * THREADS + tid < n) stage_vec<T, VEC>(stage + p * THREADS + tid, xn + (size_t)(p * THREADS + tid) * VEC);
        }
        stage_commit();

        const float mt = exp_base(m);
        float d = 0.0f;
#pragma unroll
        for (int p = 0; p < PER; p++)
            if (p * THREADS + tid < n)
#pragma unroll
                for (int k = 0; k < VEC; k++) d += fexp(to_f(v[p].v[k]) - mt);
        md_t s = { m, d };
        s = block_reduce(s, op_md(), scratch);
        if (tid == 0) block_state[slot] = s;
        cluster.sync();

        const int lane = tid & 31;
        md_t r = md_empty();
        if (lane < C) r = *cluster.map_shared_rank(&block_state[slot], lane);
        r = warp_reduce(r, op_md());

        const float ms = exp_base(r.m), inv = 1.0f / r.d;
        T *yr = y + row * cols + (size_t)v0 * VEC;
#pragma unroll
        for (int p = 0; p < PER; p++) {
            const int i = p * THREADS + tid;
            if (i < n) {
                vec_t<T, VEC> o;
#pragma unroll
                for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(fexp(to_f(v[p].v[k]) - ms) * inv);
                st_vec<T, VEC>(yr + (size_t)i * VEC, o);
            }
        }
    }
    stage_wait();
    cluster.sync(); /* no block's shared memory goes while another may still read it */
#endif
}

template <typename T, int VEC, int THREADS>
static size_t smem_of()
{
    return (size_t)THREADS * (32 / VEC) * sizeof(vec_t<T, VEC>);
}

template <typename T, int VEC, int THREADS> static cluster_limits &limits_of()
{
    return cluster_limits_of<merge_persist_kernel<T, VEC, THREADS>, THREADS>(smem_of<T, VEC, THREADS>());
}

extern "C" int merge_persist_gpu_limits(dtype_t dt, size_t cols, int *max_s, int *max_l, char *why, size_t n)
{
    if (!cluster_device_ok(why, n)) return 0;
    cluster_limits s = {}, l = {};
    STF_DISPATCH(dt, cols, {
        s = limits_of<T, VEC, CLUSTER_THREADS_S>();
        l = limits_of<T, VEC, CLUSTER_THREADS_L>();
    });
    if (!cluster_built(s, l, why, n)) return 0;
    const int cap = merge_persist_small_max();
    *max_s = s.ok ? (s.max_cluster < cap ? s.max_cluster : cap) : 0;
    *max_l = l.ok ? l.max_cluster : 0;
    return 1;
}

template <typename T, int VEC, int THREADS>
static void launch_persist(const T *x, T *y, size_t rows, int cols, int C)
{
    limits_of<T, VEC, THREADS>(); /* sets the size attributes */
    const int nvec = cols / VEC, chunk = (nvec + C - 1) / C;
    cudaLaunchConfig_t cfg = {};
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = smem_of<T, VEC, THREADS>();
    cfg.stream = 0;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)C;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    static int known[CLUSTER_NONPORTABLE_MAX + 1], fit[CLUSTER_NONPORTABLE_MAX + 1];
    if (!known[C]) {
        cfg.gridDim = dim3((unsigned)C * 1024u);
        CUDA_CHECK(cudaOccupancyMaxActiveClusters(&fit[C], merge_persist_kernel<T, VEC, THREADS>, &cfg));
        if (fit[C] < 1) fit[C] = 1; /* still correct with clusters queued: none waits on another */
        known[C] = 1;
    }
    const size_t G = rows < (size_t)fit[C] ? rows : (size_t)fit[C];
    cfg.gridDim = dim3((unsigned)(G * (size_t)C));
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, merge_persist_kernel<T, VEC, THREADS>, x, y, rows, cols, chunk));
}

extern "C" void softmax_merge_persist_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    char why[256];
    int max_s = 0, max_l = 0;
    cluster_plan_t p;
    if (!merge_persist_gpu_limits(dt, cols, &max_s, &max_l, why, sizeof why) ||
        !merge_cluster_plan(cols, dt, max_s, max_l, &p, why, sizeof why)) {
        fprintf(stderr, "merge-persist: %s\n", why); /* the driver asks applies() first */
        exit(2);
    }
    if (rows == 0) return;
    STF_DISPATCH(dt, cols, {
        if (p.threads == CLUSTER_THREADS_S) launch_persist<T, VEC, CLUSTER_THREADS_S>((const T *)x, (T *)y, rows, (int)cols, p.blocks);
        else launch_persist<T, VEC, CLUSTER_THREADS_L>((const T *)x, (T *)y, rows, (int)cols, p.blocks);
    });
}
