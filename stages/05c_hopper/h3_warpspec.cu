/* h3_warpspec: h2 with warp specialization: a producer warp group that only
 * loads, and two consumer warp groups that only compute.
 *
 * What changes against h2_tma.cu: in h2 the thread that issues the TMA
 * copies is also a consumer, and a tile is refilled only after a
 * __syncthreads of the whole block, so the slower group stalls the faster
 * one and the copies are issued late. Here warp group 0 is the producer:
 * one of its threads runs ahead, waiting on each stage's "empty" mbarrier
 * (all 256 consumer threads arrive on it once their wgmma reads of the stage
 * are done) and refilling it, armed on the stage's "full" mbarrier as in
 * h2. Groups 1 and 2 consume, each at its own pace: no block-wide barrier
 * in the loop. Since the producer needs few registers, it gives them back
 * (setmaxnreg.dec to 40) and the consumers take them (setmaxnreg.inc to
 * 232): 128 x 40 + 256 x 232 = 64512 of the SM's 65536 (FlashAttention-3,
 * Shah et al. 2024, section 3.1, "producer-consumer asynchrony"). Each
 * consumer group loads its own 64 rows of Q (cp.async, a named barrier).
 *
 * Traffic: as h1 (tiles 128 x 128).
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h3_warpspec */
#include "hop_common.cuh"

#define H3_BQ 128
#define H3_BKV hop_bkv(D) /* 128 keys (64 at d = 256); D: the kernel's head dim */
#define H3_STAGES 2
#define H3_THREADS (3 * HOP_WG)
#define H3_PRODUCER_REGS 40
#define H3_CONSUMER_REGS 232

