/* GPU helpers: device queries, checked allocation and copies, the counter-based
 * input generator, output poisoning, non-finite counting, the L2 flush, event
 * timing and the copy-bandwidth ceiling. See gpu.h for the contract. */
#include "gpu.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_check.h"
#include "rng.h"
#include "timing.h"

static int g_state = -1; /* -1 unknown, 0 unavailable, 1 available */
static char g_reason[256] = "not checked";

extern "C" int gpu_available(void)
{
    if (g_state >= 0) return g_state;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(g_reason, sizeof g_reason, "no usable CUDA device (%s: %s)", cudaGetErrorName(e),
                 cudaGetErrorString(e));
        (void)cudaGetLastError();
        g_state = 0;
    } else if (n == 0) {
        snprintf(g_reason, sizeof g_reason, "the CUDA driver reports no device");
        g_state = 0;
    } else {
        CUDA_CHECK(cudaSetDevice(0));
        g_state = 1;
        g_reason[0] = 0;
    }
    return g_state;
}

extern "C" const char *gpu_unavailable_reason(void)
{
    gpu_available();
    return g_reason;
}

extern "C" void gpu_info(gpu_info_t *info)
{
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sm_count = p.multiProcessorCount;
    info->l2_bytes = (size_t)p.l2CacheSize;
    info->total_mem = p.totalGlobalMem;
    info->smem_optin = p.sharedMemPerBlockOptin;
    CUDA_CHECK(cudaDriverGetVersion(&info->driver_version));
    CUDA_CHECK(cudaRuntimeGetVersion(&info->runtime_version));
}

extern "C" void *gpu_try_malloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear it: not sticky */
        return NULL;
    }
    CUDA_CHECK(e);
    return p;
}

extern "C" void *gpu_malloc(size_t bytes, const char *what)
{
    void *p = gpu_try_malloc(bytes);
    if (!p) {
        size_t f = 0, t = 0;
        CUDA_CHECK(cudaMemGetInfo(&f, &t));
        fprintf(stderr, "error: %s needs %.2f GiB of device memory; %.2f GiB of %.2f GiB are free\n",
                what, bytes / 1073741824.0, f / 1073741824.0, t / 1073741824.0);
        exit(2);
    }
    return p;
}

extern "C" void gpu_free(void *p)
{
    if (p) CUDA_CHECK(cudaFree(p));
}

extern "C" void gpu_mem_info(size_t *f, size_t *t) { CUDA_CHECK(cudaMemGetInfo(f, t)); }
extern "C" void gpu_h2d(void *d, const void *s, size_t b) { CUDA_CHECK(cudaMemcpy(d, s, b, cudaMemcpyHostToDevice)); }
extern "C" void gpu_d2h(void *d, const void *s, size_t b) { CUDA_CHECK(cudaMemcpy(d, s, b, cudaMemcpyDeviceToHost)); }
extern "C" void gpu_d2h_rows(void *d, const void *s, size_t first, size_t rows, size_t row_bytes)
{
    CUDA_CHECK(cudaMemcpy(d, (const char *)s + first * row_bytes, rows * row_bytes, cudaMemcpyDeviceToHost));
}
extern "C" void gpu_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

static unsigned grid_for(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 65535u * 16u ? (b ? b : 1) : 65535u * 16u); /* grid-stride beyond */
}

__global__ void fill_f32(float *d, size_t n, uint64_t seed, uint32_t stream, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = rng_logit(seed, stream, i, scale);
}
__global__ void fill_f16(__half *d, size_t n, uint64_t seed, uint32_t stream, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = __float2half_rn(rng_logit(seed, stream, i, scale));
}
__global__ void fill_bf16(__nv_bfloat16 *d, size_t n, uint64_t seed, uint32_t stream, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = __float2bfloat16_rn(rng_logit(seed, stream, i, scale));
}

extern "C" void gpu_fill_logits(void *d, dtype_t dt, size_t n, uint64_t seed, uint32_t stream, float scale)
{
    unsigned g = grid_for(n, 256);
    if (dt == DT_F16) fill_f16<<<g, 256>>>((__half *)d, n, seed, stream, scale);
    else if (dt == DT_BF16) fill_bf16<<<g, 256>>>((__nv_bfloat16 *)d, n, seed, stream, scale);
    else fill_f32<<<g, 256>>>((float *)d, n, seed, stream, scale);
    LAUNCH_CHECK();
}

