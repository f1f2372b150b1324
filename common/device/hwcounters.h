/* Measured DRAM traffic, read from the GPU's hardware counters in-process.
 *
 * Every stage of this project argues about bytes moved between the SMs and
 * HBM: the ledger *predicts* them from the algorithm. This module *measures*
 * them, so a prediction can be checked against the hardware instead of being
 * trusted. It uses CUPTI's range profiler (CUDA 12.6+) with the metrics
 * dram__bytes_read.sum and dram__bytes_write.sum over one user range.
 *
 * libcupti and libcuda are opened with dlopen at run time, never linked: the
 * programs must still start (and fall back to the CPU) on machines without a
 * driver or without CUPTI, and counters are an optional extra there.
 *
 * What the numbers mean (read this before comparing with a model):
 *  - The counters belong to the memory controllers, so they count every byte
 *    the device moved to and from HBM while the range was open: kernels,
 *    cudaMemcpy/cudaMemset, other streams, and other processes on the GPU.
 *  - The L2 is a write-back cache (50 MB on H100/H200). A line written inside
 *    the range that is still dirty in L2 at hwc_end is not counted; a line
 *    dirtied before hwc_begin and evicted inside the range is. Run the
 *    workload once before measuring it: in that steady state the two effects
 *    cancel and the writes come out right.
 *  - hwc_begin and hwc_end synchronise the device, so work issued before
 *    begin is finished before the range opens and everything issued between
 *    them is finished before it closes.
 *
 * Not thread-safe: one measurement at a time, from one thread. The context
 * measured is the one current when hwc_available() first runs (cudart's
 * primary context of device 0 in this project).
 *
 * Set HWC_DEBUG=1 in the environment to print every CUPTI and driver call
 * and its result to stderr. */
#ifndef STF_HWCOUNTERS_H
#define STF_HWCOUNTERS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Returns 1 when counters can be read on device 0; 0 otherwise, with the
 * reason in hwc_reason(). Idempotent (the answer is cached); called lazily by
 * hwc_begin. The first call does one empty trial measurement, so "available"
 * means the whole sequence worked once, permissions included. */
int hwc_available(void);

/* Why the counters are unavailable, or why the last hwc_begin/hwc_end
 * failed; "" when nothing failed. Never NULL. */
const char *hwc_reason(void);

/* Measure the DRAM bytes read and written by all GPU work issued between
 * begin and end (kernels and cudaMemcpy/cudaMemset on stream 0 of the
 * current context). Returns 0 on success, -1 on failure (reason in
 * hwc_reason()). On failure the outputs (either may be NULL) are set to 0,
 * and no state is left behind: the next hwc_begin starts afresh. */
int hwc_begin(void);
int hwc_end(double *dram_read_bytes, double *dram_write_bytes);

#ifdef HWC_CUPTI_HOST_MIRROR
/* Internal: the CUPTI host-API parameter structs, spelled out again here.
 *
 * Why: cupti_profiler_host.h includes <string>, so it only compiles as C++,
 * while this module is C11. hwcounters.c needs the structs' layouts, so it
 * uses these copies; tests/hwc_kernels.cu (C++, built whenever CUDA is)
 * includes both these and the real header and static_asserts that every
 * offset and size agrees, so a CUPTI update that changes a layout stops the
 * build instead of corrupting a call. Each mirror names the CUPTI struct it
 * stands for. Fields keep CUPTI's names so the two read side by side. */

#define HWC_MIRROR_STRUCT_SIZE(type_, lastfield_) \
    (offsetof(type_, lastfield_) + sizeof(((type_ *)0)->lastfield_))

typedef struct hwc_host_object hwc_host_object; /* CUpti_Profiler_Host_Object */

enum { HWC_PROFILER_TYPE_RANGE_PROFILER = 0 }; /* CUPTI_PROFILER_TYPE_RANGE_PROFILER */

/* CUpti_Profiler_Host_Initialize_Params */
typedef struct {
    size_t structSize;
    void *pPriv;
    int profilerType; /* CUpti_ProfilerType, an enum: int-sized */
    const char *pChipName;
    const uint8_t *pCounterAvailabilityImage;
    hwc_host_object *pHostObject;
} hwc_host_initialize_params;
#define HWC_HOST_INITIALIZE_PARAMS_SIZE HWC_MIRROR_STRUCT_SIZE(hwc_host_initialize_params, pHostObject)

/* CUpti_Profiler_Host_ConfigAddMetrics_Params */
typedef struct {
    size_t structSize;
    void *pPriv;
    hwc_host_object *pHostObject;
    const char **ppMetricNames;
    size_t numMetrics;
} hwc_host_config_add_metrics_params;
#define HWC_HOST_CONFIG_ADD_METRICS_PARAMS_SIZE \
    HWC_MIRROR_STRUCT_SIZE(hwc_host_config_add_metrics_params, numMetrics)

/* CUpti_Profiler_Host_GetConfigImageSize_Params */
typedef struct {
    size_t structSize;
    void *pPriv;
    hwc_host_object *pHostObject;
    size_t configImageSize;
} hwc_host_get_config_image_size_params;
#define HWC_HOST_GET_CONFIG_IMAGE_SIZE_PARAMS_SIZE \
    HWC_MIRROR_STRUCT_SIZE(hwc_host_get_config_image_size_params, configImageSize)

/* CUpti_Profiler_Host_GetConfigImage_Params */
typedef struct {
    size_t structSize;
    void *pPriv;
    hwc_host_object *pHostObject;
    size_t configImageSize;
    uint8_t *pConfigImage;
} hwc_host_get_config_image_params;
#define HWC_HOST_GET_CONFIG_IMAGE_PARAMS_SIZE \
    HWC_MIRROR_STRUCT_SIZE(hwc_host_get_config_image_params, pConfigImage)

/* CUpti_Profiler_Host_GetNumOfPasses_Params */
typedef struct {
    size_t structSize;
    void *pPriv;
    size_t configImageSize;
    uint8_t *pConfigImage;
    size_t numOfPasses;
} hwc_host_get_num_of_passes_params;
#define HWC_HOST_GET_NUM_OF_PASSES_PARAMS_SIZE \
    HWC_MIRROR_STRUCT_SIZE(hwc_host_get_num_of_passes_params, numOfPasses)

/* CUpti_Profiler_Host_EvaluateToGpuValues_Params */
typedef struct {
    size_t structSize;
    void *pPriv;
    hwc_host_object *pHostObject;
    const uint8_t *pCounterDataImage;
    size_t counterDataImageSize;
    size_t rangeIndex;
    const char **ppMetricNames;
    size_t numMetrics;
    double *pMetricValues;
} hwc_host_evaluate_to_gpu_values_params;
#define HWC_HOST_EVALUATE_TO_GPU_VALUES_PARAMS_SIZE \
    HWC_MIRROR_STRUCT_SIZE(hwc_host_evaluate_to_gpu_values_params, pMetricValues)
#endif /* HWC_CUPTI_HOST_MIRROR */

#ifdef __cplusplus
}
#endif

#endif
