/* tc5_steps.cuh: the tc5 rungs of the ladder (tc5a ... tc5f, tc5_tuned) as
 * one kernel, tc4_exp2.cu plus six changes, each switched by one bit of F
 * and written as an `if constexpr` block on its name (KOUTER, TREE, IMMOFF,
 * LAZY, OSTORE, QBORROW; TUNED): a rung is an instantiation (tc5_steps.cu:
 * tc5a has the first bit, tc5b the first two, ... tc5f all six; tc5_tuned.cu:
 * all seven, with a tile shape per head dim). `bash tools/ladder_diff.sh tc5c_immoff`
 * prints the blocks of one change. Why the steps: ncu on tc4 (note 05b, "The
 * ladder", for the figures) showed the tensor pipe busy about half the cycles,
 * "fixed latency execution dependency" the top stall, 2 warps per scheduler;
 * each step adds independent work per warp or removes instructions, one at
 * a time.
 *
 *   KOUTER  (tc5a_kouter) S = Q K^T with the loop over k-steps outside the
 *           loop over key columns. tc2-tc4 compute S two C tiles at a time,
 *           each a chain of d / MMA_K MMAs into the same accumulators: every
 *           MMA waits for the previous one. With the k-step outside, a step
 *           issues BKV / MMA_N MMAs into different accumulators (8 at
 *           BKV = 64), which the tensor pipe overlaps. Same instructions.
 *   TREE    (tc5b_tree) a thread holds BKV / 4 scores per row (16 at
 *           BKV = 64); tc1-tc5a fold them into the max, and the exponentials
 *           into l, one after the other: chains of 16 dependent FMNMX and
 *           FADD. Here pairs, then pairs of pairs: depth log2(BKV / MMA_N) + 1
 *           (4), the same instruction count; l = l alpha + (the tile's sum).
 *   IMMOFF  (tc5c_immoff) every ldmatrix address went through
 *           tc_layout::off(row, chunk): an IMAD and a LOP3 per load. The
 *           swizzle XORs the chunk with row % 8, which touches only the
 *           chunk's low 3 bits, and a lane always reads rows of one residue
 *           mod 8: 4 per-lane offsets (tc_chunk_off, tc_common.cuh) computed
 *           once cover every chunk; the row step and the 8-chunk step are
 *           compile-time constants, the instruction's immediate.
 *   LAZY    (tc5d_lazy) every tile multiplied the d / 2 O accumulators of a
 *           thread by alpha = 2^((m_old - m_new) c), although after the
 *           first tiles of a row the max rarely grows and alpha is exactly
 *           1. A warp vote (__any_sync) skips them when alpha = 1 for every
 *           row of the warp; the result is bit-identical (x * 1 = x).
 *   OSTORE  (tc5e_ostore) the C fragment gives a lane two neighbouring
 *           columns of a row: O left as 4-byte words, 8 rows per
 *           instruction (8 sectors of 32 bytes, each a quarter used). Here a
 *           warp writes its MMA_M rows of O / l into its own rows of the Q
 *           tile (read by this warp alone, into its fragments, before the
 *           loop), then copies whole rows out, 16 bytes per lane.
 *   QBORROW (tc5f_qborrow) Q is read from shared memory once, into
 *           registers; from then on its buffer is idle. Here it lives where
 *           stage 1's K and V go (issued only after the barrier that ends
 *           tile 0, when every warp holds its fragments), and O passes
 *           through the same place at the end (after a barrier: other warps
 *           may still read stage 1). Shared memory per block: bytes(BQ +
 *           4 BKV) -> bytes(4 BKV), 80 -> 64 KB at d = 128.
 *   TUNED   (tc5_tuned, tc5_tuned.cu) tile shape and occupancy per head dim:
 *           WARPS, BKV, MINB (blocks per SM asked of the register
 *           allocator), and QREG = 0 at d = 256 (Q re-read from a resident
 *           tile at every k-step, so that O and S fit in registers); Q's
 *           per-lane offsets are kept for those re-reads.
 *
 * Traffic per head: as tc3, HBM es d (2 N_q + 2 N_kv ceil(N_q / BQ)) at most
 * (K/V re-reads mostly hit L2); OSTORE writes the same bytes in fewer,
 * fuller transactions. Measured: note 05b's ladder table
 * (notes/05b_tensor_cores.md).
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5a_kouter,tc5b_tree,tc5c_immoff */
#ifndef STF_TC5_STEPS_CUH
#define STF_TC5_STEPS_CUH

#include "tc_common.cuh"

/* The changes, one bit each, and the rungs: each has the bits of the one
 * before and its own. */
