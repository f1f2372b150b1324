/* tc5b_tree: tc5a with the row max and the row sum reduced as trees.
 *
 * What changes against tc5a_kouter.cu: a thread holds BKV / 4 scores per row
 * (16 at BKV = 64); tc1-tc5a fold them into the max, and the exponentials
 * into l, one after the other: chains of 16 dependent FMNMX and FADD. Here
 * pairs are combined first, then pairs of pairs: depth log2(BKV / MMA_N) + 1
 * (4), the same instruction count. l is updated once per tile,
 * l = l alpha + (the tile's sum), instead of l *= alpha, then += each p.
 *
 * Traffic: as tc3. Measured: note 05b's ladder table.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5b_tree */
#include "tc_common.cuh"

#define TC5B_BQ 64
#define TC5B_BKV 64
#define TC5B_WARPS 4
#define TC5B_THREADS (TC5B_WARPS * 32)

template <typename T, int D>
__global__ void __launch_bounds__(TC5B_THREADS) tc5b_kernel(tc_args_t a)
{
    using L = tc_layout<D>;
    constexpr int KVB = L::bytes(TC5B_BKV); /* one K or V buffer */
    extern __shared__ uint4 tc5b_smem[];
    const uint32_t aQ = tc_smem_addr(tc5b_smem);
    const uint32_t aK0 = aQ + L::bytes(TC5B_BQ), aV0 = aK0 + 2 * KVB; /* buffers 0, 1 each */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC5B_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, TC5B_BQ);
    const int ntiles = (kv_end + TC5B_BKV - 1) / TC5B_BKV;

    /* Prologue: group {Q, K_0}, then group {V_0}. */
    tc_tile_async<T, D, TC5B_BQ, TC5B_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, TC5B_BKV, TC5B_THREADS>(aK0, K, min(TC5B_BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, TC5B_BKV, TC5B_THREADS>(aV0, V, min(TC5B_BKV, a.seq_kv));
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
        const int kv0 = t * TC5B_BKV;
        const uint32_t aK = aK0 + (t & 1) * KVB, aV = aV0 + (t & 1) * KVB;
        if (t > 0) { /* t = 0: the prologue waited */
            tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
            __syncthreads();
        }
        if (t + 1 < ntiles) {
            const int nk = kv0 + TC5B_BKV, valid = min(TC5B_BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * KVB;
            tc_tile_async<T, D, TC5B_BKV, TC5B_THREADS>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, TC5B_BKV, TC5B_THREADS>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else { /* empty groups keep the counts of the waits above and below right */
            tc_cp_async_commit();
            tc_cp_async_commit();
        }

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[TC5B_BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < TC5B_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            /* k-step outer: BKV / MMA_N independent accumulators per step,
             * where the j-outer loop ran d / MMA_K dependent MMAs on 2 */
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++)
#pragma unroll
                for (int j = 0; j < TC5B_BKV / MMA_N; j += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + L::off(MMA_N * j + krow, 2 * kk + kch));
                    tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                    tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
                }
            if (tc_tile_needs_mask(a, wq0, kv0, TC5B_BKV)) tc_apply_mask(s, a, wq0, kv0);

            // [snippet:softmax-fragments]
#pragma unroll
            for (int r = 0; r < 2; r++) {
                /* max and sum as trees (depth log2(BKV / MMA_N) + 1) rather
                 * than chains of BKV / 4 dependent instructions */
                float tr[TC5B_BKV / MMA_N];
#pragma unroll
                for (int j = 0; j < TC5B_BKV / MMA_N; j++) tr[j] = fmaxf(s[j][2 * r], s[j][2 * r + 1]);
#pragma unroll
                for (int w = TC5B_BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) tr[j] = fmaxf(tr[j], tr[j + w]);
                const float mnew = fmaxf(m[r], tc_quad_max(tr[0]));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2; /* the row max in exp2 units */
                const float alpha = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
#pragma unroll
                for (int n = 0; n < D / MMA_N; n++) {
                    o[n][2 * r] *= alpha;
                    o[n][2 * r + 1] *= alpha;
                }
#pragma unroll
                for (int j = 0; j < TC5B_BKV / MMA_N; j++) {
                    s[j][2 * r] = tc_exp2(fmaf(s[j][2 * r], a.scale_log2, -msc));
                    s[j][2 * r + 1] = tc_exp2(fmaf(s[j][2 * r + 1], a.scale_log2, -msc));
                    tr[j] = s[j][2 * r] + s[j][2 * r + 1];
                }
#pragma unroll
                for (int w = TC5B_BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) tr[j] += tr[j + w];
                l[r] = l[r] * alpha + tr[0];
            }
            // [/snippet]
        }

        tc_cp_async_wait<2>(); /* V_t landed (K_{t+1}, V_{t+1} may be in flight) */
        __syncthreads();
        if (!skip) {
            // [snippet:pv-registers]
#pragma unroll
            for (int kk = 0; kk < TC5B_BKV / MMA_K; kk++) {
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

template <int D> static constexpr int tc5b_smem() { return tc_layout<D>::bytes(TC5B_BQ + 4 * TC5B_BKV); }

struct tc5b_run {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        tc_launch_kernel<tc5b_kernel<T, D>>(tc_grid(s, TC5B_BQ), TC5B_THREADS, tc5b_smem<D>(),
                                           tc_make_args(s, q, k, v, o));
        return 0;
    }
};
struct tc5b_desc {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, tc5b_kernel<T, D>, TC5B_BQ, TC5B_BKV, TC5B_THREADS, tc5b_smem<D>(),
                           "cp.async, 2 K/V stages, exp2, k-step-outer S, tree reductions");
        return 0;
    }
};

extern "C" int tc5b_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc5b_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int tc5b_describe(const tc_shape_t *s, char *buf, size_t n)
{
    tc5b_desc f = { buf, n };
    return tc_dispatch(s, f);
}
