/* The warp-specialized kernel body of rungs h3 ... h6 (h3_warpspec.cu,
 * h4_overlap.cu, h5_pingpong.cu, h6_stages.cu): one body, one compile-time
 * flag per ladder step, so that each rung's file holds only what it changes
 * (its header comment, its flags, its kernel's name) and the diff of one rung
 * against the previous is its flag block. What each step does and why: the
 * rung's own file.
 *
 * The flag block of each rung (hop_ws_rung<OVERLAP, PINGPONG, STAGES3>):
 *   h3_warpspec  <false, false, false>  producer warp group (TMA), two
 *                consumer groups, full/empty mbarriers, setmaxnreg 40/232;
 *                per tile: S, softmax, PV, one after the other
 *   h4_overlap   <true,  false, false>  + OVERLAP: S_t issued beside
 *                P_{t-1} V_{t-1}; the softmax of t overlaps that PV
 *   h5_pingpong  <true,  true,  false>  + PINGPONG: the two consumer groups
 *                take turns on the tensor cores (named barriers 3, 4)
 *   h6_stages    <true,  true,  true>   + STAGES3: 3 K/V stages (d = 64,
 *                128; d = 256 keeps 2: 64 KB of Q and 64 KB a stage)
 * PINGPONG is written on OVERLAP's loop (it needs OVERLAP).
 *
 * Each rung's kernel is its own __global__ function (h3_kernel ... h6_kernel:
 * the names the profiler shows) that declares its shared memory and calls
 * hop_ws_body, inlined. Traffic: as h1 (tiles 128 x 128; 128 x 64 at
 * d = 256). */
#ifndef STF_HOP_WS_CUH
#define STF_HOP_WS_CUH

#include "hop_common.cuh"

#define HOP_WS_BQ 128
#define HOP_WS_THREADS (3 * HOP_WG)
#define HOP_WS_PRODUCER_REGS 40
#define HOP_WS_CONSUMER_REGS 232
#define HOP_WS_BAR0 3 /* PINGPONG: named barriers 3, 4 are the turns (1, 2 load Q) */

template <bool OVERLAP_, bool PINGPONG_, bool STAGES3_> struct hop_ws_rung {
    static constexpr bool OVERLAP = OVERLAP_;   /* h4: intra-warpgroup overlap of softmax and PV */
    static constexpr bool PINGPONG = PINGPONG_; /* h5: the consumer groups take turns (needs OVERLAP) */
    static_assert(OVERLAP_ || !PINGPONG_, "ping-pong is written on the overlapped loop");
    /* h6: 3 K/V stages (d = 256: 2, the shared memory holds no third) */
    template <int D> static constexpr __host__ __device__ int stages() { return STAGES3_ && D != 256 ? 3 : 2; }
    template <int D> static constexpr __host__ __device__ int bkv() { return hop_bkv(D); } /* 128 keys (64 at d = 256) */
    template <int D> static constexpr int smem() { return hop_tile_bytes<D>(HOP_WS_BQ + 2 * stages<D>() * bkv<D>()) + 1024; }
    static constexpr int BQ = HOP_WS_BQ, THREADS = HOP_WS_THREADS; /* for hop_tma_launch */
};

#if HOP_DEVICE
/* The body of h3_kernel ... h6_kernel: smem_raw is the kernel's dynamic
 * shared memory, full and empty its R::stages<D>() mbarriers. */
