/* tc1_mma: the plain tensor-core FlashAttention-2 forward kernel, the first
 * rung of the ladder (tc2 ... tc5 each change one thing).
 *
 * What changes against stage 04's one-pass kernel: the dot products and the
 * P V sums run on tensor cores (mma.sync.m16n8k16, fp16/bf16 in, fp32
 * accumulate), a tile at a time instead of a key at a time.
 *   - One thread block (4 warps) per 64 query rows of one (batch, head); each
 *     warp owns 16 rows and keeps their Q fragments, the running max m, the
 *     running sum l and the unnormalised output O (16 x d, fp32) in registers.
 *   - K/V tiles of 64 keys stream through shared memory (16-byte global loads,
 *     plain row-major tiles, then __syncthreads).
 *   - S = Q K^T for the warp's 16 x 64 block: 8 x d/16 MMAs; scores scaled,
 *     masked (diagonal and tail tiles only), then the online softmax runs on
 *     the accumulator fragments themselves (tc_common.cuh: a row lives in one
 *     quad, so its max and sum are two shuffles); O is rescaled by
 *     e^(m_old - m_new) whenever m grows.
 *   - P = e^(S - m) is rounded to fp16/bf16 and used as the A operand of
 *     O += P V straight from the registers it was computed in.
 *   - At the end O / l (the quad's partial sums added), written as fp16/bf16.
 * Fragments are read from shared memory with 32-bit loads (16-bit for V,
 * whose B fragment pairs two key rows). The row pitch is d elements, so the
 * 8 rows a load touches share their banks: 8-way conflicts, which tc2 removes.
 *
 * Traffic (per head, N_q = seq_q, N_kv = seq_kv, es = element bytes):
 *   HBM: Q and O once, K and V once per query block:
 *        es d (2 N_q + 2 N_kv ceil(N_q / 64))   (halved K/V part when causal)
 *   in practice K/V are re-read from L2, which holds a head's K/V while its
 *   query blocks run; shared memory: each warp reads all of K and V of a tile.
 *
 * Measured: note 05b's ladder table (notes/05b_tensor_cores.md); what the
 * profiler found (most shared-memory loads are bank conflicts) is why tc2
 * exists.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc1_mma */
#include "tc_common.cuh"

#define TC1_BQ 64
#define TC1_BKV 64
#define TC1_WARPS 4
#define TC1_THREADS (TC1_WARPS * 32)

