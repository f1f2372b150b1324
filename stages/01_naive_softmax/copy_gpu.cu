/* The GPU floor: a copy kernel, timed exactly like the softmax kernels (CUDA
 * events, L2 flushed before each run), so "% of copy" compares like with like.
 * 16-byte loads and stores, four in flight per thread, a 64 KiB chunk per block.
 *
 * Traffic: 1 load + 1 store per element.
 * Run: build/bin/01_naive_softmax (the "copy" row). */
#include "gpu_check.h"
#include "naive.h"
#include "softmax_device.cuh"

/* Each block copies one contiguous 64 KiB chunk, four 16-byte vectors per
 * thread, all four loads issued before the first store: the access pattern
 * of the softmax kernels (one block per row). A grid-stride loop over the
 * whole buffer ran at 89% of cudaMemcpy on the H200; contiguous chunks keep
 * each block's requests within few DRAM pages. */
__global__ void __launch_bounds__(1024) copy16_kernel(const int4 *__restrict__ x, int4 *__restrict__ y, size_t n16)
{
    const size_t base = (size_t)blockIdx.x * 4096 + threadIdx.x;
    int4 v[4];
#pragma unroll
    for (int u = 0; u < 4; u++)
        if (base + u * 1024 < n16) v[u] = __ldcs(x + base + u * 1024);
#pragma unroll
    for (int u = 0; u < 4; u++)
        if (base + u * 1024 < n16) y[base + u * 1024] = v[u];
}

__global__ void copy2_kernel(const uint16_t *__restrict__ x, uint16_t *__restrict__ y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) y[i] = x[i];
}

static int g_sms;

extern "C" void copy_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt)
{
    if (!g_sms) CUDA_CHECK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0));
    const size_t bytes = rows * cols * dtype_size(dt);
    if (bytes % 16 == 0) {
        const size_t n16 = bytes / 16;
        copy16_kernel<<<(unsigned)((n16 + 4095) / 4096), 1024>>>((const int4 *)x, (int4 *)y, n16);
    } else {
        copy2_kernel<<<(unsigned)g_sms * 8, 256>>>((const uint16_t *)x, (uint16_t *)y, bytes / 2); /* bytes is even */
    }
    LAUNCH_CHECK();
}
