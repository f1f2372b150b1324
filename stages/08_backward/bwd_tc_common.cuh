/* Stage 08 on tensor cores: the fragment loaders the backward needs on top
 * of stage 05b's (tc_common.cuh: mma.sync, ldmatrix, cp.async, the swizzled
 * tile layout), the two kinds of product every kernel here is made of
 * (bwd_mma_nt, bwd_mma_rb), the K/V-block kernel shared by bwd_tc1_atomic.cu,
 * bwd_tc2_det.cu and bwd_tc3_k32.cu, and the launchers' dispatch (stage
 * 05b's tc_dispatch).
 *
 * The backward multiplies every operand both ways round: Q is the B operand
 * of S^T = K Q^T (read as stored) and of dK += dS^T Q (read transposed); dO
 * likewise for dP^T = V dO^T and dV += P^T dO; K is the A operand of S^T and
 * the B operand of dQ += dS K. A tile stored [row][col] in shared memory
 * (rows of 16-byte chunks, tc_layout) gives each role with one ldmatrix.x4:
 *
 *   bwd_ldsm_a   A fragment (16 x 16) of a tile stored [m][k]: rows m0..m0+15
 *   bwd_ldsm_b   B fragments of two n-tiles (16 n x 16 k) of a tile stored [n][k]
 *   bwd_ldsm_bt  B fragments of two n-tiles of a tile stored [k][n] (.trans)
 *   bwd_ldsm_at  A fragment of a tile stored [k][m] (.trans): dS^T kept as
 *                written, read as dS for dQ
 *
 * (fragment layouts: tc_common.cuh's header; lane l addresses row l % 8 of
 * 8x8 matrix l / 8, and matrix i lands in register i). */
#ifndef STF_BWD_TC_COMMON_CUH
#define STF_BWD_TC_COMMON_CUH

#include "../05b_tensor_cores/tc_common.cuh"
#include "bwd_common.cuh"

template <int D> __device__ __forceinline__ uint32_t bwd_off(int r, int c) { return tc_layout<D>::off(r, c); }

/* A (m x k) stored [m][k]: a0 rows 0-7 k 0-7, a1 rows 8-15 k 0-7, a2 rows 0-7
 * k 8-15, a3 rows 8-15 k 8-15. */
template <int D> __device__ __forceinline__ void bwd_ldsm_a(uint32_t (&r)[4], uint32_t tile, int m0, int kk)
{
    const int lane = threadIdx.x % 32;
    tc_ldsm_x4(r, tile + bwd_off<D>(m0 + (lane & 15), 2 * kk + (lane >> 4)));
}
/* B (k x n) stored [n][k] (K for S = Q K^T): r0, r1 for n-tile n0 / 8, r2, r3
 * for the next one. */
