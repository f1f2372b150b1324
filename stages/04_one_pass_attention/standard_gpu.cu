/* Stage 04, standard attention on the GPU: cuBLAS for the two GEMMs, a
 * softmax in between, the N x N arrays S and P in device memory.
 *     S = Q K^T * scale   cublasGemmStridedBatchedEx, B H batches, S in fp32
 *     [causal: mask_kernel writes -inf above the diagonal of S]
 *     P = softmax(S)      softmax_f32s_kernel: stage 03's per-thread (m, d)
 *                         state (online.cuh) and its block merge, then one
 *                         sweep writing P in the storage type (0 for a row of
 *                         all -inf, PyTorch's SDPA convention)
 *     O = P V             cublasGemmStridedBatchedEx on P in the storage type
 * What changes from stage 03: the softmax is the middle of three kernels.
 * Inputs fp32, fp16 or bf16; every GEMM accumulates in fp32
 * (CUBLAS_COMPUTE_32F), and the first one writes its accumulator as it is
 * (an fp32 S: cuBLAS takes fp16/bf16 A and B with an fp32 C), so the logits
 * are rounded once, not again to 16 bits before the exponential. For fp32
 * there is no TF32: the check against fp64 stays at fp32's tolerance. For
 * fp16/bf16 the tensor cores run, and reductions in reduced precision
 * (split-K partial sums stored in fp16) are forbidden, because the tolerance
 * assumes fp32 accumulation throughout.
 * standard-s16 (the demonstration) is the same with S in the storage type
 * and stage 03's softmax on it (merge-onchip or two-sweep online).
 *
 * Memory traffic (model, as standard_cpu.c):
 *   standard:     bytes = es (4 B H N d + 2 B H N^2) + 4 (3 B H N^2 + [causal] B H N (N - 1) / 2)
 *   standard-s16: bytes = es (4 B H N d + (3 + r) B H N^2 + [causal] B H N (N - 1) / 2)
 * r = 1 (row-on-chip softmax, N <= 32768) or 2. The GEMMs' operand re-reads
 * are assumed to hit the L2; the measured HBM bytes say whether they do.
 * Device memory: S and P take B H N^2 (4 + es) bytes (2 es for standard-s16;
 * the driver allocates them, and reports "does not fit" when they cannot be).
 *
 * cuBLAS is column-major; a row-major [N, d] array is a column-major d x N
 * matrix (its transpose). So S (row-major N x N) is computed as the
 * column-major S^T = K Q^T: A = K with op T, B = Q with op N. And O
 * (row-major N x d) as the column-major O^T = V^T P^T: A = V, B = P, both op N.
 *
 * Run: build/bin/04_one_pass_attention [--dtype fp16] [--seq 8192] [--causal] [--kernel standard,standard-s16] */
#include <cublas_v2.h>
#include <math.h>

#include "../03_online_softmax/online.cuh"
#include "../03_online_softmax/online.h"
#include "attention.h"
#include "gpu_check.h"
#include "softmax_device.cuh"
#include "standard_gpu.h"

void attn_cublas_check(cublasStatus_t st, const char *what, const char *file, int line)
{
    if (st != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "%s:%d: cuBLAS error %d (%s)\n  in: %s\n", file, line, (int)st, cublasGetStatusString(st), what);
        exit(1);
    }
}

/* One handle for the process, created on first use (the untimed checked
 * run), on the legacy default stream like every other launch here. It is
 * destroyed at exit, before the CUDA runtime's own teardown (registered
 * earlier, so run later), so that a leak check sees no cuBLAS workspace left. */
static cublasHandle_t g_handle;

static void destroy_handle(void)
{
    if (g_handle) (void)cublasDestroy(g_handle); /* nothing useful to do on failure at exit */
    g_handle = NULL;
}

