/* Stage 04, one-pass attention on the GPU. What changes from standard
 * attention (standard_gpu.cu): one kernel instead of GEMM + softmax + GEMM,
 * and nothing of size N x N. A group of G lanes of a warp owns one query row
 * (G from attn04_lanes_per_row, attention.h: 16 bytes of a K/V row per lane
 * at least); each lane holds d / G elements of q and of the running output o
 * in registers. The group walks the row's visible keys, KB = 4 at a time:
 *     s_t = scale * q . k_t      (partial dots, then a shuffle tree over the G lanes)
 *     m'  = max(m, s_1 .. s_KB)
 *     l'  = l e^{m - m'} + sum_t e^{s_t - m'}
 *     o'  = o e^{m - m'} + sum_t e^{s_t - m'} v_t
 * which is the recurrence of one_pass_cpu.c merged KB keys at a time (one
 * rescale per 4 keys instead of per key; attn_merge with a 4-key state).
 * K and V rows are read straight from global memory: no shared-memory tiling,
 * that is stage 05's job. The 32 / G rows of a warp read the same K/V row at
 * the same time (one request serves them all), and the warps of a block, and
 * the blocks of one (b, h), re-read it from L1 and L2.
 *
 * Memory traffic (model): per query row q once, n_i K rows and n_i V rows
 * (n_i = N, or i + 1 when causal), o once:
 *     bytes = es (2 B H N d + 2 d pairs)
 * i.e. 2 N^2 d elements of K/V per head, far above standard attention's
 * O(N^2 + N d) at d = 64. The L2 (50-60 MB) holds a whole (b, h) slice of K
 * and V (N d es bytes each, 1 MiB at N = 4096, d = 64, fp32) while all its
 * query rows are in flight, so the measured HBM traffic is a small fraction
 * of the model: the honest finding of this stage.
 *
 * Exponentials: stage 03's fexp (exp2f of x log2 e, one MUFU instruction
 * instead of about nine); its extra argument rounding is in the tolerance.
 *
 * Supported d: 16, 32, 64, 80, 96, 128, 256 (each a template instance).
 * Causal: rows are scheduled longest first (the last query rows of each slice
 * see the most keys), and a warp stops at the longest of its rows.
 *
 * Run: build/bin/04_one_pass_attention [--dtype fp16] [--dim 128] [--causal] [--sweep] */
#include "attention.h"
#include "exp_base.h"
#include "gpu_check.h"
#include "softmax_device.cuh"

#define OP_THREADS 128 /* 4 warps per block */
#define OP_KB 4        /* keys per step of the loop */

/* Elements moved per load: the widest power of two dividing EPL that fits in
 * 16 bytes. */
template <typename T, int EPL> struct op_vec {
    static constexpr int w16 = (int)(16 / sizeof(T));
    static constexpr int value = EPL % w16 == 0 ? w16 : EPL % (w16 / 2) == 0 ? w16 / 2 : EPL % 2 == 0 ? 2 : 1;
};

template <typename T, int EPL, int VEC>
__device__ __forceinline__ void load_chunk(const T *p, float (&x)[EPL])
{
#pragma unroll
    for (int e = 0; e < EPL; e += VEC) {
        const vec_t<T, VEC> w = ld_vec<T, VEC>(p + e);
#pragma unroll
        for (int t = 0; t < VEC; t++) x[e + t] = to_f(w.v[t]);
    }
}

