/* tcx_f16acc: tc2_swizzle with the output O accumulated in fp16 instead of
 * fp32. Not a step of the speed ladder: a numerics demonstration, to answer
 * "why do FlashAttention kernels accumulate in fp32?" by measurement.
 *
 * What changes against tc2_swizzle.cu: only the P V product. It runs as
 *   mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16
 * (fp16 A, B, C and D), so O lives in fp16 registers across all K/V tiles:
 * 2 registers of 2 halves per 16x8 C tile instead of 4 fp32 registers, and
 * every MMA rounds the running sum to fp16 (11 significant bits). S = Q K^T,
 * the online softmax, m and l stay in fp32, so the difference between the
 * two kernels' errors is the accumulator alone.
 *
 * What to expect (the test test_f16acc measures it): the unnormalised O row
 * is sum_j e^(s_j - m) v_j, which grows like l, the number of keys that
 * matter, when V has a non-zero mean. Once it is large, the next MMA's
 * increment (16 keys' worth) is only a few fp16 ulps of it and its rounding
 * error is a large fraction of the increment: the relative error grows with
 * the number of keys, where fp32's (24 bits) stays far below the storage
 * type's own rounding. The sum also overflows once l |v| exceeds 65504.
 *
 * fp16 only: for bf16 inputs mma.sync has no 16-bit accumulator (PTX ISA,
 * mma.m16n8k16: with .bf16 A and B, C and D must be .f32), and a bf16
 * accumulator (8 significant bits) would only be worse.
 *
 * Traffic: as tc2 (HBM es d (2 N_q + 2 N_kv ceil(N_q / 64)) per head).
 *
 * Run: build/bin/test_f16acc (GPU), through attn_tcx_f16acc_launch (tc.h). */
#include "tc_common.cuh"

#define TCX_BQ 64
#define TCX_BKV 64
#define TCX_WARPS 4
#define TCX_THREADS (TCX_WARPS * 32)

/* d += a b with fp16 C and D: each register holds two halves of a row,
 * d[0] = C[g][2c, 2c+1], d[1] = C[g + 8][2c, 2c+1] (the fp32 layout of
 * tc_common.cuh, two elements per register). */
