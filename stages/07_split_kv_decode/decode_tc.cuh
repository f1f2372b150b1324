/* Stage 07, the decode kernel on tensor cores (split-tc). What changes from
 * stage 06's CUDA-core decode kernel (decode_kernel.cuh, the previous step):
 * the g query heads of a K/V group become the M rows of an mma.sync.m16n8k16
 * product (rows padded to 16 when g < 16; two m16 tiles when g > 16; more
 * groups of 32 rows are more blocks), so S = Q K^T and O += P V run on the
 * tensor cores and the arithmetic per K/V byte (2 g FLOPs per element for
 * each product) stops costing CUDA-core instructions. Decode turns into a
 * small GEMM with M = g, streamed along the keys (FlashAttention-2's decode
 * swaps seq_q and the group the same way).
 *
 * Block = (32- or 16-row block of a group, batch b, split z). W = 4 warps:
 * MT m16 tiles x KS key slices (MT = 1: 4 slices; MT = 2: 2). K/V tiles of
 * BN = 64 keys stream through NST shared-memory stages by cp.async (16-byte
 * chunks, swizzled as stage 05b's tc_layout, zero-filled past the end); warp
 * (mt, ks) takes m-tile mt and keys [ks KW, ks KW + KW) of every tile, KW =
 * 64 / KS, and keeps its own online-softmax state on the fragments:
 *   S  (16 x KW): Q's A fragments live in registers for the whole run (read
 *      once from global), K's B fragments by ldmatrix (K is stored [key][dim],
 *      which is the "col" layout B wants);
 *   softmax: a row's values sit in one quad: max and sum by two shuffles;
 *   PV (16 x D): P's A fragment is the S accumulators repacked (tc_pack_p),
 *      V's B fragments by ldmatrix.trans.
 * The KS key slices of an m-tile hold partial states over disjoint keys: at
 * the end they merge through shared memory with stage 04's merge
 * (attn_merge_ml) and go to the epilogue (stage 07's partial states, or O).
 * This is split-K inside the block, the same merge the combine kernel does
 * across blocks.
 *
 * K and V rows are read through a policy KV (stage 06's kv_source.cuh:
 * k_row(b, h, pos), v_row(b, h, pos)): one address per row, so a paged cache,
 * whose pages may end inside a tile, uses the same kernel.
 *
 * Memory traffic (bytes): K/V 2 es d n per block (n = the block's keys) +
 * Q es d rows per block + what the epilogue writes (partials: 4 (d + 2) per
 * row and split; O: es d per row).
 *
 * Run: build/bin/07_split_kv_decode --kernel split-tc --seq-kv 32768 --batch 8 --heads 32 --kv-heads 1 --dim 128 --dtype bf16 */
#ifndef STF_STAGE07_DECODE_TC_CUH
#define STF_STAGE07_DECODE_TC_CUH

#include <stdint.h>
#include <type_traits>

#include "gpu_check.h"
#include "softmax_device.cuh"
#include "../04_one_pass_attention/merge.h"
#include "../05b_tensor_cores/tc_common.cuh"
/* stage 06: kv_contig, the epilogue dec_write_o, the launch helpers */
#include "../06_gqa_attention/decode_kernel.cuh"
#include "split.h"

#define DTC_THREADS 128
#define DTC_BN 64 /* keys per tile: stage 07's split unit (GQA_BC) */

template <typename T, int D, int MT> struct dtc_cfg {
    static constexpr int W = DTC_THREADS / 32;
    static constexpr int KS = W / MT;         /* key slices per m-tile */
    static constexpr int KW = DTC_BN / KS;    /* keys per warp per tile: 16 or 32 */
    static constexpr int NT = KW / 8;         /* n-tiles of S per warp */
    static constexpr int RB = 16 * MT;        /* query rows per block */
    static constexpr int CH = D / 8;          /* 16-byte chunks per row */
    static constexpr int TILE = tc_layout<D>::bytes(DTC_BN);
    static constexpr int STAGE = 2 * TILE;    /* K and V */
    /* 3 stages at d = 128 (96 KB: 2 blocks per SM), 4 at d = 64 */
    static constexpr int NST = D <= 64 ? 4 : 3;
    static constexpr int MAIN = NST * STAGE;
    /* the final merge: o of every warp (16 x D fp32), then m and l per (warp, row) */
    static constexpr int MERGE = W * 16 * D * 4 + 2 * W * 16 * 4;
    static constexpr int SMEM = MAIN > MERGE ? MAIN : MERGE;
    static_assert(tc_layout<D>::SWIZZLE, "the tensor-core decode kernel is built for d = 64, 128");
    static_assert(KW % 16 == 0 && SMEM <= 227 * 1024, "tile layout");
};