template <int D> __device__ __forceinline__ void bwd_ldsm_b(uint32_t (&r)[4], uint32_t tile, int n0, int kk)
{
    const int lane = threadIdx.x % 32;
    tc_ldsm_x4(r, tile + bwd_off<D>(n0 + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
}
/* B (k x n) stored [k][n] (V for O = P V): rows k0 .. k0 + 15, chunk nc (r0,
 * r1) and nc + 1 (r2, r3). */
template <int D> __device__ __forceinline__ void bwd_ldsm_bt(uint32_t (&r)[4], uint32_t tile, int k0, int nc)
{
    const int lane = threadIdx.x % 32;
    tc_ldsm_x4_trans(r, tile + bwd_off<D>(k0 + (lane & 15), nc + (lane >> 4)));
}
/* A (m x k) stored [k][m]: a0 = keys k0..+7 of rows chunk mc, a1 = chunk
 * mc + 1, a2, a3 the same for keys k0 + 8 .. +15. */
template <int D> __device__ __forceinline__ void bwd_ldsm_at(uint32_t (&r)[4], uint32_t tile, int k0, int mc)
{
    const int lane = threadIdx.x % 32;
    tc_ldsm_x4_trans(r, tile + bwd_off<D>(k0 + (lane & 7) + ((lane >> 4) << 3), mc + ((lane >> 3) & 1)));
}

/* ---------------------------------------------------------------- the products */

/* c0 += a b0, c1 += a b1: one A fragment against the two n-tiles of an x4
 * B load (b[0], b[1] and b[2], b[3]). */
template <typename T>
__device__ __forceinline__ void bwd_mma2(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4], const uint32_t (&b)[4])
{
    tc_mma<T>(c0, a, b[0], b[1]);
    tc_mma<T>(c1, a, b[2], b[3]);
}

/* acc[m] (16 rows x 8 NJ columns) = A_m B^T over d, m < MT: A_m rows
 * row0 + 16 m .. of a tile stored [row][d] (K or V; ldsm_a), B a tile
 * stored [column][d] (Q or dO, as stored; ldsm_b), each B fragment feeding
 * all MT row tiles. The K/V-block kernel's S^T = K_w Q_i^T and
 * dP^T = V_w dO_i^T. */
template <typename T, int D, int MT, int NJ>
__device__ __forceinline__ void bwd_mma_nt(float (&acc)[MT][NJ][4], uint32_t aA, int row0, uint32_t aB)
{
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int j = 0; j < NJ; j++) acc[m][j][0] = acc[m][j][1] = acc[m][j][2] = acc[m][j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t fa[MT][4];
#pragma unroll
        for (int m = 0; m < MT; m++) bwd_ldsm_a<D>(fa[m], aA, row0 + 16 * m, kk);
#pragma unroll
        for (int j = 0; j < NJ; j += 2) {
            uint32_t fb[4];
            bwd_ldsm_b<D>(fb, aB, 8 * j, kk);
#pragma unroll
            for (int m = 0; m < MT; m++) bwd_mma2<T>(acc[m][j], acc[m][j + 1], fa[m], fb);
        }
    }
}

/* acc[m] (16 rows x D) += X_m B, m < MT: X_m (16 x 8 NK, fp32 C fragments) is
 * rounded to T into A fragments (tc_pack_p: it never leaves registers), B a
 * tile stored [k][d] read transposed (ldsm_bt). dV_w += P^T dO_i and
 * dK_w += dS^T Q_i in the K/V-block kernel; O += P V in the forward and
 * dQ_i += dS K_j in bwd_tc2_det.cu (MT = 1: bwd_mma_rb1). */
template <typename T, int D, int MT, int NK>
__device__ __forceinline__ void bwd_mma_rb(float (&acc)[MT][D / 8][4], const float (&x)[MT][NK][4], uint32_t aB)
{
#pragma unroll
    for (int kq = 0; kq < NK / 2; kq++) {
        uint32_t xa[MT][4];
#pragma unroll
        for (int m = 0; m < MT; m++) tc_pack_p<T>(xa[m], x[m][2 * kq], x[m][2 * kq + 1]);
#pragma unroll
        for (int n = 0; n < D / 8; n += 2) {
            uint32_t fb[4];
            bwd_ldsm_bt<D>(fb, aB, 16 * kq, n);
#pragma unroll
            for (int m = 0; m < MT; m++) bwd_mma2<T>(acc[m][n], acc[m][n + 1], xa[m], fb);
        }
    }
}
template <typename T, int D, int NK>
__device__ __forceinline__ void bwd_mma_rb1(float (&acc)[D / 8][4], const float (&x)[NK][4], uint32_t aB)
{
    bwd_mma_rb<T, D>(reinterpret_cast<float (&)[1][D / 8][4]>(acc), reinterpret_cast<const float (&)[1][NK][4]>(x), aB);
}

