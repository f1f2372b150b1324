/* The GPU floor: a copy kernel, timed exactly like the softmax kernels (CUDA
 * events, L2 flushed before each run), so "% of copy" compares like with like.
 * 16-byte loads and stores, four in flight per thread, grid-stride.
 *
 * Traffic: 1 load + 1 store per element.
 * Run: build/bin/01_naive_softmax (the "copy" row). */
#include "gpu_check.h"
#include "naive.h"
#include "softmax_device.cuh"

__global__ void copy16_kernel(const int4 *__restrict__ x, int4 *__restrict__ y, size_t n16)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n16; i += 4 * stride) {
        int4 a = __ldcs(x + i), b = __ldcs(x + i + stride), c = __ldcs(x + i + 2 * stride), d = __ldcs(x + i + 3 * stride);
        __stcs(y + i, a);
        __stcs(y + i + stride, b);
        __stcs(y + i + 2 * stride, c);
        __stcs(y + i + 3 * stride, d);
    }
    for (; i < n16; i += stride) __stcs(y + i, __ldcs(x + i));
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
    const unsigned blocks = (unsigned)g_sms * 8; /* 8 x 256 threads: 2048 per SM, full occupancy */
    if (bytes % 16 == 0) {
        copy16_kernel<<<blocks, 256>>>((const int4 *)x, (int4 *)y, bytes / 16);
    } else {
        copy2_kernel<<<blocks, 256>>>((const uint16_t *)x, (uint16_t *)y, bytes / 2); /* bytes is even */
    }
    LAUNCH_CHECK();
}
