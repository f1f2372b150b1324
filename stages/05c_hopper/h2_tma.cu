/* h2_tma: h1 with K/V brought in by the Tensor Memory Accelerator into a
 * pipeline of two stages guarded by mbarriers.
 *
 * What changes against h1_wgmma.cu: in h1 all 256 threads issue 16-byte
 * cp.async copies (2 D BKV / 8 address computations per tile), then wait for
 * them, so loading and computing alternate. Here one thread issues, per K/V
 * tile, D / 64 TMA copies of a 64-column x 128-row box each for K and for V
 * (cp.async.bulk.tensor: the copy engine walks the box, applies the 128-byte
 * swizzle the wgmma descriptors expect, and zero-fills rows past seq_kv).
 * The copies land in one of two stages; each stage's mbarrier is armed with
 * the tile's byte count (arrive.expect_tx) and completes when they have all
 * landed, and the consumers wait on its phase (try_wait.parity). Tile t + 2
 * is issued as soon as every warp group is done with tile t, so its loads
 * run under the compute of tile t + 1. Q still comes by cp.async, once.
 *
 * Traffic: as h1 (tiles 128 x 128).
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h2_tma */
#include "hop_common.cuh"

#define H2_BQ 128
#define H2_BKV hop_bkv(D) /* 128 keys (64 at d = 256); D: the kernel's head dim */
#define H2_STAGES 2
#define H2_THREADS (2 * HOP_WG)

template <typename T, int D>
__global__ void __launch_bounds__(H2_THREADS, 1)
    h2_kernel(tc_args_t a, const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV)
{
#if HOP_DEVICE
    extern __shared__ uint8_t h2_smem_raw[];
    __shared__ __align__(8) uint64_t full[H2_STAGES]; /* stage s holds tile t (t % 2 == s) when its phase completes */
    constexpr int KVB = hop_tile_bytes<D>(H2_BKV);
    const uint32_t aQ = (tc_smem_addr(h2_smem_raw) + 1023u) & ~1023u;
    const uint32_t aK0 = aQ + hop_tile_bytes<D>(H2_BQ), aV0 = aK0 + H2_STAGES * KVB;

    const int tid = threadIdx.x, wg = tid / HOP_WG, warp = (tid % HOP_WG) / 32, lane = tid % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * H2_BQ, h = blockIdx.y, b = blockIdx.z;
    const int gq0 = q0 + wg * 64, wq0 = gq0 + warp * 16;
    const size_t qhead = (size_t)b * a.heads + h;
    const int kvh = b * a.kv_heads + h / a.group; /* the K/V head: coordinate 2 of the tensor maps */
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const int kv_end = tc_kv_end(a, q0, H2_BQ);
    const int ntiles = (kv_end + H2_BKV - 1) / H2_BKV;
    const int off = a.seq_kv - a.seq_q;

    // [snippet:h2-issue]
    /* one thread arms stage st for tile t and issues its copies: K and V, D / 64 boxes each */
    auto issue = [&](int t, int st) {
        const uint32_t bar = tc_smem_addr(&full[st]);
        hop_mbar_expect_tx(bar, 2 * KVB);
#pragma unroll
        for (int p = 0; p < D / 64; p++) {
            hop_tma_load_3d(aK0 + st * KVB + p * H2_BKV * 128, &tmK, 64 * p, t * H2_BKV, kvh, bar);
            hop_tma_load_3d(aV0 + st * KVB + p * H2_BKV * 128, &tmV, 64 * p, t * H2_BKV, kvh, bar);
        }
    };
    // [/snippet]
    if (tid == 0) {
        for (int st = 0; st < H2_STAGES; st++) hop_mbar_init(tc_smem_addr(&full[st]), 1);
        hop_mbar_fence_init();
        for (int t = 0; t < H2_STAGES && t < ntiles; t++) issue(t, t);
    }
    hop_tile_async<T, D, H2_BQ, H2_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0, tid);
    tc_cp_async_commit();
    tc_cp_async_wait<0>();
    hop_fence_proxy_async();
    __syncthreads(); /* Q and the barriers' initialization visible to all */
    const uint32_t aQg = aQ + wg * 64 * 128;

    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * H2_BKV, st = t % H2_STAGES;
        const uint32_t aK = aK0 + st * KVB, aV = aV0 + st * KVB;
        hop_mbar_wait(tc_smem_addr(&full[st]), (uint32_t)(t / H2_STAGES) & 1u);

        const bool skip = gq0 >= a.seq_q || (a.causal && kv0 > min(gq0 + 63, a.seq_q - 1) + off);
        if (!skip) {
            float s[H2_BKV / 8][4];
            hop_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                hop_wgmma<T, H2_BKV>::ss(s, hop_desc_k<H2_BQ>(aQg, kk), hop_desc_k<H2_BKV>(aK, kk), kk > 0);
            hop_wgmma_commit();
            hop_wgmma_wait<0>();
            hop_reg_fence(s);

            if (kv0 + H2_BKV > a.seq_kv || (a.causal && kv0 + H2_BKV - 1 > gq0 + off)) tc_apply_mask(s, a, wq0, kv0);

            hop_softmax_rescale<D, H2_BKV>(s, o, m, l, a.scale_log2);

            uint32_t p[H2_BKV / 16][4];
#pragma unroll
            for (int kk = 0; kk < H2_BKV / 16; kk++) tc_pack_p<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
            hop_reg_fence(o);
            hop_reg_fence(p);
            hop_wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < H2_BKV / 16; kk++) hop_wgmma<T, D>::rs(o, p[kk], hop_desc_mn<H2_BKV>(aV, kk), 1);
            hop_wgmma_commit();
            hop_wgmma_wait<0>();
            hop_reg_fence(o);
        }
        __syncthreads(); /* both groups are done reading stage st: it may be refilled */
        if (tid == 0 && t + H2_STAGES < ntiles) issue(t + H2_STAGES, st);
    }

    hop_store_o<T, D>(a, o, l, qhead, wq0 + g, c);
#endif
}

/* h2's geometry, for hop_tma_launch */
struct h2_geom {
    static constexpr int BQ = H2_BQ, THREADS = H2_THREADS;
    template <int D> static constexpr int bkv() { return H2_BKV; }
    template <int D> static constexpr int smem() { return hop_tile_bytes<D>(H2_BQ + 2 * H2_STAGES * H2_BKV) + 1024; }
};
struct h2_pick {
    template <typename T, int D> static auto kernel() { return h2_kernel<T, D>; }
};

extern "C" int h2_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    return hop_tma_launch<h2_pick, h2_geom>(s, q, k, v, o);
}
extern "C" int h2_describe(const tc_shape_t *s, char *buf, size_t n)
{
    return hop_tma_describe<h2_pick, h2_geom>(s, buf, n, "2 warp groups, wgmma, K/V by TMA, 2 stages on mbarriers");
}