template <typename T, int D, class R>
__device__ __forceinline__ void hop_ws_body(const tc_args_t &a, const CUtensorMap &tmK, const CUtensorMap &tmV,
                                            uint8_t *smem_raw, uint64_t *full, uint64_t *empty)
{
    constexpr int BKV = R::template bkv<D>(), STAGES = R::template stages<D>();
    constexpr int KVB = hop_tile_bytes<D>(BKV);
    const uint32_t aQ = (tc_smem_addr(smem_raw) + 1023u) & ~1023u;
    const uint32_t aK0 = aQ + hop_tile_bytes<D>(HOP_WS_BQ), aV0 = aK0 + STAGES * KVB;


    const int tid = threadIdx.x;
    const int q0 = tc_qblock(a) * HOP_WS_BQ, h = blockIdx.y, b = blockIdx.z;
    const int kvh = b * a.kv_heads + h / a.group;
    const int kv_end = tc_kv_end(a, q0, HOP_WS_BQ);
    const int ntiles = (kv_end + BKV - 1) / BKV;

    if (tid == 0) {
        for (int st = 0; st < STAGES; st++) {
            hop_mbar_init(tc_smem_addr(&full[st]), 1);
            hop_mbar_init(tc_smem_addr(&empty[st]), 2 * HOP_WG);
        }
        hop_mbar_fence_init();
    }
    __syncthreads();

    if (tid < HOP_WG) {
        // [snippet:ws-producer]
        hop_setmaxnreg_dec<HOP_WS_PRODUCER_REGS>();
        if (tid == 0)
            for (int t = 0; t < ntiles; t++) {
                const int st = t % STAGES;
                /* the consumers released this stage's previous tile (t - STAGES) */
                if (t >= STAGES) hop_mbar_wait(tc_smem_addr(&empty[st]), (uint32_t)(t / STAGES - 1) & 1u);
                const uint32_t bar = tc_smem_addr(&full[st]);
                hop_mbar_expect_tx(bar, 2 * KVB);
#pragma unroll
                for (int p = 0; p < D / 64; p++) {
                    hop_tma_load_3d(aK0 + st * KVB + p * BKV * 128, &tmK, 64 * p, t * BKV, kvh, bar);
                    hop_tma_load_3d(aV0 + st * KVB + p * BKV * 128, &tmV, 64 * p, t * BKV, kvh, bar);
                }
            }
        // [/snippet]
        return;
    }

    hop_setmaxnreg_inc<HOP_WS_CONSUMER_REGS>();
    const int ct = tid - HOP_WG, wg = ct / HOP_WG, wt = ct % HOP_WG; /* consumer group 0 or 1, thread in it */
    const int warp = wt / 32, lane = wt % 32, g = lane / 4, c = lane % 4;
    const int gq0 = q0 + wg * 64, wq0 = gq0 + warp * 16;
    const size_t qhead = (size_t)b * a.heads + h;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const int off = a.seq_kv - a.seq_q;

    { /* the group's 64 rows of Q (rows 64 wg .. of the tile), zero past seq_q */
        constexpr int CH = D / 8;
        const int valid = a.seq_q - gq0;
#pragma unroll
        for (int it = 0; it < 64 * CH / HOP_WG; it++) {
            const int i = it * HOP_WG + wt, r = i / CH, ch = i % CH;
            const bool ok = r < valid;
            tc_cp_async16(aQ + hop_off<HOP_WS_BQ>(wg * 64 + r, ch), Q + (size_t)(ok ? gq0 + r : 0) * D + ch * 8,
                          ok ? 16 : 0);
        }
        tc_cp_async_commit();
        tc_cp_async_wait<0>();
        hop_fence_proxy_async();
        hop_bar_sync(1 + wg, HOP_WG);
    }
    const uint32_t aQg = aQ + wg * 64 * 128;

    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    if constexpr (!R::OVERLAP) { /* h3: S, softmax, PV of a tile one after the other */
        for (int t = 0; t < ntiles; t++) {
            const int kv0 = t * BKV, st = t % STAGES;
            const uint32_t aK = aK0 + st * KVB, aV = aV0 + st * KVB;
            hop_mbar_wait(tc_smem_addr(&full[st]), (uint32_t)(t / STAGES) & 1u);

            const bool skip = gq0 >= a.seq_q || (a.causal && kv0 > min(gq0 + 63, a.seq_q - 1) + off);
            if (!skip) {
                float s[BKV / 8][4];
                hop_wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++)
                    hop_wgmma<T, BKV>::ss(s, hop_desc_k<HOP_WS_BQ>(aQg, kk), hop_desc_k<BKV>(aK, kk), kk > 0);
                hop_wgmma_commit();
                hop_wgmma_wait<0>();
                hop_reg_fence(s);

                if (kv0 + BKV > a.seq_kv || (a.causal && kv0 + BKV - 1 > gq0 + off)) tc_apply_mask(s, a, wq0, kv0);

                hop_softmax_rescale<D, BKV>(s, o, m, l, a.scale_log2);

                uint32_t p[BKV / 16][4];
#pragma unroll
                for (int kk = 0; kk < BKV / 16; kk++) tc_pack_p<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
                hop_reg_fence(o);
                hop_reg_fence(p);
                hop_wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < BKV / 16; kk++) hop_wgmma<T, D>::rs(o, p[kk], hop_desc_mn<BKV>(aV, kk), 1);
                hop_wgmma_commit();
                hop_wgmma_wait<0>();
                hop_reg_fence(o);
            }
            hop_mbar_arrive(tc_smem_addr(&empty[st])); /* this thread is done with stage st */
        }

    } else {
        float alpha[2];
        float s[BKV / 8][4];
        uint32_t p[BKV / 16][4];

        /* The group's own tile count: causal tiles past its last row's last key
         * are skipped (a suffix of the block's tiles); it still waits for them
         * and releases them, so the empty barriers count all 256 consumers. */
        const int nt = gq0 >= a.seq_q ? 0 : (tc_kv_end(a, gq0, 64) + BKV - 1) / BKV;
        auto qk = [&](int t) { /* issue S_t = Q K_t^T */
            const uint32_t aK = aK0 + (t % STAGES) * KVB;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                hop_wgmma<T, BKV>::ss(s, hop_desc_k<HOP_WS_BQ>(aQg, kk), hop_desc_k<BKV>(aK, kk), kk > 0);
            hop_wgmma_commit();
        };
        auto pv = [&](int t) { /* issue O += P_t V_t */
            const uint32_t aV = aV0 + (t % STAGES) * KVB;
#pragma unroll
            for (int kk = 0; kk < BKV / 16; kk++) hop_wgmma<T, D>::rs(o, p[kk], hop_desc_mn<BKV>(aV, kk), 1);
            hop_wgmma_commit();
        };
        auto softmax = [&](int t) { /* S_t -> P_t (in s), m, l; alpha for O */
            const int kv0 = t * BKV;
            if (kv0 + BKV > a.seq_kv || (a.causal && kv0 + BKV - 1 > gq0 + off)) tc_apply_mask(s, a, wq0, kv0);
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < BKV / 8; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
                const float mnew = fmaxf(m[r], tc_quad_max(mx));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2;
                alpha[r] = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
                l[r] *= alpha[r];
#pragma unroll
                for (int j = 0; j < BKV / 8; j++)
#pragma unroll
                    for (int e = 2 * r; e < 2 * r + 2; e++) {
                        s[j][e] = tc_exp2(fmaf(s[j][e], a.scale_log2, -msc));
                        l[r] += s[j][e];
                    }
            }
        };
        auto rescale_pack = [&]() { /* O *= alpha (no PV in flight), P_t to 16 bits */
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                o[n][0] *= alpha[0];
                o[n][1] *= alpha[0];
                o[n][2] *= alpha[1];
                o[n][3] *= alpha[1];
            }
