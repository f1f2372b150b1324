/* Stage 06 (and 07), the decode kernel: one query token per sequence (Nq = 1)
 * against a K/V cache of Nk keys. What changes from stage 05's prefill
 * kernel: there are no query tiles to fill a tensor-core M dimension (one row
 * per query head), so the arithmetic per byte of K/V is tiny and the kernel
 * is a streaming read of the cache: make loads wide and many in flight, and
 * load each K/V byte once.
 *
 * Grid: (query-head blocks, batch, splits). A block serves hpb query heads
 * that share one K/V head (hpb = 1: indexed, or MHA on a replicated copy;
 * hpb = g: packed, the group's query rows are the rows of one tile; hpb is
 * capped at 16 for registers) and one range of keys (a split, stage 07; one
 * split = the whole cache). K/V head of query head h: h / g, the whole of
 * GQA's "indexing" (Q7).
 *
 * Per block (128 threads, 4 warps): the hpb query rows in shared memory
 * (fp32); K/V tiles of 64 keys stream through NST shared-memory stages by
 * cp.async (16-byte chunks, zero-filled past the last key), so NST - 1
 * tiles are in flight while one is consumed. Each warp owns 16 keys of every
 * tile and keeps its own online-softmax state (m, l, o) for the block's rows:
 *   S:  lane pair (key jj, half hh): hh takes the even or odd 16-byte chunks of
 *       the key row (K rows padded by 32 bytes: the 8 lanes of a quarter-warp
 *       hit 8 different bank groups), one shuffle adds the halves;
 *   softmax: row maximum over the warp's 16 keys by 4 shuffles; p = e^{s - m}
 *       to shared memory (16 floats per row), the state rescaled by e^{m - m'};
 *   PV: lanes across d (CW columns each, 16 or 8 bytes of a V row), keys
 *       split between KS lane sets; p read 4 keys at a time.
 * At the end the 4 warps' states, and the KS key slices' partial o, merge
 * with stage 04's merge (merge.c):
 *   M = max_w m_w,  L = sum_w l_w e^{m_w - M},  O = sum_w o_w e^{m_w - M}
 * then O / L goes to O (one split), or (M, L, O) to the partial arrays
 * (several splits; stage 07 merges them the same way).
 *
 * Arithmetic per K/V element: about hpb FMAs (the dot products or the P V
 * sums), plus a conversion and a share of a shared-memory load: at hpb <= 8
 * well under the ~15 instructions per element an H200 can issue at full
 * bandwidth (about 32 T instructions/s over 2.2 T elements/s of bf16 K/V at
 * ~4.4 TB/s); MQA's g = 32 (two blocks of 16) needs ~2 x 20 and is
 * instruction-bound on CUDA cores (notes/06_gqa_attention.md).
 *
 * Memory traffic (bytes): K/V 2 es d n per block (n = the block's keys) +
 * Q es d hpb per block + O es d per row, or 4 (d + 2) per row per split.
 *
 * Run: build/bin/06_gqa_attention --decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include <stdint.h>

#include "exp_base.h"
#include "gpu.h"
#include "gpu_check.h"
#include "gqa.h"
#include "softmax_device.cuh"

#define DEC_THREADS 128
#define DEC_WARPS 4
#define DEC_BN GQA_BC /* keys per tile */
#define DEC_KW 16     /* keys per warp per tile */
static_assert(DEC_BN == DEC_WARPS * DEC_KW, "the warps split each tile");

template <typename T, int D, int RT> struct dec_cfg {
    static constexpr int ES = (int)sizeof(T);
    static constexpr int VE = 16 / ES;        /* elements per 16-byte chunk */
    static constexpr int NCHK = D / VE;       /* chunks per K/V row */
    static constexpr int KSTR = D + 32 / ES;  /* K row pitch (elements): +32 bytes, see the top */
    static constexpr int NST = (ES == 4 || RT >= 16) ? 2 : 3; /* pipeline stages: 2 blocks per SM for 16-bit types */
    static constexpr int KT = DEC_BN * KSTR, VT = DEC_BN * D; /* elements of a K and a V tile */
    static constexpr int STAGE = (KT + VT) * ES;              /* bytes of one stage */
    static constexpr int CW = RT <= 8 ? VE : 4;               /* PV: columns per lane */
    static constexpr int NCH = D / CW;                        /* PV: column groups, <= 32 */
    static constexpr int KS = 32 / NCH;                       /* PV: key slices of a warp */
    static constexpr int KPL = DEC_KW / KS;                   /* PV: keys per lane per tile */
    static constexpr int Q_OFF = NST * STAGE;                 /* q rows: RT x D fp32 */
    static constexpr int P_OFF = Q_OFF + RT * D * 4;          /* p: warps x RT x 16 fp32 */
    static constexpr int SMEM = P_OFF + DEC_WARPS * RT * DEC_KW * 4;
    /* the final merge reuses the stages: o of every (warp, key slice), then m and l per (warp, row) */
    static constexpr int MERGE = DEC_WARPS * KS * RT * D * 4 + 2 * DEC_WARPS * RT * 4;
    static_assert(NCHK % 2 == 0, "the two halves of a key row take even and odd chunks");
    static_assert(NCH <= 32 && KS >= 1 && DEC_KW % KS == 0 && KPL % 4 == 0, "PV lane layout");
    static_assert(MERGE <= Q_OFF, "the merge scratch fits in the stages");
};

