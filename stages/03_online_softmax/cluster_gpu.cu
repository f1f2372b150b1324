/* Stage 03 on the GPU, merge-cluster: one row held in the registers of a
 * thread-block cluster (sm_90), read once and written once. The plan and
 * the CPU simulation: cluster_cpu.c.
 *
 * Each block of a cluster of C (one cluster per row, grid = rows x C):
 *   1. loads its chunk of the row into registers: thread t holds vectors
 *      t, t + THREADS, ... of the chunk (32 elements), so every
 *      load is coalesced; all loads are issued before the first is used
 *   2. its threads' (m, d) from registers (max, then sum), one merge across
 *      the block (block_reduce), the block's state into its shared memory
 *   3. cluster barrier (barrier.cluster arrive.release / wait.acquire): all
 *      C states are written; each warp reads the C states from the blocks'
 *      shared memory (cluster.map_shared_rank, distributed shared memory:
 *      an SM-to-SM read inside the GPC, no device memory) and merges them
 *      with a shuffle tree, so every block gets the same (m, d) bit for bit
 *   4. arrives on a second cluster barrier (done reading the others' shared
 *      memory), writes its chunk from registers, and waits on that barrier
 *      before exiting: a block's shared memory must outlive every read of it
 * 1 load + 1 store per element; what crosses between blocks is C states of
 * 8 bytes. Non-Hopper devices and builds decline (merge_cluster_gpu_limits).
 *
 * Run: build/bin/03_online_softmax --rows 1024 --cols 262144 */
#include <cooperative_groups.h>
#include <utility>

#include "gpu_check.h"
#include "online.h"
#include "cluster_limits.cuh"
#include "softmax_device.cuh"

namespace cg = cooperative_groups;

template <typename T, int VEC, int THREADS>
__global__ void __launch_bounds__(THREADS, THREADS == CLUSTER_THREADS_S ? 2 : 1)
merge_cluster_kernel(const T *__restrict__ x, T *__restrict__ y, int cols, int chunk)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int PER = 32 / VEC; /* 32 elements a thread: 128 bytes of fp32, 64 of fp16/bf16 */
    __shared__ md_t scratch[32];
    __shared__ md_t block_state;
    cg::cluster_group cluster = cg::this_cluster();
    const int C = (int)cluster.num_blocks(), rank = (int)cluster.block_rank();
    const size_t row = blockIdx.x / (unsigned)C;
    const int nvec = cols / VEC, v0 = min(nvec, rank * chunk), n = min(nvec, v0 + chunk) - v0;
    const T *xr = x + row * cols + (size_t)v0 * VEC;
    T *yr = y + row * cols + (size_t)v0 * VEC;

    vec_t<T, VEC> v[PER];
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * THREADS + (int)threadIdx.x;
        if (i < n) v[p] = ld_vec_stream<T, VEC>(xr + (size_t)i * VEC);
        else
            for (int k = 0; k < VEC; k++) v[p].v[k] = from_f<T>(0.0f);
    }
    float m = -INFINITY;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * THREADS + (int)threadIdx.x < n)
#pragma unroll
            for (int k = 0; k < VEC; k++) m = fmaxf(m, to_f(v[p].v[k]));
    const float mt = exp_base(m);
    float d = 0.0f;
#pragma unroll
    for (int p = 0; p < PER; p++)
        if (p * THREADS + (int)threadIdx.x < n)
#pragma unroll
            for (int k = 0; k < VEC; k++) d += fexp(to_f(v[p].v[k]) - mt);
    md_t s = { m, d };
    s = block_reduce(s, op_md(), scratch);
    if (threadIdx.x == 0) block_state = s;
    cluster.sync();

    const int lane = threadIdx.x & 31;
    md_t r = md_empty();
    if (lane < C) r = *cluster.map_shared_rank(&block_state, lane);
    r = warp_reduce(r, op_md());
    auto done_reading = cluster.barrier_arrive();

    const float ms = exp_base(r.m), inv = 1.0f / r.d;
#pragma unroll
    for (int p = 0; p < PER; p++) {
        const int i = p * THREADS + (int)threadIdx.x;
        if (i < n) {
            vec_t<T, VEC> o;
#pragma unroll
            for (int k = 0; k < VEC; k++) o.v[k] = from_f<T>(fexp(to_f(v[p].v[k]) - ms) * inv);
            st_vec<T, VEC>(yr + (size_t)i * VEC, o);
        }
    }
    cluster.barrier_wait(std::move(done_reading));
#endif
}

template <typename T, int VEC, int THREADS> static cluster_limits &limits_of()
{
    return cluster_limits_of<merge_cluster_kernel<T, VEC, THREADS>, THREADS>(0);
}

extern "C" int merge_cluster_gpu_limits(dtype_t dt, size_t cols, int *max_s, int *max_l, char *why, size_t n)
{
    if (!cluster_device_ok(why, n)) return 0;
    cluster_limits s = {}, l = {};
    STF_DISPATCH(dt, cols, {
        s = limits_of<T, VEC, CLUSTER_THREADS_S>();
        l = limits_of<T, VEC, CLUSTER_THREADS_L>();
    });
    if (!cluster_built(s, l, why, n)) return 0;
    *max_s = s.ok ? s.max_cluster : 0;
    *max_l = l.ok ? l.max_cluster : 0;
    return 1;
}

template <typename T, int VEC, int THREADS>
static void launch_cluster(const T *x, T *y, size_t rows, int cols, int C)
{
    limits_of<T, VEC, THREADS>(); /* sets the non-portable size attribute */
    const int nvec = cols / VEC, chunk = (nvec + C - 1) / C;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)(rows * (size_t)C));
    cfg.blockDim = dim3(THREADS);
    cfg.stream = 0;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)C;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, merge_cluster_kernel<T, VEC, THREADS>, x, y, cols, chunk));
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
        if (p.threads == CLUSTER_THREADS_S) launch_cluster<T, VEC, CLUSTER_THREADS_S>((const T *)x, (T *)y, rows, (int)cols, p.blocks);
        else launch_cluster<T, VEC, CLUSTER_THREADS_L>((const T *)x, (T *)y, rows, (int)cols, p.blocks);
    });
}
