/* Workloads with a known DRAM footprint, for tests/test_hwcounters.c: the
 * only way to trust a counter is to point it at traffic whose size is known
 * in advance. A copy moves X bytes in and X out; three full sweeps over a
 * buffer far larger than the L2 read it three times, because by the time a
 * sweep comes back to the start, the L2 holds only the end of the buffer.
 *
 * This file also carries the compile-time check of the CUPTI host-API
 * mirrors in common/device/hwcounters.h: cupti_profiler_host.h is C++-only, so this
 * C++ translation unit is where the real structs and the C copies can be set
 * side by side. It is compiled whenever CUDA is, so a CUPTI whose layouts
 * moved fails the build rather than a profiler call. */
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "gpu_check.h"

#define HWC_CUPTI_HOST_MIRROR
#include "hwcounters.h"

#include <cupti_profiler_host.h>

/* ---------------------------------------------------------- layout check */

#define HWC_SAME_FIELD(mine, theirs, f)                                         \
    static_assert(offsetof(mine, f) == offsetof(theirs, f) &&                  \
                      sizeof(static_cast<mine *>(nullptr)->f) ==               \
                          sizeof(static_cast<theirs *>(nullptr)->f),           \
                  #theirs "::" #f " moved: update the mirror in hwcounters.h")
#define HWC_SAME_STRUCT(mine, mine_size, theirs)                               \
    static_assert(sizeof(mine) == sizeof(theirs) &&                            \
                      (mine_size) == theirs##_STRUCT_SIZE,                     \
                  #theirs " changed size: update the mirror in hwcounters.h")

static_assert((int)HWC_PROFILER_TYPE_RANGE_PROFILER == (int)CUPTI_PROFILER_TYPE_RANGE_PROFILER, "CUpti_ProfilerType");
static_assert(sizeof(int) == sizeof(CUpti_ProfilerType), "CUpti_ProfilerType is not int-sized");

HWC_SAME_STRUCT(hwc_host_initialize_params, HWC_HOST_INITIALIZE_PARAMS_SIZE, CUpti_Profiler_Host_Initialize_Params);
HWC_SAME_FIELD(hwc_host_initialize_params, CUpti_Profiler_Host_Initialize_Params, structSize);
HWC_SAME_FIELD(hwc_host_initialize_params, CUpti_Profiler_Host_Initialize_Params, pPriv);
HWC_SAME_FIELD(hwc_host_initialize_params, CUpti_Profiler_Host_Initialize_Params, profilerType);
HWC_SAME_FIELD(hwc_host_initialize_params, CUpti_Profiler_Host_Initialize_Params, pChipName);
HWC_SAME_FIELD(hwc_host_initialize_params, CUpti_Profiler_Host_Initialize_Params, pCounterAvailabilityImage);
HWC_SAME_FIELD(hwc_host_initialize_params, CUpti_Profiler_Host_Initialize_Params, pHostObject);

HWC_SAME_STRUCT(hwc_host_config_add_metrics_params, HWC_HOST_CONFIG_ADD_METRICS_PARAMS_SIZE,
                CUpti_Profiler_Host_ConfigAddMetrics_Params);
HWC_SAME_FIELD(hwc_host_config_add_metrics_params, CUpti_Profiler_Host_ConfigAddMetrics_Params, structSize);
HWC_SAME_FIELD(hwc_host_config_add_metrics_params, CUpti_Profiler_Host_ConfigAddMetrics_Params, pPriv);
HWC_SAME_FIELD(hwc_host_config_add_metrics_params, CUpti_Profiler_Host_ConfigAddMetrics_Params, pHostObject);
HWC_SAME_FIELD(hwc_host_config_add_metrics_params, CUpti_Profiler_Host_ConfigAddMetrics_Params, ppMetricNames);
HWC_SAME_FIELD(hwc_host_config_add_metrics_params, CUpti_Profiler_Host_ConfigAddMetrics_Params, numMetrics);

HWC_SAME_STRUCT(hwc_host_get_config_image_size_params, HWC_HOST_GET_CONFIG_IMAGE_SIZE_PARAMS_SIZE,
                CUpti_Profiler_Host_GetConfigImageSize_Params);
HWC_SAME_FIELD(hwc_host_get_config_image_size_params, CUpti_Profiler_Host_GetConfigImageSize_Params, structSize);
HWC_SAME_FIELD(hwc_host_get_config_image_size_params, CUpti_Profiler_Host_GetConfigImageSize_Params, pPriv);
HWC_SAME_FIELD(hwc_host_get_config_image_size_params, CUpti_Profiler_Host_GetConfigImageSize_Params, pHostObject);
HWC_SAME_FIELD(hwc_host_get_config_image_size_params, CUpti_Profiler_Host_GetConfigImageSize_Params,
               configImageSize);

HWC_SAME_STRUCT(hwc_host_get_config_image_params, HWC_HOST_GET_CONFIG_IMAGE_PARAMS_SIZE,
                CUpti_Profiler_Host_GetConfigImage_Params);
HWC_SAME_FIELD(hwc_host_get_config_image_params, CUpti_Profiler_Host_GetConfigImage_Params, structSize);
HWC_SAME_FIELD(hwc_host_get_config_image_params, CUpti_Profiler_Host_GetConfigImage_Params, pPriv);
HWC_SAME_FIELD(hwc_host_get_config_image_params, CUpti_Profiler_Host_GetConfigImage_Params, pHostObject);
HWC_SAME_FIELD(hwc_host_get_config_image_params, CUpti_Profiler_Host_GetConfigImage_Params, configImageSize);
HWC_SAME_FIELD(hwc_host_get_config_image_params, CUpti_Profiler_Host_GetConfigImage_Params, pConfigImage);

HWC_SAME_STRUCT(hwc_host_get_num_of_passes_params, HWC_HOST_GET_NUM_OF_PASSES_PARAMS_SIZE,
                CUpti_Profiler_Host_GetNumOfPasses_Params);
HWC_SAME_FIELD(hwc_host_get_num_of_passes_params, CUpti_Profiler_Host_GetNumOfPasses_Params, structSize);
HWC_SAME_FIELD(hwc_host_get_num_of_passes_params, CUpti_Profiler_Host_GetNumOfPasses_Params, pPriv);
HWC_SAME_FIELD(hwc_host_get_num_of_passes_params, CUpti_Profiler_Host_GetNumOfPasses_Params, configImageSize);
HWC_SAME_FIELD(hwc_host_get_num_of_passes_params, CUpti_Profiler_Host_GetNumOfPasses_Params, pConfigImage);
HWC_SAME_FIELD(hwc_host_get_num_of_passes_params, CUpti_Profiler_Host_GetNumOfPasses_Params, numOfPasses);

HWC_SAME_STRUCT(hwc_host_evaluate_to_gpu_values_params, HWC_HOST_EVALUATE_TO_GPU_VALUES_PARAMS_SIZE,
                CUpti_Profiler_Host_EvaluateToGpuValues_Params);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params, structSize);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params, pPriv);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params, pHostObject);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params,
               pCounterDataImage);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params,
               counterDataImageSize);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params, rangeIndex);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params,
               ppMetricNames);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params, numMetrics);