/* ---------------------------------------------------------------- the K/V-block kernel
 *
 * One thread block per block of BKV = 16 WARPS keys of one K/V head (WARPS
 * = 4 or 8: bwd_tc_warps below); warp w
 * owns keys 16 w .. 16 w + 15 and their rows of dK and dV (fp32 registers:
 * 2 x 16 x d per warp). The loop runs over the group's query heads and their
 * query blocks of BQ = 64 rows (causal: from the first row that sees the
 * block's first key), Q_i, dO_i, L_i, D_i double-buffered by cp.async.
 * Per warp and query block, everything transposed (rows = the warp's keys,
 * columns = the 64 queries), so that P^T and dS^T come out of the C
 * fragments in the layout of an A fragment for dV += P^T dO and
 * dK += dS^T Q (tc_pack_p: they never leave registers):
 *   S^T  = K_w Q_i^T            A: K (ldsm_a), B: Q as stored (ldsm_b)
 *   P^T  = 2^(S^T scale log2 e - L2)   (L2 per column: shared memory)
 *   dV_w += P^T dO_i            A: P^T (registers), B: dO transposed (ldsm_bt)
 *   dP^T = V_w dO_i^T           A: V (ldsm_a), B: dO as stored (ldsm_b)
 *   dS^T = P^T (dP^T - D)
 *   dK_w += dS^T Q_i            A: dS^T (registers), B: Q transposed (ldsm_bt)
 * With DQ (the atomic kernel), dQ_i += dS K_j needs every warp's keys: dS^T
 * goes to shared memory (16-bit, [key][query]), a barrier, then warp w
 * computes 16 query rows (w % 4) x D / (WARPS / 4) dims of dS K_j (A: dS^T
 * read transposed, ldsm_at; B: K transposed, ldsm_bt) and adds them into the
 * fp32 accumulator with red.global.add (float2 atomics, sm_90).
 * Without DQ (the deterministic kernel), dQ is left to bwd_tc2_det.cu's
 * second kernel. */
#define BWD_BQ 64

/* KW keys per warp (16, or 32 in bwd_tc3_k32.cu: MT = KW / 16 row tiles of
 * 16 keys), BQ query rows per block (64, or 32 there). */
template <int D, int WARPS, int KW = 16, int BQ = BWD_BQ> struct bwd_kv_cfg {
    static constexpr int BKV = KW * WARPS;
    static constexpr int KVB = tc_layout<D>::bytes(BKV), QB = tc_layout<D>::bytes(BQ);
    static constexpr int DSB = tc_layout<BQ>::bytes(BKV);
    /* K | V | Q[0] | dO[0] | Q[1] | dO[1] | dS^T | L2[2][BQ] | D[2][BQ] */
    static constexpr int smem(bool dq) { return 2 * KVB + 4 * QB + (dq ? DSB : 0) + 4 * 4 * BQ; }
};

/* MINB: thread blocks per SM asked of the register allocator (2 blocks of 4
 * warps or 1 of 8 leave each thread 255 registers; 3 of 4 warps, 168). */
