/* tc5a_kouter: tc4 with the loop over the k-steps of S = Q K^T outside the
 * loop over key tiles.
 *
 * What changes against tc4_exp2.cu: tc2-tc4 compute S two C tiles at a time,
 * each a chain of d / MMA_K MMAs into the same accumulators: every MMA waits
 * for the previous one's result. With the k-step outside, one step issues
 * BKV / MMA_N MMAs into different accumulators (8 at BKV = 64), which the
 * tensor pipe can overlap. Same instructions, same registers, another order.
 * Why: ncu on tc4 (note 05b, "The ladder") showed the tensor pipe 45% active
 * and "fixed latency execution dependency" as the top stall.
 *
 * Traffic: as tc3 (HBM es d (2 N_q + 2 N_kv ceil(N_q / 64)) per head).
 * Measured: note 05b's ladder table (notes/05b_tensor_cores.md).
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5a_kouter */
#include "tc_common.cuh"

#define TC5A_BQ 64
#define TC5A_BKV 64
#define TC5A_WARPS 4
#define TC5A_THREADS (TC5A_WARPS * 32)

template <typename T, int D>
__global__ void __launch_bounds__(TC5A_THREADS) tc5a_kernel(tc_args_t a)
{
    using L = tc_layout<D>;
    constexpr int KVB = L::bytes(TC5A_BKV); /* one K or V buffer */
    extern __shared__ uint4 tc5a_smem[];
    const uint32_t aQ = tc_smem_addr(tc5a_smem);
    const uint32_t aK0 = aQ + L::bytes(TC5A_BQ), aV0 = aK0 + 2 * KVB; /* buffers 0, 1 each */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC5A_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, TC5A_BQ);
    const int ntiles = (kv_end + TC5A_BKV - 1) / TC5A_BKV;

    /* Prologue: group {Q, K_0}, then group {V_0}. */
    tc_tile_async<T, D, TC5A_BQ, TC5A_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, TC5A_BKV, TC5A_THREADS>(aK0, K, min(TC5A_BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, TC5A_BKV, TC5A_THREADS>(aV0, V, min(TC5A_BKV, a.seq_kv));
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

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * TC5A_BKV;
        const uint32_t aK = aK0 + (t & 1) * KVB, aV = aV0 + (t & 1) * KVB;
        if (t > 0) { /* t = 0: the prologue waited */
            tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
            __syncthreads();
        }
        if (t + 1 < ntiles) {
            const int nk = kv0 + TC5A_BKV, valid = min(TC5A_BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * KVB;
            tc_tile_async<T, D, TC5A_BKV, TC5A_THREADS>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, TC5A_BKV, TC5A_THREADS>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else { /* empty groups keep the counts of the waits above and below right */
            tc_cp_async_commit();
            tc_cp_async_commit();
        }

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[TC5A_BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < TC5A_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            /* k-step outer: BKV / MMA_N independent accumulators per step,
             * where the j-outer loop ran d / MMA_K dependent MMAs on 2 */
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++)
#pragma unroll
                for (int j = 0; j < TC5A_BKV / MMA_N; j += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + L::off(MMA_N * j + krow, 2 * kk + kch));
                    tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                    tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
                }
            if (tc_tile_needs_mask(a, wq0, kv0, TC5A_BKV)) tc_apply_mask(s, a, wq0, kv0);

            // [snippet:softmax-fragments]
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < TC5A_BKV / MMA_N; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
                const float mnew = fmaxf(m[r], tc_quad_max(mx));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2; /* the row max in exp2 units */
                const float alpha = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
                l[r] *= alpha;
#pragma unroll
                for (int n = 0; n < D / MMA_N; n++) {
                    o[n][2 * r] *= alpha;
                    o[n][2 * r + 1] *= alpha;
                }
#pragma unroll
                for (int j = 0; j < TC5A_BKV / MMA_N; j++)
#pragma unroll
                    for (int e = 2 * r; e < 2 * r + 2; e++) {
                        s[j][e] = tc_exp2(fmaf(s[j][e], a.scale_log2, -msc));
                        l[r] += s[j][e];
                    }
            }
            // [/snippet]
        }

        tc_cp_async_wait<2>(); /* V_t landed (K_{t+1}, V_{t+1} may be in flight) */
        __syncthreads();
        if (!skip) {
            // [snippet:pv-registers]
#pragma unroll
            for (int kk = 0; kk < TC5A_BKV / MMA_K; kk++) {
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
            // [/snippet]
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

template <int D> static constexpr int tc5a_smem() { return tc_layout<D>::bytes(TC5A_BQ + 4 * TC5A_BKV); }

struct tc5a_run {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        tc_launch_kernel<tc5a_kernel<T, D>>(tc_grid(s, TC5A_BQ), TC5A_THREADS, tc5a_smem<D>(),
                                           tc_make_args(s, q, k, v, o));
        return 0;
    }
};
struct tc5a_desc {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, tc5a_kernel<T, D>, TC5A_BQ, TC5A_BKV, TC5A_THREADS, tc5a_smem<D>(),
                           "cp.async, 2 K/V stages, exp2, k-step-outer S");
        return 0;
    }
};

extern "C" int tc5a_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc5a_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int tc5a_describe(const tc_shape_t *s, char *buf, size_t n)
{
    tc5a_desc f = { buf, n };
    return tc_dispatch(s, f);
}