HWC_SAME_FIELD(hwc_host_evaluate_to_gpu_values_params, CUpti_Profiler_Host_EvaluateToGpuValues_Params,
               pMetricValues);

/* ---------------------------------------------------------- workloads */

/* The sink of hwc_test_read3 gets one float per block; the caller provides
 * this many. */
#define HWC_READ3_MAX_BLOCKS 1024
#define THREADS 256

namespace {

int sm_count()
{
    int dev = 0, n = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
}

/* Enough blocks to keep every SM streaming, few enough that each thread
 * walks many elements (grid-stride), as a bandwidth-bound kernel would. */
unsigned grid_for(size_t items, int per_sm)
{
    size_t want = (items + THREADS - 1) / THREADS;
    size_t cap = (size_t)sm_count() * (size_t)per_sm;
    if (want > cap) want = cap;
    return want ? (unsigned)want : 1u;
}

/* 16 bytes per load and per store: full 32-byte sectors on every access,
 * so DRAM sees exactly the bytes asked for. */
__global__ void copy16_kernel(uint4 *__restrict__ dst, const uint4 *__restrict__ src, size_t n16,
                              unsigned char *__restrict__ dst_tail, const unsigned char *__restrict__ src_tail,
                              size_t n_tail)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (size_t i = first; i < n16; i += stride) dst[i] = src[i];
    if (first < n_tail) dst_tail[first] = src_tail[first];
}

__global__ void copy1_kernel(unsigned char *__restrict__ dst, const unsigned char *__restrict__ src, size_t n)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = src[i];
}

/* One full sweep: every element read once, the block's sum stored so the
 * loads cannot be optimised away. */
__global__ void sweep_kernel(const float4 *__restrict__ src, size_t n4, const float *__restrict__ tail,
                             size_t n_tail, float *__restrict__ sink)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    float acc = 0.0f;
    for (size_t i = first; i < n4; i += stride) {
        float4 v = src[i];
        acc += (v.x + v.y) + (v.z + v.w);
    }
    if (first < n_tail) acc += tail[first];

    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    __shared__ float warp_sums[THREADS / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < THREADS / 32 ? warp_sums[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
        if (lane == 0) sink[blockIdx.x] = acc;
    }
}

} // namespace

/* Copies `bytes` from src to dst on stream 0 (asynchronous, like cudaMemcpy
 * on the device). */
extern "C" void hwc_test_copy(void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    if (((uintptr_t)dst | (uintptr_t)src) % 16 == 0) {
        const size_t n16 = bytes / 16, n_tail = bytes % 16;
        unsigned char *d = (unsigned char *)dst;
        const unsigned char *s = (const unsigned char *)src;
        copy16_kernel<<<grid_for(n16, 8), THREADS>>>((uint4 *)dst, (const uint4 *)src, n16, d + n16 * 16,
                                                     s + n16 * 16, n_tail);
    } else {
        copy1_kernel<<<grid_for(bytes, 8), THREADS>>>((unsigned char *)dst, (const unsigned char *)src, bytes);
    }
    LAUNCH_CHECK();
}

/* Reads src[0..n) three times: three launches, each a complete sweep, so
 * each sweep finishes before the next begins. sink needs room for
 * HWC_READ3_MAX_BLOCKS (1024) floats; each launch overwrites the same
 * entries, a few kilobytes of writes in all. src must be 16-byte aligned
 * (cudaMalloc's is). */
extern "C" void hwc_test_read3(const float *src, size_t n, float *sink)
{
    if (!n) return;
    if ((uintptr_t)src % 16 != 0) {
        fprintf(stderr, "hwc_test_read3: src is not 16-byte aligned\n");
        exit(1);
    }
    const size_t n4 = n / 4, n_tail = n % 4;
    unsigned grid = grid_for(n4, 4);
    if (grid > HWC_READ3_MAX_BLOCKS) grid = HWC_READ3_MAX_BLOCKS;
    for (int sweep = 0; sweep < 3; sweep++) {
        sweep_kernel<<<grid, THREADS>>>((const float4 *)src, n4, src + n4 * 4, n_tail, sink);
        LAUNCH_CHECK();
    }
}
