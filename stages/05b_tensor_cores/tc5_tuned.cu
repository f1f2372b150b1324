/* tc5_tuned: tc4 with fewer dependent and fewer overhead instructions per
 * tile, and the tile shape and occupancy chosen per head dim by measurement.
 *
 * What the profiler said about tc4 (ncu, H200, d = 128, N = 16384): tensor
 * pipe active 45% of cycles, issue slots 44% busy, 2 warps per scheduler
 * (248 registers: 2 blocks of 4 warps per SM), and the top stall "fixed
 * latency execution dependency" (38% of the cycles between two issues):
 * too little independent work per warp, not bandwidth (L2 37%, DRAM 1%).
 * What changes against tc4_exp2.cu:
 *   - S = Q K^T with the k-step loop outside: BKV / 8 independent
 *     accumulators per step instead of tc2-tc4's 2 at a time, each running
 *     a chain of d / 16 dependent MMAs.
 *   - Row max and row sum as trees instead of chains of BKV / 4 dependent
 *     FMNMX / FADD.
 *   - ldmatrix addresses: chunk ^ (row % 8) only touches the low 3 bits of
 *     the chunk and row % 8 is fixed per lane, so 4 per-lane offsets
 *     (tc5_sw) cover every chunk; each address is a register plus a
 *     compile-time immediate folded into the instruction (no IMAD/LOP3 per
 *     ldmatrix).
 *   - The O rescale (d/2 FMULs per thread and tile) is skipped when no row
 *     of the warp raised its max (a warp vote).
 *   - O leaves through shared memory as 16-byte coalesced stores.
 *   - The Q tile borrows stage 1's K/V buffers (it is in registers after the
 *     first barrier): 4 K/V buffers of shared memory in all.
 *   - Tiles and occupancy per head dim (TC5_CFGS, TC5_DEFAULT): measured,
 *     one block of 8 warps per SM loses to two blocks of 4 (a barrier stalls
 *     every warp of a block, and a second block fills those cycles); at
 *     d = 64, 8 warps capped at 128 registers (2 blocks, 16 warps per SM)
 *     won; at d = 128, 4 warps with 64 keys (2 blocks per SM).
 *
 * Traffic per head: HBM es d (2 N_q + 2 N_kv ceil(N_q / BQ)) at most (K/V
 * re-reads mostly hit L2); shared memory per warp and tile: K and V once.
 *
 * Measured (H200, bf16, N = 16384, 2026-11-28): 299.4 TFLOP/s at d = 128,
 * 286.1 at d = 64. ncu (d = 128): tensor pipe 47.5% active, 2.52e9
 * instructions, stall "wait" (fixed latency) 2.35 of 5.35 cycles per issue.
 *
 * Run: build/bin/test_attention_tc, or version index 4 of tc.h's API. */
#include "tc_common.cuh"

/* Per-lane byte offset, inside a row, of 16-byte chunk 8 k + 2 i + lc for a
 * lane reading row lr (mod 8) of a tile: for the swizzled layout
 * ((2 i) ^ lc ^ (lr % 8)) * 16, plus k * 128 known at compile time. */
template <int D> __device__ __forceinline__ uint32_t tc5_sw(int i, int lc, int lr)
{
    return tc_layout<D>::SWIZZLE ? (uint32_t)(((2 * i) ^ lc ^ (lr & 7)) * 16) : (uint32_t)((2 * i + lc) * 16);
}

