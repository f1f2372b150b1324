/* Stage 05, the register-tiled FlashAttention-2 kernel (fp32 math on the CUDA
 * cores). What changes from fa2_gpu.cu (one thread per query row, one FMA per
 * shared-memory load): the two block products are computed like a tiled
 * SGEMM. 256 threads form a 16 x 16 grid; thread (ty, tx) owns
 *   rows  ty + 16 a,  a < TM = Br / 16        (of S, P and O)
 *   keys  tx + 16 b,  b < 4                   (of S and P; Bc = 64)
 *   cols  (16 w + tx) VW + e                  (of O; d / 16 of them)
 * so each shared-memory load feeds several FMAs from registers:
 *   S = Q_i K_j^T:  per 4 steps of d, TM + 4 float4 loads for 16 TM FMAs
 *   O += P V_j:     per 4 keys, TM float4 loads of P and 4 d/16 loads of V
 *                   for 4 TM d/16 FMAs.
 * The online softmax runs on the register micro-tile: each thread takes the
 * maximum of its 4 keys per row, and the 16 threads that share a row (16
 * consecutive lanes of one warp) finish it with 4 shuffles. They all hold the
 * same m afterwards, so each keeps its own partial l (no shuffle per block)
 * and the partial sums meet once, at the end, before the one division.
 *
 * Shared memory (fp32): Q_i (Br x (d + 4)), K_j (64 x (d + 4)), V_j (64 x d),
 * P (Br x 80). The +4 padding makes the float4 reads of K rows by 16
 * threads hit 16 different bank groups; P's stride of 80 puts the two halves
 * of a warp 16 banks apart when they store. fp32 tiles arrive by cp.async
 * (no registers, asynchronous): K_{j+1} is requested as soon as S_j is done
 * with K_j, and V_{j+1} as soon as P_j V_j is done, so both loads overlap
 * arithmetic (single buffers: 2 tiles of K/V fit where 4 would not at d = 128).
 * fp16/bf16 tiles are converted to fp32 on the way (synchronous loads).
 * Exponentials: exp2f on logits pre-multiplied by scale log2 e.
 *
 * Causal: query block i needs key blocks j < ct_i only (the rest are never
 * loaded), and only the blocks that straddle the diagonal (or the end of the
 * keys) take the masked path. Thread blocks are issued last query block
 * first, so the longest ones start first.
 *
 * Memory traffic (model: tiled_fa2_bytes with Br x 64): Q once, O once, K and
 * V once per query block. Blocks of one head run next to each other, so K and
 * V are mostly re-read from the L2.
 *
 * Variants: fa2-regtile (Br = 64: 4 x 4 micro-tiles of S; d = 16 ... 256)
 * and fa2-regtile-br128 (Br = 128: 8 x 4 micro-tiles, more FMAs per load,
 * fewer blocks per SM; d = 16 ... 128). GQA: query head h reads K/V head
 * h / (H / Hkv) (bh / heads_per_kv, with bh = b H + h).
 * Run: build/bin/05_tiled_attention --kernel fa2-regtile,fa2-regtile-br128 [--causal] [--dim 128] */
#include "tiled_device.cuh"

#define RT_BC 64
#define RT_THREADS 256

template <int D, int BR> struct rt_cfg {
    static constexpr int BC = RT_BC, TM = BR / 16, TN = BC / 16;
    static constexpr int QS = D + 4, KS = D + 4, VS = D, PS = BC + 16;
    static constexpr int NC = D / 16;                                     /* O columns per thread */
    static constexpr int VW = NC % 4 == 0 ? 4 : NC % 2 == 0 ? 2 : 1;      /* their vector width */
    static constexpr int NV = NC / VW;
    static constexpr size_t smem = sizeof(float) * ((size_t)BR * QS + (size_t)BC * KS + (size_t)BC * VS + (size_t)BR * PS);
    static_assert(D % 16 == 0 && BR % 16 == 0, "16 x 16 threads");
};

