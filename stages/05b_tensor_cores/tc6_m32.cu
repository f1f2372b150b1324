/* tc6_m32: tc5_tuned with 32 query rows per warp (two m16 tiles) instead of 16.
 *
 * What changes against tc5_tuned.cu: every K and V fragment a warp loads
 * from shared memory (ldmatrix.x4: the B operands of two MMAs) now feeds
 * both of its m16 tiles, so each ldmatrix serves 4 MMAs instead of 2, and
 * the warp has twice as many independent accumulator chains in flight. The
 * price is registers: O is 32 x d per warp (d fp32 registers per thread) and
 * S 32 x BKV, so Q's fragments no longer fit and are re-read from shared
 * memory (ldmatrix, one x4 per m-tile and k-step) on every tile; the Q tile
 * stays resident for the whole block. Per warp and tile, shared-memory reads
 * go from (K + V) per 16 rows to (Q + K + V) per 32 rows: at BKV = 64,
 * d = 128, from 32 KB to 20 KB per 16 rows' worth of MMAs.
 * Everything else as tc5 (cp.async x2, exp2 with folded scale, immediate
 * ldmatrix offsets, tree reductions, lazy rescale, 16-byte O stores).
 * Head dims 32 ... 128: at d = 192 and 256 O alone would take 192 and 256
 * registers per thread (the limit is 255); tc5_tuned runs those.
 *
 * Traffic per head: HBM es d (2 N_q + 2 N_kv ceil(N_q / BQ)) at most, BQ = 32
 * x warps (K/V re-reads mostly from L2).
 * Measured: note 05b's ladder table (notes/05b_tensor_cores.md); the tile
 * choice per d (tc6_config) from the sweep listed there.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --dim 128 --kernel tc6_m32 */
#include "tc_common.cuh"

