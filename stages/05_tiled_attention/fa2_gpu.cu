/* Stage 05, the plainest tiled kernel: FlashAttention-2's loop order with one
 * thread per query row. What changes from stage 04's one-pass kernel
 * (one_pass_gpu.cu): the keys and values no longer come from global memory
 * row by row for each query; a thread block of Br threads (Br query rows)
 * loads a block of Bc = 64 keys and values into shared memory once, and all
 * Br threads read it from there. That divides the K/V traffic by Br.
 *
 *   block (head bh, query block i); thread t owns query row i Br + t
 *   Q_i -> shared memory (padded rows: thread t reads its own row without bank conflicts)
 *   o[d] (registers), m, l
 *   for each key block j < ct_i (causal: the fully masked blocks are never loaded):
 *       K_j, V_j -> shared memory                 (every thread reads the same key: a broadcast)
 *       s_c = (q . k_c) scale log2 e, c < Bc     (masked only on blocks that straddle the diagonal)
 *       m'  = max(m, max_c s_c);  p_c = 2^{s_c - m'};  l = l 2^{m - m'} + sum_c p_c
 *       o   = o 2^{m - m'} + sum_c p_c v_c
 *   O = o / l                                     (once, at the end)
 *
 * Each thread does all the arithmetic of its row alone, one FMA per shared
 * memory load: this kernel is bound by shared-memory bandwidth, not by the
 * FMA units. fa2_regtile_gpu.cu keeps the loop order and fixes that.
 *
 * Memory traffic (model: tiled_fa2_bytes, tiles.c): Q once, O once, K and V
 * once per query block: es (2 Nq d + 2 Nk d ceil(Nq / Br)) per head (not
 * causal). Blocks are scheduled last query block first (longest under causal).
 *
 * Tiles: Br = 64 (any dtype; d = 16 ... 256), or --br 32 / 128 (fp32,
 * d = 32 ... 128); Bc = 64. K/V head of query head h: h / (H / Hkv) (GQA).
 * Run: build/bin/05_tiled_attention --kernel fa2 [--br 32] [--causal] [--dim 128] */
#include "tiled_device.cuh"

#define FA2_BC 64

template <int D, int BR> struct fa2_cfg {
    static constexpr int QS = D + 1, SS = FA2_BC + 1; /* odd strides: row t in bank t + c */
    static constexpr size_t smem = sizeof(float) * ((size_t)BR * QS + 2 * (size_t)FA2_BC * D + (size_t)BR * SS);
};

template <typename T, int D, int BR>
__global__ void __launch_bounds__(BR)
fa2_plain_kernel(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v, T *__restrict__ o, int Nq,
                 int Nk, int Tr, int heads_per_kv, int causal, float scale_log2)
{
    using C = fa2_cfg<D, BR>;
    constexpr int BC = FA2_BC;
    extern __shared__ __align__(16) float sm[];
    float *Qs = sm, *Ks = Qs + BR * C::QS, *Vs = Ks + BC * D, *Ss = Vs + BC * D;
    const int t = threadIdx.x;
    const unsigned long long bh = blockIdx.x / (unsigned)Tr;
    const int i = Tr - 1 - (int)(blockIdx.x % (unsigned)Tr); /* last (longest under causal) first */
    const int row0 = i * BR, rows = min(BR, Nq - row0);
    const int ct = (tiled_visible(row0 + rows - 1, Nq, Nk, causal) + BC - 1) / BC;
    const int full = tiled_visible(row0, Nq, Nk, causal) / BC; /* blocks j < full: every pair visible */
    const int nme = t < rows ? tiled_visible(row0 + t, Nq, Nk, causal) : 0;
    const T *qg = q + (bh * Nq + row0) * D;
    const T *kg = k + (bh / heads_per_kv) * Nk * D, *vg = v + (bh / heads_per_kv) * Nk * D;
    T *og = o + (bh * Nq + row0) * D;

    if (ct == 0) { /* no row of this block sees a key: FlashAttention's 0 */
        for (int x = t; x < rows * D; x += BR) og[x] = from_f<T>(0.0f);
        return;
    }
    tile_load_plain<T, BR, D, C::QS, BR>(Qs, qg, rows);
    float acc[D];
#pragma unroll
    for (int x = 0; x < D; x++) acc[x] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    float *qrow = Qs + t * C::QS, *srow = Ss + t * C::SS;

    for (int j = 0; j < ct; j++) {
        __syncthreads(); /* the previous block's K, V are consumed (and Q is loaded) */
        const int key0 = j * BC;
        tile_load_plain<T, BC, D, D, BR>(Ks, kg + (size_t)key0 * D, Nk - key0);
        tile_load_plain<T, BC, D, D, BR>(Vs, vg + (size_t)key0 * D, Nk - key0);
        __syncthreads();
        const bool mask = j >= full; /* the same for the whole block */
        float mx = m;
        for (int c = 0; c < BC; c++) {
            float dot = 0.0f;
#pragma unroll
            for (int x = 0; x < D; x++) dot = fmaf(qrow[x], Ks[c * D + x], dot);
            float sv = dot * scale_log2;
            if (mask && key0 + c >= nme) sv = -INFINITY;
            srow[c] = sv;
            mx = fmaxf(mx, sv);
        }
        const float base = exp_base(mx), alpha = exp2f(m - base); /* alpha = 1 unless m grew */
        float rs = 0.0f;
        for (int c = 0; c < BC; c++) {
            const float p = exp2f(srow[c] - base);
            srow[c] = p;
            rs += p;
        }
        l = l * alpha + rs;
#pragma unroll
        for (int x = 0; x < D; x++) acc[x] *= alpha;
        for (int c = 0; c < BC; c++) {
            const float p = srow[c];
#pragma unroll
            for (int x = 0; x < D; x++) acc[x] = fmaf(p, Vs[c * D + x], acc[x]);
        }
        m = mx;
    }
    /* O = o / l through shared memory, so that the stores are coalesced */
    __syncthreads();
#pragma unroll
    for (int x = 0; x < D; x++) qrow[x] = l == 0.0f ? 0.0f : acc[x] / l; /* l = 0: no visible key */
    __syncthreads();
    for (int x = t; x < rows * D; x += BR) og[x] = from_f<T>(Qs[(x / D) * C::QS + x % D]);
}

