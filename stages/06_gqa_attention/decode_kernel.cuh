/* Stage 06, the decode kernel: one query token per sequence (Nq = 1) against
 * a K/V cache of Nk keys. What changes from stage 05's prefill kernels: there
 * are no query tiles to fill a tensor-core M dimension (one row per query
 * head), so the arithmetic per byte of K/V is tiny and the kernel is a
 * streaming read of the cache: make loads wide and many in flight, and load
 * each K/V byte once.
 *
 * A template, instantiated by this stage (decode_gpu.cu, which writes O) and
 * by stage 07 (split_gpu.cu, which writes partial states): the kernel ends in
 * an epilogue policy Epi, a small struct passed by value that says
 *   keys(n, lo, end)  which keys [lo, end) of the sequence's n the block takes
 *                     (here: all of them; stage 07: one split of them);
 *   store<T>(row, d, c, M, L, O)  what to do with the block's merged state of
 *                     query row `row`, column c (here: O / L to the output).
 *
 * And it reads K/V rows through a row policy KV (kv_source.cuh): kv_contig
 * (the default, [B][Hkv][Nk][d]) or stage 07's kv_paged, kv_paged_lanes (a block table).
 * The tile loader asks kv.run(j0) whether the tile's rows are
 * one contiguous block (always, for kv_contig; within a page, for kv_paged)
 * and then addresses rows from one base pointer; otherwise (a tile across pages) each
 * thread asks once per page its rows enter, or with LANE_PAGES lane i reads page i.
 *
 * Grid: (query-head blocks, batch, whatever Epi indexes by blockIdx.z). A
 * block serves hpb query heads that share one K/V head (hpb = 1: indexed, or
 * MHA on a replicated copy; hpb = g or a divisor of it: packed, the group's
 * query rows are the rows of one tile; hpb is capped at 16 for registers,
 * at 8 from d = 192 on, where 16 rows spill).
 *
 * Per block (W warps of 32 threads, W = 4, or 2 where 4 warps' K/V tiles do
 * not fit in shared memory: fp32 at d = 256): the hpb query rows in shared
 * memory (fp32); K/V tiles of 16 W keys stream through NST shared-memory
 * stages by cp.async (16-byte chunks, zero-filled past the last key), so NST -
 * 1 tiles are in flight while one is consumed. Each warp owns 16 keys of every
 * tile and keeps its own online-softmax state (m, l, o) for the block's rows:
 *   S:  lane pair (key jj, half hh): hh takes the even or odd 16-byte chunks of
 *       the key row (K rows padded by 32 bytes: the 8 lanes of a quarter-warp
 *       hit 8 different bank groups), one shuffle adds the halves;
 *   softmax: row maximum over the warp's 16 keys by 4 shuffles; p = e^{s - m}
 *       to shared memory (16 floats per row), the state rescaled by e^{m - m'};
 *   PV: lanes across d (CW columns each, 8 to 32 bytes of a V row), keys
 *       split between KS lane sets; p read 4 keys at a time.
 * At the end the W warps' states, and the KS key slices' partial o, merge
 * with stage 04's merge (attn_merge_ml, merge.h) and go to the epilogue.
 *
 * Arithmetic per K/V element: about hpb FMAs (the dot products or the P V
 * sums), plus a conversion and a share of a shared-memory load: at hpb <= 8
 * well under the ~15 instructions per element an H200 can issue at full
 * bandwidth (about 32 T instructions/s over 2.2 T elements/s of bf16 K/V at
 * ~4.4 TB/s); MQA's g = 32 (two blocks of 16) needs ~2 x 20 and is
 * instruction-bound on CUDA cores (notes/06_gqa_attention.md).
 *
 * Memory traffic (bytes): K/V 2 es d n per block (n = the block's keys) +
 * Q es d hpb per block + what the epilogue writes (O: es d per row).
 *
 * Run: build/bin/06_gqa_attention --decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#ifndef STF_STAGE06_DECODE_KERNEL_CUH
#define STF_STAGE06_DECODE_KERNEL_CUH

#include <stdint.h>
#include <type_traits>

#include "gpu_check.h"
#include "gqa.h"
#include "kv_source.cuh"
#include "softmax_device.cuh"
#include "../04_one_pass_attention/merge.h"

#define DEC_MAX_THREADS 128
#define DEC_KW 16 /* keys per warp per tile */
#define DEC_SMEM_MAX (227 * 1024) /* opt-in shared memory per block (sm_90) */