template <typename T, int D>
__global__ void __launch_bounds__(H3_THREADS, 1)
    h3_kernel(tc_args_t a, const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV)
{
#if HOP_DEVICE
    extern __shared__ uint8_t h3_smem_raw[];
    __shared__ __align__(8) uint64_t full[H3_STAGES], empty[H3_STAGES];
    constexpr int KVB = hop_tile_bytes<D>(H3_BKV);
    const uint32_t aQ = (tc_smem_addr(h3_smem_raw) + 1023u) & ~1023u;
    const uint32_t aK0 = aQ + hop_tile_bytes<D>(H3_BQ), aV0 = aK0 + H3_STAGES * KVB;

    const int tid = threadIdx.x;
    const int q0 = tc_qblock(a) * H3_BQ, h = blockIdx.y, b = blockIdx.z;
    const int kvh = b * a.kv_heads + h / a.group;
    const int kv_end = tc_kv_end(a, q0, H3_BQ);
    const int ntiles = (kv_end + H3_BKV - 1) / H3_BKV;

    if (tid == 0) {
        for (int st = 0; st < H3_STAGES; st++) {
            hop_mbar_init(tc_smem_addr(&full[st]), 1);
            hop_mbar_init(tc_smem_addr(&empty[st]), 2 * HOP_WG);
        }
        hop_mbar_fence_init();
    }
    __syncthreads();

    if (tid < HOP_WG) {
        // [snippet:h3-producer]
        hop_setmaxnreg_dec<H3_PRODUCER_REGS>();
        if (tid == 0)
            for (int t = 0; t < ntiles; t++) {
                const int st = t % H3_STAGES;
                /* the consumers released this stage's previous tile (t - STAGES) */
                if (t >= H3_STAGES) hop_mbar_wait(tc_smem_addr(&empty[st]), (uint32_t)(t / H3_STAGES - 1) & 1u);
                const uint32_t bar = tc_smem_addr(&full[st]);
                hop_mbar_expect_tx(bar, 2 * KVB);
#pragma unroll
                for (int p = 0; p < D / 64; p++) {
                    hop_tma_load_3d(aK0 + st * KVB + p * H3_BKV * 128, &tmK, 64 * p, t * H3_BKV, kvh, bar);
                    hop_tma_load_3d(aV0 + st * KVB + p * H3_BKV * 128, &tmV, 64 * p, t * H3_BKV, kvh, bar);
                }
            }
        // [/snippet]
        return;
    }

    hop_setmaxnreg_inc<H3_CONSUMER_REGS>();
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
            tc_cp_async16(aQ + hop_off<H3_BQ>(wg * 64 + r, ch), Q + (size_t)(ok ? gq0 + r : 0) * D + ch * 8,
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

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * H3_BKV, st = t % H3_STAGES;
        const uint32_t aK = aK0 + st * KVB, aV = aV0 + st * KVB;
        hop_mbar_wait(tc_smem_addr(&full[st]), (uint32_t)(t / H3_STAGES) & 1u);

        const bool skip = gq0 >= a.seq_q || (a.causal && kv0 > min(gq0 + 63, a.seq_q - 1) + off);
        if (!skip) {
            float s[H3_BKV / 8][4];
            hop_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                hop_wgmma<T, H3_BKV>::ss(s, hop_desc_k<H3_BQ>(aQg, kk), hop_desc_k<H3_BKV>(aK, kk), kk > 0);
            hop_wgmma_commit();
            hop_wgmma_wait<0>();
            hop_reg_fence(s);

            if (kv0 + H3_BKV > a.seq_kv || (a.causal && kv0 + H3_BKV - 1 > gq0 + off)) tc_apply_mask(s, a, wq0, kv0);

#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < H3_BKV / 8; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
                const float mnew = fmaxf(m[r], tc_quad_max(mx));
                const float ms = mnew == -INFINITY ? 0.0f : mnew;
                const float msc = ms * a.scale_log2;
                const float alpha = tc_exp2((m[r] - ms) * a.scale_log2);
                m[r] = mnew;
                l[r] *= alpha;
#pragma unroll
                for (int n = 0; n < D / 8; n++) {
                    o[n][2 * r] *= alpha;
                    o[n][2 * r + 1] *= alpha;
                }
#pragma unroll
                for (int j = 0; j < H3_BKV / 8; j++)
#pragma unroll
                    for (int e = 2 * r; e < 2 * r + 2; e++) {
                        s[j][e] = tc_exp2(fmaf(s[j][e], a.scale_log2, -msc));
                        l[r] += s[j][e];
                    }
            }

            uint32_t p[H3_BKV / 16][4];
#pragma unroll
            for (int kk = 0; kk < H3_BKV / 16; kk++) tc_pack_p<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
            hop_reg_fence(o);
            hop_reg_fence(p);
            hop_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < H3_BKV / 16; kk++) hop_wgmma<T, D>::rs(o, p[kk], hop_desc_mn<H3_BKV>(aV, kk), 1);
            hop_wgmma_commit();
            hop_wgmma_wait<0>();
            hop_reg_fence(o);
        }
        hop_mbar_arrive(tc_smem_addr(&empty[st])); /* this thread is done with stage st */
    }

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

template <int D> static constexpr int h3_smem() { return hop_tile_bytes<D>(H3_BQ + 2 * H3_STAGES * H3_BKV) + 1024; }

struct h3_run {
    static constexpr unsigned DIMS = HOP_DIMS;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        const CUtensorMap tk = hop_kv_tensor_map(k, s, H3_BKV), tv = hop_kv_tensor_map(v, s, H3_BKV);
        auto kern = h3_kernel<T, D>;
        static int raised;
        if (!raised) {
            CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, h3_smem<D>()));
            raised = 1;
        }
        kern<<<tc_grid(s, H3_BQ), H3_THREADS, h3_smem<D>()>>>(tc_make_args(s, q, k, v, o), tk, tv);
        LAUNCH_CHECK();
        return 0;
    }
};
struct h3_desc {
    static constexpr unsigned DIMS = HOP_DIMS;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, h3_kernel<T, D>, H3_BQ, H3_BKV, H3_THREADS, h3_smem<D>(),
                           "1 producer + 2 consumer warp groups (setmaxnreg 40/232), TMA, 2 stages, full/empty mbarriers");
        return 0;
    }
};

extern "C" int h3_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    h3_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int h3_describe(const tc_shape_t *s, char *buf, size_t n)
{
    h3_desc f = { buf, n };
    return tc_dispatch(s, f);
}