template <typename T, int D, int WARPS, int BKV, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB) tc5_kernel(tc_args_t a)
{
    constexpr int BQ = 16 * WARPS, NT = 32 * WARPS;
    using L = tc_layout<D>;
    constexpr int PB = L::PITCH * 16; /* row pitch in bytes */
    constexpr int KVB = L::bytes(BKV);
    static_assert(BQ <= 2 * BKV, "the Q tile lives in stage 1's K/V buffers until the first tile");
    /* Shared memory: stage 0 = K_0 | V_0, stage 1 = K_1 | V_1. The Q tile is
     * read into registers once, so it borrows stage 1 until tile 1 is issued
     * (and O borrows it again at the end): 4 K/V buffers in all, 64 KB at
     * d = 128, BKV = 64, which lets 3 blocks share an SM. */
    extern __shared__ uint4 tc5_smem[];
    char *smem = reinterpret_cast<char *>(tc5_smem);
    const uint32_t aS = tc_smem_addr(smem);
    const uint32_t aK0 = aS, aV0 = aS + KVB; /* stage s: + s * 2 KVB */
    char *sQ = smem + 2 * KVB;
    const uint32_t aQ = aS + 2 * KVB;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * 16;
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
    tc_cp_async_wait<1>();
    __syncthreads();

    uint32_t qf[D / 16][4];
    {
        const int lr = lane & 15, lc = lane >> 4;
        const uint32_t base = aQ + (warp * 16 + lr) * PB;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) tc_ldsm_x4(qf[kk], base + tc5_sw<D>(kk % 4, lc, lr) + (kk / 4) * 128);
    }
    /* K: key row 8j + krow, chunk 2kk + kch; V (.trans): key row 16kk + vrow, chunk n + vch. */
    uint32_t koff[4], voff[4];
    {
        const int krow = (lane & 7) + ((lane >> 4) << 3), kch = (lane >> 3) & 1;
        const int vrow = lane & 15, vch = lane >> 4;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            koff[i] = krow * PB + tc5_sw<D>(i, kch, krow);
            voff[i] = vrow * PB + tc5_sw<D>(i, vch, vrow);
        }
    }

    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * BKV;
        const uint32_t aK = aK0 + (t & 1) * 2 * KVB, aV = aV0 + (t & 1) * 2 * KVB;
        /* t = 0: K_0 has landed already, but the barrier also tells that every
         * warp has its Q fragments, so stage 1 may be overwritten. */
        tc_cp_async_wait<1>();
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

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[BKV / 8][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < BKV / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            /* k-step outer: BKV / 8 independent accumulator chains per step
             * (tc2-tc4 ran d / 16 dependent MMAs on 2 accumulators at a time) */
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
                for (int j = 0; j < BKV / 8; j += 2) {
                    uint32_t kb[4];
                    tc_ldsm_x4(kb, aK + koff[kk % 4] + 8 * j * PB + (kk / 4) * 128);
                    tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                    tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
                }
            if (tc_tile_needs_mask(a, wq0, kv0, BKV)) tc_apply_mask(s, a, wq0, kv0);

            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                /* max and sum as trees (depth log2(BKV / 8) + 1) rather than
                 * chains of BKV / 4 dependent instructions */
                float t[BKV / 8];
#pragma unroll
                for (int j = 0; j < BKV / 8; j++) t[j] = fmaxf(s[j][2 * r], s[j][2 * r + 1]);
#pragma unroll
                for (int w = BKV / 16; w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) t[j] = fmaxf(t[j], t[j + w]);
                const float mnew = fmaxf(m[r], tc_quad_max(t[0]));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2;
                alpha[r] = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
#pragma unroll
                for (int j = 0; j < BKV / 8; j++) {
                    s[j][2 * r] = tc_exp2(fmaf(s[j][2 * r], a.scale_log2, -msc));
                    s[j][2 * r + 1] = tc_exp2(fmaf(s[j][2 * r + 1], a.scale_log2, -msc));
                    t[j] = s[j][2 * r] + s[j][2 * r + 1];
                }
#pragma unroll
                for (int w = BKV / 16; w >= 1; w /= 2)
#pragma unroll
                    for (int j = 0; j < w; j++) t[j] += t[j + w];
                l[r] = l[r] * alpha[r] + t[0];
            }
            // [snippet:lazy-rescale]
            if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
                for (int n = 0; n < D / 8; n++) {
                    o[n][0] *= alpha[0];
                    o[n][1] *= alpha[0];
                    o[n][2] *= alpha[1];
                    o[n][3] *= alpha[1];
                }
            }
            // [/snippet]
        }

        tc_cp_async_wait<2>();
        __syncthreads();
        if (!skip) {
#pragma unroll
            for (int kk = 0; kk < BKV / 16; kk++) {
                uint32_t pa[4];
                tc_pack_p<T>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
                for (int n = 0; n < D / 8; n += 2) {
                    uint32_t vb[4];
                    tc_ldsm_x4_trans(vb, aV + voff[(n % 8) / 2] + 16 * kk * PB + (n / 8) * 128);
                    tc_mma<T>(o[n], pa, vb[0], vb[1]);
                    tc_mma<T>(o[n + 1], pa, vb[2], vb[3]);
                }
            }
        }
    }

    /* O / l into the warp's own 16 rows of the Q tile's place (conflict-free:
     * the 8 rows g of one store sit in 8 bank groups), then 16-byte rows out.
     * The barrier: other warps may still read stage 1 for their last tile. */
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lsum = tc_quad_sum(l[r]);
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
        const int row = warp * 16 + g + 8 * r;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *reinterpret_cast<uint32_t *>(sQ + L::off(row, n) + 4 * c) =
                tc_pack<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    }
    __syncwarp();
    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
    constexpr int CH = D / 8;