/* PV: columns per lane. The preferred width (a 16-byte V load for up to 8
 * rows; 4 columns for 16 rows, registers), widened until the column groups
 * fit in a warp and narrowed until the key slices split 16 keys into groups
 * of 4 (KS = 32 / NCH in {1, 2, 4}). */
static constexpr int dec_pv_ok(int D, int cw)
{
    return D % cw == 0 && D / cw <= 32 && (32 / (D / cw) == 1 || 32 / (D / cw) == 2 || 32 / (D / cw) == 4);
}
static constexpr int dec_cw(int D, int VE, int RT)
{
    int cw = RT <= 8 ? VE : 4;
    while (D / cw > 32) cw *= 2;
    while (cw > 2 && !dec_pv_ok(D, cw)) cw /= 2;
    return cw;
}

template <typename T, int D, int RT> struct dec_cfg {
    static constexpr int ES = (int)sizeof(T);
    static constexpr int VE = 16 / ES;        /* elements per 16-byte chunk */
    static constexpr int NCHK = D / VE;       /* chunks per K/V row */
    static constexpr int KSTR = D + 32 / ES;  /* K row pitch (elements): +32 bytes, see the top */
    /* shared memory with W warps (16 W keys per tile) and NST stages */
    static constexpr int smem_of(int w, int nst) { return nst * 16 * w * (KSTR + D) * ES + RT * D * 4 + w * RT * DEC_KW * 4; }
    static constexpr int NST0 = (ES == 4 || RT >= 16) ? 2 : 3; /* 3 stages where 2 blocks per SM still fit */
    static constexpr int W = smem_of(4, 2) <= DEC_SMEM_MAX ? 4 : 2;
    static constexpr int NST = smem_of(W, NST0) <= DEC_SMEM_MAX ? NST0 : 2;
    static constexpr int THREADS = 32 * W, BN = DEC_KW * W;   /* keys per tile */
    static constexpr int KT = BN * KSTR, VT = BN * D;         /* elements of a K and a V tile */
    static constexpr int STAGE = (KT + VT) * ES;              /* bytes of one stage */
    static constexpr int CW = dec_cw(D, VE, RT);              /* PV: columns per lane */
    static constexpr int NCH = D / CW;                        /* PV: column groups, <= 32 */
    static constexpr int KS = 32 / NCH;                       /* PV: key slices of a warp */
    static constexpr int LD_IT = BN * NCHK / THREADS;         /* 16-byte chunks per thread per K (or V) tile */
    static constexpr int KPL = DEC_KW / KS;                   /* PV: keys per lane per tile */
    static constexpr int Q_OFF = NST * STAGE;                 /* q rows: RT x D fp32 */
    static constexpr int P_OFF = Q_OFF + RT * D * 4;          /* p: warps x RT x 16 fp32 */
    static constexpr int MAIN = P_OFF + W * RT * DEC_KW * 4;
    /* the final merge reuses the memory: o of every (warp, key slice), then m and l per (warp, row) */
    static constexpr int MERGE = W * KS * RT * D * 4 + 2 * W * RT * 4;
    static constexpr int SMEM = MAIN > MERGE ? MAIN : MERGE;
    static_assert(NCHK % 2 == 0, "the two halves of a key row take even and odd chunks");
    static_assert(dec_pv_ok(D, CW) && KPL % 4 == 0 && CW * ES <= 32, "PV lane layout");
    static_assert(SMEM <= DEC_SMEM_MAX && THREADS <= DEC_MAX_THREADS, "shared memory of a block");
    static_assert(LD_IT * THREADS == BN * NCHK, "the loader: whole chunks per thread");
};