template <typename T, int D, int WARPS, bool DQ, int MINB, int KW = 16, int BQ = BWD_BQ>
__global__ void __launch_bounds__(WARPS * 32, MINB) bwd_tc_kv_kernel(bwd_args_t a)
{
    using C = bwd_kv_cfg<D, WARPS, KW, BQ>;
    constexpr int BKV = C::BKV, NT = WARPS * 32, NJ = BQ / 8, MT = KW / 16;
    static_assert(KW % 16 == 0 && BQ % 16 == 0, "tiles of 16");
    extern __shared__ uint4 bwd_kv_smem[];
    char *smem = reinterpret_cast<char *>(bwd_kv_smem);
    const uint32_t aS = tc_smem_addr(smem);
    const uint32_t aK = aS, aV = aS + C::KVB, aQ0 = aS + 2 * C::KVB; /* stage s: Q at aQ0 + 2 s QB, dO + QB */
    float *L2s = reinterpret_cast<float *>(smem + 2 * C::KVB + 4 * C::QB + (DQ ? C::DSB : 0)); /* [2][BQ] */
    float *Dss = L2s + 2 * BQ;

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int kv0 = blockIdx.x * BKV, wk0 = kv0 + KW * warp;
    const size_t kvh = (size_t)blockIdx.z * a.kv_heads + blockIdx.y;
    const T *K = reinterpret_cast<const T *>(a.k) + kvh * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvh * a.seq_kv * D;
    const int off = a.seq_kv - a.seq_q;
    const int qfirst = a.causal ? max(0, kv0 - off) : 0;
    const int qb0 = qfirst / BQ;
    const int nqb = qfirst < a.seq_q ? (a.seq_q + BQ - 1) / BQ - qb0 : 0;
    const int niter = a.group * nqb;

    /* iteration it: query head kvh G + it / nqb, query block qb0 + it % nqb */
    auto load = [&](int it, int st) {
        const size_t qh = kvh * a.group + it / nqb;
        const int q0 = (qb0 + it % nqb) * BQ;
        const uint32_t aQ = aQ0 + st * 2 * C::QB;
        tc_tile_async<T, D, BQ, NT>(aQ, reinterpret_cast<const T *>(a.q) + (qh * a.seq_q + q0) * D, a.seq_q - q0);
        tc_tile_async<T, D, BQ, NT>(aQ + C::QB, reinterpret_cast<const T *>(a.dout) + (qh * a.seq_q + q0) * D,
                                    a.seq_q - q0);
        for (int i = threadIdx.x; i < BQ; i += NT) {
            L2s[st * BQ + i] = bwd_lse2(a, a.lse + qh * a.seq_q, q0 + i);
            Dss[st * BQ + i] = q0 + i < a.seq_q ? a.dsum[qh * a.seq_q + q0 + i] : 0.0f;
        }
    };
    tc_tile_async<T, D, BKV, NT>(aK, K + (size_t)kv0 * D, a.seq_kv - kv0);
    tc_tile_async<T, D, BKV, NT>(aV, V + (size_t)kv0 * D, a.seq_kv - kv0);
    if (niter > 0) load(0, 0);
    tc_cp_async_commit();

    float dk[MT][D / 8][4], dv[MT][D / 8][4];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int n = 0; n < D / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) dk[m][n][e] = dv[m][n][e] = 0.0f;

    for (int it = 0; it < niter; it++) {
        const int st = it & 1;
        tc_cp_async_wait<0>();
        __syncthreads(); /* stage st has landed, and every warp is done with stage st ^ 1 */
        if (it + 1 < niter) load(it + 1, st ^ 1);
        tc_cp_async_commit();

        const int q0 = (qb0 + it % nqb) * BQ;
        const uint32_t aQ = aQ0 + st * 2 * C::QB, adO = aQ + C::QB;
        const float *L2 = L2s + st * BQ, *Dv = Dss + st * BQ;
        const int qlast = min(q0 + BQ, a.seq_q) - 1;
        /* no (query, key) pair of this warp visible: P = dS = 0 */
        const bool skip = wk0 >= a.seq_kv || (a.causal && wk0 > qlast + off);
        /* (with MT = 2 row tiles, every B fragment loaded from shared memory feeds both) */
        float s[MT][NJ][4], dp[MT][NJ][4];
        if (!skip) {
            bwd_mma_nt<T, D>(s, aK, KW * warp, aQ); /* S^T = K_w Q_i^T */
#pragma unroll
            for (int m = 0; m < MT; m++) {
                const int mk0 = wk0 + 16 * m;
                const bool mask = mk0 + 16 > a.seq_kv || (a.causal && mk0 + 15 > q0 + off);
#pragma unroll
                for (int j = 0; j < NJ; j++) {
                    /* the two queries of this thread's columns: one 8-byte load */
                    const float2 l2 = *reinterpret_cast<const float2 *>(L2 + 8 * j + 2 * c);
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int ql = 8 * j + 2 * c + (e & 1), key = mk0 + g + 8 * (e >> 1);
                        float p = tc_exp2(fmaf(s[m][j][e], a.scale_log2, -((e & 1) ? l2.y : l2.x)));
                        if (mask && !bwd_visible(a, q0 + ql, key)) p = 0.0f;
                        s[m][j][e] = p;
                    }
                }
            }
            bwd_mma_rb<T, D>(dv, s, adO); /* dV_w += P^T dO_i */
            /* dP^T = V_w dO_i^T, then dS^T = P^T (dP^T - D) */
            bwd_mma_nt<T, D>(dp, aV, KW * warp, adO);
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const float2 dd = *reinterpret_cast<const float2 *>(Dv + 8 * j + 2 * c);
#pragma unroll
                for (int m = 0; m < MT; m++)
#pragma unroll
                    for (int e = 0; e < 4; e++) dp[m][j][e] = s[m][j][e] * (dp[m][j][e] - ((e & 1) ? dd.y : dd.x));
            }
            bwd_mma_rb<T, D>(dk, dp, aQ); /* dK_w += dS^T Q_i */
        }
        if constexpr (DQ) {
            const uint32_t aDS = aS + 2 * C::KVB + 4 * C::QB;
            /* dS^T -> shared memory [key][query], 16-bit (zeros for a skipped warp) */
#pragma unroll
            for (int m = 0; m < MT; m++)
#pragma unroll
                for (int j = 0; j < NJ; j++)
#pragma unroll
                    for (int r = 0; r < 2; r++) {
                        const uint32_t v = skip ? 0u : tc_pack<T>(dp[m][j][2 * r], dp[m][j][2 * r + 1]);
                        *reinterpret_cast<uint32_t *>(smem + (aDS - aS) +
                                                      bwd_off<BQ>(KW * warp + 16 * m + g + 8 * r, j) + 4 * c) = v;
                    }
            __syncthreads();
            /* dQ_i (BQ x D) += dS K_j: warp w: rows 16 (w % RG) .., dims part w / RG (RG = BQ / 16 row groups) */
            constexpr int RG = BQ / 16, PARTS = WARPS / RG, NDQ = D / 8 / PARTS;
            static_assert(WARPS % RG == 0 && PARTS >= 1 && (D / 8) % PARTS == 0, "dQ work split");
            /* n-tiles per pass (bounds the live accumulators): an even divisor of NDQ, at most 8 */
            constexpr int CHUNK = NDQ <= 8 ? NDQ : NDQ % 8 == 0 ? 8 : NDQ % 6 == 0 ? 6 : 4;
            static_assert(NDQ % CHUNK == 0 && CHUNK % 2 == 0, "dQ passes");
            const int qw = warp % RG, n0 = (warp / RG) * NDQ;
            const size_t qh = kvh * a.group + it / nqb;
            float *dQ = a.dqacc + (qh * a.seq_q + q0 + 16 * qw) * D;
#pragma unroll
            for (int nc = 0; nc < NDQ; nc += CHUNK) {
                float acc[CHUNK][4];
#pragma unroll
                for (int n = 0; n < CHUNK; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < BKV / 16; kk++) {
                    uint32_t da[4];
                    bwd_ldsm_at<BQ>(da, aDS, 16 * kk, 2 * qw);
#pragma unroll
                    for (int n = 0; n < CHUNK; n += 2) {
                        uint32_t kb[4];
                        bwd_ldsm_bt<D>(kb, aK, 16 * kk, n0 + nc + n);
                        bwd_mma2<T>(acc[n], acc[n + 1], da, kb);
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const int row = g + 8 * r;
                    if (q0 + 16 * qw + row < a.seq_q)
#pragma unroll
                        for (int n = 0; n < CHUNK; n++)
                            atomicAdd(reinterpret_cast<float2 *>(dQ + (size_t)row * D + 8 * (n0 + nc + n) + 2 * c),
                                      make_float2(acc[n][2 * r], acc[n][2 * r + 1]));
                }
            }
        }
    }

    tc_cp_async_wait<0>(); /* nothing left in flight when the block exits (niter = 0) */
    /* dK = scale dK, dV: the warp's 16 key rows, written once */
    T *dK = reinterpret_cast<T *>(a.dk) + kvh * a.seq_kv * D;
    T *dV = reinterpret_cast<T *>(a.dv) + kvh * a.seq_kv * D;
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int key = wk0 + 16 * m + g + 8 * r;
            if (key >= a.seq_kv) continue;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                *reinterpret_cast<uint32_t *>(dK + (size_t)key * D + 8 * n + 2 * c) =
                    tc_pack<T>(dk[m][n][2 * r] * a.scale, dk[m][n][2 * r + 1] * a.scale);
                *reinterpret_cast<uint32_t *>(dV + (size_t)key * D + 8 * n + 2 * c) =
                    tc_pack<T>(dv[m][n][2 * r], dv[m][n][2 * r + 1]);
            }
        }
}