struct dec_params {
    const void *q, *k, *v;
    void *o;
    float *pm, *pl, *po;
    const int *kv_len;
    int Hq, Hkv, g, hpb, Nk, splits, kps, break_idx;
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

template <typename T, int D, int RT>
__global__ void __launch_bounds__(DEC_THREADS) decode_kernel(dec_params P)
{
    using C = dec_cfg<T, D, RT>;
    extern __shared__ __align__(16) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int hb = blockIdx.x, b = blockIdx.y, z = blockIdx.z;
    const int R = P.hpb;                                    /* rows of this block (<= RT) */
    const int h0 = hb * R;                                  /* first query head */
    const int kvh = P.break_idx ? h0 % P.Hkv : h0 / P.g;    /* Q7: the K/V head of a query head */
    const size_t row0 = (size_t)b * P.Hq + h0;              /* Nq = 1: row = b Hq + h */
    const size_t rows = (size_t)gridDim.y * P.Hq;
    const int n = P.kv_len ? min(max(P.kv_len[b], 0), P.Nk) : P.Nk;
    const int lo = z * P.kps, end = min(n, lo + P.kps);     /* this block's keys: [lo, end) */
    T *out = (T *)P.o;

    if (end <= lo) { /* no keys in this range: the empty state (stage 04: m = -inf, l = 0, o = 0) */
        for (int i = tid; i < R * D; i += DEC_THREADS) {
            const int r = i / D, c = i % D;
            if (P.splits == 1) out[(row0 + r) * D + c] = from_f<T>(0.0f);
            else {
                P.po[((size_t)z * rows + row0 + r) * D + c] = 0.0f;
                if (c == 0) {
                    P.pm[(size_t)z * rows + row0 + r] = -INFINITY;
                    P.pl[(size_t)z * rows + row0 + r] = 0.0f;
                }
            }
        }
        return;
    }

    const T *kg = (const T *)P.k + ((size_t)b * P.Hkv + kvh) * (size_t)P.Nk * D;
    const T *vg = (const T *)P.v + ((size_t)b * P.Hkv + kvh) * (size_t)P.Nk * D;
    float *qs = (float *)(smem + C::Q_OFF), *ps = (float *)(smem + C::P_OFF);
    const T *qg = (const T *)P.q + row0 * D;
    for (int i = tid; i < RT * D; i += DEC_THREADS) qs[i] = i < R * D ? to_f(qg[i]) : 0.0f;

    /* keys j0 .. j0 + 63 into stage st; past `end`: zeros (no bytes read) */
    auto load_tile = [&](int st, int j0) {
        T *kt = (T *)(smem + st * C::STAGE), *vt = kt + C::KT;
        for (int i = tid; i < DEC_BN * C::NCHK; i += DEC_THREADS) {
            const int r = i / C::NCHK, c = i % C::NCHK, key = j0 + r;
            const bool ok = key < end;
            const size_t off = (size_t)(ok ? key : lo) * D + c * C::VE;
            cp_async16(kt + r * C::KSTR + c * C::VE, kg + off, ok ? 16 : 0);
            cp_async16(vt + r * D + c * C::VE, vg + off, ok ? 16 : 0);
        }
    };

    const int ntiles = (end - lo + DEC_BN - 1) / DEC_BN;
#pragma unroll
    for (int st = 0; st < C::NST - 1; st++) {
        if (st < ntiles) load_tile(st, lo + st * DEC_BN);
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
            if (nt < ntiles) load_tile(nt % C::NST, lo + nt * DEC_BN);
            cp_async_commit();
        }
        const T *kt = (const T *)(smem + (t % C::NST) * C::STAGE), *vt = kt + C::KT;
        const int key = lo + t * DEC_BN + w * DEC_KW + jj;

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
    float *mo = (float *)smem;                            /* [warp][key slice][row][D] */
    float *mm = mo + DEC_WARPS * C::KS * RT * D, *ml = mm + DEC_WARPS * RT; /* [warp][row] */
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
    for (int i = tid; i < R * D; i += DEC_THREADS) {
        const int r = i / D, c = i % D;
        float M = -INFINITY;
#pragma unroll
        for (int ww = 0; ww < DEC_WARPS; ww++) M = fmaxf(M, mm[ww * RT + r]);
        const float base = exp_base(M);
        float L = 0.0f, O = 0.0f;
#pragma unroll
        for (int ww = 0; ww < DEC_WARPS; ww++) {
            const float f = fexp(mm[ww * RT + r] - base);
            float ow = 0.0f;
#pragma unroll
            for (int kk = 0; kk < C::KS; kk++) ow += mo[((ww * C::KS + kk) * RT + r) * D + c];
            L += ml[ww * RT + r] * f;
            O += ow * f;
        }
        const size_t row = row0 + r;
        if (P.splits == 1) {
            out[row * D + c] = from_f<T>(L == 0.0f ? 0.0f : O / L); /* no visible key: 0 */
        } else {
            P.po[((size_t)z * rows + row) * D + c] = O;
            if (c == 0) {
                P.pm[(size_t)z * rows + row] = M;
                P.pl[(size_t)z * rows + row] = L;
            }
        }
    }
}

template <typename T, int D, int RT> static void set_smem_attr()
{
    static bool done = false;
    if (!done) {
        CUDA_CHECK(cudaFuncSetAttribute(decode_kernel<T, D, RT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        dec_cfg<T, D, RT>::SMEM));
        done = true;
    }
}

/* Asked once per instance: the split choice runs before every launch. */
template <typename T, int D, int RT> static int occupancy(int unused)
{
    (void)unused;
    static int nb = -1;
    if (nb < 0) {
        set_smem_attr<T, D, RT>();
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, decode_kernel<T, D, RT>, DEC_THREADS,
                                                                 dec_cfg<T, D, RT>::SMEM));
    }
    return nb;
}