// [snippet:mma-f16acc]
__device__ __forceinline__ void tcx_mma_f16acc(uint32_t (&d)[2], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, {%6,%7}, {%0,%1};\n"
        : "+r"(d[0]), "+r"(d[1])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// [/snippet]

__device__ __forceinline__ __half2 tcx_h2(uint32_t x) { return *reinterpret_cast<__half2 *>(&x); }
__device__ __forceinline__ uint32_t tcx_u32(__half2 x) { return *reinterpret_cast<uint32_t *>(&x); }

template <int D>
__global__ void __launch_bounds__(TCX_THREADS) tcx_f16acc_kernel(tc_args_t a)
{
    using T = __half;
    using L = tc_layout<D>;
    extern __shared__ uint4 tcx_smem[];
    char *sQ = reinterpret_cast<char *>(tcx_smem);
    char *sK = sQ + L::bytes(TCX_BQ);
    char *sV = sK + L::bytes(TCX_BKV);
    const uint32_t aQ = tc_smem_addr(sQ), aK = tc_smem_addr(sK), aV = tc_smem_addr(sV);

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int q0 = tc_qblock(a) * TCX_BQ, h = blockIdx.y, b = blockIdx.z;
    const int wq0 = q0 + warp * MMA_M;
    const size_t qhead = (size_t)b * a.heads + h, kvhead = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qhead * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvhead * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvhead * a.seq_kv * D;

    tc_tile_sync<T, D, TCX_BQ, TCX_THREADS>(sQ, Q + (size_t)q0 * D, a.seq_q - q0);
    __syncthreads();
    uint32_t qf[D / MMA_K][4];
#pragma unroll
    for (int kk = 0; kk < D / MMA_K; kk++) tc_ldsm_x4(qf[kk], aQ + L::off(warp * MMA_M + (lane & 15), 2 * kk + (lane >> 4)));

    /* O in fp16: o[n][0] = row g, o[n][1] = row g + 8, two columns each. */
    uint32_t o[D / MMA_N][2];
#pragma unroll
    for (int n = 0; n < D / MMA_N; n++) o[n][0] = o[n][1] = 0u;
    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f };

    const int krow = (lane & 7) + ((lane >> 4) << 3), kch = (lane >> 3) & 1;
    const int vrow = lane & 15, vch = lane >> 4;

    const int kv_end = tc_kv_end(a, q0, TCX_BQ);
    for (int kv0 = 0; kv0 < kv_end; kv0 += TCX_BKV) {
        const int valid = min(TCX_BKV, a.seq_kv - kv0);
        __syncthreads();
        tc_tile_sync<T, D, TCX_BKV, TCX_THREADS>(sK, K + (size_t)kv0 * D, valid);
        tc_tile_sync<T, D, TCX_BKV, TCX_THREADS>(sV, V + (size_t)kv0 * D, valid);
        __syncthreads();
        if (tc_warp_skips(a, wq0, kv0)) continue;

        /* S = Q K^T in fp32, exactly as tc2 */
        float s[TCX_BKV / MMA_N][4];
#pragma unroll
        for (int j = 0; j < TCX_BKV / MMA_N; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int j = 0; j < TCX_BKV / MMA_N; j += 2)
#pragma unroll
            for (int kk = 0; kk < D / MMA_K; kk++) {
                uint32_t kb[4];
                tc_ldsm_x4(kb, aK + L::off(MMA_N * j + krow, 2 * kk + kch));
                tc_mma<T>(s[j], qf[kk], kb[0], kb[1]);
                tc_mma<T>(s[j + 1], qf[kk], kb[2], kb[3]);
            }
#pragma unroll
        for (int j = 0; j < TCX_BKV / MMA_N; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] *= a.scale;
        if (tc_tile_needs_mask(a, wq0, kv0, TCX_BKV)) tc_apply_mask(s, a, wq0, kv0);

        /* the online softmax in fp32, as tc2; only the O rescale is in fp16 */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < TCX_BKV / MMA_N; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            const float mnew = fmaxf(m[r], tc_quad_max(mx));
            const float ms = mnew == -INFINITY ? 0.0f : mnew;
            const float alpha = exp2f((m[r] - ms) * LOG2E_F);
            m[r] = mnew;
            l[r] *= alpha;
            const __half2 alpha2 = __float2half2_rn(alpha);
#pragma unroll
            for (int n = 0; n < D / MMA_N; n++) o[n][r] = tcx_u32(__hmul2(tcx_h2(o[n][r]), alpha2));
#pragma unroll
            for (int j = 0; j < TCX_BKV / MMA_N; j++)
#pragma unroll
                for (int e = 2 * r; e < 2 * r + 2; e++) {
                    s[j][e] = exp2f((s[j][e] - ms) * LOG2E_F);
                    l[r] += s[j][e];
                }
        }

        /* O += P V with fp16 accumulators: the one line that differs from tc2 */
#pragma unroll
        for (int kk = 0; kk < TCX_BKV / MMA_K; kk++) {
            uint32_t pa[4];
            tc_pack_p<T>(pa, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
            for (int n = 0; n < D / MMA_N; n += 2) {
                uint32_t vb[4];
                tc_ldsm_x4_trans(vb, aV + L::off(MMA_K * kk + vrow, n + vch));
                tcx_mma_f16acc(o[n], pa, vb[0], vb[1]);
                tcx_mma_f16acc(o[n + 1], pa, vb[2], vb[3]);
            }
        }
    }

    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lsum = tc_quad_sum(l[r]);
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
        const int row = wq0 + g + (MMA_M / 2) * r;
        if (row >= a.seq_q) continue;
#pragma unroll
        for (int n = 0; n < D / MMA_N; n++) {
            const float2 f = __half22float2(tcx_h2(o[n][r]));
            *reinterpret_cast<uint32_t *>(O + (size_t)row * D + 8 * n + 2 * c) = tc_pack<T>(f.x * inv, f.y * inv);
        }
    }
}

template <int D> static constexpr int tcx_smem() { return tc_layout<D>::bytes(TCX_BQ + 2 * TCX_BKV); }

template <int D> static void tcx_launch_d(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc_launch_kernel<tcx_f16acc_kernel<D>>(tc_grid(s, TCX_BQ), TCX_THREADS, tcx_smem<D>(), tc_make_args(s, q, k, v, o));
}

/* The kernel alone: attn_tcx_f16acc_launch (tc_impls.c) checks the shape
 * first. -1 for a shape it has no instance for. */
extern "C" int tcx_f16acc_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    if (s->dt != DT_F16) return -1;
    switch (s->dim) {
    case 64: tcx_launch_d<64>(s, q, k, v, o); return 0;
    case 96: tcx_launch_d<96>(s, q, k, v, o); return 0;
    case 128: tcx_launch_d<128>(s, q, k, v, o); return 0;
    default: return -1;
    }
}