/* Warps of the K/V-block kernel (16 keys each) at head dim d, as measured
 * (notes/08's table): at d = 128, 8 warps (128-key blocks: half the Q/dO
 * tile loads and dQ atomics per key) beat 4; at d = 64 the two tie.
 * STF_BWD_TC_WARPS=4 or 8 overrides it (measurement runs; the tests run
 * both). */
static inline int bwd_tc_warps(int d)
{
    const int w = bwd_env_int("STF_BWD_TC_WARPS", 0);
    return w == 4 || w == 8 ? w : d > 64 ? 8 : 4;
}

/* bwd_tc3_k32.cu's warps: 4, or 8 at d = 64 with STF_BWD_TC_WARPS=8 (at
 * d = 32 eight warps would leave one n-tile of dQ per warp). */
static inline int bwd_k32_warps(int d) { return d == 64 && bwd_tc_warps(d) == 8 ? 8 : 4; }

template <typename T, int D, int WARPS, bool DQ, int MINB, int KW = 16, int BQ = BWD_BQ>
static void bwd_tc_kv_launch_cfg(const bwd_args_t &a)
{
    constexpr int smem = bwd_kv_cfg<D, WARPS, KW, BQ>::smem(DQ);
    bwd_raise_smem<bwd_tc_kv_kernel<T, D, WARPS, DQ, MINB, KW, BQ>>(smem);
    dim3 grid((unsigned)((a.seq_kv + KW * WARPS - 1) / (KW * WARPS)), (unsigned)a.kv_heads, (unsigned)a.batch);
    bwd_tc_kv_kernel<T, D, WARPS, DQ, MINB, KW, BQ><<<grid, WARPS * 32, smem>>>(a);
    LAUNCH_CHECK();
}