cublasHandle_t attn_cublas_handle(void)
{
    cublasHandle_t &h = g_handle;
    if (!h) {
        CUBLAS_CHECK(cublasCreate(&h));
        atexit(destroy_handle);
        CUBLAS_CHECK(cublasSetMathMode(h, (cublasMath_t)(CUBLAS_DEFAULT_MATH |
                                                         CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    }
    return h;
}

/* Writes -inf at every key j > i + Nk - Nq of every row of S (bottom-right
 * alignment): only the masked part is touched (writes, no reads). One block
 * per query row. */
template <typename T>
__global__ void mask_kernel(T *S, int Nq, int Nk)
{
    const unsigned long long row = blockIdx.x;
    const int i = (int)(row % (unsigned)Nq);
    T *sr = S + row * (unsigned long long)Nk;
    /* keys j > i + Nk - Nq; a query row with no visible key (Nq > Nk) is masked whole */
    const int first = i + 1 + (Nk - Nq) > 0 ? i + 1 + (Nk - Nq) : 0;
    for (int j = first + (int)threadIdx.x; j < Nk; j += (int)blockDim.x) sr[j] = from_f<T>(-INFINITY);
}

/* P = softmax(S) for one row of fp32 S per block, P in T: stage 03's
 * online state per thread, merged across the block, then one sweep. */
template <typename T, int VEC>
__global__ void softmax_f32s_kernel(const float *__restrict__ S, T *__restrict__ P, int cols)
{
    __shared__ md_t scratch[32];
    const float *sr = S + (size_t)blockIdx.x * cols;
    T *pr = P + (size_t)blockIdx.x * cols;
    const int nvec = cols / VEC;
    md_t st = online_thread_state<float, VEC>(sr, nvec);
    st = block_reduce(st, op_md(), scratch);
    const float ms = exp_base(st.m), inv = 1.0f / st.d;
    const bool empty = st.d == 0.0f; /* every logit -inf: no key to attend to */
    sweep_row<float, VEC, 4, true>(sr, nvec, [&](int i, const vec_t<float, VEC> &v) {
#pragma unroll
        for (int k = 0; k < VEC; k++) pr[(size_t)i * VEC + k] = from_f<T>(empty ? 0.0f : fexp(v.v[k] - ms) * inv);
    });
}

static void standard_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws, bool s16)
{
    const int Nq = (int)s->seq_q, Nk = (int)s->seq_kv, d = (int)s->dim, batches = (int)(s->batch * s->heads);
    const long long nn = (long long)Nq * Nk, ndq = (long long)Nq * d, ndk = (long long)Nk * d;
    const size_t es = dtype_size(s->dt), rows = (size_t)batches * (size_t)Nq;
    const cudaDataType_t ty = s->dt == DT_F16 ? CUDA_R_16F : s->dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cudaDataType_t sty = s16 ? ty : CUDA_R_32F;
    const size_t ses = s16 ? es : sizeof(float);
    void *S = ws, *P = (char *)ws + (size_t)batches * (size_t)nn * ses;
    const float alpha = s->scale, one = 1.0f, zero = 0.0f;
    cublasHandle_t h = attn_cublas_handle();

    /* S^T (Nk x Nq, col-major) = K (op T of the d x Nk col-major K^T) * Q^T (d x Nq) */
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, Nk, Nq, d, &alpha, k, ty, d, ndk, q, ty, d, ndq,
                                            &zero, S, sty, Nk, nn, batches, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (s->causal) {
        if (!s16) mask_kernel<float><<<(unsigned)rows, 256>>>((float *)S, Nq, Nk);
        else if (s->dt == DT_F16) mask_kernel<__half><<<(unsigned)rows, 256>>>((__half *)S, Nq, Nk);
        else if (s->dt == DT_BF16) mask_kernel<__nv_bfloat16><<<(unsigned)rows, 256>>>((__nv_bfloat16 *)S, Nq, Nk);
        else mask_kernel<float><<<(unsigned)rows, 256>>>((float *)S, Nq, Nk);
        LAUNCH_CHECK();
    }
    if (s16) {
        if (attention_standard_onchip(s)) softmax_merge_onchip_gpu(S, P, rows, (size_t)Nk, s->dt);
        else softmax_online_gpu(S, P, rows, (size_t)Nk, s->dt);
    } else {
        const int threads = multipass_threads((size_t)Nk / (Nk % 4 == 0 ? 4 : 1));
#define STF_F32S(T)                                                                                        \
    do {                                                                                                   \
        if (Nk % 4 == 0) softmax_f32s_kernel<T, 4><<<(unsigned)rows, threads>>>((const float *)S, (T *)P, Nk); \
        else softmax_f32s_kernel<T, 1><<<(unsigned)rows, threads>>>((const float *)S, (T *)P, Nk);         \
    } while (0)
        if (s->dt == DT_F16) STF_F32S(__half);
        else if (s->dt == DT_BF16) STF_F32S(__nv_bfloat16);
        else STF_F32S(float);
#undef STF_F32S
        LAUNCH_CHECK();
    }
    /* O^T (d x Nq) = V^T (d x Nk) * P^T (Nk x Nq) */
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, d, Nq, Nk, &one, v, ty, d, ndk, P, ty, Nk, nn,
                                            &zero, o, ty, d, ndq, batches, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

extern "C" void attention_standard_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                       void *ws)
{
    standard_gpu(s, q, k, v, o, ws, false);
}

extern "C" void attention_standard_s16_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                           void *ws)
{
    standard_gpu(s, q, k, v, o, ws, true);
}