/* What the kernel reads; the epilogue carries what it writes. */
struct dec_params {
    const void *q, *k, *v; /* k, v: unused by decode_kernel (its K/V row policy carries the cache) */
    const int *kv_len; /* B lengths, or NULL: every sequence holds Nk keys */
    int Hq, Hkv, g, hpb, Nk;
    float scale;
};

__device__ __forceinline__ void cp_async16(void *smem, const void *g, int src_bytes)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(g), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

template <typename T, int N> __device__ __forceinline__ void to_floats(const vec_t<T, N> &w, float *f)
{
#pragma unroll
    for (int i = 0; i < N; i++) f[i] = to_f(w.v[i]);
}

template <typename T, int D, int RT, typename Epi, typename KV = kv_contig<T>>
__global__ void __launch_bounds__(DEC_MAX_THREADS) decode_kernel(dec_params P, KV kv, Epi epi)
{
    using C = dec_cfg<T, D, RT>;
    extern __shared__ __align__(16) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int hb = blockIdx.x, b = blockIdx.y;
    const int R = P.hpb;                                    /* rows of this block (<= RT) */
    const int h0 = hb * R;                                  /* first query head */
    /* [snippet:kv-head] */
    const int kvh = h0 / P.g;                               /* Q7: the K/V head of a query head */
    /* row `key` of K (V) for this block: kv.k_row(b, kvh, key) (kv.v_row), kv_source.cuh */
    /* [/snippet] */
    const size_t row0 = (size_t)b * P.Hq + h0;              /* Nq = 1: row = b Hq + h */
    const int n = P.kv_len ? min(max(P.kv_len[b], 0), P.Nk) : P.Nk;
    int lo, end;
    epi.keys(n, lo, end);                                   /* this block's keys: [lo, end) */

    if (end <= lo) { /* no keys: the empty state (stage 04: m = -inf, l = 0, o = 0) */
        for (int i = tid; i < R * D; i += C::THREADS) epi.template store<T>(row0 + i / D, D, i % D, -INFINITY, 0.0f, 0.0f);
        return;
    }

    float *qs = (float *)(smem + C::Q_OFF), *ps = (float *)(smem + C::P_OFF);
    const T *qg = (const T *)P.q + row0 * D;
    for (int i = tid; i < RT * D; i += C::THREADS) qs[i] = i < R * D ? to_f(qg[i]) : 0.0f;

    /* keys j0 .. j0 + BN - 1 into stage st; past `end`: zeros (no bytes read,
     * the address of row j0 given). Chunk i = tid + it THREADS of the tile:
     * row i / NCHK, 16-byte column i % NCHK. */
    auto load_tile = [&](int st, int j0) {
        T *kt = (T *)(smem + st * C::STAGE), *vt = kt + C::KT;
        const int nr = min(C::BN, end - j0); /* rows that hold keys */
        const T *kb = kv.k_row(b, kvh, j0), *vb = kv.v_row(b, kvh, j0);
        const bool one = KV::CONTIGUOUS || kv.run(j0) >= nr;
        if (one) { /* one block of rows (kv_contig: always; kv_paged: a tile within a page) */
#pragma unroll
            for (int it = 0; it < C::LD_IT; it++) {
                const int i = tid + it * C::THREADS, r = i / C::NCHK, c = i % C::NCHK;
                const bool ok = r < nr;
                const size_t off = (size_t)(ok ? r : 0) * D + c * C::VE;
                cp_async16(kt + r * C::KSTR + c * C::VE, kb + off, ok ? 16 : 0);
                cp_async16(vt + r * D + c * C::VE, vb + off, ok ? 16 : 0);
            }
        }
        if constexpr (!KV::CONTIGUOUS && KV::LANE_PAGES) {
            if (!one) { /* the tile crosses pages: lane i of each warp reads the table entry of
                         * the tile's page i (one load for the warp, 64 / P entries used), and
                         * each row takes its page's base by shuffle: no per-row test, and one
                         * dependent load per tile instead of one per page (kv_pages.cuh) */
                const int t0 = j0 >> kv.shift;
                const size_t mine = kv.page_base(b, kvh, t0 + lane);
                const unsigned lo32 = (unsigned)mine, hi32 = (unsigned)(mine >> 32);
#pragma unroll
                for (int it = 0; it < C::LD_IT; it++) {
                    const int i = tid + it * C::THREADS, r = i / C::NCHK, c = i % C::NCHK;
                    const bool ok = r < nr;
                    const int key = j0 + (ok ? r : 0), src = (key >> kv.shift) - t0;
                    const size_t base = ((size_t)__shfl_sync(0xffffffffu, hi32, src) << 32) |
                                        __shfl_sync(0xffffffffu, lo32, src);
                    const size_t off = base + (size_t)((key & ((1 << kv.shift) - 1)) * D + c * C::VE);
                    cp_async16(kt + r * C::KSTR + c * C::VE, kv.k + off, ok ? 16 : 0);
                    cp_async16(vt + r * D + c * C::VE, kv.v + off, ok ? 16 : 0);
                }
            }
        } else if constexpr (!KV::CONTIGUOUS) {
            if (!one) { /* the tile crosses pages: a thread's rows rise with it, so it looks up
                         * each page (run) it enters once: 64 / P lookups per thread per tile */
                int seg = j0, seg_end = j0 + kv.run(j0);
                const T *kseg = kb, *vseg = vb;
#pragma unroll
                for (int it = 0; it < C::LD_IT; it++) {
                    const int i = tid + it * C::THREADS, r = i / C::NCHK, c = i % C::NCHK, key = j0 + r;
                    const bool ok = r < nr;
                    if (ok && key >= seg_end) { /* the next page: one table read */
                        kseg = kv.k_row(b, kvh, key);
                        vseg = kv.v_row(b, kvh, key);
                        seg = key;
                        seg_end = key + kv.run(key);
                    }
                    const size_t off = (size_t)(ok ? key - seg : 0) * D + c * C::VE;
                    cp_async16(kt + r * C::KSTR + c * C::VE, (ok ? kseg : kb) + off, ok ? 16 : 0);
                    cp_async16(vt + r * D + c * C::VE, (ok ? vseg : vb) + off, ok ? 16 : 0);
                }
            }
        }
    };

    const int ntiles = (end - lo + C::BN - 1) / C::BN;
#pragma unroll
    for (int st = 0; st < C::NST - 1; st++) {
        if (st < ntiles) load_tile(st, lo + st * C::BN);
        cp_async_commit();
    }

    const int jj = lane >> 1, hh = lane & 1;               /* S: key within the warp's 16, half of the row */
    const int ks = lane / C::NCH, ch = lane % C::NCH;      /* PV: key slice, column group */
    const bool pv_lane = lane < C::NCH * C::KS;
    float m[RT], lsum[RT], o[RT][C::CW];
#pragma unroll
    for (int r = 0; r < RT; r++) {
        m[r] = -INFINITY;
        lsum[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < C::CW; e++) o[r][e] = 0.0f;
    }

    for (int t = 0; t < ntiles; t++) {
        cp_async_wait<C::NST - 2>();
        __syncthreads(); /* tile t is in; every warp is done with tile t - 1 */
        {
            const int nt = t + C::NST - 1;
            if (nt < ntiles) load_tile(nt % C::NST, lo + nt * C::BN);
            cp_async_commit();
        }
        const T *kt = (const T *)(smem + (t % C::NST) * C::STAGE), *vt = kt + C::KT;
        const int key = lo + t * C::BN + w * DEC_KW + jj;

        /* S = q . k for the warp's 16 keys: this lane's half of the chunks */
        float s[RT];
#pragma unroll
        for (int r = 0; r < RT; r++) s[r] = 0.0f;
        const T *krow = kt + (w * DEC_KW + jj) * C::KSTR;
#pragma unroll
        for (int it = 0; it < C::NCHK / 2; it++) {
            const int c = 2 * it + hh;
            float kf[C::VE];
            to_floats<T, C::VE>(*reinterpret_cast<const vec_t<T, C::VE> *>(krow + c * C::VE), kf);
#pragma unroll
            for (int r = 0; r < RT; r++) {
                const float4 *qp = reinterpret_cast<const float4 *>(qs + r * D + c * C::VE);
                float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
                for (int e4 = 0; e4 < C::VE / 4; e4++) {
                    const float4 qq = qp[e4];
                    a0 = fmaf(qq.x, kf[4 * e4], a0);
                    a1 = fmaf(qq.y, kf[4 * e4 + 1], a1);
                    a0 = fmaf(qq.z, kf[4 * e4 + 2], a0);
                    a1 = fmaf(qq.w, kf[4 * e4 + 3], a1);
                }
                s[r] += a0 + a1;
            }
        }

        /* online softmax over the warp's 16 keys, per row */
#pragma unroll
        for (int r = 0; r < RT; r++) {
            const float full = s[r] + __shfl_xor_sync(0xffffffffu, s[r], 1);
            const float x = key < end ? P.scale * full : -INFINITY;
            float mx = x;
#pragma unroll
            for (int off = 2; off < 32; off <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float mn = fmaxf(m[r], mx), ms = exp_base(mn);
            const float alpha = fexp(m[r] - ms); /* 1 exactly unless the maximum grew */
            const float p = fexp(x - ms);        /* 0 for a key past the end */
            m[r] = mn;
            lsum[r] = lsum[r] * alpha + (hh == 0 ? p : 0.0f);
#pragma unroll
            for (int e = 0; e < C::CW; e++) o[r][e] *= alpha;
            if (hh == 0) ps[(w * RT + r) * DEC_KW + jj] = p;
        }
        __syncwarp();

        /* o += p v over this lane's keys of the warp's 16, its CW columns */
        if (pv_lane) {
#pragma unroll
            for (int t4 = 0; t4 < C::KPL; t4 += 4) {
                const int kk = ks * C::KPL + t4;
                float vf[4][C::CW];
#pragma unroll
                for (int u = 0; u < 4; u++)
                    to_floats<T, C::CW>(*reinterpret_cast<const vec_t<T, C::CW> *>(vt + (w * DEC_KW + kk + u) * D + ch * C::CW),
                                        vf[u]);
#pragma unroll
                for (int r = 0; r < RT; r++) {
                    const float4 p4 = *reinterpret_cast<const float4 *>(ps + (w * RT + r) * DEC_KW + kk);
#pragma unroll
                    for (int e = 0; e < C::CW; e++) {
                        o[r][e] = fmaf(p4.x, vf[0][e], o[r][e]);
                        o[r][e] = fmaf(p4.y, vf[1][e], o[r][e]);
                        o[r][e] = fmaf(p4.z, vf[2][e], o[r][e]);
                        o[r][e] = fmaf(p4.w, vf[3][e], o[r][e]);
                    }
                }
            }
        }
    }

    /* merge the warps' states (stage 04's merge), in the stages' memory */
    cp_async_wait<0>();
    __syncthreads();
    float *mo = (float *)smem;                              /* [warp][key slice][row][D] */
    float *mm = mo + C::W * C::KS * RT * D, *ml = mm + C::W * RT; /* [warp][row] */
#pragma unroll
    for (int r = 0; r < RT; r++) {
        float l = lsum[r];
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) l += __shfl_xor_sync(0xffffffffu, l, off);
        if (lane == 0) {
            mm[w * RT + r] = m[r];
            ml[w * RT + r] = l;
        }
        if (pv_lane)
#pragma unroll
            for (int e = 0; e < C::CW; e++) mo[((w * C::KS + ks) * RT + r) * D + ch * C::CW + e] = o[r][e];
    }
    __syncthreads();
    for (int i = tid; i < R * D; i += C::THREADS) {
        const int r = i / D, c = i % D;
        float M = -INFINITY, L = 0.0f, O = 0.0f; /* the empty state */
#pragma unroll
        for (int ww = 0; ww < C::W; ww++) {
            float ow = 0.0f, fa, fb;
#pragma unroll
            for (int kk = 0; kk < C::KS; kk++) ow += mo[((ww * C::KS + kk) * RT + r) * D + c];
            attn_merge_ml(&M, &L, mm[ww * RT + r], ml[ww * RT + r], &fa, &fb);
            O = O * fa + ow * fb;
        }
        epi.template store<T>(row0 + r, D, c, M, L, O);
    }
}

