/* tc2_swizzle: tc1 with its fragments read by ldmatrix from swizzled tiles.
 *
 * What changes against tc1_mma.cu:
 *   - Shared-memory tiles are stored swizzled (chunk c of row r at chunk
 *     c ^ (r % 8); d = 96 pads rows to an odd pitch instead; tc_common.cuh),
 *     so the 8 rows any ldmatrix phase reads fall in 8 different bank groups:
 *     no bank conflicts, where tc1's row pitch of 128/256 bytes put all 8 in
 *     one (the profiler's shared-memory wavefronts per request drop from 8
 *     to 1).
 *   - Fragments come from ldmatrix.x4: one instruction gives a warp four 8x8
 *     matrices, i.e. Q's whole A fragment of a k-step, the B fragments of two
 *     8-key tiles of K, or (with .trans, which transposes on the way) the B
 *     fragments of two 8-dim tiles of V. tc1 needed 4 (Q), 4 (K) and 8
 *     16-bit loads (V) plus packing for the same registers.
 * Loads from global memory are unchanged: synchronous 16-byte loads through
 * registers, __syncthreads on both sides (tc3 makes them asynchronous).
 * Tiles: 64 query rows (4 warps x 16), 64 keys.
 *
 * Traffic: as tc1 (HBM es d (2 N_q + 2 N_kv ceil(N_q / 64)) per head, K/V
 * mostly from L2); shared memory: the same bytes as tc1 in 1/8 of the
 * wavefronts.
 *
 * Measured: note 05b's ladder table. The global loads are still
 * synchronous: between each tile's two barriers every warp waits for them,
 * which the next step (tc3) overlaps with compute.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc2_swizzle */
#include "tc_common.cuh"

#define TC2_BQ 64
#define TC2_BKV 64
#define TC2_WARPS 4
#define TC2_THREADS (TC2_WARPS * 32)

template <typename T, int D>
__global__ void __launch_bounds__(TC2_THREADS) tc2_kernel(tc_args_t a)
{
    using L = tc_layout<D>;
    extern __shared__ uint4 tc2_smem[];
    char *sQ = reinterpret_cast<char *>(tc2_smem);
    char *sK = sQ + L::bytes(TC2_BQ);
    char *sV = sK + L::bytes(TC2_BKV);
    const uint32_t aQ = tc_smem_addr(sQ), aK = tc_smem_addr(sK), aV = tc_smem_addr(sV);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC2_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;

    tc_tile_sync<T, D, TC2_BQ, TC2_THREADS>(sQ, Q + (size_t)q0 * D, a.seq_q - q0);
    __syncthreads();
    /* Q's A fragment for k-step kk: lane l points at row l % 16, chunk 2kk + l / 16. */
    uint32_t qf[D / MMA_K][4];
#pragma unroll
    for (int kk = 0; kk < D / MMA_K; kk++) tc_ldsm_x4(qf[kk], aQ + L::off(warp * MMA_M + (lane & 15), 2 * kk + (lane >> 4)));

    float o[D / MMA_N][4];
#pragma unroll
    for (int n = 0; n < D / MMA_N; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    /* Per-lane rows of the K and V ldmatrix (see tc_common.cuh):
     *   K, 8-key tiles j, j+1 at k-step kk: key 8j + (l % 8) + 8 (l / 16), chunk 2kk + (l / 8) % 2
     *   V, 8-dim tiles n, n+1 at key step kk: key 16kk + (l % 16), chunk n + l / 16 (.trans) */
    const int krow = (lane & 7) + ((lane >> 4) << 3), kch = (lane >> 3) & 1;
    const int vrow = lane & 15, vch = lane >> 4;

    const int kv_end = tc_kv_end(a, q0, TC2_BQ);
    for (int kv0 = 0; kv0 < kv_end; kv0 += TC2_BKV) {
        const int valid = min(TC2_BKV, a.seq_kv - kv0);
        __syncthreads();
        tc_tile_sync<T, D, TC2_BKV, TC2_THREADS>(sK, K + (size_t)kv0 * D, valid);
        tc_tile_sync<T, D, TC2_BKV, TC2_THREADS>(sV, V + (size_t)kv0 * D, valid);
        __syncthreads();
        if (tc_warp_skips(a, wq0, kv0)) continue;

        float s[TC2_BKV / MMA_N][4];
#pragma unroll
        for (int j = 0; j < TC2_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        // [snippet:s-ldmatrix]
#pragma unroll
        for (int j = 0; j < TC2_BKV / MMA_N; j += 2)
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++) {
                uint32_t kb[4];
                tc_ldsm_x4(kb, aK + L::off(MMA_N * j + krow, 2 * kk + kch));
                tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
            }
        // [/snippet]
#pragma unroll
        for (int j = 0; j < TC2_BKV / MMA_N; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] *= a.scale;
        if (tc_tile_needs_mask(a, wq0, kv0, TC2_BKV)) tc_apply_mask(s, a, wq0, kv0);

#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < TC2_BKV / MMA_N; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
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
            for (int j = 0; j < TC2_BKV / MMA_N; j++)
#pragma unroll
                for (int e = 2 * r; e < 2 * r + 2; e++) {
                    s[j][e] = exp2f((s[j][e] - ms) * LOG2E_F);
                    l[r] += s[j][e];
                }
        }

#pragma unroll
        for (int kk = 0; kk < TC2_BKV / MMA_K; kk++) {
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

template <int D> static constexpr int tc2_smem() { return tc_layout<D>::bytes(TC2_BQ + 2 * TC2_BKV); }

template <typename T, int D> struct tc2_inst {
    static constexpr auto kernel = tc2_kernel<T, D>;
    static constexpr int BQ = TC2_BQ, BKV = TC2_BKV, THREADS = TC2_THREADS, SMEM = tc2_smem<D>();
    static const char *what() { return tc_layout<D>::SWIZZLE ? "swizzled smem, ldmatrix" : "padded smem, ldmatrix"; }
};
TC_RUNG(tc2, tc2_inst, TC_DIMS_BASE)