#pragma unroll
    for (int it = 0; it < 16 * CH / 32; it++) {
        const int i = it * 32 + lane, rr = i / CH, ch = i % CH;
        if (wq0 + rr < a.seq_q)
            *reinterpret_cast<uint4 *>(O + (size_t)(wq0 + rr) * D + ch * 8) =
                *reinterpret_cast<const uint4 *>(sQ + L::off(warp * 16 + rr, ch));
    }
}

/* ---------------------------------------------------------------- configurations */

/* warps (x 16 query rows), keys per tile, blocks per SM asked of the
 * register allocator (__launch_bounds__: 2 caps 256-thread blocks at 128
 * registers). */
struct tc5_cfg_t {
    int warps, bkv, minb;
};
static const tc5_cfg_t TC5_CFGS[] = { { 4, 64, 2 }, { 4, 64, 3 }, { 8, 64, 2 }, { 4, 128, 2 }, { 8, 64, 1 }, { 4, 64, 4 } };
#define TC5_NCFG ((int)(sizeof TC5_CFGS / sizeof TC5_CFGS[0]))

/* TC5_DEFAULT: the configuration each head dim runs (an index into TC5_CFGS). */
static int tc5_default_cfg(int d)
{
    switch (d) {
    case 64: return 2;  /* 8 warps capped at 128 registers, 2 blocks/SM: 286 TFLOP/s at N = 16384 (H200, 2026-11-28) */
    case 96: return 0;  /* not measured; the d = 128 choice */
    default: return 0;  /* 4 warps, 64 keys, 2 blocks/SM: 299 TFLOP/s at N = 16384 */
    }
}

template <int D, int WARPS, int BKV> static constexpr int tc5_smem() { return tc_layout<D>::bytes(4 * BKV); }

template <typename T, int D, int WARPS, int BKV, int MINB> struct tc5_inst {
    static void launch(const tc_shape_t *s, const tc_args_t &a)
    {
        tc_launch_kernel<tc5_kernel<T, D, WARPS, BKV, MINB>>(tc_grid(s, 16 * WARPS), 32 * WARPS, tc5_smem<D, WARPS, BKV>(), a);
    }
    static void describe(char *buf, size_t n)
    {
        tc_describe_kernel(buf, n, tc5_kernel<T, D, WARPS, BKV, MINB>, 16 * WARPS, BKV, 32 * WARPS,
                           tc5_smem<D, WARPS, BKV>(), "cp.async x2, exp2, immediate ldmatrix offsets, 16B O stores");
    }
};

struct tc5_run {
    int cfg;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    char *buf; /* describe instead of launch when set */
    size_t n;
    template <typename T, int D> int run()
    {
        const tc_args_t a = tc_make_args(s, q, k, v, o);
        switch (cfg) {
#define TC5_CASE(i, W, B, M)                                                                                  \
    case i:                                                                                                   \
        if (buf) tc5_inst<T, D, W, B, M>::describe(buf, n);                                                   \
        else tc5_inst<T, D, W, B, M>::launch(s, a);                                                           \
        return 0;
            TC5_CASE(0, 4, 64, 2)
            TC5_CASE(1, 4, 64, 3)
            TC5_CASE(2, 8, 64, 2)
            TC5_CASE(3, 4, 128, 2)
            TC5_CASE(4, 8, 64, 1)
            TC5_CASE(5, 4, 64, 4)
#undef TC5_CASE
        default: return -1;
        }
    }
};

/* The sweep's entry points (declared by the dev driver, not in tc.h). */
extern "C" int tc5_ncfg(void) { return TC5_NCFG; }
extern "C" int tc5_cfg_warps(int cfg) { return cfg >= 0 && cfg < TC5_NCFG ? TC5_CFGS[cfg].warps : 0; }
extern "C" int tc5_cfg_bkv(int cfg) { return cfg >= 0 && cfg < TC5_NCFG ? TC5_CFGS[cfg].bkv : 0; }
extern "C" int tc5_cfg_minb(int cfg) { return cfg >= 0 && cfg < TC5_NCFG ? TC5_CFGS[cfg].minb : 0; }
extern "C" int tc5_launch_cfg(int cfg, const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc5_run f = { cfg, s, q, k, v, o, NULL, 0 };
    return tc_dispatch(s, f);
}
extern "C" int tc5_describe_cfg(int cfg, const tc_shape_t *s, char *buf, size_t n)
{
    tc5_run f = { cfg, s, NULL, NULL, NULL, NULL, buf, n };
    return tc_dispatch(s, f);
}

extern "C" int tc5_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    return tc5_launch_cfg(tc5_default_cfg(s->dim), s, q, k, v, o);
}
extern "C" int tc5_describe(const tc_shape_t *s, char *buf, size_t n)
{
    return tc5_describe_cfg(tc5_default_cfg(s->dim), s, buf, n);
}
