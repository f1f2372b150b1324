/* bwd_tc1_atomic: FlashAttention-2's backward on tensor cores (mma.sync
 * m16n8k16, fp16/bf16 storage, fp32 accumulation). What changes against
 * bwd_fa2_fp32.cu: the five products of a (query block, key block) pair run
 * as MMAs on fragments in registers (the kernel, bwd_tc_kv_kernel with DQ,
 * is in bwd_tc_common.cuh with its layout argument); P and dS are rounded to
 * the storage type where they feed an MMA; tiles are 64 queries by 16 keys
 * per warp, 4 warps at d <= 64 and 8 above (bwd_tc_warps); Q_i, dO_i, L_i,
 * D_i are double-buffered with cp.async.
 * dQ still goes through fp32 atomics (now float2 red.global.add) into the
 * accumulator that the preprocessing kernel clears, then one conversion
 * kernel scales and rounds it: not bit-reproducible (bwd_tc2_det.cu).
 *
 * Traffic per K/V head (es = storage bytes, G = H / Hkv, Bc = 64 or 128, Br = 64;
 * K/V block j visits the rows R_j of the query blocks from
 * floor(max(0, j Bc - (Nk - Nq)) / Br) on, R_j = Nq when not causal):
 *   es 4 Nk d                              K, V in; dK, dV out, once
 *   + G sum_j R_j (2 es d + 8)             Q_i, dO_i, L_i, D_i per visit
 *   + G sum_j R_j 8 d                      dQ partials, fp32 read-modify-write (L2 atomics)
 *   + preprocessing (2 es + 4) Nq d + 4 Nq and conversion (4 + es) Nq d, per query head.
 *
 * Run: build/bin/test_backward_gpu, or the stage program's --kernel bwd-tc-atomic. */
#include "bwd_kernels.h"
#include "bwd_tc_common.cuh"

struct tc1_run : bwd_tc_run {
    template <typename T, int D> int run()
    {
        bwd_dsum_launch<T>(a, true);
        bwd_tc_kv_launch<T, D, true>(a);
        bwd_dq_convert_launch<T>(a);
        return 0;
    }
};

extern "C" int bwd_gpu_tc1_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                                  const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws)
{
    return bwd_tc_launch<tc1_run>(s, bwd_ws_args(s, q, k, v, o, dout, lse, dq, dk, dv, ws, true));
}
