/* tc3_pipeline: tc2 with K and V brought in by cp.async, two stages deep.
 *
 * What changes against tc2_swizzle.cu: in tc2 every warp waits for each
 * tile's global loads (a few hundred ns of latency) between two barriers,
 * with nothing else to do. Here tiles go global -> shared with cp.async (no
 * registers in between, completion tracked per thread in commit groups) into
 * two buffers each for K and V, and the loads are issued a step ahead:
 *
 *   iteration t:  wait K_t; __syncthreads          (K_t visible to all warps,
 *                                                   and every warp is done with t-1)
 *                 issue K_{t+1}, V_{t+1} into the other buffers
 *                 S = Q K_t^T, online softmax      (V_t may still be landing)
 *                 wait V_t; __syncthreads
 *                 O += P V_t
 *
 * so the copy of tile t+1 overlaps all of step t, and V_t's overlaps the
 * softmax. Still 2 barriers per tile, as in tc2. Q arrives with the first K
 * tile. Tiles: 64 query rows (4 warps x 16), 64 keys; shared memory grows
 * from (64 + 2 x 64) to (64 + 4 x 64) rows.
 *
 * Traffic: as tc1/tc2 (HBM es d (2 N_q + 2 N_kv ceil(N_q / 64)) per head,
 * K/V mostly from L2); what changes is only how much of it is in flight.
 *
 * Measured: note 05b's ladder table. Per score tc3 still spends FMUL
 * (scale), FADD, FMUL (log2 e) and exp2f's range handling around one MUFU:
 * the next step (tc4) cuts those.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc3_pipeline */
#include "tc_common.cuh"

#define TC3_BQ 64
#define TC3_BKV 64
#define TC3_WARPS 4
#define TC3_THREADS (TC3_WARPS * 32)

template <typename T, int D>
__global__ void __launch_bounds__(TC3_THREADS) tc3_kernel(tc_args_t a)
{
    using L = tc_layout<D>;
    constexpr int KVB = L::bytes(TC3_BKV); /* one K or V buffer */
    extern __shared__ uint4 tc3_smem[];
    const uint32_t aQ = tc_smem_addr(tc3_smem);
    const uint32_t aK0 = aQ + L::bytes(TC3_BQ), aV0 = aK0 + 2 * KVB; /* buffers 0, 1 each */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC3_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, TC3_BQ);
    const int ntiles = (kv_end + TC3_BKV - 1) / TC3_BKV;

    /* Prologue: group {Q, K_0}, then group {V_0}. */
    tc_tile_async<T, D, TC3_BQ, TC3_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, TC3_BKV, TC3_THREADS>(aK0, K, min(TC3_BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, TC3_BKV, TC3_THREADS>(aV0, V, min(TC3_BKV, a.seq_kv));
    tc_cp_async_commit();
    tc_cp_async_wait<1>();
    __syncthreads();

    uint32_t qf[D / MMA_K][4];
#pragma unroll
    for (int kk = 0; kk < D / MMA_K; kk++) tc_ldsm_x4(qf[kk], aQ + L::off(warp * MMA_M + (lane & 15), 2 * kk + (lane >> 4)));

    float o[D / MMA_N][4];
#pragma unroll
    for (int n = 0; n < D / MMA_N; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
    const int krow = (lane & 7) + ((lane >> 4) << 3), kch = (lane >> 3) & 1;
    const int vrow = lane & 15, vch = lane >> 4;

    // [snippet:pipeline]
    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * TC3_BKV;
        const uint32_t aK = aK0 + (t & 1) * KVB, aV = aV0 + (t & 1) * KVB;
        if (t > 0) { /* t = 0: the prologue waited */
            tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
            __syncthreads();
        }
        if (t + 1 < ntiles) {
            const int nk = kv0 + TC3_BKV, valid = min(TC3_BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * KVB;
            tc_tile_async<T, D, TC3_BKV, TC3_THREADS>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, TC3_BKV, TC3_THREADS>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else { /* empty groups keep the counts of the waits above and below right */
            tc_cp_async_commit();
            tc_cp_async_commit();
        }
        // [/snippet]

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[TC3_BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < TC3_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int j = 0; j < TC3_BKV / MMA_N; j += 2)
#pragma unroll
                for (int kk = 0; kk < D / MMA_K; kk++) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + L::off(MMA_N * j + krow, 2 * kk + kch));
                    tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                    tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
                }
#pragma unroll
            for (int j = 0; j < TC3_BKV / MMA_N; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[j][e] *= a.scale;
            if (tc_tile_needs_mask(a, wq0, kv0, TC3_BKV)) tc_apply_mask(s, a, wq0, kv0);

#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < TC3_BKV / MMA_N; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
                const float mnew = fmaxf(m[r], tc_quad_max(mx));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float alpha = exp2f((m[r] - ms) * LOG2E_F);
                m[r] = mnew;
                l[r] *= alpha;
#pragma unroll
                for (int n = 0; n < D / MMA_N; n++) {
                    o[n][2 * r] *= alpha;
                    o[n][2 * r + 1] *= alpha;
                }
#pragma unroll
                for (int j = 0; j < TC3_BKV / MMA_N; j++)
#pragma unroll
                    for (int e = 2 * r; e < 2 * r + 2; e++) {
                        s[j][e] = exp2f((s[j][e] - ms) * LOG2E_F);
                        l[r] += s[j][e];
                    }
            }
        }

        tc_cp_async_wait<2>(); /* V_t landed (K_{t+1}, V_{t+1} may be in flight) */
        __syncthreads();
        if (!skip) {
#pragma unroll
            for (int kk = 0; kk < TC3_BKV / MMA_K; kk++) {
                uint32_t pa[4];
                tc_pack_p<T>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
                for (int n = 0; n < D / MMA_N; n += 2) {
                    uint32_t vb[4];
                    tc_ldsm_x4_trans(vb, aV + L::off(MMA_K * kk + vrow, n + vch));
                    tc_mma<T>(o[n], pa, vb[0], vb[1]);
                    tc_mma<T>(o[n + 1], pa, vb[2], vb[3]);
                }
            }
        }
    }

    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lsum = tc_quad_sum(l[r]);
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
        const int row = wq0 + g + (MMA_M / 2) * r;
        if (row >= a.seq_q) continue;
#pragma unroll
        for (int n = 0; n < D / MMA_N; n++)
            *reinterpret_cast<uint32_t *>(O + (size_t)row * D + 8 * n + 2 * c) =
                tc_pack<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    }
}

template <int D> static constexpr int tc3_smem() { return tc_layout<D>::bytes(TC3_BQ + 4 * TC3_BKV); }

template <typename T, int D> struct tc3_inst {
    static constexpr auto kernel = tc3_kernel<T, D>;
    static constexpr int BQ = TC3_BQ, BKV = TC3_BKV, THREADS = TC3_THREADS, SMEM = tc3_smem<D>();
    static const char *what() { return "cp.async, 2 K/V stages"; }
};
TC_RUNG(tc3, tc3_inst, TC_DIMS_BASE)
