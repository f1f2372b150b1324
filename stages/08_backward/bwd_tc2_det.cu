/* bwd_tc2_det: bwd_tc1_atomic.cu without atomics, so that dQ (like dK and
 * dV already) is bit-identical from run to run. What changes: the K/V-block
 * kernel no longer computes dQ (bwd_tc_kv_kernel without DQ: no dS^T in
 * shared memory, no second barrier, no atomics); a second kernel, in the
 * forward's loop order (one thread block per query block, K/V blocks
 * inner), recomputes S, P, dP and dS for its rows and accumulates
 * dQ_i = scale sum_j dS_ij K_j in registers, in key order, writing it once.
 * The price is arithmetic: S = Q K^T and dP = dO V^T are computed twice,
 * 7 GEMM-sized products per pair instead of 5 (FLOPs 2.5 -> 3.5 times the
 * forward's); the gain is no fp32 accumulator (workspace: D only), no
 * atomics, and a result that does not depend on scheduling.
 * (FlashAttention-2's deterministic mode instead orders the atomic adds per
 * query block with a semaphore; this version trades arithmetic for that
 * serialisation.)
 *
 * Traffic per query head of the dQ kernel (Br = 64, Bc = 64, ct_i key blocks
 * of query block i): es 2 Nq d (Q, dO) + 8 Nq (L, D) + 2 es d sum_i
 * min(ct_i Bc, Nk) (K, V per query block, mostly L2) + es Nq d (dQ once);
 * the K/V-block kernel: bwd_tc1's formula without the dQ term; the
 * preprocessing: 2 es Nq d + 4 Nq.
 *
 * Run: build/bin/test_backward_gpu, or the stage program's --kernel bwd-tc-det. */
#include "bwd_kernels.h"
#include "bwd_tc_common.cuh"

#define DQ_WARPS 4
#define DQ_BKV 64