struct dtc_params {
    const void *q;
    const int *kv_len; /* B lengths, or NULL: every sequence holds Nk keys */
    int Hq, Hkv, g, Nk;
    float scale;
};

template <typename T, int D, int MT, typename KV, typename Epi>
__global__ void __launch_bounds__(DTC_THREADS) decode_tc_kernel(dtc_params P, KV kv, Epi epi)
{
    using C = dtc_cfg<T, D, MT>;
    extern __shared__ __align__(128) unsigned char dtc_smem[];
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int mt = w / C::KS, ks = w % C::KS;
    const int gq = lane >> 2, gc = lane & 3; /* fragment row group, thread in quad */
    /* [snippet:tc-rows] */
    const int nrb = (P.g + C::RB - 1) / C::RB;              /* row blocks per group */
    const int kvh = blockIdx.x / nrb, r0 = (blockIdx.x % nrb) * C::RB;
    const int R = min(C::RB, P.g - r0);                     /* valid rows of this block */
    const int b = blockIdx.y;
    const size_t row0 = (size_t)b * P.Hq + (size_t)kvh * P.g + r0; /* Nq = 1: row = b Hq + h */
    /* [/snippet] */
    const int n = P.kv_len ? min(max(P.kv_len[b], 0), P.Nk) : P.Nk;
    int lo, end;
    epi.keys(n, lo, end);

    if (end <= lo) { /* no keys: the empty state (m = -inf, l = 0, o = 0) */
        for (int i = tid; i < R * D; i += DTC_THREADS) epi.template store<T>(row0 + i / D, D, i % D, -INFINITY, 0.0f, 0.0f);
        return;
    }

    const uint32_t sbase = tc_smem_addr(dtc_smem);
    /* keys j0 .. j0 + BN - 1 into stage st; past `end`: zeros, no bytes read */
    auto load_tile = [&](int st, int j0) {
        const uint32_t ks_ = sbase + st * C::STAGE, vs_ = ks_ + C::TILE;
#pragma unroll
        for (int it = 0; it < DTC_BN * C::CH / DTC_THREADS; it++) {
            const int i = it * DTC_THREADS + tid, r = i / C::CH, c = i % C::CH, key = j0 + r;
            const bool ok = key < end;
            const int pos = ok ? key : lo;
            tc_cp_async16(ks_ + tc_layout<D>::off(r, c), kv.k_row(b, kvh, pos) + c * 8, ok ? 16 : 0);
            tc_cp_async16(vs_ + tc_layout<D>::off(r, c), kv.v_row(b, kvh, pos) + c * 8, ok ? 16 : 0);
        }
    };
    const int ntiles = (end - lo + DTC_BN - 1) / DTC_BN;
#pragma unroll
    for (int st = 0; st < C::NST - 1; st++) {
        if (st < ntiles) load_tile(st, lo + st * DTC_BN);
        tc_cp_async_commit();
    }

    /* Q's A fragments, k-step kk: rows gq, gq + 8 of m-tile mt, dims 16 kk + 2 gc (+8); rows past R are 0 */
    uint32_t qa[D / 16][4];
    {
        const T *qg = (const T *)P.q + row0 * D;
        const int ra = mt * 16 + gq, rb = ra + 8;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            const int c0 = 16 * kk + 2 * gc;
            qa[kk][0] = ra < R ? *reinterpret_cast<const uint32_t *>(qg + (size_t)ra * D + c0) : 0u;
            qa[kk][1] = rb < R ? *reinterpret_cast<const uint32_t *>(qg + (size_t)rb * D + c0) : 0u;
            qa[kk][2] = ra < R ? *reinterpret_cast<const uint32_t *>(qg + (size_t)ra * D + c0 + 8) : 0u;
            qa[kk][3] = rb < R ? *reinterpret_cast<const uint32_t *>(qg + (size_t)rb * D + c0 + 8) : 0u;
        }
    }

    float m[2] = { -INFINITY, -INFINITY }, l[2] = { 0.0f, 0.0f }; /* rows gq, gq + 8 (natural units) */
    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    const int kb = ks * C::KW; /* the warp's first key in a tile */
    const int lr = lane & 7, lm = lane >> 3;

    for (int t = 0; t < ntiles; t++) {
        tc_cp_async_wait<C::NST - 2>();
        __syncthreads(); /* tile t is in; every warp is done with tile t - 1 */
        {
            const int nt = t + C::NST - 1;
            if (nt < ntiles) load_tile(nt % C::NST, lo + nt * DTC_BN);
            tc_cp_async_commit();
        }
        const uint32_t kt = sbase + (t % C::NST) * C::STAGE, vt = kt + C::TILE;
        const int j0 = lo + t * DTC_BN + kb;

        /* [snippet:tc-decode-s] */
        /* S = Q K^T for the warp's KW keys: ldmatrix.x4 gives the B registers of two k-steps */
        float s[C::NT][4];
#pragma unroll
        for (int nt = 0; nt < C::NT; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int p = 0; p < D / 32; p++) {
                uint32_t r[4];
                tc_ldsm_x4(r, kt + tc_layout<D>::off(kb + 8 * nt + lr, 4 * p + lm));
                tc_mma<T>(s[nt], qa[2 * p], r[0], r[1]);
                tc_mma<T>(s[nt], qa[2 * p + 1], r[2], r[3]);
            }
        }
        /* [/snippet] */

        /* online softmax on the fragments: row gq in s[.][0..1], row gq + 8 in s[.][2..3] */
        float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
        for (int nt = 0; nt < C::NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = j0 + 8 * nt + 2 * gc + (e & 1);
                const float x = key < end ? s[nt][e] * P.scale : -INFINITY;
                s[nt][e] = x;
                mx[e >> 1] = fmaxf(mx[e >> 1], x);
            }
        float alpha[2], base[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const float mn = fmaxf(m[h], tc_quad_max(mx[h]));
            base[h] = exp_base(mn) * LOG2E_F;
            alpha[h] = tc_exp2(fmaf(m[h], LOG2E_F, -base[h])); /* 0 while m = -inf, 1 unless the maximum grew */
            m[h] = mn;
            l[h] *= alpha[h];
        }
