/* Hardware DRAM counters through CUPTI's range profiler (see hwcounters.h
 * for what the numbers mean).
 *
 * Why it is built the way it is:
 *  - libcupti and libcuda are dlopen'ed and every entry point is looked up
 *    with dlsym, so the programs link and start on machines that have neither;
 *    there hwc_available() simply says 0 and why.
 *  - The CUPTI headers are used for types and prototypes only; each function
 *    pointer type is checked against the real prototype at compile time, so
 *    a signature change in a later CUDA fails the build, not the run. The
 *    host-API header is C++-only, so its structs are mirrored in hwcounters.h
 *    and their layout is checked by tests/hwc_kernels.cu.
 *  - One user range, user replay, one pass: the profiler never replays the
 *    workload (a replay would change what is measured, and reruns of
 *    arbitrary work are not ours to make). If the two metrics ever needed a
 *    second pass, the module reports itself unavailable instead.
 *  - The range profiler is enabled only for the duration of one measurement
 *    and disabled again in hwc_end, so the rest of the program runs (and is
 *    timed) without a profiler attached, and a failed measurement leaves
 *    nothing behind for the next one.
 *  - Nothing here exits or aborts: every failure becomes a return value and
 *    a one-line reason. */
#if HAVE_CUDA
#define HWC_CUPTI_HOST_MIRROR /* the host-API struct copies, see hwcounters.h */
#endif
#include "hwcounters.h"

#if !HAVE_CUDA

int hwc_available(void) { return 0; }
const char *hwc_reason(void) { return "unavailable: built without CUDA"; }
int hwc_begin(void) { return -1; }

int hwc_end(double *dram_read_bytes, double *dram_write_bytes)
{
    if (dram_read_bytes) *dram_read_bytes = 0;
    if (dram_write_bytes) *dram_write_bytes = 0;
    return -1;
}

#else /* HAVE_CUDA */

#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <cupti_profiler_target.h>
#include <cupti_range_profiler.h>
#include <cupti_result.h>
#include <cupti_target.h>
#include <cupti_version.h>

/* Both metrics come from the memory controllers; on Hopper they fit in one
 * pass together. The order fixes the order of the evaluated values. */
static const char *k_metrics[] = {"dram__bytes_read.sum", "dram__bytes_write.sum"};
#define N_METRICS 2
#define RANGE_NAME "hwc"

/* A CUPTI parameter struct, zeroed, with its size filled in (every CUPTI call
 * takes one; the size tells the library which version of the struct it got). */
#define CUPTI_PARAMS(T, v) T v; memset(&v, 0, sizeof v); v.structSize = T##_STRUCT_SIZE

/* ------------------------------------------------------------------ types */

/* Signature checks: a typedef that drifts from the header's prototype is a
 * compile error here rather than a corrupted stack on the GPU machine. */
#define HWC_SAME_TYPE(pfn_, fn_) \
    _Static_assert(__builtin_types_compatible_p(pfn_, __typeof__(&fn_)), #fn_ " changed its signature")

typedef CUresult(CUDAAPI *pfn_cuCtxGetCurrent)(CUcontext *);
typedef CUresult(CUDAAPI *pfn_cuCtxGetDevice)(CUdevice *);
HWC_SAME_TYPE(pfn_cuCtxGetCurrent, cuCtxGetCurrent);
HWC_SAME_TYPE(pfn_cuCtxGetDevice, cuCtxGetDevice);

typedef CUptiResult(CUPTIAPI *pfn_cuptiGetResultString)(CUptiResult, const char **);
typedef CUptiResult(CUPTIAPI *pfn_cuptiGetVersion)(uint32_t *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerInitialize)(CUpti_Profiler_Initialize_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerDeviceSupported)(CUpti_Profiler_DeviceSupported_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiDeviceGetChipName)(CUpti_Device_GetChipName_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerGetCounterAvailability)(
    CUpti_Profiler_GetCounterAvailability_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerEnable)(CUpti_RangeProfiler_Enable_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerDisable)(CUpti_RangeProfiler_Disable_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerGetCounterDataSize)(
    CUpti_RangeProfiler_GetCounterDataSize_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerCounterDataImageInitialize)(
    CUpti_RangeProfiler_CounterDataImage_Initialize_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerSetConfig)(CUpti_RangeProfiler_SetConfig_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerStart)(CUpti_RangeProfiler_Start_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerStop)(CUpti_RangeProfiler_Stop_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerPushRange)(CUpti_RangeProfiler_PushRange_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerPopRange)(CUpti_RangeProfiler_PopRange_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerDecodeData)(CUpti_RangeProfiler_DecodeData_Params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiRangeProfilerGetCounterDataInfo)(
    CUpti_RangeProfiler_GetCounterDataInfo_Params *);
HWC_SAME_TYPE(pfn_cuptiGetResultString, cuptiGetResultString);
HWC_SAME_TYPE(pfn_cuptiGetVersion, cuptiGetVersion);
HWC_SAME_TYPE(pfn_cuptiProfilerInitialize, cuptiProfilerInitialize);
HWC_SAME_TYPE(pfn_cuptiProfilerDeviceSupported, cuptiProfilerDeviceSupported);
HWC_SAME_TYPE(pfn_cuptiDeviceGetChipName, cuptiDeviceGetChipName);
HWC_SAME_TYPE(pfn_cuptiProfilerGetCounterAvailability, cuptiProfilerGetCounterAvailability);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerEnable, cuptiRangeProfilerEnable);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerDisable, cuptiRangeProfilerDisable);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerGetCounterDataSize, cuptiRangeProfilerGetCounterDataSize);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerCounterDataImageInitialize, cuptiRangeProfilerCounterDataImageInitialize);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerSetConfig, cuptiRangeProfilerSetConfig);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerStart, cuptiRangeProfilerStart);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerStop, cuptiRangeProfilerStop);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerPushRange, cuptiRangeProfilerPushRange);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerPopRange, cuptiRangeProfilerPopRange);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerDecodeData, cuptiRangeProfilerDecodeData);
HWC_SAME_TYPE(pfn_cuptiRangeProfilerGetCounterDataInfo, cuptiRangeProfilerGetCounterDataInfo);