template <typename T, int D, int RT> static void launch(const dec_params &p, dim3 grid)
{
    set_smem_attr<T, D, RT>();
    decode_kernel<T, D, RT><<<grid, DEC_THREADS, dec_cfg<T, D, RT>::SMEM>>>(p);
    LAUNCH_CHECK();
}

static int rows_tile(int hpb) { return hpb <= 1 ? 1 : hpb <= 2 ? 2 : hpb <= 4 ? 4 : hpb <= 8 ? 8 : 16; }

/* Calls F<T, D, RT>::run(args...) for the shape's type, head dim and row tile. */
#define DEC_DISPATCH_RT(T, D, rt, F, ...)                                            \
    switch (rt) {                                                                    \
    case 1: return F<T, D, 1>(__VA_ARGS__);                                          \
    case 2: return F<T, D, 2>(__VA_ARGS__);                                          \
    case 4: return F<T, D, 4>(__VA_ARGS__);                                          \
    case 8: return F<T, D, 8>(__VA_ARGS__);                                          \
    default: return F<T, D, 16>(__VA_ARGS__);                                        \
    }
#define DEC_DISPATCH_D(T, d, rt, F, ...)                                             \
    switch (d) {                                                                     \
    case 64: DEC_DISPATCH_RT(T, 64, rt, F, __VA_ARGS__)                              \
    case 96: DEC_DISPATCH_RT(T, 96, rt, F, __VA_ARGS__)                              \
    default: DEC_DISPATCH_RT(T, 128, rt, F, __VA_ARGS__)                             \
    }
#define DEC_DISPATCH(dt, d, rt, F, ...)                                              \
    do {                                                                             \
        if ((dt) == DT_F16) { DEC_DISPATCH_D(__half, d, rt, F, __VA_ARGS__) }        \
        else if ((dt) == DT_BF16) { DEC_DISPATCH_D(__nv_bfloat16, d, rt, F, __VA_ARGS__) } \
        else { DEC_DISPATCH_D(float, d, rt, F, __VA_ARGS__) }                        \
    } while (0)

extern "C" void gqa_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                               const gqa_decode_args_t *a)
{
    char why[256];
    const int g = (int)(s->heads / s->kv_heads), hpb = a->hpb < 1 ? 1 : a->hpb, splits = a->splits < 1 ? 1 : a->splits;
    if (!gqa_decode_supports(s, why, sizeof why) || g % hpb || hpb > 16 ||
        (splits > 1 && (!a->part_m || !a->part_l || !a->part_o))) {
        fprintf(stderr, "gqa_decode_gpu: shape or arguments not supported (%s; hpb %d, splits %d)\n", why, hpb, splits);
        return;
    }
    dec_params p;
    p.q = q; p.k = k; p.v = v; p.o = o;
    p.pm = a->part_m; p.pl = a->part_l; p.po = a->part_o;
    p.kv_len = a->kv_len;
    p.Hq = (int)s->heads; p.Hkv = (int)s->kv_heads; p.g = g; p.hpb = hpb;
    p.Nk = (int)s->seq_kv; p.splits = splits;
    p.kps = (int)gqa_keys_per_split(s->seq_kv, (size_t)splits);
    p.break_idx = a->break_head_index;
    p.scale = s->scale;
    const dim3 grid((unsigned)(s->heads / hpb), (unsigned)s->batch, (unsigned)splits);
    DEC_DISPATCH(s->dt, (int)s->dim, rows_tile(hpb), launch, p, grid);
}

extern "C" int gqa_decode_blocks_per_sm(const attn_shape_t *s, int hpb)
{
    if (!gpu_available()) return 0;
    DEC_DISPATCH(s->dt, (int)s->dim, rows_tile(hpb), occupancy, 0);
    return 0;
}