template <int VW> struct fvec;
template <> struct fvec<1> { using type = float; };
template <> struct fvec<2> { using type = float2; };
template <> struct fvec<4> { using type = float4; };
template <int VW> __device__ __forceinline__ float comp(const typename fvec<VW>::type &v, int e);
template <> __device__ __forceinline__ float comp<1>(const float &v, int e) { (void)e; return v; }
template <> __device__ __forceinline__ float comp<2>(const float2 &v, int e) { return e == 0 ? v.x : v.y; }
template <> __device__ __forceinline__ float comp<4>(const float4 &v, int e)
{
    return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

template <typename T, int D, int BR>
__global__ void __launch_bounds__(RT_THREADS)
fa2_regtile_kernel(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v, T *__restrict__ o, int Nq,
                   int Nk, int Tr, int heads_per_kv, int causal, float scale_log2)
{
    using C = rt_cfg<D, BR>;
    constexpr int BC = C::BC, TM = C::TM, TN = C::TN, NC = C::NC, VW = C::VW, NV = C::NV;
    using VT = typename fvec<VW>::type;
    extern __shared__ __align__(16) float sm[];
    float *Qs = sm, *Ks = Qs + BR * C::QS, *Vs = Ks + BC * C::KS, *Ps = Vs + BC * C::VS;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const unsigned long long bh = blockIdx.x / (unsigned)Tr;
    const int i = Tr - 1 - (int)(blockIdx.x % (unsigned)Tr); /* last (longest under causal) first */
    const int row0 = i * BR, rows = min(BR, Nq - row0);
    const int ct = (tiled_visible(row0 + rows - 1, Nq, Nk, causal) + BC - 1) / BC;
    const int full = tiled_visible(row0, Nq, Nk, causal) / BC; /* key blocks j < full need no mask */
    const T *qg = q + (bh * Nq + row0) * D;
    const T *kg = k + (bh / heads_per_kv) * Nk * D, *vg = v + (bh / heads_per_kv) * Nk * D;
    T *og = o + (bh * Nq + row0) * D;

    if (ct == 0) { /* no row of this block sees a key: FlashAttention's 0 */
        for (int x = tid; x < rows * D; x += RT_THREADS) og[x] = from_f<T>(0.0f);
        return;
    }
    tile_load<T, BR, D, C::QS, RT_THREADS>(Qs, qg, rows);
    tile_load<T, BC, D, C::KS, RT_THREADS>(Ks, kg, Nk);
    cp_async_commit(); /* group: Q_i, K_0 */
    tile_load<T, BC, D, C::VS, RT_THREADS>(Vs, vg, Nk);
    cp_async_commit(); /* group: V_0 */

    float acc[TM][NC], m[TM], l[TM];
    int nvis[TM];
#pragma unroll
    for (int a = 0; a < TM; a++) {
        m[a] = -INFINITY;
        l[a] = 0.0f;
        nvis[a] = tiled_visible(row0 + ty + 16 * a, Nq, Nk, causal);
#pragma unroll
        for (int c = 0; c < NC; c++) acc[a][c] = 0.0f;
    }

    for (int j = 0; j < ct; j++) {
        const int key0 = j * BC;
        cp_async_wait<1>(); /* Q_i and K_j have landed (V_j may still be in flight) */
        __syncthreads();

        /* S = Q_i K_j^T on the 16 x 16 grid of TM x 4 micro-tiles */
        float s[TM][TN];
#pragma unroll
        for (int a = 0; a < TM; a++)
#pragma unroll
            for (int b = 0; b < TN; b++) s[a][b] = 0.0f;
#pragma unroll 4
        for (int x = 0; x < D; x += 4) {
            float4 qa[TM], kb[TN];
#pragma unroll
            for (int a = 0; a < TM; a++) qa[a] = *reinterpret_cast<const float4 *>(Qs + (ty + 16 * a) * C::QS + x);
#pragma unroll
            for (int b = 0; b < TN; b++) kb[b] = *reinterpret_cast<const float4 *>(Ks + (tx + 16 * b) * C::KS + x);
#pragma unroll
            for (int a = 0; a < TM; a++)
#pragma unroll
                for (int b = 0; b < TN; b++) {
                    s[a][b] = fmaf(qa[a].x, kb[b].x, s[a][b]);
                    s[a][b] = fmaf(qa[a].y, kb[b].y, s[a][b]);
                    s[a][b] = fmaf(qa[a].z, kb[b].z, s[a][b]);
                    s[a][b] = fmaf(qa[a].w, kb[b].w, s[a][b]);
                }
        }
        __syncthreads(); /* every thread is done with K_j: fetch K_{j+1} behind the softmax and P V */
        if (j + 1 < ct) tile_load<T, BC, D, C::KS, RT_THREADS>(Ks, kg + (size_t)(key0 + BC) * D, Nk - key0 - BC);
        cp_async_commit();

        /* the online softmax on the micro-tile */
        const bool mask = j >= full; /* the same for the whole block */
#pragma unroll
        for (int a = 0; a < TM; a++) {
            float mx = m[a];
#pragma unroll
            for (int b = 0; b < TN; b++) {
                float sv = s[a][b] * scale_log2;
                if (mask && key0 + tx + 16 * b >= nvis[a]) sv = -INFINITY;
                s[a][b] = sv;
                mx = fmaxf(mx, sv);
            }
#pragma unroll
            for (int off = 1; off < 16; off <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float base = exp_base(mx), alpha = exp2f(m[a] - base); /* 1 unless m grew */
            float rs = 0.0f;
#pragma unroll
            for (int b = 0; b < TN; b++) {
                const float p = exp2f(s[a][b] - base);
                rs += p;
                Ps[(ty + 16 * a) * C::PS + tx + 16 * b] = p;
            }
            l[a] = l[a] * alpha + rs; /* this thread's part of l */
            m[a] = mx;
#pragma unroll
            for (int c = 0; c < NC; c++) acc[a][c] *= alpha;
        }
        cp_async_wait<1>(); /* V_j has landed (K_{j+1} may still be in flight) */
        __syncthreads();    /* ... and P is complete */

        /* O += P V_j */
#pragma unroll 2
        for (int t0 = 0; t0 < BC; t0 += 4) {
            float4 pa[TM];
#pragma unroll
            for (int a = 0; a < TM; a++) pa[a] = *reinterpret_cast<const float4 *>(Ps + (ty + 16 * a) * C::PS + t0);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const float *vrow = Vs + (t0 + u) * C::VS;
#pragma unroll
                for (int w = 0; w < NV; w++) {
                    const VT vx = *reinterpret_cast<const VT *>(vrow + (16 * w + tx) * VW);
#pragma unroll
                    for (int a = 0; a < TM; a++) {
                        const float p = u == 0 ? pa[a].x : u == 1 ? pa[a].y : u == 2 ? pa[a].z : pa[a].w;
#pragma unroll
                        for (int e = 0; e < VW; e++) acc[a][w * VW + e] = fmaf(p, comp<VW>(vx, e), acc[a][w * VW + e]);
                    }
                }
            }
        }
        __syncthreads(); /* every thread is done with V_j and P: fetch V_{j+1} behind the next S */
        if (j + 1 < ct) tile_load<T, BC, D, C::VS, RT_THREADS>(Vs, vg + (size_t)(key0 + BC) * D, Nk - key0 - BC);
        cp_async_commit();
    }
    cp_async_wait<0>(); /* nothing left in flight when the block exits */

    /* l: the 16 partial sums of each row; then the one division */
#pragma unroll
    for (int a = 0; a < TM; a++) {
#pragma unroll
        for (int off = 1; off < 16; off <<= 1) l[a] += __shfl_xor_sync(0xffffffffu, l[a], off);
        const int r = ty + 16 * a;
        if (r >= rows) continue;
        const float inv = l[a] == 0.0f ? 0.0f : 1.0f / l[a]; /* l = 0: no visible key, output 0 */
#pragma unroll
        for (int w = 0; w < NV; w++) {
            vec_t<T, VW> out;
#pragma unroll
            for (int e = 0; e < VW; e++) out.v[e] = from_f<T>(acc[a][w * VW + e] * inv);
            st_vec<T, VW>(og + (size_t)r * D + (16 * w + tx) * VW, out);
        }
    }
}

template <typename T, int D, int BR>
static void rt_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    using C = rt_cfg<D, BR>;
    const int Tr = (int)((s->seq_q + BR - 1) / BR);
    const unsigned long long blocks = (unsigned long long)s->batch * s->heads * (unsigned long long)Tr;
    tiled_kernel_setup(fa2_regtile_kernel<T, D, BR>, C::smem);
    fa2_regtile_kernel<T, D, BR><<<(unsigned)blocks, RT_THREADS, C::smem>>>(
        (const T *)q, (const T *)k, (const T *)v, (T *)o, (int)s->seq_q, (int)s->seq_kv, Tr,
        (int)(s->heads / s->kv_heads), s->causal, tiled_scale_log2(s));
    LAUNCH_CHECK();
}

