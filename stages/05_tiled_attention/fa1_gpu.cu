/* Stage 05, FlashAttention-1's loop order on the GPU (Dao et al. 2022,
 * Algorithm 1), as FlashAttention-1 ran it: one thread block per head, K/V
 * blocks in the outer loop, query blocks in the inner loop, and the running
 * O, l, m of every query row in global memory (the workspace), read and
 * written back for every pair of blocks. What changes from fa2_gpu.cu: the
 * two loops are swapped, so the state cannot stay in registers.
 *
 *   block = head bh (B H blocks in all); thread t owns row t of each query block
 *   O, l, m = 0, 0, -inf in global memory
 *   for each key block j:               K_j, V_j -> shared memory, once
 *       for each query block i that sees block j:
 *           Q_i -> shared memory;  o, l_i, m_i <- global memory
 *           s_c = (q . k_c) scale log2 e;  m~ = max_c s_c;  p_c = 2^{s_c - m~};  l~ = sum_c p_c
 *           m' = max(m_i, m~);  l' = 2^{m_i - m'} l_i + 2^{m~ - m'} l~
 *           o = (l_i 2^{m_i - m'} o + 2^{m~ - m'} sum_c p_c v_c) / l'
 *           o, l', m' -> global memory (the block's last visit: o -> O)
 *
 * The lesson is in the grid: B H thread blocks. In the stage's sweep B H N is
 * fixed, so at N = 16384 (B = 1, H = 16) sixteen blocks run on a GPU of 132
 * SMs. FlashAttention-2 moved the query blocks to the outer loop so that they
 * become independent thread blocks (B H N / Br of them).
 *
 * Memory traffic (model: tiled_fa1_bytes, tiles.c): K and V once, and per
 * (key block, query block) pair Q_i read and O_i, l_i, m_i read and written
 * in fp32: about (es d + 8 (d + 2)) Nq Nk / Bc per head. The L2 holds part of
 * the workspace (B H Nq (d + 2) 4 bytes); the measured HBM bytes say how much.
 *
 * Tiles: Br = 64 (one thread per query row), Bc = 64 (any dtype), or --bc 32 /
 * 128 (fp32). Run: build/bin/05_tiled_attention --kernel fa1 [--bc 128] */
#include "tiled_device.cuh"

#define FA1_BR 64

template <int D, int BC> struct fa1_cfg {
    static constexpr int QS = D + 1, SS = BC + 1;
    static constexpr size_t smem = sizeof(float) * (2 * (size_t)BC * D + (size_t)FA1_BR * QS + (size_t)FA1_BR * SS);
};

