/* Stage 08: the backward pass of attention, by recomputation (Q: how does
 * FlashAttention's backward avoid storing P?).
 *
 * Forward:  S = scale Q K^T,  P = softmax(S) (row-wise, masked keys excluded),
 *           O = P V,  and per query row the log-sum-exp L = m + ln l, the only
 *           thing FlashAttention's forward keeps beside O.
 * Backward, given dO:
 *           dV = P^T dO,  dP = dO V^T,  D = rowsum(dO * O)  (= rowsum(P * dP)),
 *           dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
 * Standard backward keeps P (N x N per head) from the forward; FlashAttention's
 * recomputes P = exp(S - L) tile by tile from Q, K and L.
 *
 * Layout as the other attention stages (attention_ref.h): Q, O, dO, dQ are
 * [B, H, Nq, d]; K, V, dK, dV are [B, Hkv, Nk, d]; L and D are fp32
 * [B, H, Nq]. Query head h reads K/V head h / (H / Hkv); dK and dV of a K/V
 * head are summed over the H / Hkv query heads of its group. Causal masks
 * align bottom-right. A query row that sees no key has O = 0, L = -inf and
 * contributes nothing to any gradient (dQ of that row is 0). */
#ifndef STF_STAGE08_H
#define STF_STAGE08_H

#include <stddef.h>

#include "../05_tiled_attention/tiled.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- the GPU
 * Kernels (bwd_*.cu), C linkage. A build without CUDA declines them all. */
typedef enum {
    BWD_GPU_STANDARD = 0, /* P stored by the forward (N x N); cuBLAS GEMMs */
    BWD_GPU_FA2_FP32,     /* FlashAttention-2 order on CUDA cores, fp32 */
    BWD_GPU_TC_ATOMIC,    /* tensor cores (bf16/fp16, fp32 accumulation); dQ by fp32 atomics */
    BWD_GPU_TC_DET,       /* the same, dQ without atomics: deterministic, bit-identical across runs */
    BWD_GPU_NKERNELS
} bwd_gpu_kernel_t;

/* The kernel's --kernel name ("bwd-standard", "bwd-fa2", "bwd-tc-atomic",
 * "bwd-tc-det"). */
const char *bwd_gpu_name(int kern);
/* 1 when kern can run s on this build and GPU, else 0 with the reason. */
int bwd_gpu_supports(int kern, const attn_shape_t *s, char *why, size_t n);
/* Device workspace bytes kern needs on s (P and dP for the standard one, fp32
 * dQ accumulators, D, ...), allocated by the caller. */
size_t bwd_gpu_ws_bytes(int kern, const attn_shape_t *s);
/* The forward that also writes L (fp32, natural log, -inf for a row with no
 * visible key): O in s->dt. Asynchronous on stream 0; 0, or -1 with a message
 * when the shape is not supported. */
int bwd_gpu_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse);
/* The backward: q, k, v, o, dout in s->dt, lse from bwd_gpu_forward; writes
 * dq, dk, dv in s->dt (every element). Asynchronous on stream 0; 0, or -1
 * with a message when the shape is not supported. */
int bwd_gpu_launch(int kern, const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws);

/* ---------------------------------------------------------------- the CPU
 * and the checks: see below (the fp64 reference of O, L, dQ, dK, dV from the
 * stored inputs, the tolerance, the ledger implementations). */

#ifdef __cplusplus
}
#endif

#endif
