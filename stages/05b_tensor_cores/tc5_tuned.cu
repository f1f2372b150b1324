/* tc5_tuned: tc5f with the tile shape and occupancy chosen per head dim.
 *
 * What changes against tc5f_qborrow.cu: tc1-tc5f run every head dim with 4
 * warps (64 query rows) and 64 keys per tile. Here each d has its own
 * configuration (tc5_config below): warps per block, keys per tile, the
 * blocks per SM asked of the register allocator, and at d = 256 Q re-read
 * from shared memory instead of held in registers. It also takes the head
 * dims the earlier rungs decline: 32, 192 and 256 (FlashAttention-2 takes
 * every multiple of 8 up to 256; models use 32 ... 256).
 *
 * The ladder from tc4 (each rung one change, measured in note 05b's table):
 *   tc5a_kouter   S loop with the k-step outside (independent MMAs)
 *   tc5b_tree     row max and sum as trees
 *   tc5c_immoff   ldmatrix addresses: per-lane offsets + immediates
 *   tc5d_lazy     O rescale skipped when no row max moved (warp vote)
 *   tc5e_ostore   O out through shared memory, 16-byte stores
 *   tc5f_qborrow  Q tile in stage 1's K/V buffers (shared memory 4 buffers)
 *   tc5_tuned     tiles and occupancy per head dim (this file)
 *
 * Traffic per head: HBM es d (2 N_q + 2 N_kv ceil(N_q / BQ)) at most (K/V
 * re-reads mostly hit L2); shared memory per warp and tile: K and V once.
 * Measured: note 05b's ladder table (notes/05b_tensor_cores.md).
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5_tuned [--dim 256] */
#include "tc_common.cuh"

/* WARPS x MMA_M query rows and BKV keys per tile; MINB blocks per SM asked of
 * the register allocator (__launch_bounds__: 2 caps 256-thread blocks at 128
 * registers); QREG: Q's fragments in registers for the whole block (1), or
 * re-read from a resident Q tile at every k-step (0: d = 256, where Q's d / 4
 * registers and O's d / 2 leave too few for S). */