/* Host API: prototypes live in the C++-only header, so these take the
 * mirrored structs (layouts checked in tests/hwc_kernels.cu). */
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerHostInitialize)(hwc_host_initialize_params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerHostConfigAddMetrics)(hwc_host_config_add_metrics_params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerHostGetConfigImageSize)(hwc_host_get_config_image_size_params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerHostGetConfigImage)(hwc_host_get_config_image_params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerHostGetNumOfPasses)(hwc_host_get_num_of_passes_params *);
typedef CUptiResult(CUPTIAPI *pfn_cuptiProfilerHostEvaluateToGpuValues)(hwc_host_evaluate_to_gpu_values_params *);

typedef struct {
    pfn_cuptiGetResultString GetResultString;
    pfn_cuptiGetVersion GetVersion;
    pfn_cuptiProfilerInitialize ProfilerInitialize;
    pfn_cuptiProfilerDeviceSupported ProfilerDeviceSupported;
    pfn_cuptiDeviceGetChipName DeviceGetChipName;
    pfn_cuptiProfilerGetCounterAvailability ProfilerGetCounterAvailability;
    pfn_cuptiProfilerHostInitialize ProfilerHostInitialize;
    pfn_cuptiProfilerHostConfigAddMetrics ProfilerHostConfigAddMetrics;
    pfn_cuptiProfilerHostGetConfigImageSize ProfilerHostGetConfigImageSize;
    pfn_cuptiProfilerHostGetConfigImage ProfilerHostGetConfigImage;
    pfn_cuptiProfilerHostGetNumOfPasses ProfilerHostGetNumOfPasses;
    pfn_cuptiProfilerHostEvaluateToGpuValues ProfilerHostEvaluateToGpuValues;
    pfn_cuptiRangeProfilerEnable RangeProfilerEnable;
    pfn_cuptiRangeProfilerDisable RangeProfilerDisable;
    pfn_cuptiRangeProfilerGetCounterDataSize RangeProfilerGetCounterDataSize;
    pfn_cuptiRangeProfilerCounterDataImageInitialize RangeProfilerCounterDataImageInitialize;
    pfn_cuptiRangeProfilerSetConfig RangeProfilerSetConfig;
    pfn_cuptiRangeProfilerStart RangeProfilerStart;
    pfn_cuptiRangeProfilerStop RangeProfilerStop;
    pfn_cuptiRangeProfilerPushRange RangeProfilerPushRange;
    pfn_cuptiRangeProfilerPopRange RangeProfilerPopRange;
    pfn_cuptiRangeProfilerDecodeData RangeProfilerDecodeData;
    pfn_cuptiRangeProfilerGetCounterDataInfo RangeProfilerGetCounterDataInfo;
} cupti_fns;

/* ------------------------------------------------------------------ state */

static struct {
    int state; /* -1: not probed yet, 0: unavailable, 1: available */
    int debug; /* HWC_DEBUG set */
    char reason[640];

    void *libcuda, *libcupti;
    pfn_cuCtxGetCurrent cuCtxGetCurrent;
    pfn_cuCtxGetDevice cuCtxGetDevice;
    cupti_fns f;

    CUcontext ctx;
    CUdevice dev;
    char chip[64];
    uint8_t *avail; /* counter availability image */
    size_t avail_size;
    hwc_host_object *host;
    uint8_t *config; /* config image: which counters, scheduled in one pass */
    size_t config_size;
    uint8_t *counter; /* counter data image: where decoded values land */
    size_t counter_size;

    /* One measurement in flight. */
    CUpti_RangeProfiler_Object *rp; /* non-NULL while the profiler is enabled */
    int started, pushed;
} g = {.state = -1};

/* ------------------------------------------------------------------ errors */

