/* Stage 08's tensor-core forward: stage 05b's FlashAttention-2 forward
 * (tc_common.cuh's mma.sync, ldmatrix, swizzled tiles, cp.async double
 * buffer, exp2; the loop of tc3_pipeline.cu) with one more output, the
 * log-sum-exp of every query row,
 *     L = m + ln l = (m scale log2 e + log2 l) ln 2     (m: the raw max score)
 * which is all the backward needs to rebuild P = exp(scale S - L) tile by
 * tile: 4 bytes per query row instead of N keys' worth of P. A row with no
 * visible key gets O = 0 and L = -inf.
 *
 * What changes against stage 05b's kernels: the L store, and nothing else
 * of substance; the 05b ladder's later tuning (immediate ldmatrix offsets,
 * lazy rescale, staged O stores) is left out, since this forward only feeds
 * the backward here. Tiles: 64 query rows (4 warps x 16) x 64 keys.
 *
 * Traffic per head: es d (2 Nq + 2 Nk ceil(Nq / 64)) + 4 Nq (L), the K/V
 * re-reads mostly from L2.
 *
 * Run: through bwd_gpu_forward (the stage program, test_backward_gpu). */
#include "bwd_kernels.h"
#include "bwd_tc_common.cuh"

#define FWD_WARPS 4
#define FWD_BQ 64
#define FWD_BKV 64

template <typename T, int D>
__global__ void __launch_bounds__(FWD_WARPS * 32, 2) bwd_tc_fwd_kernel(tc_args_t a, float *__restrict__ lse)
{
    constexpr int BQ = FWD_BQ, BKV = FWD_BKV, NT = FWD_WARPS * 32, NJ = BKV / 8;
    using L = tc_layout<D>;
    constexpr int QB = L::bytes(BQ), KVB = L::bytes(BKV);
    extern __shared__ uint4 bwd_fwd_smem[];
    const uint32_t aS = tc_smem_addr(bwd_fwd_smem);
    const uint32_t aQ = aS, aK0 = aS + QB; /* stage s: K at aK0 + 2 s KVB, V + KVB */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + 16 * warp;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int ntiles = (tc_kv_end(a, q0, BQ) + BKV - 1) / BKV;

    tc_tile_async<T, D, BQ, NT>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) {
        tc_tile_async<T, D, BKV, NT>(aK0, K, a.seq_kv);
        tc_tile_async<T, D, BKV, NT>(aK0 + KVB, V, a.seq_kv);
    }
    tc_cp_async_commit();

    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
    uint32_t qf[D / 16][4];

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * BKV;
        const uint32_t aK = aK0 + (t & 1) * 2 * KVB, aV = aK + KVB;
        tc_cp_async_wait<0>();
        __syncthreads(); /* tile t has landed; every warp is done with tile t - 1 */
        if (t == 0)
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) bwd_ldsm_a<D>(qf[kk], aQ, 16 * warp, kk);
        if (t + 1 < ntiles) {
            const uint32_t nb = aK0 + ((t + 1) & 1) * 2 * KVB;
            tc_tile_async<T, D, BKV, NT>(nb, K + (size_t)(kv0 + BKV) * D, a.seq_kv - kv0 - BKV);
            tc_tile_async<T, D, BKV, NT>(nb + KVB, V + (size_t)(kv0 + BKV) * D, a.seq_kv - kv0 - BKV);
        }
        tc_cp_async_commit();
        if (tc_warp_skips(a, wq0, kv0)) continue;

        float s[NJ][4];
#pragma unroll
        for (int j = 0; j < NJ; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int j = 0; j < NJ; j += 2) {
                uint32_t kb[4];
                bwd_ldsm_b<D>(kb, aK, 8 * j, kk);
                bwd_mma2<T>(s[j], s[j + 1], qf[kk], kb);
            }
        if (tc_tile_needs_mask(a, wq0, kv0, BKV)) tc_apply_mask(s, a, wq0, kv0);
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < NJ; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            const float mnew = fmaxf(m[r], tc_quad_max(mx));
            const float ms = mnew == -INFINITY ? 0.0f : mnew; /* no visible key yet: every p is 0 */
            const float msc = ms * a.scale_log2;
            const float alpha = tc_exp2((m[r] - ms) * a.scale_log2);
            m[r] = mnew;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                s[j][2 * r] = tc_exp2(fmaf(s[j][2 * r], a.scale_log2, -msc));
                s[j][2 * r + 1] = tc_exp2(fmaf(s[j][2 * r + 1], a.scale_log2, -msc));
                sum += s[j][2 * r] + s[j][2 * r + 1];
            }
            l[r] = l[r] * alpha + sum;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                o[n][2 * r] *= alpha;
                o[n][2 * r + 1] *= alpha;
            }
        }
        bwd_mma_rb1<T, D>(o, s, aV); /* O += P V_j */
    }

    tc_cp_async_wait<0>(); /* nothing left in flight when the block exits (ntiles = 0) */
    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = wq0 + g + 8 * r;
        const float lsum = tc_quad_sum(l[r]);
        if (row >= a.seq_q) continue;
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *reinterpret_cast<uint32_t *>(O + (size_t)row * D + 8 * n + 2 * c) =
                tc_pack<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
        if (c == 0)
            lse[qhead * a.seq_q + row] =
                lsum > 0.0f ? (m[r] * a.scale_log2 + log2f(lsum)) * 0.69314718055994531f : -INFINITY;
    }
}

extern "C" int bwd_gpu_tc_dim_ok(int d) { return d == 32 || d == 64 || d == 96 || d == 128; }

struct tc_fwd_run {
    static constexpr unsigned DIMS = BWD_TC_DIMS;
    const tc_shape_t *s;
    tc_args_t a; /* stage 05b's arguments; L goes by its own */
    float *lse;
    template <typename T, int D> int run()
    {
        constexpr int smem = tc_layout<D>::bytes(FWD_BQ + 4 * FWD_BKV);
        bwd_raise_smem<bwd_tc_fwd_kernel<T, D>>(smem);
        bwd_tc_fwd_kernel<T, D><<<tc_grid(s, FWD_BQ), FWD_WARPS * 32, smem>>>(a, lse);
        LAUNCH_CHECK();
        return 0;
    }
};

extern "C" int bwd_gpu_tc_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse)
{
    if (s->seq_q == 0 || s->batch * s->heads == 0) return 0;
    const tc_shape_t ts = bwd_tc_shape(s);
    tc_fwd_run f = { &ts, tc_make_args(&ts, q, k, v, o), lse };
    return tc_dispatch(&ts, f);
}