extern "C" void gpu_poison(void *d, size_t bytes) { CUDA_CHECK(cudaMemset(d, 0xff, bytes)); }

__device__ __forceinline__ bool nonfinite_at(const void *d, int dt, size_t i)
{
    if (dt == DT_F32) return !isfinite(((const float *)d)[i]);
    unsigned short b = ((const unsigned short *)d)[i];
    return dt == DT_F16 ? (b & 0x7c00u) == 0x7c00u : (b & 0x7f80u) == 0x7f80u;
}

__global__ void count_nonfinite(const void *d, int dt, size_t n, unsigned long long *out)
{
    unsigned long long c = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        c += nonfinite_at(d, dt, i);
    for (int o = 16; o; o >>= 1) c += __shfl_down_sync(0xffffffffu, c, o);
    if ((threadIdx.x & 31) == 0 && c) atomicAdd(out, c);
}

extern "C" size_t gpu_count_nonfinite(const void *d, dtype_t dt, size_t n)
{
    unsigned long long *dc = NULL, hc = 0;
    CUDA_CHECK(cudaMalloc(&dc, sizeof *dc));
    CUDA_CHECK(cudaMemset(dc, 0, sizeof *dc));
    count_nonfinite<<<grid_for(n, 256) < 4096 ? grid_for(n, 256) : 4096, 256>>>(d, (int)dt, n, dc);
    LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpy(&hc, dc, sizeof hc, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(dc));
    return (size_t)hc;
}

static void *g_flush;
static size_t g_flush_bytes;

/* Registered after CUDA is up, so it runs before the runtime's own teardown:
 * a leak check then sees every allocation of ours freed. */
static void free_flush(void)
{
    if (g_flush) (void)cudaFree(g_flush);
    g_flush = NULL;
}

extern "C" void gpu_flush_l2(void)
{
    if (!g_flush) {
        gpu_info_t info;
        gpu_info(&info);
        g_flush_bytes = 2 * (info.l2_bytes ? info.l2_bytes : (64u << 20));
        g_flush = gpu_malloc(g_flush_bytes, "the L2 flush buffer");
        atexit(free_flush);
    }
    CUDA_CHECK(cudaMemsetAsync(g_flush, 0, g_flush_bytes, 0));
}

extern "C" double gpu_time_median_ms(void (*fn)(void *), void *arg, int warmup, int iters, int flush_l2)
{
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < warmup; i++) fn(arg);
    CUDA_CHECK(cudaDeviceSynchronize());
    double *t = (double *)malloc(sizeof(double) * (size_t)iters);
    if (!t) {
        fprintf(stderr, "error: out of host memory\n");
        exit(1);
    }
    for (int i = 0; i < iters; i++) {
        if (flush_l2) gpu_flush_l2();
        CUDA_CHECK(cudaEventRecord(a, 0));
        fn(arg);
        CUDA_CHECK(cudaEventRecord(b, 0));
        CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        t[i] = ms;
    }
    double m = median(t, (size_t)iters);
    free(t);
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    return m;
}

struct copy_arg { void *dst; const void *src; size_t bytes; };
static void do_copy(void *p)
{
    copy_arg *c = (copy_arg *)p;
    CUDA_CHECK(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, 0));
}

extern "C" double gpu_copy_gbps(void)
{
    static double cached;
    if (cached > 0) return cached;
    size_t bytes = (size_t)1 << 30; /* 1 GiB each way: far beyond any L2 */
    size_t f = 0, t = 0;
    CUDA_CHECK(cudaMemGetInfo(&f, &t));
    while (bytes > (64u << 20) && 2 * bytes + (256u << 20) > f) bytes >>= 1;
    copy_arg c;
    c.bytes = bytes;
    c.src = gpu_malloc(bytes, "the copy-bandwidth probe");
    c.dst = gpu_malloc(bytes, "the copy-bandwidth probe");
    gpu_fill_logits((void *)c.src, DT_F32, bytes / 4, 1, 0, 1.0f);
    double ms = gpu_time_median_ms(do_copy, &c, 3, 15, 0);
    gpu_free((void *)c.src);
    gpu_free(c.dst);
    cached = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
    return cached;
}