template <typename T, int D>
__global__ void __launch_bounds__(OP_THREADS)
one_pass_kernel(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v, T *__restrict__ o,
                unsigned long long rows, int Nq, int Nk, int heads_per_kv, float scale, int causal)
{
    constexpr int G = attn04_lanes_per_row(D, (int)sizeof(T));
    constexpr int EPL = D / G;
    constexpr int VEC = op_vec<T, EPL>::value;
    const int sub = threadIdx.x % G; /* lane within the row's group */
    const unsigned long long g = ((unsigned long long)blockIdx.x * OP_THREADS + threadIdx.x) / G;
    const bool live = g < rows;
    /* causal: longest rows first, so the slowest blocks start first */
    const unsigned long long row = !live ? 0 : causal ? rows - 1 - g : g;
    const unsigned long long bh = row / (unsigned)Nq;
    const int i = (int)(row % (unsigned)Nq);
    /* causal, bottom-right: keys j <= i + Nk - Nq, clamped to [0, Nk] */
    const int n = !live ? 0 : causal ? max(0, min(Nk, i + 1 + Nk - Nq)) : Nk;
    /* K/V slice: query head h of batch b reads K/V head h / heads_per_kv */
    const unsigned long long kvs = bh / heads_per_kv;
    const T *kb = k + kvs * (unsigned long long)Nk * D + sub * EPL;
    const T *vb = v + kvs * (unsigned long long)Nk * D + sub * EPL;

    /* Every lane of the warp runs the same number of steps: the shuffles
     * below need the whole warp. */
    int nmax = n;
#pragma unroll
    for (int off = 16; off >= G; off >>= 1) nmax = max(nmax, __shfl_xor_sync(0xffffffffu, nmax, off));

    float qr[EPL], acc[EPL];
    if (live) load_chunk<T, EPL, VEC>(q + row * D + sub * EPL, qr);
    else
#pragma unroll
        for (int e = 0; e < EPL; e++) qr[e] = 0.0f;
#pragma unroll
    for (int e = 0; e < EPL; e++) acc[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int last = n > 0 ? n - 1 : 0; /* masked steps load a valid row and ignore it */

    /* [snippet:one-pass-step] */
    for (int j0 = 0; j0 < nmax; j0 += OP_KB) {
        float s[OP_KB];
#pragma unroll
        for (int t = 0; t < OP_KB; t++) {
            float kc[EPL];
            load_chunk<T, EPL, VEC>(kb + (size_t)min(j0 + t, last) * D, kc);
            float part = 0.0f;
#pragma unroll
            for (int e = 0; e < EPL; e++) part = fmaf(qr[e], kc[e], part);
            s[t] = part;
        }
#pragma unroll
        for (int off = G / 2; off > 0; off >>= 1)
#pragma unroll
            for (int t = 0; t < OP_KB; t++) s[t] += __shfl_xor_sync(0xffffffffu, s[t], off);
        float mn = m;
#pragma unroll
        for (int t = 0; t < OP_KB; t++) {
            s[t] = j0 + t < n ? scale * s[t] : -INFINITY;
            mn = fmaxf(mn, s[t]);
        }
        const float ms = exp_base(mn);
        const float alpha = fexp(m - ms); /* 1 exactly unless m grew */
        float p[OP_KB], psum = 0.0f;
#pragma unroll
        for (int t = 0; t < OP_KB; t++) {
            p[t] = fexp(s[t] - ms); /* 0 for a masked key */
            psum += p[t];
        }
        l = l * alpha + psum;
#pragma unroll
        for (int e = 0; e < EPL; e++) acc[e] *= alpha;
#pragma unroll
        for (int t = 0; t < OP_KB; t++) {
            float vc[EPL];
            load_chunk<T, EPL, VEC>(vb + (size_t)min(j0 + t, last) * D, vc);
#pragma unroll
            for (int e = 0; e < EPL; e++) acc[e] = fmaf(p[t], vc[e], acc[e]);
        }
        m = mn;
    }
    /* [/snippet] */
    if (!live) return;
    T *orow = o + row * D + sub * EPL;
#pragma unroll
    for (int e = 0; e < EPL; e += VEC) {
        vec_t<T, VEC> w;
#pragma unroll
        for (int t = 0; t < VEC; t++) w.v[t] = from_f<T>(l == 0.0f ? 0.0f : acc[e + t] / l); /* no visible key: 0 */
        st_vec<T, VEC>(orow + e, w);
    }
}

template <typename T, int D>
static void launch(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    constexpr int G = attn04_lanes_per_row(D, (int)sizeof(T));
    static_assert(D % G == 0 && 32 % G == 0, "a row's lanes must divide d and the warp");
    const unsigned long long rows = attn_rows(s);
    const unsigned long long blocks = (rows * G + OP_THREADS - 1) / OP_THREADS;
    one_pass_kernel<T, D><<<(unsigned)blocks, OP_THREADS>>>((const T *)q, (const T *)k, (const T *)v, (T *)o, rows,
                                                           (int)s->seq_q, (int)s->seq_kv,
                                                           (int)(s->heads / s->kv_heads), s->scale, s->causal);
    LAUNCH_CHECK();
}

template <typename T>
static void dispatch_dim(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    switch (s->dim) {
    case 16: launch<T, 16>(s, q, k, v, o); break;
    case 32: launch<T, 32>(s, q, k, v, o); break;
    case 64: launch<T, 64>(s, q, k, v, o); break;
    case 80: launch<T, 80>(s, q, k, v, o); break;
    case 96: launch<T, 96>(s, q, k, v, o); break;
    case 128: launch<T, 128>(s, q, k, v, o); break;
    case 192: launch<T, 192>(s, q, k, v, o); break;
    case 256: launch<T, 256>(s, q, k, v, o); break;
    default: /* unreachable: one_pass_supports declines every other d */
        fprintf(stderr, "one-pass: head dimension %zu has no kernel\n", s->dim);
        break;
    }
}

extern "C" void attention_one_pass_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                       void *ws)
{
    (void)ws;
    if (s->dt == DT_F16) dispatch_dim<__half>(s, q, k, v, o);
    else if (s->dt == DT_BF16) dispatch_dim<__nv_bfloat16>(s, q, k, v, o);
    else dispatch_dim<float>(s, q, k, v, o);
}