/* Stage 06's epilogue: every block takes all the keys of its sequence and
 * writes the normalised output of its rows (0 for a row that saw no key,
 * FlashAttention's convention, stage 04's attn_state_finish). Here, not in
 * decode_gpu.cu, because stage 07's paged cache runs it too (one split). */
struct dec_write_o {
    void *o; /* [B, Hq, 1, d] in the storage type */
    __device__ void keys(int n, int &lo, int &end) const
    {
        lo = 0;
        end = n;
    }
    template <typename T> __device__ void store(size_t row, int d, int c, float M, float L, float O) const
    {
        (void)M;
        static_cast<T *>(o)[row * d + c] = from_f<T>(L == 0.0f ? 0.0f : O / L);
    }
};

/* ---- host side: instances, their shared-memory attribute, occupancy, launch
 * (the first two serve stage 07's tensor-core kernel too: any kernel K) */

/* Kernel K's dynamic shared memory limit, set once per instance. */
template <auto K> static void dec_set_smem(int smem)
{
    static bool done = false;
    if (!done) {
        CUDA_CHECK(cudaFuncSetAttribute(K, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        done = true;
    }
}

/* Resident blocks per SM of kernel K; asked once per instance (a split choice runs before every launch). */
template <auto K> static int dec_occupancy(int threads, int smem)
{
    static int nb = -1;
    if (nb < 0) {
        dec_set_smem<K>(smem);
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, K, threads, smem));
    }
    return nb;
}

