/* Stage 08, the standard backward on the GPU: the N x N matrices in device
 * memory and cuBLAS for the five GEMMs, as stage 04's standard forward
 * (standard_gpu.cu) is the starting point of the forward ladder.
 *
 *   P  = exp(scale Q K^T - L)     GEMM into fp32 S, then p_kernel (P in dt):
 *                                 the P a standard forward would have kept
 *   dV = P^T dO                   GEMM
 *   dP = dO V^T                   GEMM into fp32 (reuses S's buffer)
 *   dS = P * (dP - D)             ds_kernel, over P in place (dt); D from the
 *                                 preprocessing kernel (bwd_common.cuh)
 *   dQ = scale dS K,  dK = scale dS^T Q    GEMMs
 *
 * P is what the standard forward stores; the contract's forward keeps only O
 * and L, so this launcher rebuilds P first (one GEMM and one pass over
 * N x N), and its time includes that. S and dP stay fp32 (cuBLAS writes an
 * fp32 C from 16-bit A and B), so the exponent never sees a 16-bit logit;
 * P and dS are stored in the storage type, as they would be in a 16-bit
 * training step. Causal: the GEMMs compute every pair, the mask zeroes P.
 *
 * GQA without copies: the G = H / Hkv query heads of one K/V head are
 * consecutive in Q, dO, P and dS, so their G Nq rows form one matrix against
 * the shared K and V. Every GEMM is batched over the B Hkv K/V heads with
 * G Nq rows, and the sums over the group's heads in dK and dV fall out of the
 * GEMMs' inner dimension (G Nq) with no extra kernel.
 *
 * Traffic (model; GEMM operand re-reads assumed to hit L2), per K/V head,
 * M = G Nq: es (4 M d + 4 Nk d) inputs and outputs, plus the N x N passes
 *   S: 4 M Nk written, read;  P: es M Nk written, read by dV, ds_kernel;
 *   dP: 4 M Nk written, read;  dS: es M Nk written, read by dQ and dK
 * about (16 + 6 es) M Nk bytes: the term FlashAttention removes.
 * Device memory: M Nk (es + 4) bytes per K/V head of workspace.
 *
 * Run: the stage program's --kernel bwd-standard, or build/bin/test_backward_gpu. */
#include <cublas_v2.h>

#include "../04_one_pass_attention/standard_gpu.h"
#include "bwd_common.cuh"
#include "bwd_kernels.h"

/* P = exp(S - L) over M = G Nq rows of Nk per K/V head (S already scaled),
 * 0 where the key is invisible. Row r of the matrix is query r % Nq. */
template <typename T>
__global__ void p_kernel(const float *__restrict__ S, T *__restrict__ P, const float *__restrict__ lse, long long rows,
                         int Nq, int Nk, int causal)
{
    const long long n = rows * Nk;
    for (long long x = (long long)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += (long long)gridDim.x * blockDim.x) {
        const long long row = x / Nk;
        const int j = (int)(x % Nk), i = (int)(row % Nq);
        const float l = lse[row];
        const bool vis = (!causal || j <= i + (Nk - Nq)) && l != -INFINITY;
        P[x] = from_f<T>(vis ? expf(S[x] - l) : 0.0f);
    }
}

/* dS = P * (dP - D), over P in place. */
template <typename T>
__global__ void ds_kernel(T *__restrict__ P, const float *__restrict__ dP, const float *__restrict__ dsum, long long rows,
                          int Nk)
{
    const long long n = rows * Nk;
    for (long long x = (long long)blockIdx.x * blockDim.x + threadIdx.x; x < n; x += (long long)gridDim.x * blockDim.x)
        P[x] = from_f<T>(to_f(P[x]) * (dP[x] - dsum[x / Nk]));
}

static unsigned grid_for(long long n)
{
    const long long b = (n + 255) / 256;
    return (unsigned)(b < 65536 * 4 ? b : 65536 * 4);
}

extern "C" size_t bwd_gpu_std_ws_bytes(const attn_shape_t *s)
{
    const size_t nn = (size_t)(s->batch * s->heads) * s->seq_q * s->seq_kv;
    return bwd_dsum_bytes(s) + bwd_align(nn * dtype_size(s->dt)) + bwd_align(nn * sizeof(float));
}

