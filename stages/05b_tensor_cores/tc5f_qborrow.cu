/* tc5f_qborrow: tc5e with the Q tile in stage 1's K/V buffers.
 *
 * What changes against tc5e_ostore.cu: Q is read from shared memory once,
 * into registers, before the first tile; from then on its buffer is idle.
 * Here it lives where stage 1's K and V go (issued only after the barrier
 * that ends tile 0, by which every warp holds its fragments), and O passes
 * through the same place at the end (after a barrier: other warps may still
 * read stage 1). Shared memory per block drops from bytes(BQ + 4 BKV) to
 * bytes(4 BKV): 80 KB to 64 KB at d = 128, which lets 3 blocks share an SM
 * where registers allow (the next rung chooses).
 *
 * Traffic: as tc3. Measured: note 05b's ladder table.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5f_qborrow */
#include "tc_common.cuh"

#define TC5F_BQ 64
#define TC5F_BKV 64
#define TC5F_WARPS 4
#define TC5F_THREADS (TC5F_WARPS * 32)

template <typename T, int D>
__global__ void __launch_bounds__(TC5F_THREADS) tc5f_kernel(tc_args_t a)
{
    using L = tc_layout<D>;
    constexpr int PB = L::PITCH * 16; /* row pitch in bytes */
    constexpr int KVB = L::bytes(TC5F_BKV); /* one K or V buffer */
    static_assert(TC5F_BQ <= 2 * TC5F_BKV, "the Q tile lives in stage 1's K/V buffers until tile 1 is issued");
    /* Shared memory: stage 0 = K_0 | V_0, stage 1 = K_1 | V_1. The Q tile is
     * read into registers once, so it borrows stage 1 until tile 1 is issued
     * (and O borrows it again at the end): 4 K/V buffers in all. */
    extern __shared__ uint4 tc5f_smem[];
    char *smem = reinterpret_cast<char *>(tc5f_smem);
    const uint32_t aS = tc_smem_addr(smem);
    const uint32_t aK0 = aS, aV0 = aS + KVB; /* stage s: + s * 2 KVB */
    char *sQ = smem + 2 * KVB;
    const uint32_t aQ = aS + 2 * KVB;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC5F_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, TC5F_BQ);
    const int ntiles = (kv_end + TC5F_BKV - 1) / TC5F_BKV;

    /* Prologue: group {Q, K_0}, then group {V_0}. */
    tc_tile_async<T, D, TC5F_BQ, TC5F_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, TC5F_BKV, TC5F_THREADS>(aK0, K, min(TC5F_BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, TC5F_BKV, TC5F_THREADS>(aV0, V, min(TC5F_BKV, a.seq_kv));
    tc_cp_async_commit();
    tc_cp_async_wait<1>();
    __syncthreads();

    uint32_t qf[D / MMA_K][4];
    {
        const int lr = lane & 15, lc = lane >> 4;
        const uint32_t base = aQ + (warp * MMA_M + lr) * PB;
#pragma unroll
        for (int kk = 0; kk < D / MMA_K; kk++) tc_ldsm_x4(qf[kk], base + tc_chunk_off<D>(kk % 4, lc, lr) + (kk / 4) * 128);
    }

    float o[D / MMA_N][4];
#pragma unroll
    for (int n = 0; n < D / MMA_N; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
    /* K: key row MMA_N j + krow, chunk 2 kk + kch; V (.trans): key row
     * MMA_K kk + vrow, chunk n + vch. chunk ^ (row % 8) only touches the low
     * 3 bits of the chunk, and row % 8 is fixed per lane: 4 per-lane offsets
     * cover every chunk, the rest is an immediate in the instruction (no
     * IMAD/LOP3 per ldmatrix). */
    uint32_t koff[4], voff[4];
    {
        const int krow = (lane & 7) + ((lane >> 4) << 3), kch = (lane >> 3) & 1;
        const int vrow = lane & 15, vch = lane >> 4;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            koff[i] = krow * PB + tc_chunk_off<D>(i, kch, krow);
            voff[i] = vrow * PB + tc_chunk_off<D>(i, vch, vrow);
        }
    }

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * TC5F_BKV;
        const uint32_t aK = aK0 + (t & 1) * 2 * KVB, aV = aV0 + (t & 1) * 2 * KVB;
        /* t = 0: K_0 has landed already, but the barrier also tells that every
         * warp has its Q fragments, so stage 1 may be overwritten. */
        tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
        __syncthreads();
        if (t + 1 < ntiles) {
            const int nk = kv0 + TC5F_BKV, valid = min(TC5F_BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * 2 * KVB;
            tc_tile_async<T, D, TC5F_BKV, TC5F_THREADS>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, TC5F_BKV, TC5F_THREADS>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else { /* empty groups keep the counts of the waits above and below right */
            tc_cp_async_commit();
            tc_cp_async_commit();
        }

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[TC5F_BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < TC5F_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            /* k-step outer: BKV / MMA_N independent accumulators per step,
             * where the j-outer loop ran d / MMA_K dependent MMAs on 2 */
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++)
#pragma unroll
                for (int j = 0; j < TC5F_BKV / MMA_N; j += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + koff[kk % 4] + MMA_N * j * PB + (kk / 4) * 128);
                    tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                    tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
                }
            if (tc_tile_needs_mask(a, wq0, kv0, TC5F_BKV)) tc_apply_mask(s, a, wq0, kv0);

            // [snippet:softmax-fragments]
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                /* max and sum as trees (depth log2(BKV / MMA_N) + 1) rather
                 * than chains of BKV / 4 dependent instructions */
                float tr[TC5F_BKV / MMA_N];
#pragma unroll
                for (int j = 0; j < TC5F_BKV / MMA_N; j++) tr[j] = fmaxf(s[j][2 * r], s[j][2 * r + 1]);
#pragma unroll
                for (int w = TC5F_BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) tr[j] = fmaxf(tr[j], tr[j + w]);
                const float mnew = fmaxf(m[r], tc_quad_max(tr[0]));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2; /* the row max in exp2 units */
                alpha[r] = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
#pragma unroll
                for (int j = 0; j < TC5F_BKV / MMA_N; j++) {
                    s[j][2 * r] = tc_exp2(fmaf(s[j][2 * r], a.scale_log2, -msc));
                    s[j][2 * r + 1] = tc_exp2(fmaf(s[j][2 * r + 1], a.scale_log2, -msc));
                    tr[j] = s[j][2 * r] + s[j][2 * r + 1];
                }
#pragma unroll
                for (int w = TC5F_BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) tr[j] += tr[j + w];
                l[r] = l[r] * alpha[r] + tr[0];
            }
            // [/snippet]
            /* O is rescaled only when some row of the warp raised its max:
             * d / 2 FMULs per thread and tile saved on the other tiles */
            // [snippet:lazy-rescale]
            if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
                for (int n = 0; n < D / MMA_N; n++) {
                    o[n][0] *= alpha[0];
                    o[n][1] *= alpha[0];
                    o[n][2] *= alpha[1];
                    o[n][3] *= alpha[1];
                }
            }
            // [/snippet]
        }

        tc_cp_async_wait<2>(); /* V_t landed (K_{t+1}, V_{t+1} may be in flight) */
        __syncthreads();
        if (!skip) {
            // [snippet:pv-registers]
#pragma unroll
            for (int kk = 0; kk < TC5F_BKV / MMA_K; kk++) {
                uint32_t pa[4];
                tc_pack_p<T>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
                for (int n = 0; n < D / MMA_N; n += 2) {
                    uint32_t vb[4];
                    tc_ldsm_x4_trans(vb, aV + voff[(n % 8) / 2] + MMA_K * kk * PB + (n / 8) * 128);
                    tc_mma<T>(o[n], pa, vb[0], vb[1]);
                    tc_mma<T>(o[n + 1], pa, vb[2], vb[3]);
                }
            }
            // [/snippet]
        }
    }

    /* O / l into the warp's own MMA_M rows of the Q tile's place, then whole
     * 16-byte chunks of rows out. The barrier: other warps may still read
     * stage 1 for their last tile. */
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lsum = tc_quad_sum(l[r]);
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
        const int row = warp * MMA_M + g + (MMA_M / 2) * r;
