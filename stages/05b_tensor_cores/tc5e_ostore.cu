/* tc5e_ostore: tc5d with O leaving through shared memory in 16-byte stores.
 *
 * What changes against tc5d_lazy.cu: the C fragment layout gives a lane two
 * neighbouring columns of a row: tc1-tc5d store O as 4-byte words, 8 rows
 * per instruction (8 sectors of 32 bytes, each a quarter used). Here each
 * warp writes its MMA_M rows of O / l into its own rows of the Q tile (its
 * Q fragments were read from there before the loop, by this warp alone),
 * then copies whole rows out, 16 bytes per lane: every sector full.
 *
 * Traffic: as tc3 (the same bytes, in fewer and fuller transactions).
 * Measured: note 05b's ladder table.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5e_ostore */
#include "tc_common.cuh"

#define TC5E_BQ 64
#define TC5E_BKV 64
#define TC5E_WARPS 4
#define TC5E_THREADS (TC5E_WARPS * 32)

template <typename T, int D>
__global__ void __launch_bounds__(TC5E_THREADS) tc5e_kernel(tc_args_t a)
{
    using L = tc_layout<D>;
    constexpr int PB = L::PITCH * 16; /* row pitch in bytes */
    constexpr int KVB = L::bytes(TC5E_BKV); /* one K or V buffer */
    extern __shared__ uint4 tc5e_smem[];
    char *sQ = reinterpret_cast<char *>(tc5e_smem);
    const uint32_t aQ = tc_smem_addr(sQ);
    const uint32_t aK0 = aQ + L::bytes(TC5E_BQ), aV0 = aK0 + 2 * KVB; /* buffers 0, 1 each */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC5E_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, TC5E_BQ);
    const int ntiles = (kv_end + TC5E_BKV - 1) / TC5E_BKV;

    /* Prologue: group {Q, K_0}, then group {V_0}. */
    tc_tile_async<T, D, TC5E_BQ, TC5E_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, TC5E_BKV, TC5E_THREADS>(aK0, K, min(TC5E_BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, TC5E_BKV, TC5E_THREADS>(aV0, V, min(TC5E_BKV, a.seq_kv));
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
        const int kv0 = t * TC5E_BKV;
        const uint32_t aK = aK0 + (t & 1) * KVB, aV = aV0 + (t & 1) * KVB;
        if (t > 0) { /* t = 0: the prologue waited */
            tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
            __syncthreads();
        }
        if (t + 1 < ntiles) {
            const int nk = kv0 + TC5E_BKV, valid = min(TC5E_BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * KVB;
            tc_tile_async<T, D, TC5E_BKV, TC5E_THREADS>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, TC5E_BKV, TC5E_THREADS>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else { /* empty groups keep the counts of the waits above and below right */
            tc_cp_async_commit();
            tc_cp_async_commit();
        }

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[TC5E_BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < TC5E_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            /* k-step outer: BKV / MMA_N independent accumulators per step,
             * where the j-outer loop ran d / MMA_K dependent MMAs on 2 */
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++)
#pragma unroll
                for (int j = 0; j < TC5E_BKV / MMA_N; j += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + koff[kk % 4] + MMA_N * j * PB + (kk / 4) * 128);
                    tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                    tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
                }
            if (tc_tile_needs_mask(a, wq0, kv0, TC5E_BKV)) tc_apply_mask(s, a, wq0, kv0);

            // [snippet:softmax-fragments]
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                /* max and sum as trees (depth log2(BKV / MMA_N) + 1) rather
                 * than chains of BKV / 4 dependent instructions */
                float tr[TC5E_BKV / MMA_N];
#pragma unroll
                for (int j = 0; j < TC5E_BKV / MMA_N; j++) tr[j] = fmaxf(s[j][2 * r], s[j][2 * r + 1]);
#pragma unroll
                for (int w = TC5E_BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) tr[j] = fmaxf(tr[j], tr[j + w]);
                const float mnew = fmaxf(m[r], tc_quad_max(tr[0]));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2; /* the row max in exp2 units */
                alpha[r] = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
#pragma unroll
                for (int j = 0; j < TC5E_BKV / MMA_N; j++) {
                    s[j][2 * r] = tc_exp2(fmaf(s[j][2 * r], a.scale_log2, -msc));
                    s[j][2 * r + 1] = tc_exp2(fmaf(s[j][2 * r + 1], a.scale_log2, -msc));
                    tr[j] = s[j][2 * r] + s[j][2 * r + 1];
                }
#pragma unroll
                for (int w = TC5E_BKV / (2 * MMA_N); w >= 1; w /= 2)
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
            for (int kk = 0; kk < TC5E_BKV / MMA_K; kk++) {
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

    /* O / l into the warp's own MMA_M rows of the Q tile (only this warp
     * read them, into its fragments, before the loop), then whole 16-byte
     * chunks of rows out: 4-byte stores of 8 rows by 4 lanes each become
     * coalesced 16-byte ones. */
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

template <int D> static constexpr int tc5e_smem() { return tc_layout<D>::bytes(TC5E_BQ + 4 * TC5E_BKV); }

struct tc5e_run {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        tc_launch_kernel<tc5e_kernel<T, D>>(tc_grid(s, TC5E_BQ), TC5E_THREADS, tc5e_smem<D>(),
                                           tc_make_args(s, q, k, v, o));
        return 0;
    }
};
struct tc5e_desc {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, tc5e_kernel<T, D>, TC5E_BQ, TC5E_BKV, TC5E_THREADS, tc5e_smem<D>(),
                           "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale, 16B O stores");
        return 0;
    }
};

extern "C" int tc5e_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc5e_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int tc5e_describe(const tc_shape_t *s, char *buf, size_t n)
{
    tc5e_desc f = { buf, n };
    return tc_dispatch(s, f);
}