struct std_run {
    bwd_args_t a; /* a.dsum: the workspace, D first */
    const attn_shape_t *s;
    template <typename T> int run()
    {
        const int Nq = a.seq_q, Nk = a.seq_kv, d = a.dim, G = a.group, batches = a.batch * a.kv_heads;
        const int M = G * Nq; /* rows of one K/V head's matrices */
        const long long sq = (long long)M * d, sk = (long long)Nk * d, sp = (long long)M * Nk;
        const long long rows = (long long)batches * M;
        const cudaDataType_t ty = s->dt == DT_F16 ? CUDA_R_16F : s->dt == DT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
        const size_t nn = (size_t)rows * (size_t)Nk;
        T *P = (T *)((char *)a.dsum + bwd_dsum_bytes(s));
        float *F = (float *)((char *)P + bwd_align(nn * sizeof(T)));
        const float one = 1.0f, zero = 0.0f, sc = a.scale;
        cublasHandle_t h = attn_cublas_handle(); /* stage 04's */

        bwd_dsum_launch<T>(a, false);
        if (Nk == 0) { /* no key: every gradient is 0 (dK, dV have no element) */
            if (rows > 0) CUDA_CHECK(cudaMemsetAsync(a.dq, 0, (size_t)rows * d * sizeof(T), 0));
            return 0;
        }
        if (Nq == 0) {
            CUDA_CHECK(cudaMemsetAsync(a.dk, 0, (size_t)batches * sk * sizeof(T), 0));
            CUDA_CHECK(cudaMemsetAsync(a.dv, 0, (size_t)batches * sk * sizeof(T), 0));
            return 0;
        }
        /* S^T (Nk x M, col-major) = K Q^T: S row-major M x Nk, scaled */
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, Nk, M, d, &sc, a.k, ty, d, sk, a.q, ty, d,
                                                    sq, &zero, F, CUDA_R_32F, Nk, sp, batches, CUBLAS_COMPUTE_32F,
                                                    CUBLAS_GEMM_DEFAULT));
        p_kernel<T><<<grid_for((long long)nn), 256>>>(F, P, a.lse, rows, Nq, Nk, a.causal);
        LAUNCH_CHECK();
        /* dV^T (d x Nk) = dO^T (d x M) P (M x Nk): the group's heads summed by the inner dimension */
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_T, d, Nk, M, &one, a.dout, ty, d, sq, P, ty,
                                                    Nk, sp, &zero, a.dv, ty, d, sk, batches, CUBLAS_COMPUTE_32F,
                                                    CUBLAS_GEMM_DEFAULT));
        /* dP^T (Nk x M) = V dO^T */
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, Nk, M, d, &one, a.v, ty, d, sk, a.dout,
                                                    ty, d, sq, &zero, F, CUDA_R_32F, Nk, sp, batches, CUBLAS_COMPUTE_32F,
                                                    CUBLAS_GEMM_DEFAULT));
        ds_kernel<T><<<grid_for((long long)nn), 256>>>(P, F, a.dsum, rows, Nk);
        LAUNCH_CHECK();
        /* dQ^T (d x M) = scale K^T (d x Nk) dS^T (Nk x M) */
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, d, M, Nk, &sc, a.k, ty, d, sk, P, ty, Nk,
                                                    sp, &zero, a.dq, ty, d, sq, batches, CUBLAS_COMPUTE_32F,
                                                    CUBLAS_GEMM_DEFAULT));
        /* dK^T (d x Nk) = scale Q^T (d x M) dS (M x Nk) */
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_T, d, Nk, M, &sc, a.q, ty, d, sq, P, ty, Nk,
                                                    sp, &zero, a.dk, ty, d, sk, batches, CUBLAS_COMPUTE_32F,
                                                    CUBLAS_GEMM_DEFAULT));
        return 0;
    }
};

extern "C" int bwd_gpu_std_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws)
{
    if (s->batch * s->heads == 0) return 0;
    std_run f = { bwd_ws_args(s, q, k, v, o, dout, lse, dq, dk, dv, ws, false), s };
    return bwd_dispatch_dt(s->dt, f);
}