#define TC5_KOUTER 0x01u
#define TC5_TREE 0x02u
#define TC5_IMMOFF 0x04u
#define TC5_LAZY 0x08u
#define TC5_OSTORE 0x10u
#define TC5_QBORROW 0x20u
#define TC5_TUNED 0x40u
#define TC5A_FLAGS TC5_KOUTER
#define TC5B_FLAGS (TC5A_FLAGS | TC5_TREE)
#define TC5C_FLAGS (TC5B_FLAGS | TC5_IMMOFF)
#define TC5D_FLAGS (TC5C_FLAGS | TC5_LAZY)
#define TC5E_FLAGS (TC5D_FLAGS | TC5_OSTORE)
#define TC5F_FLAGS (TC5E_FLAGS | TC5_QBORROW)
#define TC5_TUNED_FLAGS (TC5F_FLAGS | TC5_TUNED)

/* Dynamic shared memory of an instance: 2 stages of K and V tiles, and a Q
 * tile of its own unless QBORROW keeps it in stage 1 (with QREG = 0 it has to
 * stay for the whole block). */
template <int D, unsigned F, int WARPS, int BKV, int QREG> static constexpr int tc5_smem()
{
    return tc_layout<D>::bytes(4 * BKV + ((F & TC5_QBORROW) && QREG ? 0 : MMA_M * WARPS));
}

/* WARPS x MMA_M query rows and BKV keys per tile; MINB blocks per SM asked of
 * the register allocator (0: none asked, as __launch_bounds__(threads));
 * QREG: Q's fragments in registers for the whole block (1), or re-read at
 * every k-step (0: tc5_tuned at d = 256, where Q's d / 4 registers and O's
 * d / 2 leave too few for S). */
template <typename T, int D, unsigned F, int WARPS, int BKV, int MINB, int QREG>
__global__ void __launch_bounds__(WARPS * 32, MINB) tc5_kernel(tc_args_t a)
{
    constexpr bool KOUTER = F & TC5_KOUTER, TREE = F & TC5_TREE, IMMOFF = F & TC5_IMMOFF, LAZY = F & TC5_LAZY,
                   OSTORE = F & TC5_OSTORE, QBORROW = F & TC5_QBORROW, TUNED = F & TC5_TUNED;
    static_assert(QREG || (F == TC5_TUNED_FLAGS), "Q re-read per k-step is built on the last rung only");
    constexpr int BQ = MMA_M * WARPS, NT = 32 * WARPS;
    using L = tc_layout<D>;
    constexpr int PB = L::PITCH * 16; /* row pitch in bytes */
    constexpr int KVB = L::bytes(BKV); /* one K or V buffer */
    extern __shared__ uint4 tc5_smem_buf[];
    char *smem = reinterpret_cast<char *>(tc5_smem_buf);
    const uint32_t aS = tc_smem_addr(smem);
    /* Shared memory: Q | K_0 K_1 | V_0 V_1 (KOFF, VOFF; STAGE from buffer 0
     * to 1), Q's place also O's way out (OSTORE). */
    int QOFF = 0, KOFF = L::bytes(BQ), VOFF = L::bytes(BQ) + 2 * KVB, STAGE = KVB;
    if constexpr (QBORROW) {
        /* stage s = K_s | V_s; the Q tile in stage 1 until tile 1 is
         * issued, O there again at the end: 4 K/V buffers in all. With
         * QREG = 0 the Q tile stays, after the 4 buffers, for the whole
         * block. */
        static_assert(!QREG || BQ <= 2 * BKV, "the Q tile lives in stage 1's K/V buffers until tile 1 is issued");
        QOFF = (QREG ? 2 : 4) * KVB, KOFF = 0, VOFF = KVB, STAGE = 2 * KVB;
    }
    [[maybe_unused]] char *sQ = smem + QOFF;
    const uint32_t aQ = aS + QOFF, aK0 = aS + KOFF, aV0 = aS + VOFF;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, BQ);
    const int ntiles = (kv_end + BKV - 1) / BKV;

    /* Prologue: group {Q, K_0}, then group {V_0}. */
    tc_tile_async<T, D, BQ, NT>(aQ, Q + (size_t)q0 * D, a.seq_q - q0);
    if (ntiles > 0) tc_tile_async<T, D, BKV, NT>(aK0, K, min(BKV, a.seq_kv));
    tc_cp_async_commit();
    if (ntiles > 0) tc_tile_async<T, D, BKV, NT>(aV0, V, min(BKV, a.seq_kv));
    tc_cp_async_commit();
    tc_cp_async_wait<1>();
    __syncthreads();

    /* ldmatrix lanes: Q row lane & 15, chunk 2 kk + (lane >> 4); K key row
     * MMA_N j + krow, chunk 2 kk + kch; V (.trans) key row MMA_K kk + vrow,
     * chunk n + vch. IMMOFF: chunk ^ (row % 8) only touches the low 3 bits
     * of the chunk, and row % 8 is fixed per lane: 4 per-lane offsets (qoff,
     * koff, voff) cover every chunk, the rest is an immediate in the
     * instruction (no IMAD/LOP3 per ldmatrix). */
    uint32_t qf[QREG ? D / MMA_K : 1][4];
    [[maybe_unused]] uint32_t qoff[4];
    if constexpr (IMMOFF) {
        const int lr = lane & 15, lc = lane >> 4;
        const uint32_t base = aQ + (warp * MMA_M + lr) * PB;
        if constexpr (TUNED) { /* the offsets kept: with QREG = 0 every k-step re-reads Q */
#pragma unroll
            for (int i = 0; i < 4; i++) qoff[i] = base + tc_chunk_off<D>(i, lc, lr);
            if constexpr (QREG) {
#pragma unroll
                for (int kk = 0; kk < D / MMA_K; kk++) tc_ldsm_x4(qf[kk], qoff[kk % 4] + (kk / 4) * 128);
            }
        } else {
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++)
                tc_ldsm_x4(qf[kk], base + tc_chunk_off<D>(kk % 4, lc, lr) + (kk / 4) * 128);
        }
    } else {
#pragma unroll
        for (int kk = 0; kk < D / MMA_K; kk++)
            tc_ldsm_x4(qf[kk], aQ + L::off(warp * MMA_M + (lane & 15), 2 * kk + (lane >> 4)));
    }

    float o[D / MMA_N][4];
