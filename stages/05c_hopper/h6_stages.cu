/* h6_stages: h5 with three K/V stages instead of two (d = 64, 128).
 *
 * What changes against h5_pingpong.cu: from h4 on, a consumer group holds
 * two tiles at once: K_t (its S is being computed) and V_{t-1} (its PV runs
 * behind it), and releases stage t - 1 only when that PV is done, late in
 * iteration t. With two stages both are in use, so the producer can start
 * tile t + 1 only then, and its copy has the rest of iteration t to land:
 * the load is exposed again. A third stage lets tile t + 1 load during all
 * of iteration t. Shared memory: Q 32 KB + 3 x 64 KB at d = 128 (225 KB of
 * the 227 KB a block may have); d = 256 keeps two stages (64 KB of Q, 64 KB
 * a stage).
 *
 * Traffic: as h1 (tiles 128 x 128).
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h6_stages */
#include "hop_common.cuh"

#define H6_BQ 128
#define H6_BKV hop_bkv(D) /* 128 keys (64 at d = 256); D: the kernel's head dim */
#define H6_STAGES (D == 256 ? 2 : 3) /* d = 256: 64 KB of Q and 64 KB a stage leave room for 2 */
#define H6_THREADS (3 * HOP_WG)
#define H6_PRODUCER_REGS 40
#define H6_CONSUMER_REGS 232
#define H6_BAR0 3 /* named barriers 3, 4: the turns (1, 2 load Q) */