static void set_reason(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_reason(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.reason, sizeof g.reason, fmt, ap);
    va_end(ap);
    if (g.debug) fprintf(stderr, "hwc: reason: %s\n", g.reason);
}

static void debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void debug(const char *fmt, ...)
{
    if (!g.debug) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("hwc: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const char *cupti_string(CUptiResult r)
{
    const char *s = NULL;
    if (g.f.GetResultString && g.f.GetResultString(r, &s) == CUPTI_SUCCESS && s) return s;
    return "unknown CUPTI error";
}

/* Counters are restricted to administrators by default on many Linux
 * drivers; the reason should say how to lift that, not just that it failed. */
static const char *cupti_hint(CUptiResult r)
{
    switch (r) {
    case CUPTI_ERROR_INSUFFICIENT_PRIVILEGES:
    case CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES:
        return " (GPU performance counters are restricted to administrators: run as root, or load the"
               " nvidia module with NVreg_RestrictProfilingToAdminUsers=0)";
    case CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED:
    case CUPTI_ERROR_OLD_PROFILER_API_INITIALIZED:
        return " (another profiler, e.g. ncu or nsys, is attached to this process)";
    default:
        return "";
    }
}

/* Every CUPTI call goes through here: logged under HWC_DEBUG, and a failure
 * becomes the reason, with CUPTI's own words and code. */
static int cupti_ok(CUptiResult r, const char *what)
{
    debug("%s -> %d (%s)", what, (int)r, r == CUPTI_SUCCESS ? "CUPTI_SUCCESS" : cupti_string(r));
    if (r == CUPTI_SUCCESS) return 1;
    set_reason("%s failed: %s (CUPTI error %d)%s", what, cupti_string(r), (int)r, cupti_hint(r));
    return 0;
}
#define CUPTI(fn, params) cupti_ok(g.f.fn(params), "cupti" #fn)

static int cuda_ok(cudaError_t e, const char *what)
{
    debug("%s -> %d (%s)", what, (int)e, cudaGetErrorName(e));
    if (e == cudaSuccess) return 1;
    set_reason("%s failed: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
    (void)cudaGetLastError(); /* clear a non-sticky error so later calls see a clean slate */
    return 0;
}

static int driver_ok(CUresult r, const char *what)
{
    debug("%s -> %d", what, (int)r);
    if (r == CUDA_SUCCESS) return 1;
    set_reason("%s failed: CUDA driver error %d", what, (int)r);
    return 0;
}

/* ------------------------------------------------------------------ loading */

/* dlsym hands back an object pointer; copying its bytes into the function
 * pointer is the POSIX-sanctioned way to turn it into one. */
static int resolve(void *lib, const char *name, void *fn_slot, size_t slot_size)
{
    dlerror();
    void *sym = dlsym(lib, name);
    if (!sym) {
        const char *e = dlerror();
        set_reason("%s not found in the loaded library (%s); CUPTI older than CUDA 12.6 has no range profiler",
                   name, e ? e : "no error text");
        return 0;
    }
    if (slot_size != sizeof sym) {
        set_reason("internal error: function pointer size for %s", name);
        return 0;
    }
    memcpy(fn_slot, &sym, sizeof sym);
    return 1;
}
#define RESOLVE(lib, field, name) resolve((lib), (name), &(field), sizeof(field))
/* The table's field names are the CUPTI names without "cupti". */
#define RESOLVE_CUPTI(field) RESOLVE(g.libcupti, g.f.field, "cupti" #field)

static int load_libcuda(void)
{
    g.libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!g.libcuda) {
        const char *e = dlerror();
        set_reason("no NVIDIA driver: dlopen(libcuda.so.1) failed: %s", e ? e : "no error text");
        return 0;
    }
    debug("dlopen(libcuda.so.1) ok");
    return RESOLVE(g.libcuda, g.cuCtxGetCurrent, "cuCtxGetCurrent") &&
           RESOLVE(g.libcuda, g.cuCtxGetDevice, "cuCtxGetDevice");
}

static int load_libcupti(void)
{
    /* The soname first (found through the binary's rpath into the CUDA
     * toolkit, or the loader path), then the usual toolkit locations.
     * HWC_CUPTI_LIB names a library explicitly when it lives elsewhere. */
    const char *candidates[] = {
        getenv("HWC_CUPTI_LIB"),
        "libcupti.so.13",
        "libcupti.so",
        "/usr/local/cuda/lib64/libcupti.so.13",
        "/usr/local/cuda/lib64/libcupti.so",
        "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13",
        "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so",
    };
    char last_error[256] = "";
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        if (!candidates[i] || !candidates[i][0]) continue;
        g.libcupti = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (g.libcupti) {
            debug("dlopen(%s) ok", candidates[i]);
            break;
        }
        const char *e = dlerror();
        snprintf(last_error, sizeof last_error, "%s", e ? e : candidates[i]);
        debug("dlopen(%s) failed: %s", candidates[i], last_error);
    }
    if (!g.libcupti) {
        set_reason("libcupti not found (tried libcupti.so.13, libcupti.so, /usr/local/cuda/lib64,"
                   " /usr/local/cuda/extras/CUPTI/lib64; set HWC_CUPTI_LIB=path): %s",
                   last_error);
        return 0;
    }
    /* GetResultString first, so the failures after it can be put in words. */
    return RESOLVE_CUPTI(GetResultString) &&
           RESOLVE_CUPTI(GetVersion) &&
           RESOLVE_CUPTI(ProfilerInitialize) &&
           RESOLVE_CUPTI(ProfilerDeviceSupported) &&
           RESOLVE_CUPTI(DeviceGetChipName) &&
           RESOLVE_CUPTI(ProfilerGetCounterAvailability) &&
           RESOLVE_CUPTI(ProfilerHostInitialize) &&
           RESOLVE_CUPTI(ProfilerHostConfigAddMetrics) &&
           RESOLVE_CUPTI(ProfilerHostGetConfigImageSize) &&
           RESOLVE_CUPTI(ProfilerHostGetConfigImage) &&
           RESOLVE_CUPTI(ProfilerHostGetNumOfPasses) &&
           RESOLVE_CUPTI(ProfilerHostEvaluateToGpuValues) &&
           RESOLVE_CUPTI(RangeProfilerEnable) &&
           RESOLVE_CUPTI(RangeProfilerDisable) &&
           RESOLVE_CUPTI(RangeProfilerGetCounterDataSize) &&
           RESOLVE_CUPTI(RangeProfilerCounterDataImageInitialize) &&
           RESOLVE_CUPTI(RangeProfilerSetConfig) &&
           RESOLVE_CUPTI(RangeProfilerStart) &&
           RESOLVE_CUPTI(RangeProfilerStop) &&
           RESOLVE_CUPTI(RangeProfilerPushRange) &&
           RESOLVE_CUPTI(RangeProfilerPopRange) &&
           RESOLVE_CUPTI(RangeProfilerDecodeData) &&
           RESOLVE_CUPTI(RangeProfilerGetCounterDataInfo);
}

/* ------------------------------------------------------------------ setup */

static const char *support_level(CUpti_Profiler_Support_Level s)
{
    switch (s) {
    case CUPTI_PROFILER_CONFIGURATION_SUPPORTED: return "supported";
    case CUPTI_PROFILER_CONFIGURATION_DISABLED: return "disabled";
    case CUPTI_PROFILER_CONFIGURATION_UNSUPPORTED: return "unsupported";
    default: return "unknown";
    }
}

static int check_device_supported(void)
{
    CUPTI_PARAMS(CUpti_Profiler_DeviceSupported_Params, p);
    p.cuDevice = g.dev;
    p.api = CUPTI_PROFILER_RANGE_PROFILING;
    if (!CUPTI(ProfilerDeviceSupported, &p)) return 0;
    debug("device %d: supported=%s architecture=%s sli=%s vGpu=%s confidentialCompute=%s cmp=%s wsl=%s",
          (int)g.dev, support_level(p.isSupported), support_level(p.architecture), support_level(p.sli),
          support_level(p.vGpu), support_level(p.confidentialCompute), support_level(p.cmp),
          support_level(p.wsl));
    if (p.isSupported == CUPTI_PROFILER_CONFIGURATION_SUPPORTED) return 1;
    set_reason("CUPTI range profiling is not supported on device %d: architecture %s, SLI %s, vGPU %s,"
               " confidential compute %s, CMP %s, WSL %s",
               (int)g.dev, support_level(p.architecture), support_level(p.sli), support_level(p.vGpu),
               support_level(p.confidentialCompute), support_level(p.cmp), support_level(p.wsl));
    return 0;
}

static int get_chip_name(void)
{
    CUPTI_PARAMS(CUpti_Device_GetChipName_Params, p);
    p.deviceIndex = (size_t)g.dev;
    if (!CUPTI(DeviceGetChipName, &p)) return 0;
    if (!p.pChipName || !p.pChipName[0]) {
        set_reason("cuptiDeviceGetChipName returned no name");
        return 0;
    }
    snprintf(g.chip, sizeof g.chip, "%s", p.pChipName);
    debug("chip %s", g.chip);
    return 1;
}

/* CUPTI releases after the 13.0 headers appended bAllowDeviceLevelCounters
 * to CUpti_Profiler_GetCounterAvailability_Params; a caller that passes the
 * older, shorter struct gets the old default, which in those releases may
 * leave device-level counters out of the image -- and the DRAM counters are
 * device-level. So when the library is newer than the headers, ask for them
 * explicitly with the longer struct (same fields, one more at the end), and
 * fall back to the short one if the library refuses it. */
typedef struct {
    size_t structSize;
    void *pPriv;
    CUcontext ctx;
    size_t counterAvailabilityImageSize;
    uint8_t *pCounterAvailabilityImage;
    uint8_t bAllowDeviceLevelCounters; /* a C++ bool in CUPTI's header: one byte */
} avail_params_ext;
_Static_assert(offsetof(avail_params_ext, pCounterAvailabilityImage) ==
                   offsetof(CUpti_Profiler_GetCounterAvailability_Params, pCounterAvailabilityImage),
               "avail_params_ext must extend CUpti_Profiler_GetCounterAvailability_Params");
_Static_assert(sizeof(avail_params_ext) > CUpti_Profiler_GetCounterAvailability_Params_STRUCT_SIZE,
               "the 13.0 headers already have a field after pCounterAvailabilityImage: use it");
#define AVAIL_EXT_SIZE (offsetof(avail_params_ext, bAllowDeviceLevelCounters) + 1)

static CUptiResult counter_availability(int ext, uint8_t *image, size_t *size)
{
    avail_params_ext p;
    memset(&p, 0, sizeof p);
    p.structSize = ext ? AVAIL_EXT_SIZE : CUpti_Profiler_GetCounterAvailability_Params_STRUCT_SIZE;
    p.ctx = g.ctx;
    p.counterAvailabilityImageSize = *size;
    p.pCounterAvailabilityImage = image;
    p.bAllowDeviceLevelCounters = 1; /* beyond structSize, so unread, when !ext */
    CUptiResult r = g.f.ProfilerGetCounterAvailability((CUpti_Profiler_GetCounterAvailability_Params *)&p);
    *size = p.counterAvailabilityImageSize;
    return r;
}

/* The availability image tells the host side which counters this context may
 * read; it must be taken before the range profiler is enabled. */
static int get_counter_availability(uint32_t cupti_version)
{
    int ext = cupti_version > CUPTI_API_VERSION;
    size_t size = 0;
    CUptiResult r = counter_availability(ext, NULL, &size); /* size query */
    if (ext && r == CUPTI_ERROR_INVALID_PARAMETER) {
        debug("cuptiProfilerGetCounterAvailability refused bAllowDeviceLevelCounters; using the 13.0 struct");
        ext = 0;
        size = 0;
        r = counter_availability(ext, NULL, &size);
    }
    if (!cupti_ok(r, ext ? "cuptiProfilerGetCounterAvailability (size, device-level counters allowed)"
                         : "cuptiProfilerGetCounterAvailability (size)"))
        return 0;
    if (!size) {
        set_reason("cuptiProfilerGetCounterAvailability reported an empty image");
        return 0;
    }
    g.avail = malloc(size);
    if (!g.avail) {
        set_reason("out of host memory (%zu bytes for the counter availability image)", size);
        return 0;
    }
    g.avail_size = size;
    if (!cupti_ok(counter_availability(ext, g.avail, &size), "cuptiProfilerGetCounterAvailability")) return 0;
    debug("counter availability image: %zu bytes", g.avail_size);
    return 1;
}

/* Host side: turn the metric names into a config image (which counters, how
 * they are scheduled) and confirm it is one pass. */
static int build_config(void)
{
    hwc_host_initialize_params hi;
    memset(&hi, 0, sizeof hi);
    hi.structSize = HWC_HOST_INITIALIZE_PARAMS_SIZE;
    hi.profilerType = HWC_PROFILER_TYPE_RANGE_PROFILER;
    hi.pChipName = g.chip;
    hi.pCounterAvailabilityImage = g.avail;
    if (!CUPTI(ProfilerHostInitialize, &hi)) return 0;
    g.host = hi.pHostObject;

    hwc_host_config_add_metrics_params am;
    memset(&am, 0, sizeof am);
    am.structSize = HWC_HOST_CONFIG_ADD_METRICS_PARAMS_SIZE;
    am.pHostObject = g.host;
    am.ppMetricNames = k_metrics;
    am.numMetrics = N_METRICS;
    if (!CUPTI(ProfilerHostConfigAddMetrics, &am)) return 0;

    hwc_host_get_config_image_size_params cs;
    memset(&cs, 0, sizeof cs);
    cs.structSize = HWC_HOST_GET_CONFIG_IMAGE_SIZE_PARAMS_SIZE;
    cs.pHostObject = g.host;
    if (!CUPTI(ProfilerHostGetConfigImageSize, &cs)) return 0;
    if (!cs.configImageSize) {
        set_reason("cuptiProfilerHostGetConfigImageSize reported an empty config image");
        return 0;
    }
    g.config_size = cs.configImageSize;
    g.config = malloc(g.config_size); /* malloc's alignment covers CUPTI's align(8) */
    if (!g.config) {
        set_reason("out of host memory (%zu bytes for the config image)", g.config_size);
        return 0;
    }

    hwc_host_get_config_image_params ci;
    memset(&ci, 0, sizeof ci);
    ci.structSize = HWC_HOST_GET_CONFIG_IMAGE_PARAMS_SIZE;
    ci.pHostObject = g.host;
    ci.configImageSize = g.config_size;
    ci.pConfigImage = g.config;
    if (!CUPTI(ProfilerHostGetConfigImage, &ci)) return 0;

    hwc_host_get_num_of_passes_params np;
    memset(&np, 0, sizeof np);
    np.structSize = HWC_HOST_GET_NUM_OF_PASSES_PARAMS_SIZE;
    np.configImageSize = g.config_size;
    np.pConfigImage = g.config;
    if (!CUPTI(ProfilerHostGetNumOfPasses, &np)) return 0;
    debug("config image: %zu bytes, %zu pass(es)", g.config_size, np.numOfPasses);
    if (np.numOfPasses != 1) {
        set_reason("%s and %s need %zu passes on %s; only single-pass collection is supported", k_metrics[0],
                   k_metrics[1], np.numOfPasses, g.chip);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ one measurement */

/* Undo whatever of Start/Enable happened, ignoring errors: used when a
 * measurement fails halfway, so the next one starts from nothing. */
static void teardown_range_profiler(void)
{
    if (g.pushed) {
        CUPTI_PARAMS(CUpti_RangeProfiler_PopRange_Params, p);
        p.pRangeProfilerObject = g.rp;
        (void)cupti_ok(g.f.RangeProfilerPopRange(&p), "cuptiRangeProfilerPopRange (cleanup)");
        g.pushed = 0;
    }
    if (g.started) {
        CUPTI_PARAMS(CUpti_RangeProfiler_Stop_Params, p);
        p.pRangeProfilerObject = g.rp;
        (void)cupti_ok(g.f.RangeProfilerStop(&p), "cuptiRangeProfilerStop (cleanup)");
        g.started = 0;
    }
    if (g.rp) {
        CUPTI_PARAMS(CUpti_RangeProfiler_Disable_Params, p);
        p.pRangeProfilerObject = g.rp;
        (void)cupti_ok(g.f.RangeProfilerDisable(&p), "cuptiRangeProfilerDisable (cleanup)");
        g.rp = NULL;
    }
}

static int measure_begin(void)
{
    if (g.rp) {
        set_reason("hwc_begin called while a measurement is already open");
        return -1;
    }
    /* Earlier work must not leak into the range. */
    if (!cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize (before the range)")) return -1;

    CUPTI_PARAMS(CUpti_RangeProfiler_Enable_Params, en);
    en.ctx = g.ctx;
    if (!CUPTI(RangeProfilerEnable, &en)) return -1;
    g.rp = en.pRangeProfilerObject;
    if (!g.rp) {
        set_reason("cuptiRangeProfilerEnable returned no profiler object");
        return -1;
    }

    {
        /* Asked after every Enable: each Enable makes a new profiler object,
         * and this call is what tells that object which metrics it collects.
         * Skipping it on the second measurement made CounterDataImageInitialize
         * crash (seen on an H200, CUDA 13.0). One range, one nesting level:
         * the image holds exactly one result. */
        CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataSize_Params, sz);
        sz.pRangeProfilerObject = g.rp;
        sz.pMetricNames = k_metrics;
        sz.numMetrics = N_METRICS;
        sz.maxNumOfRanges = 1;
        sz.maxNumRangeTreeNodes = 1;
        if (!CUPTI(RangeProfilerGetCounterDataSize, &sz)) goto fail;
        if (!sz.counterDataSize) {
            set_reason("cuptiRangeProfilerGetCounterDataSize reported an empty image");
            goto fail;
        }
        free(g.counter); /* and a fresh image for the fresh object (5-6 KB) */
        g.counter = malloc(sz.counterDataSize);
        if (!g.counter) {
            set_reason("out of host memory (%zu bytes for the counter data image)", sz.counterDataSize);
            goto fail;
        }
        g.counter_size = sz.counterDataSize;
        debug("counter data image: %zu bytes", g.counter_size);
    }

    /* A fresh image each time: the previous measurement's range must not be
     * read back as this one's. */
    CUPTI_PARAMS(CUpti_RangeProfiler_CounterDataImage_Initialize_Params, ci);
    ci.pRangeProfilerObject = g.rp;
    ci.counterDataSize = g.counter_size;
    ci.pCounterData = g.counter;
    if (!CUPTI(RangeProfilerCounterDataImageInitialize, &ci)) goto fail;

    /* User range: the range is exactly push..pop, whatever runs in it (kernels
     * and copies alike), where auto range would make one range per kernel.
     * User replay: nothing is replayed behind our back; with one pass there is
     * nothing to replay. */
    CUPTI_PARAMS(CUpti_RangeProfiler_SetConfig_Params, sc);
    sc.pRangeProfilerObject = g.rp;
    sc.configSize = g.config_size;
    sc.pConfig = g.config;
    sc.counterDataImageSize = g.counter_size;
    sc.pCounterDataImage = g.counter;
    sc.range = CUPTI_UserRange;
    sc.replayMode = CUPTI_UserReplay;
    sc.maxRangesPerPass = 1;
    sc.numNestingLevels = 1;
    sc.minNestingLevel = 1;
    sc.passIndex = 0;
    sc.targetNestingLevel = 1;
    if (!CUPTI(RangeProfilerSetConfig, &sc)) goto fail;

    CUPTI_PARAMS(CUpti_RangeProfiler_Start_Params, st);
    st.pRangeProfilerObject = g.rp;
    if (!CUPTI(RangeProfilerStart, &st)) goto fail;
    g.started = 1;

    CUPTI_PARAMS(CUpti_RangeProfiler_PushRange_Params, pu);
    pu.pRangeProfilerObject = g.rp;
    pu.pRangeName = RANGE_NAME;
    if (!CUPTI(RangeProfilerPushRange, &pu)) goto fail;
    g.pushed = 1;
    g.reason[0] = 0;
    return 0;

fail:
    teardown_range_profiler();
    return -1;
}

/* allow_empty: the availability probe measures an empty range, which CUPTI
 * may record as no range at all; a real measurement treats that as an error. */
static int measure_end(double *rd, double *wr, int allow_empty)
{
    *rd = *wr = 0;
    if (!g.rp || !g.pushed) {
        set_reason("hwc_end called without a successful hwc_begin");
        return -1;
    }
    /* Everything issued in the range must have reached memory before the
     * range closes. */
    int ok = cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize (before closing the range)");
    char first_error[sizeof g.reason];
    snprintf(first_error, sizeof first_error, "%s", ok ? "" : g.reason);

    CUPTI_PARAMS(CUpti_RangeProfiler_PopRange_Params, po);
    po.pRangeProfilerObject = g.rp;
    g.pushed = 0; /* popped or not, it is not retried */
    if (!CUPTI(RangeProfilerPopRange, &po) && ok) {
        ok = 0;
        snprintf(first_error, sizeof first_error, "%s", g.reason);
    }

    CUPTI_PARAMS(CUpti_RangeProfiler_Stop_Params, sp);
    sp.pRangeProfilerObject = g.rp;
    g.started = 0;
    if (!CUPTI(RangeProfilerStop, &sp)) {
        if (ok) snprintf(first_error, sizeof first_error, "%s", g.reason);
        ok = 0;
    } else {
        debug("stop: passIndex=%zu targetNestingLevel=%zu isAllPassSubmitted=%u", sp.passIndex,
              sp.targetNestingLevel, (unsigned)sp.isAllPassSubmitted);
        if (!sp.isAllPassSubmitted && ok) {
            ok = 0;
            snprintf(first_error, sizeof first_error,
                     "CUPTI wants another pass after cuptiRangeProfilerStop; only single-pass collection is"
                     " supported");
        }
    }

    if (ok) {
        CUPTI_PARAMS(CUpti_RangeProfiler_DecodeData_Params, dd);
        dd.pRangeProfilerObject = g.rp;
        if (!CUPTI(RangeProfilerDecodeData, &dd)) {
            ok = 0;
            snprintf(first_error, sizeof first_error, "%s", g.reason);
        } else {
            debug("decode: %zu range(s) dropped", dd.numOfRangeDropped);
            if (dd.numOfRangeDropped) {
                ok = 0;
                snprintf(first_error, sizeof first_error, "CUPTI dropped %zu range(s) while decoding",
                         dd.numOfRangeDropped);
            }
        }
    }

    /* The decoded image and the host object are all evaluation needs, so the
     * profiler goes away now, whatever happened above. */
    CUPTI_PARAMS(CUpti_RangeProfiler_Disable_Params, di);
    di.pRangeProfilerObject = g.rp;
    g.rp = NULL;
    if (!CUPTI(RangeProfilerDisable, &di) && ok) {
        ok = 0;
        snprintf(first_error, sizeof first_error, "%s", g.reason);
    }
    if (!ok) {
        snprintf(g.reason, sizeof g.reason, "%s", first_error);
        return -1;
    }

    CUPTI_PARAMS(CUpti_RangeProfiler_GetCounterDataInfo_Params, in);
    in.pCounterDataImage = g.counter;
    in.counterDataImageSize = g.counter_size;
    if (!CUPTI(RangeProfilerGetCounterDataInfo, &in)) return -1;
    debug("counter data: %zu range(s)", in.numTotalRanges);
    if (in.numTotalRanges == 0) {
        if (allow_empty) return 0;
        set_reason("CUPTI recorded no range between hwc_begin and hwc_end (no GPU work in it?)");
        return -1;
    }

    /* One range is configured; should CUPTI ever split it, the parts add up. */
    for (size_t r = 0; r < in.numTotalRanges; r++) {
        double v[N_METRICS] = {0, 0};
        hwc_host_evaluate_to_gpu_values_params ev;
        memset(&ev, 0, sizeof ev);
        ev.structSize = HWC_HOST_EVALUATE_TO_GPU_VALUES_PARAMS_SIZE;
        ev.pHostObject = g.host;
        ev.pCounterDataImage = g.counter;
        ev.counterDataImageSize = g.counter_size;
        ev.rangeIndex = r;
        ev.ppMetricNames = k_metrics;
        ev.numMetrics = N_METRICS;
        ev.pMetricValues = v;
        if (!CUPTI(ProfilerHostEvaluateToGpuValues, &ev)) return -1;
        debug("range %zu: %s = %.0f, %s = %.0f", r, k_metrics[0], v[0], k_metrics[1], v[1]);
        if (!(v[0] >= 0) || !(v[1] >= 0)) { /* also catches NaN */
            set_reason("CUPTI evaluated invalid values: %s = %g, %s = %g", k_metrics[0], v[0], k_metrics[1],
                       v[1]);
            return -1;
        }
        *rd += v[0];
        *wr += v[1];
    }
    return 0;
}

/* ------------------------------------------------------------------ public API */

static int probe(void)
{
    const char *dbg = getenv("HWC_DEBUG");
    g.debug = dbg && dbg[0] && strcmp(dbg, "0") != 0;

    /* The driver first: without it there is nothing to ask, and asking cudart
     * would only say the same thing less clearly. */
    if (!load_libcuda()) return 0;
    /* The primary context of device 0, as cudart uses it. */
    if (!cuda_ok(cudaFree(0), "cudaFree(0) (creating the primary context)")) return 0;
    if (!driver_ok(g.cuCtxGetCurrent(&g.ctx), "cuCtxGetCurrent")) return 0;
    if (!g.ctx) {
        set_reason("no current CUDA context after cudaFree(0)");
        return 0;
    }
    if (!driver_ok(g.cuCtxGetDevice(&g.dev), "cuCtxGetDevice")) return 0;
    debug("context %p on device %d", (void *)g.ctx, (int)g.dev);

    if (!load_libcupti()) return 0;
    /* Only informs the availability call: a failure here is not fatal. */
    uint32_t version = 0;
    if (CUPTI(GetVersion, &version)) debug("CUPTI API version %u (headers: %u)", version, (unsigned)CUPTI_API_VERSION);

    CUPTI_PARAMS(CUpti_Profiler_Initialize_Params, pi);
    if (!CUPTI(ProfilerInitialize, &pi)) return 0;

    if (!check_device_supported() || !get_chip_name() || !get_counter_availability(version) || !build_config()) return 0;

    /* A trial run of the whole sequence: permissions and device quirks show
     * up at Enable/SetConfig/Start, and "available" should mean it works.
     * A small memset gives the range some GPU work, in case CUPTI treats an
     * empty range differently from a real one. */
    void *scratch = NULL;
    const size_t scratch_bytes = (size_t)1 << 20;
    if (!cuda_ok(cudaMalloc(&scratch, scratch_bytes), "cudaMalloc (probe scratch)")) return 0;
    double rd = 0, wr = 0;
    int ok = measure_begin() == 0;
    if (ok) {
        int set = cuda_ok(cudaMemset(scratch, 0x5a, scratch_bytes), "cudaMemset (probe)");
        ok = measure_end(&rd, &wr, 1) == 0 && set;
    }
    (void)cudaFree(scratch);
    if (!ok) return 0;
    debug("probe: ok (%.0f bytes read, %.0f written for a %zu-byte memset)", rd, wr, scratch_bytes);
    return 1;
}

int hwc_available(void)
{
    if (g.state >= 0) return g.state;
    if (getenv("STF_NO_HWC")) {
        /* Another profiler (ncu) owns the counters: stay out of its way. */
        snprintf(g.reason, sizeof g.reason, "unavailable: disabled by STF_NO_HWC");
        g.state = 0;
        return 0;
    }
    g.state = probe();
    if (!g.state) {
        /* Prefix in place (cutting the tail if it must): every path above
         * leaves the cause in g.reason. */
        static const char prefix[] = "unavailable: ";
        const size_t plen = sizeof prefix - 1;
        size_t n = strlen(g.reason);
        if (n > sizeof g.reason - 1 - plen) n = sizeof g.reason - 1 - plen;
        memmove(g.reason + plen, g.reason, n);
        memcpy(g.reason, prefix, plen);
        g.reason[plen + n] = 0;
    } else {
        g.reason[0] = 0;
    }
    return g.state;
}

const char *hwc_reason(void) { return g.reason; }

int hwc_begin(void)
{
    if (!hwc_available()) return -1;
    return measure_begin();
}

int hwc_end(double *dram_read_bytes, double *dram_write_bytes)
{
    double rd = 0, wr = 0;
    int rc = -1;
    if (!hwc_available()) {
        /* keep the availability reason */
    } else {
        rc = measure_end(&rd, &wr, 0);
    }
    if (dram_read_bytes) *dram_read_bytes = rc == 0 ? rd : 0;
    if (dram_write_bytes) *dram_write_bytes = rc == 0 ? wr : 0;
    return rc;
}

#endif /* HAVE_CUDA */
