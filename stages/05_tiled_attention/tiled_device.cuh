/* Device helpers shared by stage 05's kernels: the causal geometry of a tile,
 * tile loads from HBM into fp32 shared memory (converting 16-bit storage on
 * the way), cp.async, and the host-side plumbing (shared-memory opt-in,
 * occupancy) that every launcher needs. */
#ifndef STF_TILED_DEVICE_CUH
#define STF_TILED_DEVICE_CUH

#include <math.h>
#include <stdio.h>

#include "exp_base.h"
#include "gpu.h"
#include "gpu_check.h"
#include "softmax_device.cuh"
#include "tiled.h"

/* Keys visible to query row r (bottom-right causal alignment, attention_ref.h). */
__device__ __forceinline__ int tiled_visible(int r, int Nq, int Nk, int causal)
{
    return causal ? max(0, min(Nk, r + 1 + Nk - Nq)) : Nk;
}

/* 16 bytes from global to shared memory without passing through registers
 * (sm_80+). src_bytes = 0 fills the 16 bytes with zeros: rows past the end of
 * the sequence become zero rows, never uninitialised ones (a NaN there would
 * survive the mask as 0 * NaN). */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

/* ROWS x D elements (rows past `valid` read as zeros) from global memory,
 * rows contiguous, into shared memory as fp32 with a row stride of STRIDE
 * floats; NT threads share the work. fp32: cp.async (asynchronous, the caller
 * commits and waits); fp16/bf16: 16-byte loads converted to fp32 on the way
 * (synchronous). */
template <typename T, int ROWS, int D, int STRIDE, int NT>
__device__ __forceinline__ void tile_load(float *dst, const T *src, int valid)
{
    if constexpr (sizeof(T) == 4 && D % 4 == 0 && STRIDE % 4 == 0) {
        constexpr int CH = D / 4;
        for (int x = threadIdx.x; x < ROWS * CH; x += NT) {
            const int r = x / CH, c = (x % CH) * 4;
            const bool ok = r < valid;
            cp_async16(dst + r * STRIDE + c, src + (size_t)(ok ? r : 0) * D + c, ok ? 16 : 0);
        }
    } else if constexpr (sizeof(T) == 2 && D % 8 == 0 && STRIDE % 4 == 0) {
        constexpr int CH = D / 8;
        for (int x = threadIdx.x; x < ROWS * CH; x += NT) {
            const int r = x / CH, c = (x % CH) * 8;
            float f[8];
            if (r < valid) {
                const vec_t<T, 8> w = ld_vec<T, 8>(src + (size_t)r * D + c);
#pragma unroll
                for (int e = 0; e < 8; e++) f[e] = to_f(w.v[e]);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) f[e] = 0.0f;
            }
            *reinterpret_cast<float4 *>(dst + r * STRIDE + c) = make_float4(f[0], f[1], f[2], f[3]);
            *reinterpret_cast<float4 *>(dst + r * STRIDE + c + 4) = make_float4(f[4], f[5], f[6], f[7]);
        }
    } else {
        for (int x = threadIdx.x; x < ROWS * D; x += NT) {
            const int r = x / D, c = x % D;
            dst[r * STRIDE + c] = r < valid ? to_f(src[(size_t)r * D + c]) : 0.0f;
        }
    }
}

/* The same, always synchronous and element by element (the plain kernels). */
template <typename T, int ROWS, int D, int STRIDE, int NT>
__device__ __forceinline__ void tile_load_plain(float *dst, const T *src, int valid)
{
    for (int x = threadIdx.x; x < ROWS * D; x += NT) {
        const int r = x / D, c = x % D;
        dst[r * STRIDE + c] = r < valid ? to_f(src[(size_t)r * D + c]) : 0.0f;
    }
}

/* scale * log2(e), rounded once: the kernels compute exp2f(s') on logits
 * s' = (q . k) * scale log2 e (stage 03's fexp with the constant folded in). */
static inline float tiled_scale_log2(const attn_shape_t *s) { return (float)((double)s->scale * STF_LOG2E); }

/* Raises a kernel's dynamic shared-memory limit (once is enough, but cheap)
 * and fills info's occupancy fields when a device answers. */
template <typename K>
static void tiled_kernel_setup(K kernel, size_t smem)
{
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
}

template <typename K>
static void tiled_kernel_info(K kernel, int threads, size_t smem, tiled_gpu_info_t *info)
{
    info->threads = threads;
    info->smem = smem;
    info->blocks_per_sm = 0;
    info->regs = 0;
    if (!gpu_available()) return;
    gpu_info_t g;
    gpu_info(&g);
    if (smem > g.smem_optin) return;
    tiled_kernel_setup(kernel, smem);
    int n = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem));
    cudaFuncAttributes a;
    CUDA_CHECK(cudaFuncGetAttributes(&a, kernel));
    info->blocks_per_sm = n;
    info->regs = a.numRegs;
}

/* Shapes every kernel declines: sizes beyond int indexing, or a grid too large. */
static inline int tiled_gpu_limits(const attn_shape_t *s, unsigned long long blocks, char *why, size_t n)
{
    if (s->seq_q > 0x7fffffffu || s->seq_kv > 0x7fffffffu || (double)s->seq_kv * (double)s->dim > 2147483647.0) {
        snprintf(why, n, "sequence lengths past 2^31 / d: the kernels index one head with int");
        return 0;
    }
    if (blocks > 0x7fffffffull) {
        snprintf(why, n, "%llu thread blocks: more than a grid holds", blocks);
        return 0;
    }
    return 1;
}

static inline int tiled_smem_fits(size_t smem, char *why, size_t n)
{
    if (!gpu_available()) return 1; /* decided when a device exists */
    gpu_info_t g;
    gpu_info(&g);
    if (smem > g.smem_optin) {
        snprintf(why, n, "needs %.1f KiB of shared memory per block; this GPU allows %.1f KiB", (double)smem / 1024,
                 (double)g.smem_optin / 1024);
        return 0;
    }
    return 1;
}

#endif