template <typename T, int D>
__global__ void __launch_bounds__(H6_THREADS, 1)
    h6_kernel(tc_args_t a, const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV)
{
#if HOP_DEVICE
    extern __shared__ uint8_t h6_smem_raw[];
    __shared__ __align__(8) uint64_t full[H6_STAGES], empty[H6_STAGES];
    constexpr int KVB = hop_tile_bytes<D>(H6_BKV);
    const uint32_t aQ = (tc_smem_addr(h6_smem_raw) + 1023u) & ~1023u;
    const uint32_t aK0 = aQ + hop_tile_bytes<D>(H6_BQ), aV0 = aK0 + H6_STAGES * KVB;

    const int tid = threadIdx.x;
    const int q0 = tc_qblock(a) * H6_BQ, h = blockIdx.y, b = blockIdx.z;
    const int kvh = b * a.kv_heads + h / a.group;
    const int kv_end = tc_kv_end(a, q0, H6_BQ);
    const int ntiles = (kv_end + H6_BKV - 1) / H6_BKV;

    if (tid == 0) {
        for (int st = 0; st < H6_STAGES; st++) {
            hop_mbar_init(tc_smem_addr(&full[st]), 1);
            hop_mbar_init(tc_smem_addr(&empty[st]), 2 * HOP_WG);
        }
        hop_mbar_fence_init();
    }
    __syncthreads();

    if (tid < HOP_WG) {
        // [snippet:h6-producer]
        hop_setmaxnreg_dec<H6_PRODUCER_REGS>();
        if (tid == 0)
            for (int t = 0; t < ntiles; t++) {
                const int st = t % H6_STAGES;
                /* the consumers released this stage's previous tile (t - STAGES) */
                if (t >= H6_STAGES) hop_mbar_wait(tc_smem_addr(&empty[st]), (uint32_t)(t / H6_STAGES - 1) & 1u);
                const uint32_t bar = tc_smem_addr(&full[st]);
                hop_mbar_expect_tx(bar, 2 * KVB);
#pragma unroll
                for (int p = 0; p < D / 64; p++) {
                    hop_tma_load_3d(aK0 + st * KVB + p * H6_BKV * 128, &tmK, 64 * p, t * H6_BKV, kvh, bar);
                    hop_tma_load_3d(aV0 + st * KVB + p * H6_BKV * 128, &tmV, 64 * p, t * H6_BKV, kvh, bar);
                }
            }
        // [/snippet]
        return;
    }

    hop_setmaxnreg_inc<H6_CONSUMER_REGS>();
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
            tc_cp_async16(aQ + hop_off<H6_BQ>(wg * 64 + r, ch), Q + (size_t)(ok ? gq0 + r : 0) * D + ch * 8,
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
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f }, alpha[2];
    float s[H6_BKV / 8][4];
    uint32_t p[H6_BKV / 16][4];

    /* The group's own tile count: causal tiles past its last row's last key
     * are skipped (a suffix of the block's tiles); it still waits for them
     * and releases them, so the empty barriers count all 256 consumers. */
    const int nt = gq0 >= a.seq_q ? 0 : (tc_kv_end(a, gq0, 64) + H6_BKV - 1) / H6_BKV;
    auto qk = [&](int t) { /* issue S_t = Q K_t^T */
        const uint32_t aK = aK0 + (t % H6_STAGES) * KVB;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            hop_wgmma<T, H6_BKV>::ss(s, hop_desc_k<H6_BQ>(aQg, kk), hop_desc_k<H6_BKV>(aK, kk), kk > 0);
        hop_wgmma_commit();
    };
    auto pv = [&](int t) { /* issue O += P_t V_t */
        const uint32_t aV = aV0 + (t % H6_STAGES) * KVB;
#pragma unroll
        for (int kk = 0; kk < H6_BKV / 16; kk++) hop_wgmma<T, D>::rs(o, p[kk], hop_desc_mn<H6_BKV>(aV, kk), 1);
        hop_wgmma_commit();
    };
    auto softmax = [&](int t) { /* S_t -> P_t (in s), m, l; alpha for O */
        const int kv0 = t * H6_BKV;
        if (kv0 + H6_BKV > a.seq_kv || (a.causal && kv0 + H6_BKV - 1 > gq0 + off)) tc_apply_mask(s, a, wq0, kv0);
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < H6_BKV / 8; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            const float mnew = fmaxf(m[r], tc_quad_max(mx));
            const float ms = mnew == -INFINITY ? 0.0f : mnew;
            const float msc = ms * a.scale_log2;
            alpha[r] = tc_exp2((m[r] - ms) * a.scale_log2);
            m[r] = mnew;
            l[r] *= alpha[r];
#pragma unroll
            for (int j = 0; j < H6_BKV / 8; j++)
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
        for (int kk = 0; kk < H6_BKV / 16; kk++) tc_pack_p<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
    };

    // [snippet:h6-pingpong]
    /* Turns: ntiles + 1 per group (tile t's S and tile t - 1's PV issued in
     * turn t), the same count for both groups even where one skips tiles
     * (causal), so every bar.sync meets exactly one bar.arrive of the other
     * group. Group 0 goes first: group 1 opens with an arrive and leaves out
     * its last one. */
    const int bar_mine = H6_BAR0 + wg, bar_other = H6_BAR0 + 1 - wg;
    if (ntiles > 0 && wg == 1) hop_bar_arrive(bar_other, 2 * HOP_WG);
    for (int t = 0; t <= ntiles && ntiles > 0; t++) {
        const bool do_qk = t < nt, do_pv = t >= 1 && t <= nt;
        if (t < ntiles) hop_mbar_wait(tc_smem_addr(&full[t % H6_STAGES]), (uint32_t)(t / H6_STAGES) & 1u);
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
            hop_mbar_arrive(tc_smem_addr(&empty[(t - 1) % H6_STAGES]));
        }
        if (do_qk) rescale_pack();
        if (t >= nt && t < ntiles) hop_mbar_arrive(tc_smem_addr(&empty[t % H6_STAGES])); /* skipped: release */
    }
    // [/snippet]

    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lsum = tc_quad_sum(l[r]);
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
        const int row = wq0 + g + 8 * r;
        if (row >= a.seq_q) continue;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *reinterpret_cast<uint32_t *>(O + (size_t)row * D + 8 * n + 2 * c) =
                tc_pack<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    }
#endif
}

template <int D> static constexpr int h6_smem() { return hop_tile_bytes<D>(H6_BQ + 2 * H6_STAGES * H6_BKV) + 1024; }

struct h6_run {
    static constexpr unsigned DIMS = HOP_DIMS;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        const CUtensorMap tk = hop_kv_tensor_map(k, s, H6_BKV), tv = hop_kv_tensor_map(v, s, H6_BKV);
        auto kern = h6_kernel<T, D>;
        static int raised;
        if (!raised) {
            CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, h6_smem<D>()));
            raised = 1;
        }
        kern<<<tc_grid(s, H6_BQ), H6_THREADS, h6_smem<D>()>>>(tc_make_args(s, q, k, v, o), tk, tv);
        LAUNCH_CHECK();
        return 0;
    }
};
struct h6_desc {
    static constexpr unsigned DIMS = HOP_DIMS;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, h6_kernel<T, D>, H6_BQ, H6_BKV, H6_THREADS, h6_smem<D>(),
                           "as h5, 3 K/V stages (2 at d = 256)");
        return 0;
    }
};

extern "C" int h6_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    h6_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int h6_describe(const tc_shape_t *s, char *buf, size_t n)
{
    h6_desc f = { buf, n };
    return tc_dispatch(s, f);
}