template <typename T, int D, int BC>
__global__ void __launch_bounds__(FA1_BR)
fa1_kernel(const T *__restrict__ q, const T *__restrict__ k, const T *__restrict__ v, T *__restrict__ o,
           float *__restrict__ ws, unsigned long long rows_all, int Nq, int Nk, int heads_per_kv, int causal,
           float scale_log2)
{
    using C = fa1_cfg<D, BC>;
    constexpr int BR = FA1_BR;
    extern __shared__ __align__(16) float sm[];
    float *Ks = sm, *Vs = Ks + BC * D, *Qs = Vs + BC * D, *Ss = Qs + BR * C::QS;
    const int t = threadIdx.x;
    const unsigned long long bh = blockIdx.x;
    const T *qh = q + bh * Nq * D;
    const T *kg = k + (bh / heads_per_kv) * Nk * D, *vg = v + (bh / heads_per_kv) * Nk * D;
    T *oh = o + bh * Nq * D;
    float *Ow = ws + bh * Nq * D, *Lw = ws + rows_all * D + bh * Nq, *Mw = ws + rows_all * (D + 1) + bh * Nq;
    const int Tr = (Nq + BR - 1) / BR;

    /* Algorithm 1, line 2 */
    for (long long x = t; x < (long long)Nq * D; x += BR) Ow[x] = 0.0f;
    for (int r = t; r < Nq; r += BR) {
        Lw[r] = 0.0f;
        Mw[r] = -INFINITY;
    }
    /* key blocks needed: those the last query block sees (it sees the most) */
    const int ctmax = (tiled_visible(Nq - 1, Nq, Nk, causal) + BC - 1) / BC;
    float *qrow = Qs + t * C::QS, *srow = Ss + t * C::SS;
    for (int j = 0; j < ctmax; j++) {
        const int key0 = j * BC;
        __syncthreads(); /* the previous K_j, V_j consumed; the workspace initialised */
        tile_load_plain<T, BC, D, D, BR>(Ks, kg + (size_t)key0 * D, Nk - key0);
        tile_load_plain<T, BC, D, D, BR>(Vs, vg + (size_t)key0 * D, Nk - key0);
        for (int i = 0; i < Tr; i++) {
            const int row0 = i * BR, rows = min(BR, Nq - row0);
            const int ct = (tiled_visible(row0 + rows - 1, Nq, Nk, causal) + BC - 1) / BC;
            if (j >= ct) continue; /* fully masked: skipped (the same for the whole block) */
            const bool mask = j >= tiled_visible(row0, Nq, Nk, causal) / BC, last = j == ct - 1;
            const int row = row0 + t, nme = t < rows ? tiled_visible(row, Nq, Nk, causal) : 0;
            __syncthreads(); /* Qs free again (and K_j, V_j loaded) */
            tile_load_plain<T, BR, D, C::QS, BR>(Qs, qh + (size_t)row0 * D, rows);
            __syncthreads();
            float acc[D];
            float li = 0.0f, mi = -INFINITY;
            if (t < rows) {
#pragma unroll
                for (int x = 0; x < D; x += 4) {
                    const float4 w = *reinterpret_cast<const float4 *>(Ow + (size_t)row * D + x);
                    acc[x] = w.x, acc[x + 1] = w.y, acc[x + 2] = w.z, acc[x + 3] = w.w;
                }
                li = Lw[row];
                mi = Mw[row];
            } else {
#pragma unroll
                for (int x = 0; x < D; x++) acc[x] = 0.0f;
            }
            /* the block's own softmax, against its own maximum */
            float mt = -INFINITY;
            for (int c = 0; c < BC; c++) {
                float dot = 0.0f;
#pragma unroll
                for (int x = 0; x < D; x++) dot = fmaf(qrow[x], Ks[c * D + x], dot);
                float sv = dot * scale_log2;
                if (mask && key0 + c >= nme) sv = -INFINITY;
                srow[c] = sv;
                mt = fmaxf(mt, sv);
            }
            const float bt = exp_base(mt);
            float lt = 0.0f;
            for (int c = 0; c < BC; c++) {
                const float p = exp2f(srow[c] - bt);
                srow[c] = p;
                lt += p;
            }
            /* merged into the state from HBM, normalised at once (FA1 divides every step) */
            const float mn = fmaxf(mi, mt), bn = exp_base(mn);
            const float a_old = exp2f(mi - bn), a_new = exp2f(mt - bn), ln = a_old * li + a_new * lt;
            const float f_old = ln == 0.0f ? 0.0f : li * a_old / ln, f_new = ln == 0.0f ? 0.0f : a_new / ln;
#pragma unroll
            for (int x = 0; x < D; x++) acc[x] *= f_old;
            for (int c = 0; c < BC; c++) {
                const float p = srow[c] * f_new;
#pragma unroll
                for (int x = 0; x < D; x++) acc[x] = fmaf(p, Vs[c * D + x], acc[x]);
            }
            if (t < rows) {
                if (last) {
#pragma unroll
                    for (int x = 0; x < D; x++) oh[(size_t)row * D + x] = from_f<T>(acc[x]);
                } else {
#pragma unroll
                    for (int x = 0; x < D; x += 4)
                        *reinterpret_cast<float4 *>(Ow + (size_t)row * D + x) =
                            make_float4(acc[x], acc[x + 1], acc[x + 2], acc[x + 3]);
                    Lw[row] = ln;
                    Mw[row] = mn;
                }
            }
        }
    }
    /* query blocks that see no key (causal, Nq > Nk): output 0 */
    for (int i = 0; i < Tr; i++) {
        const int row0 = i * BR, rows = min(BR, Nq - row0);
        if (tiled_visible(row0 + rows - 1, Nq, Nk, causal) == 0)
            for (int x = t; x < rows * D; x += BR) oh[(size_t)row0 * D + x] = from_f<T>(0.0f);
    }
}