#pragma unroll
        for (int nt = 0; nt < C::NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float p = tc_exp2(fmaf(s[nt][e], LOG2E_F, -base[e >> 1]));
                s[nt][e] = p;
                l[e >> 1] += p;
            }
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[j][0] *= alpha[0];
            o[j][1] *= alpha[0];
            o[j][2] *= alpha[1];
            o[j][3] *= alpha[1];
        }

        /* [snippet:tc-decode-pv] */
        /* O += P V: P's A fragment from two S tiles; V's B registers of two n-tiles by ldmatrix.trans */
#pragma unroll
        for (int kk = 0; kk < C::KW / 16; kk++) {
            uint32_t a[4];
            tc_pack_p<T>(a, s[2 * kk], s[2 * kk + 1]);
            const int vr = kb + 16 * kk + lr + 8 * (lm & 1);
#pragma unroll
            for (int jp = 0; jp < D / 16; jp++) {
                uint32_t r[4];
                tc_ldsm_x4_trans(r, vt + tc_layout<D>::off(vr, 2 * jp + (lm >> 1)));
                tc_mma<T>(o[2 * jp], a, r[0], r[1]);
                tc_mma<T>(o[2 * jp + 1], a, r[2], r[3]);
            }
        }
        /* [/snippet] */
    }

    /* The KS key slices of each m-tile merge through shared memory (stage 04's merge) */
    tc_cp_async_wait<0>();
    __syncthreads(); /* every warp is done with the stages: reuse them */
    float *mo = (float *)dtc_smem;                 /* [warp][16 rows][D] */
    float *mm = mo + C::W * 16 * D, *ml = mm + C::W * 16; /* [warp][16 rows] */
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const float lsum = tc_quad_sum(l[h]);
        if (gc == 0) {
            mm[w * 16 + gq + 8 * h] = m[h];
            ml[w * 16 + gq + 8 * h] = lsum;
        }
    }
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
        float *r0p = mo + (w * 16 + gq) * D + 8 * j + 2 * gc, *r8p = r0p + 8 * D;
        *reinterpret_cast<float2 *>(r0p) = make_float2(o[j][0], o[j][1]);
        *reinterpret_cast<float2 *>(r8p) = make_float2(o[j][2], o[j][3]);
    }
    __syncthreads();
    /* [snippet:tc-decode-merge] */
    for (int i = tid; i < R * D; i += DTC_THREADS) { /* row r, column c: merge the KS warps of r's m-tile */
        const int r = i / D, c = i % D, tm = r / 16, rr = r % 16;
        float M = -INFINITY, L = 0.0f, O = 0.0f; /* the empty state */
#pragma unroll
        for (int k = 0; k < C::KS; k++) {
            const int ww = tm * C::KS + k;
            float fa, fb;
            attn_merge_ml(&M, &L, mm[ww * 16 + rr], ml[ww * 16 + rr], &fa, &fb);
            O = O * fa + mo[(ww * 16 + rr) * D + c] * fb;
        }
        epi.template store<T>(row0 + r, D, c, M, L, O);
    }
    /* [/snippet] */
}