template <typename T, int D, int WARPS, int BKV, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) tc6_kernel(tc_args_t a)
{
    constexpr int BQ = 2 * MMA_M * WARPS, NT = 32 * WARPS;
    using L = tc_layout<D>;
    constexpr int PB = L::PITCH * 16;
    constexpr int KVB = L::bytes(BKV);
    extern __shared__ uint4 tc6_smem[];
    char *sQ = reinterpret_cast<char *>(tc6_smem);
    const uint32_t aQ = tc_smem_addr(sQ);
    const uint32_t aK0 = aQ + L::bytes(BQ), aV0 = aK0 + KVB; /* stage s: + s * 2 KVB */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = tc_qblock(a) * BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * 2 * MMA_M; /* m-tile mt: rows wq0 + 16 mt .. + 15 */
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, BQ);
    const int ntiles = (kv_end + BKV - 1) / BKV;

    tc_tile_async<T, D, BQ, NT>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, BKV, NT>(aK0, K, min(BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, BKV, NT>(aV0, V, min(BKV, a.seq_kv));
    tc_cp_async_commit();

    uint32_t qoff[4], koff[4], voff[4];
    {
        const int qr = lane & 15, qc = lane >> 4;
        const int krow = (lane & 7) + ((lane >> 4) << 3), kch = (lane >> 3) & 1;
        const int vrow = lane & 15, vch = lane >> 4;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            qoff[i] = aQ + (warp * 2 * MMA_M + qr) * PB + tc_chunk_off<D>(i, qc, qr);
            koff[i] = krow * PB + tc_chunk_off<D>(i, kch, krow);
            voff[i] = vrow * PB + tc_chunk_off<D>(i, vch, vrow);
        }
    }

    float o[2][D / MMA_N][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int n = 0; n < D / MMA_N; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
    float m[2][2] = { { -INFINITY, -INFINITY }, { -INFINITY, -INFINITY } };
    float l[2][2] = { { 0.0f, 0.0f }, { 0.0f, 0.0f } };

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * BKV;
        const uint32_t aK = aK0 + (t & 1) * 2 * KVB, aV = aV0 + (t & 1) * 2 * KVB;
        tc_cp_async_wait<1>(); /* K_t (and, at t = 0, Q) landed */
        __syncthreads();
        if (t + 1 < ntiles) {
            const int nk = kv0 + BKV, valid = min(BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * 2 * KVB;
            tc_tile_async<T, D, BKV, NT>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, BKV, NT>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else {
            tc_cp_async_commit();
            tc_cp_async_commit();
        }

        /* the later m-tile sees at least the keys the earlier one sees */
        const bool skip = tc_warp_skips(a, wq0, kv0) && tc_warp_skips(a, wq0 + MMA_M, kv0);
        float s[2][BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int j = 0; j < BKV / MMA_N; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
            // [snippet:m32-reuse]
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++) {
                uint32_t qf[2][4];
                tc_ldsm_x4(qf[0], qoff[kk % 4] + (kk / 4) * 128);
                tc_ldsm_x4(qf[1], qoff[kk % 4] + MMA_M * PB + (kk / 4) * 128);
#pragma unroll
                for (int j = 0; j < BKV / MMA_N; j += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + koff[kk % 4] + MMA_N * j * PB + (kk / 4) * 128);
                    tc_mma<T>(s[0][j], qf[0], kb[0], kb[1]);
                    tc_mma<T>(s[0][j + 1], qf[0], kb[2], kb[3]);
                    tc_mma<T>(s[1][j], qf[1], kb[0], kb[1]);
                    tc_mma<T>(s[1][j + 1], qf[1], kb[2], kb[3]);
                }
            }
            // [/snippet]
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
                if (tc_tile_needs_mask(a, wq0 + MMA_M * mt, kv0, BKV)) tc_apply_mask(s[mt], a, wq0 + MMA_M * mt, kv0);

            float alpha[2][2];
#pragma unroll
            for (int mt = 0; mt < 2; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float t2[BKV / MMA_N];
#pragma unroll
                    for (int j = 0; j < BKV / MMA_N; j++) t2[j] = fmaxf(s[mt][j][2 * r], s[mt][j][2 * r + 1]);
#pragma unroll
                    for (int w = BKV / MMA_K; w >= 1; w /= 2)
#pragma unroll
                        for (int j = 0; j < w; j++) t2[j] = fmaxf(t2[j], t2[j + w]);
                    const float mnew = fmaxf(m[mt][r], tc_quad_max(t2[0]));
                    const float ms = mnew == -INFINITY ? 0.0f : mnew;
                    const float msc = ms * a.scale_log2;
                    alpha[mt][r] = tc_exp2((m[mt][r] - ms) * a.scale_log2);
                    m[mt][r] = mnew;
#pragma unroll
                    for (int j = 0; j < BKV / MMA_N; j++) {
                        s[mt][j][2 * r] = tc_exp2(fmaf(s[mt][j][2 * r], a.scale_log2, -msc));
                        s[mt][j][2 * r + 1] = tc_exp2(fmaf(s[mt][j][2 * r + 1], a.scale_log2, -msc));
                        t2[j] = s[mt][j][2 * r] + s[mt][j][2 * r + 1];
                    }
#pragma unroll
                    for (int w = BKV / MMA_K; w >= 1; w /= 2)
#pragma unroll
                        for (int j = 0; j < w; j++) t2[j] += t2[j + w];
                    l[mt][r] = l[mt][r] * alpha[mt][r] + t2[0];
                }
            if (__any_sync(0xffffffffu, alpha[0][0] != 1.0f || alpha[0][1] != 1.0f || alpha[1][0] != 1.0f ||
                                            alpha[1][1] != 1.0f)) {
#pragma unroll
                for (int mt = 0; mt < 2; mt++)
#pragma unroll
                    for (int n = 0; n < D / MMA_N; n++) {
                        o[mt][n][0] *= alpha[mt][0];
                        o[mt][n][1] *= alpha[mt][0];
                        o[mt][n][2] *= alpha[mt][1];
                        o[mt][n][3] *= alpha[mt][1];
                    }
            }
        }

        tc_cp_async_wait<2>(); /* V_t landed */
        __syncthreads();
        if (!skip) {
#pragma unroll
            for (int kk = 0; kk < BKV / MMA_K; kk++) {
                uint32_t pa[2][4];
                tc_pack_p<T>(pa[0], s[0][2 * kk], s[0][2 * kk + 1]);
                tc_pack_p<T>(pa[1], s[1][2 * kk], s[1][2 * kk + 1]);
#pragma unroll
                for (int n = 0; n < D / MMA_N; n += 2) {
                    uint32_t vb[4];
                    tc_ldsm_x4_trans(vb, aV + voff[(n % 8) / 2] + MMA_K * kk * PB + (n / 8) * 128);
                    tc_mma<T>(o[0][n], pa[0], vb[0], vb[1]);
                    tc_mma<T>(o[0][n + 1], pa[0], vb[2], vb[3]);
                    tc_mma<T>(o[1][n], pa[1], vb[0], vb[1]);
                    tc_mma<T>(o[1][n + 1], pa[1], vb[2], vb[3]);
                }
            }
        }
    }

    /* O / l into the warp's own 32 rows of the Q tile (read only by this
     * warp, and no longer), then 16-byte rows out. Without any tile, Q's
     * copy (by every thread of the block) may still be landing there. */
    if (ntiles == 0) {
        tc_cp_async_wait<0>();
        __syncthreads();
    }
    const int g = lane / 4, c = lane % 4;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float lsum = tc_quad_sum(l[mt][r]);
            const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
            const int row = warp * 2 * MMA_M + MMA_M * mt + g + (MMA_M / 2) * r;
#pragma unroll
            for (int n = 0; n < D / MMA_N; n++)
                *reinterpret_cast<uint32_t *>(sQ + L::off(row, n) + 4 * c) =
                    tc_pack<T>(o[mt][n][2 * r] * inv, o[mt][n][2 * r + 1] * inv);
        }
    __syncwarp();
    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
    constexpr int CH = D / 8;