template <typename T, int D, int RT, typename Epi, typename KV>
static void dec_launch(const dec_params &p, const KV &kv, const Epi &epi, dim3 grid)
{
    using C = dec_cfg<T, D, RT>;
    dec_set_smem<decode_kernel<T, D, RT, Epi, KV>>(C::SMEM);
    decode_kernel<T, D, RT, Epi, KV><<<grid, C::THREADS, C::SMEM>>>(p, kv, epi);
    LAUNCH_CHECK();
}

static inline int dec_rows_tile(int hpb) { return hpb <= 1 ? 1 : hpb <= 2 ? 2 : hpb <= 4 ? 4 : hpb <= 8 ? 8 : 16; }

/* f(type_tag, D, RT) for the shape's storage type, head dim and row tile;
 * the head dims are GQA_DECODE_DIMS (gqa.h). Returns 0 when none matches. */
template <typename T> struct dec_type { using type = T; };
template <int N> using dec_int = std::integral_constant<int, N>;

template <typename T, int D, typename F> static int dec_dispatch_rt(int rt, F &&f)
{
    switch (rt) {
    case 1: f(dec_type<T>{}, dec_int<D>{}, dec_int<1>{}); return 1;
    case 2: f(dec_type<T>{}, dec_int<D>{}, dec_int<2>{}); return 1;
    case 4: f(dec_type<T>{}, dec_int<D>{}, dec_int<4>{}); return 1;
    case 8: f(dec_type<T>{}, dec_int<D>{}, dec_int<8>{}); return 1;
    case 16: /* compiled only where the packed layout launches it (gqa_packed_hpb) */
        if constexpr (D <= GQA_DECODE_MAX_HPB_D16) {
            f(dec_type<T>{}, dec_int<D>{}, dec_int<16>{});
            return 1;
        } else {
            return 0;
        }
    default: return 0;
    }
}
template <typename T, typename F> static int dec_dispatch_d(int d, int rt, F &&f)
{
    switch (d) {
    case 32: return dec_dispatch_rt<T, 32>(rt, f);
    case 64: return dec_dispatch_rt<T, 64>(rt, f);
    case 96: return dec_dispatch_rt<T, 96>(rt, f);
    case 128: return dec_dispatch_rt<T, 128>(rt, f);
    case 192: return dec_dispatch_rt<T, 192>(rt, f);
    case 256: return dec_dispatch_rt<T, 256>(rt, f);
    default: return 0;
    }
}
template <typename F> static int dec_dispatch(dtype_t dt, int d, int rt, F &&f)
{
    if (dt == DT_F16) return dec_dispatch_d<__half>(d, rt, f);
    if (dt == DT_BF16) return dec_dispatch_d<__nv_bfloat16>(d, rt, f);
    return dec_dispatch_d<float>(d, rt, f);
}