#pragma unroll
            for (int kk = 0; kk < BKV / 16; kk++) tc_pack_p<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
        };

        if constexpr (!R::PINGPONG) { /* h4 */
            // [snippet:ws-overlap]
            if (nt > 0) {
                hop_mbar_wait(tc_smem_addr(&full[0]), 0);
                hop_wgmma_fence();
                qk(0);
                hop_wgmma_wait<0>();
                hop_reg_fence(s);
                softmax(0);
                rescale_pack();
            }
            for (int t = 1; t < nt; t++) {
                hop_mbar_wait(tc_smem_addr(&full[t % STAGES]), (uint32_t)(t / STAGES) & 1u);
                hop_reg_fence(o);
                hop_reg_fence(p);
                hop_wgmma_fence();
                qk(t);      /* S_t on the tensor cores ... */
                pv(t - 1);  /* ... then O += P_{t-1} V_{t-1} behind it */
                hop_wgmma_wait<1>(); /* S_t is done (PV may still run) */
                hop_reg_fence(s);
                softmax(t); /* the exponentials overlap PV_{t-1} */
                hop_wgmma_wait<0>();
                hop_reg_fence(o);
                hop_mbar_arrive(tc_smem_addr(&empty[(t - 1) % STAGES])); /* K_{t-1}, V_{t-1} no longer read */
                rescale_pack();
            }
            if (nt > 0) {
                hop_reg_fence(o);
                hop_reg_fence(p);
                hop_wgmma_fence();
                pv(nt - 1);
                hop_wgmma_wait<0>();
                hop_reg_fence(o);
                hop_mbar_arrive(tc_smem_addr(&empty[(nt - 1) % STAGES]));
            }
            // [/snippet]
            for (int t = nt; t < ntiles; t++) { /* tiles this group skips (causal): wait and release */
                hop_mbar_wait(tc_smem_addr(&full[t % STAGES]), (uint32_t)(t / STAGES) & 1u);
                hop_mbar_arrive(tc_smem_addr(&empty[t % STAGES]));
            }

        } else { /* h5, h6 */
            // [snippet:ws-pingpong]
            /* Turns: ntiles + 1 per group (tile t's S and tile t - 1's PV issued in
             * turn t), the same count for both groups even where one skips tiles
             * (causal), so every bar.sync meets exactly one bar.arrive of the other
             * group. Group 0 goes first: group 1 opens with an arrive and leaves out
             * its last one. */
            const int bar_mine = HOP_WS_BAR0 + wg, bar_other = HOP_WS_BAR0 + 1 - wg;
            if (ntiles > 0 && wg == 1) hop_bar_arrive(bar_other, 2 * HOP_WG);
            for (int t = 0; t <= ntiles && ntiles > 0; t++) {
                const bool do_qk = t < nt, do_pv = t >= 1 && t <= nt;
                if (t < ntiles) hop_mbar_wait(tc_smem_addr(&full[t % STAGES]), (uint32_t)(t / STAGES) & 1u);
                hop_bar_sync(bar_mine, 2 * HOP_WG); /* our turn on the tensor cores */
                if (do_qk || do_pv) {
                    hop_reg_fence(o);
                    hop_reg_fence(p);
                    hop_wgmma_fence();
                }
                if (do_qk) qk(t);
                if (do_pv) pv(t - 1);
                if (!(wg == 1 && t == ntiles)) hop_bar_arrive(bar_other, 2 * HOP_WG); /* theirs */
                if (do_qk) {
                    if (do_pv) hop_wgmma_wait<1>();
                    else hop_wgmma_wait<0>();
                    hop_reg_fence(s);
                    softmax(t); /* overlaps our PV and the other group's GEMMs */
                }
                if (do_pv) {
                    hop_wgmma_wait<0>();
                    hop_reg_fence(o);
                    hop_mbar_arrive(tc_smem_addr(&empty[(t - 1) % STAGES]));
                }
                if (do_qk) rescale_pack();
                if (t >= nt && t < ntiles) hop_mbar_arrive(tc_smem_addr(&empty[t % STAGES])); /* skipped: release */
            }
            // [/snippet]

        }
    }

    hop_store_o<T, D>(a, o, l, qhead, wq0 + g, c);
}
#endif