template <typename T, int D, int BR>
static void fa2_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    using C = fa2_cfg<D, BR>;
    const int Tr = (int)((s->seq_q + BR - 1) / BR);
    const unsigned long long blocks = (unsigned long long)s->batch * s->heads * (unsigned long long)Tr;
    tiled_kernel_setup(fa2_plain_kernel<T, D, BR>, C::smem);
    fa2_plain_kernel<T, D, BR><<<(unsigned)blocks, BR, C::smem>>>(
        (const T *)q, (const T *)k, (const T *)v, (T *)o, (int)s->seq_q, (int)s->seq_kv, Tr,
        (int)(s->heads / s->kv_heads), s->causal, tiled_scale_log2(s));
    LAUNCH_CHECK();
}

/* The instances: a table walked by both the launcher and the info query. */
typedef void (*fa2_launch_fn)(const attn_shape_t *, const void *, const void *, const void *, void *);
typedef struct {
    dtype_t dt;
    int d, br;
    fa2_launch_fn launch;
    void (*info)(tiled_gpu_info_t *);
} fa2_inst_t;

template <typename T, int D, int BR> static void fa2_info(tiled_gpu_info_t *g)
{
    g->br = BR;
    g->bc = FA2_BC;
    tiled_kernel_info(fa2_plain_kernel<T, D, BR>, BR, fa2_cfg<D, BR>::smem, g);
}

#define FA2_INST(T, DT, D, BR) { DT, D, BR, fa2_launch<T, D, BR>, fa2_info<T, D, BR> }
#define FA2_DIMS(T, DT, BR) FA2_INST(T, DT, 32, BR), FA2_INST(T, DT, 64, BR), FA2_INST(T, DT, 80, BR), \
                            FA2_INST(T, DT, 96, BR), FA2_INST(T, DT, 128, BR)
/* d = 16, 192, 256 at Br = 64 only. At d = 256 the tiles take 208.5 KiB of
 * shared memory (one block of 64 threads per SM) and o[d] lives in local
 * memory (a thread's row no longer fits in registers): it runs, slowly; the
 * register-tiled kernel is the one to time there. */
#define FA2_MORE(T, DT) FA2_INST(T, DT, 16, 64), FA2_INST(T, DT, 192, 64), FA2_INST(T, DT, 256, 64)
static const fa2_inst_t FA2_INSTANCES[] = {
    FA2_DIMS(float, DT_F32, 64),  FA2_DIMS(__half, DT_F16, 64), FA2_DIMS(__nv_bfloat16, DT_BF16, 64),
    FA2_DIMS(float, DT_F32, 32),  FA2_DIMS(float, DT_F32, 128),
    FA2_MORE(float, DT_F32),      FA2_MORE(__half, DT_F16),     FA2_MORE(__nv_bfloat16, DT_BF16),
};

static const fa2_inst_t *fa2_find(const attn_shape_t *s, char *why, size_t n)
{
    const size_t br = s->tune.br ? s->tune.br : 64;
    if (s->tune.sram) {
        snprintf(why, n, "--sram sets the CPU's simulated on-chip memory; the GPU kernel's tiles are compiled "
                         "(--br 32, 64, 128 with --bc 64)");
        return NULL;
    }
    if (s->tune.bc && s->tune.bc != FA2_BC) {
        snprintf(why, n, "the GPU kernel is compiled for Bc = 64 (--bc %zu asked)", s->tune.bc);
        return NULL;
    }
    for (size_t x = 0; x < sizeof FA2_INSTANCES / sizeof *FA2_INSTANCES; x++) {
        const fa2_inst_t *e = &FA2_INSTANCES[x];
        if (e->dt == s->dt && (size_t)e->d == s->dim && (size_t)e->br == br) return e;
    }
    snprintf(why, n, "no kernel instance for d = %zu, %s, Br = %zu (compiled: d = 16, 32, 64, 80, 96, 128, 192, 256 "
                     "at Br = 64; d = 32 ... 128 at Br = 32 or 128 in fp32)", s->dim, dtype_name(s->dt), br);
    return NULL;
}

extern "C" int attention_fa2_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n)
{
    const fa2_inst_t *e = fa2_find(s, why, n);
    if (!e) return 0;
    e->info(info);
    const unsigned long long blocks = (unsigned long long)s->batch * s->heads * ((s->seq_q + e->br - 1) / e->br);
    return tiled_gpu_limits(s, blocks, why, n) && tiled_smem_fits(info->smem, why, n);
}

extern "C" void attention_fa2_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    (void)ws;
    char why[256];
    const fa2_inst_t *e = fa2_find(s, why, sizeof why);
    if (!e) { /* unreachable: supports() declined the shape */
        fprintf(stderr, "fa2: %s\n", why);
        return;
    }
    e->launch(s, q, k, v, o);
}
