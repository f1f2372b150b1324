/* Stage 08's kernel files as the glue (bwd_gpu.cu) sees them: C-linkage
 * launchers, asynchronous on stream 0, each returning 0, or -1 when it has
 * no instance for the shape (the glue's bwd_gpu_supports has declined it
 * before). Internal to the stage; the API is backward.h. */
#ifndef STF_BWD_KERNELS_H
#define STF_BWD_KERNELS_H

#include "backward.h"

#ifdef __cplusplus
extern "C" {
#endif

/* bwd_fa2_fp32.cu: CUDA cores, fp32 arithmetic, any storage type. */
int bwd_gpu_cc_dim_ok(int d);
int bwd_gpu_cc_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse);
int bwd_gpu_fa2_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws);

/* bwd_standard.cu: cuBLAS; the workspace holds P (dt) and S / dP (fp32). */
size_t bwd_gpu_std_ws_bytes(const attn_shape_t *s);
int bwd_gpu_std_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                        const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws);

/* bwd_gpu_tc_forward.cu: the tensor-core forward that also writes L. */
int bwd_gpu_tc_dim_ok(int d);
int bwd_gpu_tc_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse);

/* bwd_tc1_atomic.cu, bwd_tc2_det.cu, bwd_tc3_k32.cu */
int bwd_gpu_tc1_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws);
int bwd_gpu_tc2_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws);
int bwd_gpu_tc3_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws);

#ifdef __cplusplus
}
#endif

#endif