#pragma unroll
    for (int it = 0; it < 2 * MMA_M * CH / 32; it++) {
        const int i = it * 32 + lane, rr = i / CH, ch = i % CH;
        if (wq0 + rr < a.seq_q)
            *reinterpret_cast<uint4 *>(O + (size_t)(wq0 + rr) * D + ch * 8) =
                *reinterpret_cast<const uint4 *>(sQ + L::off(warp * 2 * MMA_M + rr, ch));
    }
}

/* ---------------------------------------------------------------- configurations */

/* The configuration each head dim runs: warps (x 32 query rows), keys per
 * tile, blocks per SM asked of the register allocator. d = 64: 64 keys;
 * d = 128: 32 keys (measured against 64: note 05b); d = 96 takes d = 128's
 * (not measured; it spills nothing), d = 32 d = 64's. */
template <int D> struct tc6_config;
template <> struct tc6_config<32> { static constexpr int WARPS = 4, BKV = 64, MINB = 1; };
template <> struct tc6_config<64> { static constexpr int WARPS = 4, BKV = 64, MINB = 1; };
template <> struct tc6_config<96> { static constexpr int WARPS = 4, BKV = 32, MINB = 1; };
template <> struct tc6_config<128> { static constexpr int WARPS = 4, BKV = 32, MINB = 1; };

template <typename T, int D> struct tc6_inst {
    using C = tc6_config<D>;
    static constexpr auto kernel = tc6_kernel<T, D, C::WARPS, C::BKV, C::MINB>;
    static constexpr int BQ = 2 * MMA_M * C::WARPS, BKV = C::BKV, THREADS = 32 * C::WARPS;
    static constexpr int SMEM = tc_layout<D>::bytes(BQ + 4 * C::BKV);
    static const char *what() { return "32 query rows per warp, Q re-read by ldmatrix per tile"; }
};
TC_RUNG(tc6, tc6_inst, TC_DIM_BIT(32) | TC_DIMS_BASE)