template <typename T, int D, int BC>
static void fa1_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    using C = fa1_cfg<D, BC>;
    const unsigned long long blocks = (unsigned long long)s->batch * s->heads;
    tiled_kernel_setup(fa1_kernel<T, D, BC>, C::smem);
    fa1_kernel<T, D, BC><<<(unsigned)blocks, FA1_BR, C::smem>>>((const T *)q, (const T *)k, (const T *)v, (T *)o,
                                                               (float *)ws, attn_rows(s), (int)s->seq_q,
                                                               (int)s->seq_kv, (int)(s->heads / s->kv_heads),
                                                               s->causal, tiled_scale_log2(s));
    LAUNCH_CHECK();
}

typedef void (*fa1_launch_fn)(const attn_shape_t *, const void *, const void *, const void *, void *, void *);
typedef struct {
    dtype_t dt;
    int d, bc;
    fa1_launch_fn launch;
    void (*info)(tiled_gpu_info_t *);
} fa1_inst_t;

template <typename T, int D, int BC> static void fa1_info(tiled_gpu_info_t *g)
{
    g->br = FA1_BR;
    g->bc = BC;
    tiled_kernel_info(fa1_kernel<T, D, BC>, FA1_BR, fa1_cfg<D, BC>::smem, g);
}

#define FA1_INST(T, DT, D, BC) { DT, D, BC, fa1_launch<T, D, BC>, fa1_info<T, D, BC> }
#define FA1_DIMS(T, DT, BC) FA1_INST(T, DT, 32, BC), FA1_INST(T, DT, 64, BC), FA1_INST(T, DT, 80, BC), \
                            FA1_INST(T, DT, 96, BC), FA1_INST(T, DT, 128, BC)
static const fa1_inst_t FA1_INSTANCES[] = {
    FA1_DIMS(float, DT_F32, 64), FA1_DIMS(__half, DT_F16, 64), FA1_DIMS(__nv_bfloat16, DT_BF16, 64),
    FA1_DIMS(float, DT_F32, 32), FA1_DIMS(float, DT_F32, 128),
};

static const fa1_inst_t *fa1_find(const attn_shape_t *s, char *why, size_t n)
{
    const size_t bc = s->tune.bc ? s->tune.bc : 64;
    if (s->tune.sram) {
        snprintf(why, n, "--sram sets the CPU's simulated on-chip memory; the GPU kernel's tiles are compiled "
                         "(--br 64 with --bc 32, 64, 128)");
        return NULL;
    }
    if (s->tune.br && s->tune.br != FA1_BR) {
        snprintf(why, n, "the GPU kernel is compiled for Br = 64, one thread per query row (--br %zu asked)",
                 s->tune.br);
        return NULL;
    }
    for (size_t x = 0; x < sizeof FA1_INSTANCES / sizeof *FA1_INSTANCES; x++) {
        const fa1_inst_t *e = &FA1_INSTANCES[x];
        if (e->dt == s->dt && (size_t)e->d == s->dim && (size_t)e->bc == bc) return e;
    }
    snprintf(why, n, "no kernel instance for d = %zu, %s, Bc = %zu (compiled: d = 32, 64, 80, 96, 128; Bc = 64, and "
                     "Bc = 32 or 128 in fp32)", s->dim, dtype_name(s->dt), bc);
    return NULL;
}

extern "C" int attention_fa1_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n)
{
    const fa1_inst_t *e = fa1_find(s, why, n);
    if (!e) return 0;
    e->info(info);
    return tiled_gpu_limits(s, (unsigned long long)s->batch * s->heads, why, n) && tiled_smem_fits(info->smem, why, n);
}

extern "C" void attention_fa1_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    char why[256];
    const fa1_inst_t *e = fa1_find(s, why, sizeof why);
    if (!e) {
        fprintf(stderr, "fa1: %s\n", why);
        return;
    }
    e->launch(s, q, k, v, o, ws);
}