/* The reading half of a launch, shared by every epilogue. */
static inline dec_params dec_params_of(const attn_shape_t *s, const void *q, const void *k, const void *v, int hpb,
                                       const int *kv_len)
{
    dec_params p;
    p.q = q; p.k = k; p.v = v;
    p.kv_len = kv_len;
    p.Hq = (int)s->heads; p.Hkv = (int)s->kv_heads; p.g = (int)(s->heads / s->kv_heads); p.hpb = hpb;
    p.Nk = (int)s->seq_kv;
    p.scale = s->scale;
    return p;
}

/* A K/V row policy of the shape for storage type T: kv_contig over k, v
 * ([B][Hkv][Nk][d]); another policy is built by its caller (stage 07's
 * kv_paged) and passed to dec_run_kv through make_kv. */
struct dec_contig_of {
    const void *k, *v;
    int hkv, nk, d;
    template <typename T> kv_contig<T> get() const { return kv_contig<T>{ (const T *)k, (const T *)v, hkv, nk, d }; }
};

/* Launches decode_kernel<..., Epi, KV> on grid (Hq / hpb, B, gz), KV =
 * decltype(make_kv.template get<T>()). Returns 0, or -1 (message on stderr)
 * when the shape or hpb is not one the kernel takes. */
template <typename Epi, typename MakeKV>
static int dec_run_kv(const attn_shape_t *s, const void *q, const MakeKV &make_kv, int hpb, const int *kv_len,
                      const Epi &epi, int gz)
{
    char why[256];
    const int g = (int)(s->heads / s->kv_heads);
    if (!gqa_decode_supports(s, why, sizeof why) || hpb < 1 || g % hpb || hpb > gqa_decode_max_hpb(s) || gz < 1 ||
        gz > 65535) {
        fprintf(stderr, "decode kernel: shape or arguments not supported (%s; hpb %d, grid z %d)\n", why, hpb, gz);
        return -1;
    }
    const dec_params p = dec_params_of(s, q, NULL, NULL, hpb, kv_len);
    const dim3 grid((unsigned)(s->heads / hpb), (unsigned)s->batch, (unsigned)gz);
    return dec_dispatch(s->dt, (int)s->dim, dec_rows_tile(hpb), [&](auto t, auto d, auto rt) {
               using T = typename decltype(t)::type;
               const auto kv = make_kv.template get<T>();
               dec_launch<T, decltype(d)::value, decltype(rt)::value, Epi>(p, kv, epi, grid);
           }) ? 0 : -1;
}

/* The same on the contiguous cache k, v. */
template <typename Epi>
static int dec_run(const attn_shape_t *s, const void *q, const void *k, const void *v, int hpb, const int *kv_len,
                   const Epi &epi, int gz)
{
    const dec_contig_of c = { k, v, (int)s->kv_heads, (int)s->seq_kv, (int)s->dim };
    return dec_run_kv(s, q, c, hpb, kv_len, epi, gz);
}

/* Resident blocks per SM of decode_kernel<..., Epi, KV> at this shape and hpb; 0 when none. */
template <typename Epi, template <typename> class KV = kv_contig> static int dec_blocks_per_sm(const attn_shape_t *s, int hpb)
{
    int nb = 0;
    dec_dispatch(s->dt, (int)s->dim, dec_rows_tile(hpb), [&](auto t, auto d, auto rt) {
        using T = typename decltype(t)::type;
        using C = dec_cfg<T, decltype(d)::value, decltype(rt)::value>;
        nb = dec_occupancy<decode_kernel<T, decltype(d)::value, decltype(rt)::value, Epi, KV<T>>>(C::THREADS, C::SMEM);
    });
    return nb;
}

#endif