typedef void (*rt_launch_fn)(const attn_shape_t *, const void *, const void *, const void *, void *);
typedef struct {
    dtype_t dt;
    int d, br;
    rt_launch_fn launch;
    void (*info)(tiled_gpu_info_t *);
} rt_inst_t;

template <typename T, int D, int BR> static void rt_info(tiled_gpu_info_t *g)
{
    g->br = BR;
    g->bc = RT_BC;
    tiled_kernel_info(fa2_regtile_kernel<T, D, BR>, RT_THREADS, rt_cfg<D, BR>::smem, g);
}

#define RT_INST(T, DT, D, BR) { DT, D, BR, rt_launch<T, D, BR>, rt_info<T, D, BR> }
#define RT_DIMS(T, DT, BR) RT_INST(T, DT, 16, BR), RT_INST(T, DT, 32, BR), RT_INST(T, DT, 64, BR), \
                           RT_INST(T, DT, 80, BR), RT_INST(T, DT, 96, BR), RT_INST(T, DT, 128, BR)
/* d = 192 and 256 at Br = 64 only: 166 and 214 KiB of shared memory (one
 * block of 256 threads per SM); Br = 128 would need 235 and 299 KiB, more
 * than a block may have (227 KiB on H100/H200). */
#define RT_BIG(T, DT) RT_INST(T, DT, 192, 64), RT_INST(T, DT, 256, 64)
static const rt_inst_t RT_INSTANCES[] = {
    RT_DIMS(float, DT_F32, 64),   RT_DIMS(__half, DT_F16, 64),   RT_DIMS(__nv_bfloat16, DT_BF16, 64),
    RT_DIMS(float, DT_F32, 128),  RT_DIMS(__half, DT_F16, 128),  RT_DIMS(__nv_bfloat16, DT_BF16, 128),
    RT_BIG(float, DT_F32),        RT_BIG(__half, DT_F16),        RT_BIG(__nv_bfloat16, DT_BF16),
};

