/* Stage 05c: FlashAttention on Hopper's own instructions, built as a ladder
 * of kernels, each one change away from the previous and each runnable on
 * its own (--kernel NAME):
 *   h1_wgmma.cu    wgmma from swizzled shared memory, P from registers
 *   h2_tma.cu      K/V by TMA into an mbarrier pipeline of 2 stages
 *   h3_warpspec.cu a producer warp group and two consumer warp groups
 *   h4_overlap.cu  the next tile's S = Q K^T issued before this tile's softmax
 *   h5_pingpong.cu the two consumer groups take turns on the tensor cores
 *   h6_stages.cu   three K/V stages instead of two
 *   (device helpers: hop_common.cuh; stage 05b's tc_common.cuh underneath)
 *
 *   O = softmax(Q K^T * scale) V     fp16 or bf16 storage, fp32 accumulation
 *
 * Shapes, layout, GQA and causal masking are stage 05b's (tc.h): Q, O are
 * [batch, heads, seq_q, dim]; K, V [batch, kv_heads, seq_kv, dim],
 * row-major, contiguous, 16-byte aligned; query head h reads K/V head
 * h / (heads / kv_heads); causal is bottom-right (key j visible to query i
 * iff j <= i + seq_kv - seq_q); a row that sees no key outputs zeros.
 * Supported: dt DT_F16 or DT_BF16, head dim 64, 128 or 256, on a device of
 * compute capability 9.0 with a build for sm_90a (CUDA_ARCH=90, the
 * default); attn_hop_supports says why anything else is declined. */
#ifndef STF_STAGE05C_HOPPER_H
#define STF_STAGE05C_HOPPER_H

#include <stddef.h>

#include "../05b_tensor_cores/tc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef tc_version_t hop_version_t; /* name ("h1_wgmma", ...) and the change, one line */

extern const hop_version_t HOP_VERSIONS[];
extern const int HOP_NVERSIONS;

/* 1 when version v (0-based) can run shape s on this build and device, else
 * 0 and the reason in why (n bytes, may be NULL). Never exits. */
int attn_hop_supports(int v, const tc_shape_t *s, char *why, size_t n);

/* Asynchronous launch on stream 0. Returns 0, or -1 (reason printed to
 * stderr) when the shape is unsupported. CUDA errors exit with file and line. */
int attn_hop_launch(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o);

/* One line on tiles, threads, shared memory, registers and occupancy of
 * version v at shape s ("Q tile BQ x K/V tile BKV, ..."). Static string. */
const char *attn_hop_describe(int v, const tc_shape_t *s);

/* The versions as rows of the stage-05c table (hopper_impls.c), in ladder
 * order, named as HOP_VERSIONS. GPU only (the CPU declines them). */
const attn_impl_t *const *attn_hop_impls(int *n);

/* 1 when the stage's kernels were compiled for sm_90a (hop_arch.cu). */
int hop_built_sm90a(void);

#ifdef __cplusplus
}
#endif

#endif