/* ---- host side (the shared-memory attribute and occupancy: decode_kernel.cuh's) */

/* m16 tiles per block: one up to g = 16, two beyond (blocks of 32 rows);
 * --br 16 or 32 chooses (split_tc_rows, split_cpu.c). */
static inline int dtc_mtiles(const attn_shape_t *s) { return split_tc_rows(s) / 16; }

/* 1 when the tensor-core decode kernel takes s, else 0 with the reason (split.h). */
static inline int dtc_supports(const attn_shape_t *s, char *why, size_t n) { return split_tc_supports(s, why, n); }

/* Calls f(dec_type<T>{}, dec_int<D>{}, dec_int<MT>{}) (decode_kernel.cuh's tags). */
template <typename T, typename F> static int dtc_dispatch_d(int d, int mt, F &&f)
{
    if (d == 64 && mt == 1) { f(dec_type<T>{}, dec_int<64>{}, dec_int<1>{}); return 1; }
    if (d == 64 && mt == 2) { f(dec_type<T>{}, dec_int<64>{}, dec_int<2>{}); return 1; }
    if (d == 128 && mt == 1) { f(dec_type<T>{}, dec_int<128>{}, dec_int<1>{}); return 1; }
    if (d == 128 && mt == 2) { f(dec_type<T>{}, dec_int<128>{}, dec_int<2>{}); return 1; }
    return 0;
}
template <typename F> static int dtc_dispatch(dtype_t dt, int d, int mt, F &&f)
{
    if (dt == DT_F16) return dtc_dispatch_d<__half>(d, mt, f);
    if (dt == DT_BF16) return dtc_dispatch_d<__nv_bfloat16>(d, mt, f);
    return 0;
}

/* Launches decode_tc_kernel on grid (Hkv x row blocks per group, B, gz).
 * make_kv.template get<T>() returns the K/V row policy for storage type T,
 * as for stage 06's dec_run_kv (dec_contig_of, or kv_pages.cuh's paged_of).
 * Returns 0, or -1 (message on stderr) when the shape is not one the kernel
 * takes. */
template <typename MakeKV, typename Epi>
static int dtc_run(const attn_shape_t *s, const void *q, const int *kv_len, const MakeKV &make_kv, const Epi &epi, int gz)
{
    char why[256];
    if (!dtc_supports(s, why, sizeof why) || gz < 1 || gz > 65535) {
        fprintf(stderr, "tensor-core decode kernel: shape not supported (%s; grid z %d)\n", why, gz);
        return -1;
    }
    const dtc_params p = { q, kv_len, (int)s->heads, (int)s->kv_heads, (int)(s->heads / s->kv_heads), (int)s->seq_kv,
                           s->scale };
    const int mt = dtc_mtiles(s), nrb = (p.g + 16 * mt - 1) / (16 * mt);
    const dim3 grid((unsigned)(s->kv_heads * (size_t)nrb), (unsigned)s->batch, (unsigned)gz);
    return dtc_dispatch(s->dt, (int)s->dim, mt, [&](auto t, auto d, auto m) {
               using T = typename decltype(t)::type;
               constexpr int D = decltype(d)::value, MT = decltype(m)::value;
               const auto kv = make_kv.template get<T>();
               using KV = std::remove_const_t<decltype(kv)>;
               dec_set_smem<decode_tc_kernel<T, D, MT, KV, Epi>>(dtc_cfg<T, D, MT>::SMEM);
               decode_tc_kernel<T, D, MT, KV, Epi><<<grid, DTC_THREADS, dtc_cfg<T, D, MT>::SMEM>>>(p, kv, epi);
               LAUNCH_CHECK();
           }) ? 0 : -1;
}

/* Resident blocks per SM at this shape (0 when the kernel declines it). */
template <typename Epi, template <typename> class KV = kv_contig> static int dtc_blocks_per_sm(const attn_shape_t *s)
{
    int nb = 0;
    char why[256];
    if (!dtc_supports(s, why, sizeof why)) return 0;
    dtc_dispatch(s->dt, (int)s->dim, dtc_mtiles(s), [&](auto t, auto d, auto m) {
        using T = typename decltype(t)::type;
        constexpr int D = decltype(d)::value, MT = decltype(m)::value;
        nb = dec_occupancy<decode_tc_kernel<T, D, MT, KV<T>, Epi>>(DTC_THREADS, dtc_cfg<T, D, MT>::SMEM);
    });
    return nb;
}

#endif