/* The smem tiles hold raw 16-bit patterns: the kernel only moves them. */
template <typename T, int D>
__global__ void __launch_bounds__(TC1_THREADS) tc1_kernel(tc_args_t a)
{
    extern __shared__ uint4 tc1_smem[];
    uint16_t *sQ = reinterpret_cast<uint16_t *>(tc1_smem); /* TC1_BQ x D */
    uint16_t *sK = sQ + TC1_BQ * D;                         /* TC1_BKV x D */
    uint16_t *sV = sK + TC1_BKV * D;                        /* TC1_BKV x D */
    constexpr int CH = D / 8; /* 16-byte chunks per row */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TC1_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M; /* this warp's first query row */
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const uint16_t *Q = reinterpret_cast<const uint16_t *>(a.q) + qhead * a.seq_q * D;
    const uint16_t *K = reinterpret_cast<const uint16_t *>(a.k) + kvhead * a.seq_kv * D;
    const uint16_t *V = reinterpret_cast<const uint16_t *>(a.v) + kvhead * a.seq_kv * D;

    /* Q tile -> shared (rows past seq_q as zeros) -> this warp's A fragments. */
    for (int i = threadIdx.x; i < TC1_BQ * CH; i += TC1_THREADS) {
        const int r = i / CH, ch = i % CH;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (q0 + r < a.seq_q) x = *reinterpret_cast<const uint4 *>(Q + (size_t)(q0 + r) * D + ch * 8);
        *reinterpret_cast<uint4 *>(sQ + r * D + ch * 8) = x;
    }
    __syncthreads();
    uint32_t qf[D / MMA_K][4];
    {
        const uint16_t *w = sQ + warp * MMA_M * D;
#pragma unroll
        for (int kk = 0; kk < D / MMA_K; kk++) {
            qf[kk][0] = *reinterpret_cast<const uint32_t *>(w + g * D + 16 * kk + 2 * c);
            qf[kk][1] = *reinterpret_cast<const uint32_t *>(w + (g + 8) * D + 16 * kk + 2 * c);
            qf[kk][2] = *reinterpret_cast<const uint32_t *>(w + g * D + 16 * kk + 8 + 2 * c);
            qf[kk][3] = *reinterpret_cast<const uint32_t *>(w + (g + 8) * D + 16 * kk + 8 + 2 * c);
        }
    }

    /* The running state of rows g (index 0) and g + 8 (index 1). */
    float o[D / MMA_N][4];
#pragma unroll
    for (int n = 0; n < D / MMA_N; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    const int kv_end = tc_kv_end(a, q0, TC1_BQ);
    for (int kv0 = 0; kv0 < kv_end; kv0 += TC1_BKV) {
        const int valid = min(TC1_BKV, a.seq_kv - kv0);
        __syncthreads(); /* every warp is done with the previous tile */
        for (int i = threadIdx.x; i < TC1_BKV * CH; i += TC1_THREADS) {
            const int r = i / CH, ch = i % CH;
            uint4 xk = make_uint4(0, 0, 0, 0), xv = xk;
            if (r < valid) {
                xk = *reinterpret_cast<const uint4 *>(K + (size_t)(kv0 + r) * D + ch * 8);
                xv = *reinterpret_cast<const uint4 *>(V + (size_t)(kv0 + r) * D + ch * 8);
            }
            *reinterpret_cast<uint4 *>(sK + r * D + ch * 8) = xk;
            *reinterpret_cast<uint4 *>(sV + r * D + ch * 8) = xv;
        }
        __syncthreads();
        if (tc_warp_skips(a, wq0, kv0)) continue; /* a tile wholly in this warp's future */

        /* S = Q K^T: 16 x 64, as 8 C tiles of 8 keys. */
        float s[TC1_BKV / MMA_N][4];
#pragma unroll
        for (int j = 0; j < TC1_BKV / MMA_N; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            const uint16_t *krow = sK + (8 * j + g) * D; /* key 8j + g */
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++) {
                const uint32_t b0 = *reinterpret_cast<const uint32_t *>(krow + 16 * kk + 2 * c);
                const uint32_t b1 = *reinterpret_cast<const uint32_t *>(krow + 16 * kk + 8 + 2 * c);
                tc_mma<T>(s[j], qf[kk], b0, b1);
            }
        }
#pragma unroll
        for (int j = 0; j < TC1_BKV / MMA_N; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] *= a.scale;
        if (tc_tile_needs_mask(a, wq0, kv0, TC1_BKV)) tc_apply_mask(s, a, wq0, kv0);

        /* Online softmax on the fragments, rows g (r = 0) and g + 8 (r = 1). */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < TC1_BKV / MMA_N; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            const float mnew = fmaxf(m[r], tc_quad_max(mx));
            /* While a row has seen no visible key, mnew = -inf: take the
             * exponents against 0 so that they give 0, not NaN. */
            const float ms = mnew == -INFINITY ? 0.0f : mnew;
            const float alpha = exp2f((m[r] - ms) * LOG2E_F); /* 1 unless m grew */
            m[r] = mnew;
            l[r] *= alpha; /* l stays a per-thread partial sum until the end */
#pragma unroll
            for (int n = 0; n < D / MMA_N; n++) {
                o[n][2 * r] *= alpha;
                o[n][2 * r + 1] *= alpha;
            }
#pragma unroll
            for (int j = 0; j < TC1_BKV / MMA_N; j++)
#pragma unroll
                for (int e = 2 * r; e < 2 * r + 2; e++) {
                    s[j][e] = exp2f((s[j][e] - ms) * LOG2E_F);
                    l[r] += s[j][e];
                }
        }

        /* O += P V: P's A fragments straight from s; V's B fragments pair
         * two key rows of one dim (two 16-bit loads each). */
#pragma unroll
        for (int kk = 0; kk < TC1_BKV / MMA_K; kk++) {
            uint32_t pa[4];
            tc_pack_p<T>(pa, s[2 * kk], s[2 * kk + 1]);
            const uint16_t *v0 = sV + (16 * kk + 2 * c) * D; /* keys 16kk + 2c, +1, +8, +9 */
#pragma unroll
            for (int n = 0; n < D / MMA_N; n++) {
                const int col = 8 * n + g;
                const uint32_t b0 = (uint32_t)v0[col] | (uint32_t)v0[D + col] << 16;
                const uint32_t b1 = (uint32_t)v0[8 * D + col] | (uint32_t)v0[9 * D + col] << 16;
                tc_mma<T>(o[n], pa, b0, b1);
            }
        }
    }

    /* O / l; a row with no visible key has l = 0 and O = 0: it writes zeros. */
    uint16_t *O = reinterpret_cast<uint16_t *>(a.o) + qhead * a.seq_q * D;
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

template <typename T, int D> static constexpr int tc1_smem() { return (TC1_BQ + 2 * TC1_BKV) * D * 2; }

template <typename T, int D> struct tc1_inst {
    static constexpr auto kernel = tc1_kernel<T, D>;
    static constexpr int BQ = TC1_BQ, BKV = TC1_BKV, THREADS = TC1_THREADS, SMEM = tc1_smem<T, D>();
    static const char *what() { return "plain row-major smem, synchronous loads"; }
};
TC_RUNG(tc1, tc1_inst, TC_DIMS_BASE)
