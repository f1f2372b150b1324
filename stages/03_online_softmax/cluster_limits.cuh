/* What the device grants the cluster kernels of stage 03 (cluster_gpu.cu,
 * persist_gpu.cu): whether it launches thread-block clusters at all, and the
 * largest cluster one kernel instance can be launched with
 * (cudaOccupancyMaxPotentialClusterSize, non-portable sizes allowed), each
 * queried once. */
#ifndef STF_STAGE03_CLUSTER_LIMITS_CUH
#define STF_STAGE03_CLUSTER_LIMITS_CUH

#include <stdio.h>

#include "gpu_check.h"
#include "online.h"

struct cluster_limits {
    int known, ok, max_cluster; /* ok: the instance holds cluster code (built for sm_90) */
};

/* Kernel k at THREADS threads and smem bytes of dynamic shared memory. */
template <auto k, int THREADS> static cluster_limits &cluster_limits_of(size_t smem)
{
    static cluster_limits l;
    if (l.known) return l;
    l.known = 1;
    cudaFuncAttributes fa;
    CUDA_CHECK(cudaFuncGetAttributes(&fa, k));
    if (fa.ptxVersion < 90) return l; /* built for an older architecture: no cluster code in it */
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    if (smem) CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(CLUSTER_NONPORTABLE_MAX * 64);
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = smem;
    CUDA_CHECK(cudaOccupancyMaxPotentialClusterSize(&l.max_cluster, k, &cfg));
    l.ok = l.max_cluster >= 1;
    return l;
}

/* 1 when device 0 launches clusters, else 0 and the reason in why (asked
 * before any kernel instance is: an older GPU has no image of them). */
static inline int cluster_device_ok(char *why, size_t n)
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
    return 1;
}

/* 1 when the small- or the large-block instance holds cluster code, else 0
 * and the reason in why. */
static inline int cluster_built(const cluster_limits &s, const cluster_limits &l, char *why, size_t n)
{
    if (!s.ok && !l.ok) {
        snprintf(why, n, "this build's kernels are not compiled for sm_90: build with CUDA_ARCH=90 for clusters");
        return 0;
    }
    return 1;
}

#endif