static const rt_inst_t *rt_find(const attn_shape_t *s, int br, char *why, size_t n)
{
    if (s->tune.sram) {
        snprintf(why, n, "--sram sets the CPU's simulated on-chip memory; this kernel's tiles are compiled (%d x %d)",
                 br, RT_BC);
        return NULL;
    }
    if ((s->tune.br && s->tune.br != (size_t)br) || (s->tune.bc && s->tune.bc != RT_BC)) {
        snprintf(why, n, "this kernel is compiled for %d x %d tiles (--br %zu --bc %zu asked)", br, RT_BC, s->tune.br,
                 s->tune.bc);
        return NULL;
    }
    for (size_t x = 0; x < sizeof RT_INSTANCES / sizeof *RT_INSTANCES; x++) {
        const rt_inst_t *e = &RT_INSTANCES[x];
        if (e->dt == s->dt && (size_t)e->d == s->dim && e->br == br) return e;
    }
    if (br == 128 && (s->dim == 192 || s->dim == 256))
        snprintf(why, n,
                 "d = %zu: Br = 128 tiles need %.0f KiB of shared memory per block, more than a block may have; "
                 "fa2-regtile (Br = 64) takes d = 192 and 256",
                 s->dim, 4.0 * (128.0 * (s->dim + 4) + 64.0 * (s->dim + 4) + 64.0 * s->dim + 128.0 * 80) / 1024);
    else
        snprintf(why, n, "no kernel instance for d = %zu (compiled: d = 16, 32, 64, 80, 96, 128, and 192, 256 at Br = 64)",
                 s->dim);
    return NULL;
}

extern "C" int attention_fa2_regtile_gpu_info(const attn_shape_t *s, int br, tiled_gpu_info_t *info, char *why,
                                              size_t n)
{
    const rt_inst_t *e = rt_find(s, br, why, n);
    if (!e) return 0;
    e->info(info);
    const unsigned long long blocks = (unsigned long long)s->batch * s->heads * ((s->seq_q + br - 1) / br);
    return tiled_gpu_limits(s, blocks, why, n) && tiled_smem_fits(info->smem, why, n);
}

static void rt_run(int br, const attn_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    char why[256];
    const rt_inst_t *e = rt_find(s, br, why, sizeof why);
    if (!e) { /* unreachable: supports() declined the shape */
        fprintf(stderr, "fa2-regtile: %s\n", why);
        return;
    }
    e->launch(s, q, k, v, o);
}

extern "C" void attention_fa2_regtile64_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                            void *ws)
{
    (void)ws;
    rt_run(64, s, q, k, v, o);
}

extern "C" void attention_fa2_regtile128_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v,
                                             void *o, void *ws)
{
    (void)ws;
    rt_run(128, s, q, k, v, o);
}