/* The K/V-block kernel in its configuration for head dim D (bwd_tc_warps;
 * at d <= 64, STF_BWD_TC_MINB=3 asks for 3 blocks of 4 warps per SM: a
 * measurement knob, tested like the others). */
template <typename T, int D, bool DQ> static void bwd_tc_kv_launch(const bwd_args_t &a)
{
    if (a.seq_kv == 0) return;
    if (bwd_tc_warps(D) == 8) bwd_tc_kv_launch_cfg<T, D, 8, DQ, 1>(a);
    else if (D <= 64 && bwd_env_int("STF_BWD_TC_MINB", 2) == 3) bwd_tc_kv_launch_cfg<T, D, 4, DQ, D <= 64 ? 3 : 2>(a);
    else bwd_tc_kv_launch_cfg<T, D, 4, DQ, 2>(a);
}

/* Stage 05b's shape (tc.h) of an attn_shape_t, for its dispatch and its
 * kernels' arguments (tc_make_args). */
static inline tc_shape_t bwd_tc_shape(const attn_shape_t *s)
{
    const tc_shape_t t = { (int)s->batch,  (int)s->heads, (int)s->kv_heads, (int)s->seq_q, (int)s->seq_kv,
                           (int)s->dim,    s->causal,     s->scale,          s->dt };
    return t;
}

/* The head dims of stage 08's tensor-core kernels (R::DIMS, as stage 05b's rungs declare theirs). */
#define BWD_TC_DIMS (TC_DIM_BIT(32) | TC_DIM_BIT(64) | TC_DIM_BIT(96) | TC_DIM_BIT(128))

/* What a launcher's R holds: the arguments and the head dims it is built for. */
struct bwd_tc_run {
    static constexpr unsigned DIMS = BWD_TC_DIMS;
    bwd_args_t a;
};

/* A tensor-core backward launcher: R::run<T, D>() with arguments a, for the
 * shape's storage type and head dim (stage 05b's tc_dispatch: -1 for a
 * combination outside R::DIMS); nothing to do without a head. */
template <typename R> static int bwd_tc_launch(const attn_shape_t *s, const bwd_args_t &a)
{
    if (s->batch * s->heads == 0) return 0;
    R f;
    f.a = a;
    const tc_shape_t ts = bwd_tc_shape(s);
    return tc_dispatch(&ts, f);
}

#endif
