/* h1_wgmma: FlashAttention-2's loop on Hopper's warp-group MMA.
 *
 * What changes against stage 05b (tc4_exp2.cu, the same loop on mma.sync):
 * the unit of work is a warp group (128 threads) and 64 query rows, and both
 * GEMMs are wgmma.mma_async, which reads its B operand (and for S = Q K^T
 * also A) straight from shared memory through a matrix descriptor: no
 * ldmatrix, no fragment registers for K and V, one instruction per
 * 64 x N x 16 step instead of 8 N / 8 mma.sync. The tiles are stored in
 * the 128-byte swizzle the descriptor names (hop_common.cuh). S lands in
 * registers in the accumulator layout, whose rows sit in one quad as in
 * 05b, so the online softmax (exp2 with scale log2 e folded, tc4) is 05b's
 * code; P is rounded to 16 bits in registers and is the register A operand
 * of O += P V. K/V come in by cp.async, one stage: load, wait, compute.
 * Two warp groups share a Q tile of 128 rows and each K/V tile of 128 keys.
 *
 * Traffic (per query head): Q read and O written once; K and V read once per
 * query tile of 128 rows, causal tiles stopping at the diagonal:
 *     bytes = es (2 B H Nq d + 2 d B H sum_tiles min(Nk, 128 ceil(n_t / 128)))
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h1_wgmma */
#include "hop_common.cuh"

#define H1_BQ 128
#define H1_BKV hop_bkv(D) /* 128 keys (64 at d = 256); D: the kernel's head dim */
#define H1_THREADS (2 * HOP_WG)

template <typename T, int D>
__global__ void __launch_bounds__(H1_THREADS, 1) h1_kernel(tc_args_t a)
{
#if HOP_DEVICE
    extern __shared__ uint8_t h1_smem_raw[];
    /* the 128-byte swizzle repeats every 1024 bytes: tiles start on that */
    const uint32_t aQ = (tc_smem_addr(h1_smem_raw) + 1023u) & ~1023u;
    const uint32_t aK = aQ + hop_tile_bytes<D>(H1_BQ), aV = aK + hop_tile_bytes<D>(H1_BKV);

    const int tid = threadIdx.x, wg = tid / HOP_WG, warp = (tid % HOP_WG) / 32, lane = tid % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * H1_BQ, h = blockIdx.y, b = blockIdx.z;
    const int gq0 = q0 + wg * 64;      /* the warp group's first row */
    const int wq0 = gq0 + warp * 16;   /* the warp's first row (tc_apply_mask) */
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;
    const int kv_end = tc_kv_end(a, q0, H1_BQ);
    const int ntiles = (kv_end + H1_BKV - 1) / H1_BKV;
    const int off = a.seq_kv - a.seq_q;

    hop_tile_async<T, D, H1_BQ, H1_THREADS>(aQ, Q + (size_t)q0 * D, a.seq_q - q0, tid);
    tc_cp_async_commit();
    const uint32_t aQg = aQ + wg * 64 * 128; /* the group's 64 rows of every Q panel */

    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    for (int t = 0; t < ntiles; t++) {
        const int kv0 = t * H1_BKV, valid = min(H1_BKV, a.seq_kv - kv0);
        if (t > 0) __syncthreads(); /* every group is done with the previous K/V */
        hop_tile_async<T, D, H1_BKV, H1_THREADS>(aK, K + (size_t)kv0 * D, valid, tid);
        hop_tile_async<T, D, H1_BKV, H1_THREADS>(aV, V + (size_t)kv0 * D, valid, tid);
        tc_cp_async_commit();
        tc_cp_async_wait<0>();
        hop_fence_proxy_async(); /* cp.async wrote through the generic proxy; wgmma reads through the async one */
        __syncthreads();

        /* the group's 64 rows see no key of this tile (causal), or it has no row */
        const bool skip = gq0 >= a.seq_q || (a.causal && kv0 > min(gq0 + 63, a.seq_q - 1) + off);
        if (skip) continue;

        // [snippet:h1-qk]
        float s[H1_BKV / 8][4];
        hop_wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            hop_wgmma<T, H1_BKV>::ss(s, hop_desc_k<H1_BQ>(aQg, kk), hop_desc_k<H1_BKV>(aK, kk), kk > 0);
        hop_wgmma_commit();
        hop_wgmma_wait<0>();
        hop_reg_fence(s);
        // [/snippet]

        if (kv0 + H1_BKV > a.seq_kv || (a.causal && kv0 + H1_BKV - 1 > gq0 + off)) tc_apply_mask(s, a, wq0, kv0);

        hop_softmax_rescale<D, H1_BKV>(s, o, m, l, a.scale_log2);

        // [snippet:h1-pv]
        uint32_t p[H1_BKV / 16][4];
#pragma unroll
        for (int kk = 0; kk < H1_BKV / 16; kk++) tc_pack_p<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
        hop_reg_fence(o); /* the rescaled o and the packed p are in registers before the fence */
        hop_reg_fence(p);
        hop_wgmma_fence(); /* o was rescaled and p written by ordinary instructions */
#pragma unroll
        for (int kk = 0; kk < H1_BKV / 16; kk++) hop_wgmma<T, D>::rs(o, p[kk], hop_desc_mn<H1_BKV>(aV, kk), 1);
        hop_wgmma_commit();
        hop_wgmma_wait<0>();
        hop_reg_fence(o);
        // [/snippet]
    }

    hop_store_o<T, D>(a, o, l, qhead, wq0 + g, c);
    if (ntiles == 0) tc_cp_async_wait<0>(); /* no K/V tile: Q's copy still must land before exit */
#endif
}

/* 1024 bytes of slack: the tiles are aligned up to 1024 inside the window */
template <int D> static constexpr int h1_smem() { return hop_tile_bytes<D>(H1_BQ + 2 * H1_BKV) + 1024; }

struct h1_run {
    static constexpr unsigned DIMS = HOP_DIMS;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        tc_launch_kernel<h1_kernel<T, D>>(tc_grid(s, H1_BQ), H1_THREADS, h1_smem<D>(), tc_make_args(s, q, k, v, o));
        return 0;
    }
};
struct h1_desc {
    static constexpr unsigned DIMS = HOP_DIMS;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, h1_kernel<T, D>, H1_BQ, H1_BKV, H1_THREADS, h1_smem<D>(),
                           "2 warp groups, wgmma (S: SS, PV: RS), K/V by cp.async, 1 stage");
        return 0;
    }
};

extern "C" int h1_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    h1_run f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
extern "C" int h1_describe(const tc_shape_t *s, char *buf, size_t n)
{
    h1_desc f = { buf, n };
    return tc_dispatch(s, f);
}