template <typename T, int D>
__global__ void __launch_bounds__(DQ_WARPS * 32, 2) bwd_tc_dq_kernel(bwd_args_t a)
{
    constexpr int BQ = 16 * DQ_WARPS, BKV = DQ_BKV, NT = DQ_WARPS * 32, NJ = BKV / 8;
    using L = tc_layout<D>;
    constexpr int QB = L::bytes(BQ), KVB = L::bytes(BKV);
    extern __shared__ uint4 bwd_dq_smem[];
    const uint32_t aS = tc_smem_addr(bwd_dq_smem);
    const uint32_t aQ = aS, adO = aS + QB, aK0 = aS + 2 * QB; /* stage s: K at aK0 + 2 s KVB, V + KVB */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int nqb = (int)gridDim.x;
    const int q0 = (a.causal ? nqb - 1 - (int)blockIdx.x : (int)blockIdx.x) * BQ, wq0 = q0 + 16 * warp;
    const size_t qh = (size_t)blockIdx.z * a.heads + blockIdx.y;
    const size_t kvh = (size_t)blockIdx.z * a.kv_heads + blockIdx.y / a.group;
    const T *K = reinterpret_cast<const T *>(a.k) + kvh * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvh * a.seq_kv * D;
    const int off = a.seq_kv - a.seq_q;
    const int last = min(q0 + BQ, a.seq_q) - 1;
    const int kv_end = a.causal ? max(0, min(a.seq_kv, last + 1 + off)) : a.seq_kv;
    const int ntiles = (kv_end + BKV - 1) / BKV;

    tc_tile_async<T, D, BQ, NT>(aQ, reinterpret_cast<const T *>(a.q) + (qh * a.seq_q + q0) * D, a.seq_q - q0);
    tc_tile_async<T, D, BQ, NT>(adO, reinterpret_cast<const T *>(a.dout) + (qh * a.seq_q + q0) * D, a.seq_q - q0);
    if (ntiles > 0) {
        tc_tile_async<T, D, BKV, NT>(aK0, K, a.seq_kv);
        tc_tile_async<T, D, BKV, NT>(aK0 + KVB, V, a.seq_kv);
    }
    tc_cp_async_commit();

    /* this thread's rows g and g + 8 of the warp: L in base 2 and D */
    float l2[2], dr[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = wq0 + g + 8 * r;
        l2[r] = bwd_lse2(a, a.lse + qh * a.seq_q, row);
        dr[r] = row < a.seq_q ? a.dsum[qh * a.seq_q + row] : 0.0f;
    }
    float dq[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;
    uint32_t qf[D / 16][4], of[D / 16][4];

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * BKV;
        const uint32_t aK = aK0 + (t & 1) * 2 * KVB, aV = aK + KVB;
        tc_cp_async_wait<0>();
        __syncthreads();
        if (t == 0)
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                bwd_ldsm_a<D>(qf[kk], aQ, 16 * warp, kk);
                bwd_ldsm_a<D>(of[kk], adO, 16 * warp, kk);
            }
        if (t + 1 < ntiles) {
            const uint32_t nb = aK0 + ((t + 1) & 1) * 2 * KVB;
            tc_tile_async<T, D, BKV, NT>(nb, K + (size_t)(kv0 + BKV) * D, a.seq_kv - kv0 - BKV);
            tc_tile_async<T, D, BKV, NT>(nb + KVB, V + (size_t)(kv0 + BKV) * D, a.seq_kv - kv0 - BKV);
        }
        tc_cp_async_commit();
        /* no key of the tile visible to any row of the warp */
        if (wq0 >= a.seq_q || (a.causal && kv0 > min(wq0 + 15, a.seq_q - 1) + off)) continue;

        float s[NJ][4], dp[NJ][4];
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
        /* S = Q K_j^T and dP = dO V_j^T, both with K / V read as stored */
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int j = 0; j < NJ; j += 2) {
                uint32_t kb[4], vb[4];
                bwd_ldsm_b<D>(kb, aK, 8 * j, kk);
                bwd_ldsm_b<D>(vb, aV, 8 * j, kk);
                bwd_mma2<T>(s[j], s[j + 1], qf[kk], kb);
                bwd_mma2<T>(dp[j], dp[j + 1], of[kk], vb);
            }
        const bool mask = kv0 + BKV > a.seq_kv || (a.causal && kv0 + BKV - 1 > wq0 + off);
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1, key = kv0 + 8 * j + 2 * c + (e & 1);
                float p = tc_exp2(fmaf(s[j][e], a.scale_log2, -l2[r]));
                if (mask && !bwd_visible(a, wq0 + g + 8 * r, key)) p = 0.0f;
                dp[j][e] = p * (dp[j][e] - dr[r]);
            }
        bwd_mma_rb1<T, D>(dq, dp, aK); /* dQ_i += dS K_j: A = dS (registers), B = K transposed */
    }

    tc_cp_async_wait<0>(); /* nothing left in flight when the block exits (ntiles = 0) */
    T *dQ = reinterpret_cast<T *>(a.dq) + qh * a.seq_q * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = wq0 + g + 8 * r;
        if (row >= a.seq_q) continue;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *reinterpret_cast<uint32_t *>(dQ + (size_t)row * D + 8 * n + 2 * c) =
                tc_pack<T>(dq[n][2 * r] * a.scale, dq[n][2 * r + 1] * a.scale);
    }
}

struct tc2_run : bwd_tc_run {
    template <typename T, int D> int run()
    {
        bwd_dsum_launch<T>(a, false);
        bwd_tc_kv_launch<T, D, false>(a);
        if (a.seq_q > 0) {
            constexpr int BQ = 16 * DQ_WARPS, smem = tc_layout<D>::bytes(2 * BQ + 4 * DQ_BKV);
            bwd_raise_smem<bwd_tc_dq_kernel<T, D>>(smem);
            dim3 grid((unsigned)((a.seq_q + BQ - 1) / BQ), (unsigned)a.heads, (unsigned)a.batch);
            bwd_tc_dq_kernel<T, D><<<grid, DQ_WARPS * 32, smem>>>(a);
            LAUNCH_CHECK();
        }
        return 0;
    }
};

extern "C" int bwd_gpu_tc2_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                                  const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws)
{
    return bwd_tc_launch<tc2_run>(s, bwd_ws_args(s, q, k, v, o, dout, lse, dq, dk, dv, ws, false));
}
