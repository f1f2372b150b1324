/* bwd_tc3_k32: bwd_tc1_atomic.cu with each warp owning 32 keys instead of
 * 16 (two 16-row tiles, MT = 2 in bwd_tc_kv_kernel) and 32 query rows per
 * block instead of 64, so that the live registers stay those of tc1 at
 * d = 64 (dK, dV: 2 x 32 x d / 32 per thread; S^T, dP^T: 2 x 32 x 32 / 32).
 * Why: every B fragment of Q or dO that a warp loads from shared memory
 * (ldmatrix) now feeds two MMAs per n-tile instead of one, in all four
 * key-side products (S^T, dV, dP^T, dK), and a K/V block is 128 keys with 4
 * warps, which halves the dQ atomics per key. Shared-memory bytes read per
 * (query, key) pair, ldmatrix only (d = 64): tc1 46, this one 36; the price:
 * twice the query blocks, so twice the barriers and L / D loads per key.
 * Only d = 32 and 64 (at d = 128 dK and dV alone would fill the registers).
 *
 * Traffic: bwd_tc1_atomic.cu's formula with Br = 32, Bc = 128.
 *
 * Run: build/bin/08_backward --dtype bf16 --dim 64 --kernel bwd-tc-atomic,bwd-tc-k32,
 * or build/bin/test_backward_gpu. */
#include "bwd_kernels.h"
#include "bwd_tc_common.cuh"

struct tc3_run : bwd_tc_run {
    static constexpr unsigned DIMS = TC_DIM_BIT(32) | TC_DIM_BIT(64);
    template <typename T, int D> int run()
    {
        bwd_dsum_launch<T>(a, true);
        /* 4 warps (128 keys), or with STF_BWD_TC_WARPS=8 8 warps (256 keys: Q_i and dO_i loaded
         * once per 256 keys, a quarter of tc1's dQ atomics per key) */
        bool eight = false;
        if constexpr (D == 64) {
            if (a.seq_kv > 0 && bwd_k32_warps(D) == 8) {
                bwd_tc_kv_launch_cfg<T, D, 8, true, 1, 32, 32>(a);
                eight = true;
            }
        }
        if (a.seq_kv > 0 && !eight) bwd_tc_kv_launch_cfg<T, D, 4, true, 2, 32, 32>(a);
        bwd_dq_convert_launch<T>(a);
        return 0;
    }
};

extern "C" int bwd_gpu_tc3_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                                  const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws)
{
    return bwd_tc_launch<tc3_run>(s, bwd_ws_args(s, q, k, v, o, dout, lse, dq, dk, dv, ws, true));
}