#pragma unroll
        for (int n = 0; n < D / MMA_N; n++)
            *reinterpret_cast<uint32_t *>(sQ + L::off(row, n) + 4 * c) =
                tc_pack<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    }
    __syncwarp();
    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
    constexpr int CH = D / 8; /* 16-byte chunks per row */
#pragma unroll
    for (int it = 0; it < MMA_M * CH / 32; it++) {
        const int i = it * 32 + lane, rr = i / CH, ch = i % CH;
        if (wq0 + rr < a.seq_q)
            *reinterpret_cast<uint4 *>(O + (size_t)(wq0 + rr) * D + ch * 8) =
                *reinterpret_cast<const uint4 *>(sQ + L::off(warp * MMA_M + rr, ch));
    }
}

template <int D> static constexpr int tc5f_smem() { return tc_layout<D>::bytes(4 * TC5F_BKV); }

struct tc5f_run {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        tc_launch_kernel<tc5f_kernel<T, D>>(tc_grid(s, TC5F_BQ), TC5F_THREADS, tc5f_smem<D>(),
                                           tc_make_args(s, q, k, v, o));
        return 0;
    }
};
struct tc5f_desc {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, tc5f_kernel<T, D>, TC5F_BQ, TC5F_BKV, TC5F_THREADS, tc5f_smem<D>(),
                           "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale, 16B O stores, Q in stage 1");
        return 0;
    }
};

extern "C" int tc5f_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc5f_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int tc5f_describe(const tc_shape_t *s, char *buf, size_t n)
{
    tc5f_desc f = { buf, n };
    return tc_dispatch(s, f);
}