/* Rung N's kernel hN_kernel<T, D> (its own __global__ function: the name the
 * profiler shows; it declares its shared memory and runs hop_ws_body) and
 * its C launchers hN_launch, hN_describe. RUNG: the rung's flag block. */
#if HOP_DEVICE
#define HOP_WS_KERNEL_BODY(N, RUNG)                                                                  \
    extern __shared__ uint8_t h##N##_smem_raw[];                                                     \
    __shared__ __align__(8) uint64_t full[RUNG::stages<D>()], empty[RUNG::stages<D>()];              \
    hop_ws_body<T, D, RUNG>(a, tmK, tmV, h##N##_smem_raw, full, empty);
#else
#define HOP_WS_KERNEL_BODY(N, RUNG)
#endif
#define HOP_WS_RUNG(N, RUNG, WHAT)                                                                         \
    template <typename T, int D>                                                                           \
    __global__ void __launch_bounds__(HOP_WS_THREADS, 1)                                                   \
        h##N##_kernel(tc_args_t a, const __grid_constant__ CUtensorMap tmK,                                \
                      const __grid_constant__ CUtensorMap tmV)                                             \
    {                                                                                                      \
        HOP_WS_KERNEL_BODY(N, RUNG)                                                                        \
    }                                                                                                      \
    struct h##N##_pick {                                                                                   \
        template <typename T, int D> static auto kernel() { return h##N##_kernel<T, D>; }                  \
    };                                                                                                     \
    extern "C" int h##N##_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o) \
    {                                                                                                      \
        return hop_tma_launch<h##N##_pick, RUNG>(s, q, k, v, o);                                            \
    }                                                                                                      \
    extern "C" int h##N##_describe(const tc_shape_t *s, char *buf, size_t n)                               \
    {                                                                                                      \
        return hop_tma_describe<h##N##_pick, RUNG>(s, buf, n, WHAT);                                        \
    }

#endif
