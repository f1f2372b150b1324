/* Stage 08's GPU section of backward.h: the kernels' names, what each
 * supports (and why not), their workspace, and the dispatch to the kernel
 * files (bwd_standard.cu, bwd_fa2_fp32.cu, bwd_tc1_atomic.cu, bwd_tc2_det.cu, bwd_tc3_k32.cu;
 * the forwards in bwd_fa2_fp32.cu and bwd_tc_forward.cu). No kernel here. */
#include <stdio.h>

#include "bwd_kernels.h"
#include "bwd_tc_common.cuh"

extern "C" const char *bwd_gpu_name(int kern)
{
    switch (kern) {
    case BWD_GPU_STANDARD: return "bwd-standard";
    case BWD_GPU_FA2_FP32: return "bwd-fa2";
    case BWD_GPU_TC_ATOMIC: return "bwd-tc-atomic";
    case BWD_GPU_TC_DET: return "bwd-tc-det";
    case BWD_GPU_TC_K32: return "bwd-tc-k32";
    }
    return "?";
}

static int decline(char *why, size_t n, const char *msg)
{
    if (why && n) snprintf(why, n, "%s", msg);
    return 0;
}

/* The forward that bwd_gpu_forward runs for s: 1 tensor cores, 0 CUDA cores,
 * -1 none. */
extern "C" int bwd_gpu_forward_kind(const attn_shape_t *s)
{
    if (s->dt != DT_F32 && bwd_gpu_tc_dim_ok((int)s->dim)) return 1;
    return bwd_gpu_cc_dim_ok((int)s->dim) ? 0 : -1;
}

extern "C" int bwd_gpu_supports(int kern, const attn_shape_t *s, char *why, size_t n)
{
    char buf[160];
    if (kern < 0 || kern >= BWD_GPU_NKERNELS) return decline(why, n, "no such GPU kernel");
    if (s->kv_heads == 0 || s->heads % s->kv_heads != 0)
        return decline(why, n, "the heads must be a multiple of the K/V heads");
    if (s->varlen) return decline(why, n, "--varlen is not supported by the backward");
    if (s->heads > 65535 || s->batch > 65535) return decline(why, n, "more than 65535 heads or batch elements");
    if (s->seq_q > (1u << 30) || s->seq_kv > (1u << 30)) return decline(why, n, "sequences above 2^30 rows");
    if (bwd_gpu_forward_kind(s) < 0) {
        snprintf(buf, sizeof buf, "head dim %zu: the GPU forward exists for d = 32, 64, 96, 128, 256", s->dim);
        return decline(why, n, buf);
    }
    switch (kern) {
    case BWD_GPU_STANDARD:
        if ((unsigned long long)(s->heads / s->kv_heads) * s->seq_q > 0x7fffffffull)
            return decline(why, n, "G Nq above 2^31 rows (cuBLAS int dimensions)");
        return 1;
    case BWD_GPU_FA2_FP32: return 1;
    default:
        if (s->dt == DT_F32)
            return decline(why, n, "the tensor-core kernels take fp16 or bf16 (fp32 runs on bwd-fa2 or bwd-standard)");
        if (!bwd_gpu_tc_dim_ok((int)s->dim)) {
            snprintf(buf, sizeof buf, "head dim %zu: the tensor-core backward is built for d = 32, 64, 96, 128", s->dim);
            return decline(why, n, buf);
        }
        if (kern == BWD_GPU_TC_K32 && s->dim > 64) {
            snprintf(buf, sizeof buf, "head dim %zu: bwd-tc-k32 keeps 32 keys' dK and dV per warp: d = 32, 64 only", s->dim);
            return decline(why, n, buf);
        }
        return 1;
    }
}

extern "C" size_t bwd_gpu_ws_bytes(int kern, const attn_shape_t *s)
{
    switch (kern) {
    case BWD_GPU_STANDARD: return bwd_gpu_std_ws_bytes(s);
    case BWD_GPU_FA2_FP32:
    case BWD_GPU_TC_ATOMIC:
    case BWD_GPU_TC_K32: return bwd_dsum_bytes(s) + bwd_dqacc_bytes(s);
    case BWD_GPU_TC_DET: return bwd_dsum_bytes(s);
    }
    return 0;
}

extern "C" int bwd_gpu_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse)
{
    const int kind = bwd_gpu_forward_kind(s);
    if (kind < 0 || s->kv_heads == 0 || s->heads % s->kv_heads != 0) {
        fprintf(stderr, "bwd_gpu_forward: no GPU forward for head dim %zu (d = 32, 64, 96, 128, 256)\n", s->dim);
        return -1;
    }
    return kind == 1 ? bwd_gpu_tc_forward(s, q, k, v, o, lse) : bwd_gpu_cc_forward(s, q, k, v, o, lse);
}

extern "C" int bwd_gpu_launch(int kern, const attn_shape_t *s, const void *q, const void *k, const void *v,
                              const void *o, const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws)
{
    char why[200];
    if (!bwd_gpu_supports(kern, s, why, sizeof why)) {
        fprintf(stderr, "%s: %s\n", bwd_gpu_name(kern), why);
        return -1;
    }
    switch (kern) {
    case BWD_GPU_STANDARD: return bwd_gpu_std_launch(s, q, k, v, o, dout, lse, dq, dk, dv, ws);
    case BWD_GPU_FA2_FP32: return bwd_gpu_fa2_launch(s, q, k, v, o, dout, lse, dq, dk, dv, ws);
    case BWD_GPU_TC_ATOMIC: return bwd_gpu_tc1_launch(s, q, k, v, o, dout, lse, dq, dk, dv, ws);
    case BWD_GPU_TC_DET: return bwd_gpu_tc2_launch(s, q, k, v, o, dout, lse, dq, dk, dv, ws);
    case BWD_GPU_TC_K32: return bwd_gpu_tc3_launch(s, q, k, v, o, dout, lse, dq, dk, dv, ws);
    }
    return -1;
}

extern "C" void bwd_gpu_tiles(int kern, const attn_shape_t *s, int *br, int *bc)
{
    int t = 0;
    if (kern < 0) t = bwd_gpu_forward_kind(s) == 1 ? 64 : bwd_gpu_forward_kind(s) == 0 ? 32 : 0;
    else if (kern == BWD_GPU_FA2_FP32) t = 32;
    *br = t;
    *bc = t;
    if (kern == BWD_GPU_TC_ATOMIC || kern == BWD_GPU_TC_DET) { /* 64 query rows x 16 keys per warp */
        *br = 64;
        *bc = 16 * bwd_tc_warps((int)s->dim);
    }
    if (kern == BWD_GPU_TC_K32) { /* 32 query rows x 32 keys per warp, 4 warps (or 8: STF_BWD_TC_WARPS) */
        *br = 32;
        *bc = 32 * bwd_k32_warps((int)s->dim);
    }
}