#pragma unroll
    for (int n = 0; n < D / MMA_N; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };
    const int krow = (lane & 7) + ((lane >> 4) << 3), kch = (lane >> 3) & 1;
    const int vrow = lane & 15, vch = lane >> 4;
    [[maybe_unused]] uint32_t koff[4], voff[4];
    if constexpr (IMMOFF) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            koff[i] = krow * PB + tc_chunk_off<D>(i, kch, krow);
            voff[i] = vrow * PB + tc_chunk_off<D>(i, vch, vrow);
        }
    }
    /* K's columns j, j + 1 at k-step kk; V's key rows of k-step kk at columns n, n + 1 */
    auto k_at = [&](uint32_t aK, int j, int kk) -> uint32_t {
        if constexpr (IMMOFF) return aK + koff[kk % 4] + MMA_N * j * PB + (kk / 4) * 128;
        else return aK + L::off(MMA_N * j + krow, 2 * kk + kch);
    };
    auto v_at = [&](uint32_t aV, int kk, int n) -> uint32_t {
        if constexpr (IMMOFF) return aV + voff[(n % 8) / 2] + MMA_K * kk * PB + (n / 8) * 128;
        else return aV + L::off(MMA_K * kk + vrow, n + vch);
    };

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * BKV;
        const uint32_t aK = aK0 + (t & 1) * STAGE, aV = aV0 + (t & 1) * STAGE;
        if constexpr (QBORROW) {
            /* t = 0: K_0 has landed already, but the barrier also tells that
             * every warp has its Q fragments, so stage 1 may be overwritten */
            tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
            __syncthreads();
        } else if (t > 0) { /* t = 0: the prologue waited */
            tc_cp_async_wait<1>(); /* K_t landed (V_t may still be in flight) */
            __syncthreads();
        }
        if (t + 1 < ntiles) {
            const int nk = kv0 + BKV, valid = min(BKV, a.seq_kv - nk);
            const uint32_t nb = ((t + 1) & 1) * STAGE;
            tc_tile_async<T, D, BKV, NT>(aK0 + nb, K + (size_t)nk * D, valid);
            tc_cp_async_commit();
            tc_tile_async<T, D, BKV, NT>(aV0 + nb, V + (size_t)nk * D, valid);
            tc_cp_async_commit();
        } else { /* empty groups keep the counts of the waits above and below right */
            tc_cp_async_commit();
            tc_cp_async_commit();
        }

        const bool skip = tc_warp_skips(a, wq0, kv0);
        float s[BKV / MMA_N][4];
        if (!skip) {
#pragma unroll
            for (int j = 0; j < BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            if constexpr (KOUTER) {
                /* k-step outer: BKV / MMA_N independent accumulators per
                 * step, where the j-outer loop ran d / MMA_K dependent MMAs
                 * on 2 */
#pragma unroll
                for (int kk = 0; kk < D / MMA_K; kk++) {
                    const int qk = QREG ? kk : 0;
                    if constexpr (!QREG) tc_ldsm_x4(qf[0], qoff[kk % 4] + (kk / 4) * 128);
#pragma unroll
                    for (int j = 0; j < BKV / MMA_N; j += 2) {
                        uint32_t kb[4];
                        tc_ldsm_x4(kb, k_at(aK, j, kk));
                        tc_mma<T>(s[j], qf[qk], kb[0], kb[1]);
                        tc_mma<T>(s[j + 1], qf[qk], kb[2], kb[3]);
                    }
                }
            } else { /* tc4's order: two columns, all their k-steps */
#pragma unroll
                for (int j = 0; j < BKV / MMA_N; j += 2)
#pragma unroll
                    for (int kk = 0; kk < D / MMA_K; kk++) {
                        uint32_t kb[4];
                        tc_ldsm_x4(kb, k_at(aK, j, kk));
                        tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                        tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
                    }
            }
            if (tc_tile_needs_mask(a, wq0, kv0, BKV)) tc_apply_mask(s, a, wq0, kv0);

            [[maybe_unused]] float alpha[2]; /* LAZY: both rows' factors, for the vote */
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx;
                [[maybe_unused]] float tr[BKV / MMA_N]; /* TREE: the nodes */
                if constexpr (TREE) {
                    /* max and sum as trees (depth log2(BKV / MMA_N) + 1)
                     * rather than chains of BKV / 4 dependent instructions */
#pragma unroll
                    for (int j = 0; j < BKV / MMA_N; j++) tr[j] = fmaxf(s[j][2 * r], s[j][2 * r + 1]);
#pragma unroll
                    for (int w = BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                        for (int j = 0; j < w; j++) tr[j] = fmaxf(tr[j], tr[j + w]);
                    mx = tr[0];
                } else {
                    mx = -INFINITY;
#pragma unroll
                    for (int j = 0; j < BKV / MMA_N; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
                }
                const float mnew = fmaxf(m[r], tc_quad_max(mx));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2; /* the row max in exp2 units */
                const float alpha_r = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
                if constexpr (LAZY) alpha[r] = alpha_r;
                if constexpr (!TREE) l[r] *= alpha_r;
                if constexpr (!LAZY) {
#pragma unroll
                    for (int n = 0; n < D / MMA_N; n++) {
                        o[n][2 * r] *= alpha_r;
                        o[n][2 * r + 1] *= alpha_r;
                    }
                }
                if constexpr (TREE) {
#pragma unroll
                    for (int j = 0; j < BKV / MMA_N; j++) {
                        s[j][2 * r] = tc_exp2(fmaf(s[j][2 * r], a.scale_log2, -msc));
                        s[j][2 * r + 1] = tc_exp2(fmaf(s[j][2 * r + 1], a.scale_log2, -msc));
                        tr[j] = s[j][2 * r] + s[j][2 * r + 1];
                    }
#pragma unroll
                    for (int w = BKV / (2 * MMA_N); w >= 1; w /= 2)
#pragma unroll
                        for (int j = 0; j < w; j++) tr[j] += tr[j + w];
                    l[r] = l[r] * (LAZY ? alpha[r] : alpha_r) + tr[0];
                } else {
#pragma unroll
                    for (int j = 0; j < BKV / MMA_N; j++)
#pragma unroll
                        for (int e = 2 * r; e < 2 * r + 2; e++) {
                            s[j][e] = tc_exp2(fmaf(s[j][e], a.scale_log2, -msc));
                            l[r] += s[j][e];
                        }
                }
            }
            if constexpr (LAZY) {
                /* O is rescaled only when some row of the warp raised its
                 * max: d / 2 FMULs per thread and tile saved on the others */
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
        }

        tc_cp_async_wait<2>(); /* V_t landed (K_{t+1}, V_{t+1} may be in flight) */
        __syncthreads();
        if (!skip) {
#pragma unroll
            for (int kk = 0; kk < BKV / MMA_K; kk++) {
                uint32_t pa[4];
                tc_pack_p<T>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
                for (int n = 0; n < D / MMA_N; n += 2) {
                    uint32_t vb[4];
                    tc_ldsm_x4_trans(vb, v_at(aV, kk, n));
                    tc_mma<T>(o[n], pa, vb[0], vb[1]);
                    tc_mma<T>(o[n + 1], pa, vb[2], vb[3]);
                }
            }
        }
    }

    if constexpr (OSTORE) {
        /* O / l into the warp's own MMA_M rows of the Q tile's place, then
         * whole 16-byte chunks of rows out: 4-byte stores of 8 rows by 4
         * lanes each become coalesced 16-byte ones */
        if constexpr (QBORROW) __syncthreads(); /* other warps may still read stage 1 for their last tile */
        else __syncwarp(); /* a block with no key tile has had no barrier since the other lanes'
                            * ldmatrix read these Q rows (compute-sanitizer racecheck) */
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
    } else {
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
}

#endif