template <typename T, int D, int WARPS, int BKV, int MINB, int QREG>
__global__ void __launch_bounds__(WARPS * 32, MINB) tc5_kernel(tc_args_t a)
{
    constexpr int TC5_BQ = MMA_M * WARPS, TC5_BKV = BKV, TC5_THREADS = 32 * WARPS;
    using L = tc_layout<D>;
    constexpr int PB = L::PITCH * 16; /* row pitch in bytes */
    constexpr int KVB = L::bytes(TC5_BKV); /* one K or V buffer */
    static_assert(!QREG || TC5_BQ <= 2 * TC5_BKV, "the Q tile lives in stage 1's K/V buffers until tile 1 is issued");
    /* Shared memory: stage 0 = K_0 | V_0, stage 1 = K_1 | V_1. The Q tile is
     * read into registers once, so it borrows stage 1 until tile 1 is issued
     * (and O borrows it again at the end): 4 K/V buffers in all. With QREG =
     * 0 the Q tile stays, after the 4 buffers, for the whole block. */
    extern __shared__ uint4 tc5_smem[];
    char *smem = reinterpret_cast<char *>(tc5_smem);
    const uint32_t aS = tc_smem_addr(smem);
    const uint32_t aK0 = aS, aV0 = aS + KVB; /* stage s: + s * 2 KVB */
    char *sQ = smem + (QREG ? 2 : 4) * KVB;
    const uint32_t aQ = aS + (QREG ? 2 : 4) * KVB;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC5_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, TC5_BQ);
    const int ntiles = (kv_end + TC5_BKV - 1) / TC5_BKV;

    /* Prologue: group {Q, K_0}, then group {V_0}. */
    tc_tile_async<T, D, TC5_BQ, TC5_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, TC5_BKV, TC5_THREADS>(aK0, K, min(TC5_BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, TC5_BKV, TC5_THREADS>(aV0, V, min(TC5_BKV, a.seq_kv));
    tc_cp_async_commit();
    tc_cp_async_wait<1>();
    __syncthreads();

    uint32_t qf[QREG ? D / MMA_K : 1][4];
    uint32_t qoff[4]; /* QREG = 0: Q's per-lane offsets, as koff below */
    {
        const int lr = lane & 15, lc = lane >> 4;
        const uint32_t base = aQ + (warp * MMA_M + lr) * PB;
#pragma unroll
        for (int i = 0; i < 4; i++) qoff[i] = base + tc_chunk_off<D>(i, lc, lr);
        if constexpr (QREG) {
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++) tc_ldsm_x4(qf[kk], qoff[kk % 4] + (kk / 4) * 128);
        }
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
        const int kv0 = t * TC5_BKV;
        const uint32_t aK = aK0 + (t & 1) * 2 * KVB, aV = aV0 + (t & 1) * 2 * KVB;
        /* t = 0: K_0 has landed already, but the barrier also tells that every
         * warp has its Q fragments, so stage 1 may be overwritten. */
        tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
        __syncthreads();
        if (t + 1 < ntiles) {
            const int nk = kv0 + TC5_BKV, valid = min(TC5_BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * 2 * KVB;
            tc_tile_async<T, D, TC5_BKV, TC5_THREADS>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, TC5_BKV, TC5_THREADS>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else { /* empty groups keep the counts of the waits above and below right */
            tc_cp_async_commit();
            tc_cp_async_commit();
        }

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[TC5_BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < TC5_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            /* k-step outer: BKV / MMA_N independent accumulators per step,
             * where the j-outer loop ran d / MMA_K dependent MMAs on 2 */
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++) {
                const int qk = QREG ? kk : 0;
                if constexpr (!QREG) tc_ldsm_x4(qf[0], qoff[kk % 4] + (kk / 4) * 128);
#pragma unroll
                for (int j = 0; j < TC5_BKV / MMA_N; j += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + koff[kk % 4] + MMA_N * j * PB + (kk / 4) * 128);
                    tc_mma<T>(s[j], qf[qk], kb[0], kb[1]);
                    tc_mma<T>(s[j + 1], qf[qk], kb[2], kb[3]);
                }
            }
            if (tc_tile_needs_mask(a, wq0, kv0, TC5_BKV)) tc_apply_mask(s, a, wq0, kv0);

            // [snippet:softmax-fragments]
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                /* max and sum as trees (depth log2(BKV / MMA_N) + 1) rather
                 * than chains of BKV / 4 dependent instructions */
                float tr[TC5_BKV / MMA_N];
#pragma unroll
                for (int j = 0; j < TC5_BKV / MMA_N; j++) tr[j] = fmaxf(s[j][2 * r], s[j][2 * r + 1]);
#pragma unroll
                for (int w = TC5_BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) tr[j] = fmaxf(tr[j], tr[j + w]);
                const float mnew = fmaxf(m[r], tc_quad_max(tr[0]));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2; /* the row max in exp2 units */
                alpha[r] = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
#pragma unroll
                for (int j = 0; j < TC5_BKV / MMA_N; j++) {
                    s[j][2 * r] = tc_exp2(fmaf(s[j][2 * r], a.scale_log2, -msc));
                    s[j][2 * r + 1] = tc_exp2(fmaf(s[j][2 * r + 1], a.scale_log2, -msc));
                    tr[j] = s[j][2 * r] + s[j][2 * r + 1];
                }
#pragma unroll
                for (int w = TC5_BKV / (2 * MMA_N); w >= 1; w /= 2)
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
            for (int kk = 0; kk < TC5_BKV / MMA_K; kk++) {
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

/* ---------------------------------------------------------------- configurations */

/* The one configuration each head dim runs (TC5_CONFIG), chosen by measuring
 * (note 05b, "tc5_tuned: per head dim") where a figure exists, else by the
 * register and shared-memory budget: one block of 8 warps per SM loses to
 * two blocks of 4 (a barrier stalls every warp of a block, and a second
 * block fills those cycles); at d = 64 8 warps capped at 128 registers (2
 * blocks, 16 warps per SM) won. d = 32 takes d = 64's choice, d = 96
 * d = 128's. d = 192 takes 32 keys per tile (with 64, Q's 48 registers, O's
 * 96 and S's 32 spill 56 bytes: ptxas -v). d = 256 re-reads Q (QREG = 0) and
 * takes 32 keys, so that O (128 registers) and S fit without spilling and 2
 * blocks (96 KB of shared memory each) share an SM. d = 32, 96, 192, 256:
 * chosen by these budgets, not by measurement. */
template <int D> struct tc5_config;
template <> struct tc5_config<32> { static constexpr int WARPS = 8, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<64> { static constexpr int WARPS = 8, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<96> { static constexpr int WARPS = 4, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<128> { static constexpr int WARPS = 4, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<192> { static constexpr int WARPS = 4, BKV = 32, MINB = 2, QREG = 1; };
template <> struct tc5_config<256> { static constexpr int WARPS = 4, BKV = 32, MINB = 2, QREG = 0; };

template <typename T, int D> struct tc5_inst {
    using C = tc5_config<D>;
    static constexpr auto kernel = tc5_kernel<T, D, C::WARPS, C::BKV, C::MINB, C::QREG>;
    static constexpr int BQ = MMA_M * C::WARPS, THREADS = 32 * C::WARPS;
    static constexpr int SMEM = tc_layout<D>::bytes(4 * C::BKV + (C::QREG ? 0 : BQ));
};

struct tc5_run {
    static constexpr unsigned DIMS = TC_DIMS_ALL;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        using I = tc5_inst<T, D>;
        tc_launch_kernel<I::kernel>(tc_grid(s, I::BQ), I::THREADS, I::SMEM, tc_make_args(s, q, k, v, o));
        return 0;
    }
};
struct tc5_desc {
    static constexpr unsigned DIMS = TC_DIMS_ALL;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        using I = tc5_inst<T, D>;
        char extra[160];
        snprintf(extra, sizeof extra, "tiles for d = %d: %d warps, %d keys, %s", D, I::C::WARPS, I::C::BKV,
                 I::C::QREG ? "Q fragments in registers, Q tile in stage 1's buffers"
                            : "Q re-read from shared memory per k-step (registers for O at d = 256)");
        tc_describe_kernel(buf, n, I::kernel, I::BQ, I::C::BKV, I::THREADS, I::SMEM, extra);
        return 0;
    }
};

extern "C" int tc5_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc5_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int tc5_describe(const tc_shape_t *s, char *buf, size_t n)
{
    tc5_desc f = { buf, n };
    return tc_dispatch(s, f);
}
