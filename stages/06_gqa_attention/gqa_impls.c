/* Stage 06's three implementations as the driver sees them (attn_impl_t):
 * the CPU runs (gqa_cpu.c), the GPU runs (prefill: stage 05c's Hopper kernel
 * h3_warpspec in fp16/bf16 where it takes the shape, else stage 05b's best
 * tensor-core rung; stage 05's register-tiled FA2 kernel in fp32; decode:
 * decode_gpu.cu), their traffic models, the shapes each declines and why,
 * and the line each prints under the table.
 *
 * Run: build/bin/06_gqa_attention --heads 32 --kv-heads 8 --dim 128 --dtype bf16 [--decode --seq-kv 32768 --batch 8] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "gqa.h"
#include "report.h"
#include "../05_tiled_attention/tiled.h"
#include "../05b_tensor_cores/tc.h"
#include "../05c_hopper/hopper.h"


static size_t group_of(const attn_shape_t *s) { return s->heads / s->kv_heads; }
static int is_decode(const attn_shape_t *s) { return s->seq_q == 1; }
/* Prefill in fp32: no tensor-core kernel takes it; stage 05's fa2-regtile does. */
static int fp32_prefill(const attn_shape_t *s) { return !is_decode(s) && s->dt == DT_F32; }

/* The shape the MHA kernel sees after repeat_kv: as many K/V heads as query heads. */
static attn_shape_t replicated_shape(const attn_shape_t *s)
{
    attn_shape_t t = *s;
    t.kv_heads = s->heads;
    return t;
}

static size_t copy_bytes(const attn_shape_t *s) /* one of K, V after the copy */
{
    return (size_t)s->batch * s->heads * s->seq_kv * s->dim * dtype_size(s->dt);
}

static size_t replicated_ws(const attn_shape_t *s) { return 2 * copy_bytes(s); }

/* ---- traffic models: the counted loops of gqa_cpu.c (exact for the CPU) */

static double replicated_model(const attn_shape_t *s)
{
    const attn_shape_t t = replicated_shape(s);
    const double src = 2.0 * (double)attn_kv_elems(s) * (double)dtype_size(s->dt);
    return src + 2.0 * (double)copy_bytes(s) + gqa_blocks_bytes(&t, GQA_INDEXED, NULL, NULL);
}
static double indexed_model(const attn_shape_t *s) { return gqa_blocks_bytes(s, GQA_INDEXED, NULL, NULL); }
static double packed_model(const attn_shape_t *s) { return gqa_blocks_bytes(s, GQA_PACKED, NULL, NULL); }

/* ---- CPU */

static int replicated_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    const attn_shape_t t = replicated_shape(s);
    const size_t n = (size_t)attn_kv_elems(&t);
    hbm_t kr = hbm_wrap(q->lg, "K copy", ws, n, s->dt);
    hbm_t vr = hbm_wrap(q->lg, "V copy", (char *)ws + copy_bytes(s), n, s->dt);
    gqa_repeat_kv_cpu(s, k, &kr);
    gqa_repeat_kv_cpu(s, v, &vr);
    return gqa_run_blocks(&t, q, &kr, &vr, o, GQA_INDEXED, NULL, NULL);
}

static int indexed_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    return gqa_run_blocks(s, q, k, v, o, GQA_INDEXED, NULL, NULL);
}

static int packed_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    return gqa_run_blocks(s, q, k, v, o, GQA_PACKED, NULL, NULL);
}

/* ---- GPU */

static int tc_shape_of(const attn_shape_t *s, gqa_method_t m, tc_shape_t *t, char *why, size_t n)
{
    const size_t g = group_of(s), rows = m == GQA_PACKED ? g * s->seq_q : s->seq_q;
    if (rows > (1u << 30) || s->seq_kv > (1u << 30) || s->batch > 65535 || s->heads > 65535) {
        snprintf(why, n, "sizes beyond the tensor-core kernel's 32-bit indices and grid");
        return 0;
    }
    t->batch = (int)s->batch;
    t->heads = (int)(m == GQA_PACKED ? s->kv_heads : s->heads);
    t->kv_heads = (int)(m == GQA_PACKED ? s->kv_heads : m == GQA_REPLICATED ? s->heads : s->kv_heads);
    t->seq_q = (int)rows;
    t->seq_kv = (int)s->seq_kv;
    t->dim = (int)s->dim;
    t->causal = s->causal;
    t->scale = s->scale;
    t->dt = s->dt;
    return 1;
}

/* The shape stage 05's fa2-regtile kernel sees for method m in fp32 prefill:
 * the copy's (Hkv = Hq), the shape itself (the kernel reads K/V head h / g),
 * or a group as one head of g Nq rows (packed). Its tiles are compiled: the
 * CPU tiling's --br/--bc do not apply. */
static attn_shape_t fa2_shape_of(const attn_shape_t *s, gqa_method_t m)
{
    attn_shape_t t = m == GQA_REPLICATED ? replicated_shape(s) : *s;
    if (m == GQA_PACKED) {
        t.heads = s->kv_heads;
        t.seq_q = group_of(s) * s->seq_q;
    }
    memset(&t.tune, 0, sizeof t.tune);
    return t;
}
#define FA2_BR 64 /* fa2-regtile's 64 x 64 tiles */

static int tc_version(const char *name)
{
    for (int v = 0; v < TC_NVERSIONS; v++)
        if (!strcmp(TC_VERSIONS[v].name, name)) return v;
    return -1;
}

/* Stage 05b's best rung for the shape, as its H200 sweep of 2026-11-28 found
 * (notes/data/h200-2026-11-28/tc_ladder.log): tc6_m32 without a mask where it
 * takes the shape (head dims up to 128), else tc5_tuned; the last rung when
 * those names are absent. */
static int tc_best(const attn_shape_t *s)
{
    const int tc6 = tc_version("tc6_m32"), tc5 = tc_version("tc5_tuned");
    tc_shape_t t;
    char w[256];
    if (!s->causal && tc6 >= 0 && tc_shape_of(s, GQA_INDEXED, &t, w, sizeof w) && attn_tc_supports(tc6, &t, w, sizeof w))
        return tc6;
    return tc5 >= 0 ? tc5 : TC_NVERSIONS - 1;
}
#define TC_BEST tc_best(s)

/* The 16-bit prefill kernel for method m: stage 05c's h3_warpspec (the
 * fastest Hopper rung on the H200, notes/05c_hopper.md) where it takes the
 * shape (an sm_90a build on a Hopper GPU, d = 64, 128 or 256), else stage
 * 05b's best rung. Both read the K/V head h / g by index (tc_shape_t). */
typedef struct {
    int hop; /* 1: HOP_VERSIONS[v], 0: TC_VERSIONS[v] */
    int v;
} prefill_kernel_t;
static prefill_kernel_t prefill_kernel(const attn_shape_t *s, gqa_method_t m)
{
    prefill_kernel_t k = { 0, TC_BEST };
    tc_shape_t t;
    char w[256];
    for (int v = 0; v < HOP_NVERSIONS; v++)
        if (!strcmp(HOP_VERSIONS[v].name, "h3_warpspec") && tc_shape_of(s, m, &t, w, sizeof w) &&
            attn_hop_supports(v, &t, w, sizeof w))
            return (prefill_kernel_t){ 1, v };
    return k;
}
static const char *prefill_name(const attn_shape_t *s, gqa_method_t m)
{
    const prefill_kernel_t k = prefill_kernel(s, m);
    return k.hop ? HOP_VERSIONS[k.v].name : TC_VERSIONS[k.v].name;
}

static int gpu_supports(const attn_shape_t *s, gqa_method_t m, char *why, size_t n)
{
    if (is_decode(s)) return gqa_decode_supports(s, why, n);
    if (s->varlen) {
        snprintf(why, n, "variable K/V lengths are a decode feature here (seq_q = 1; stage 07)");
        return 0;
    }
    if (m == GQA_PACKED && s->causal) {
        snprintf(why, n,
                 "packed causal prefill: a group viewed as one head of g Nq rows would mask row t by t, not by its "
                 "position t %% Nq; the prefill kernels have no row-to-position map (indexed serves this case)");
        return 0;
    }
    if (fp32_prefill(s)) {
        const attn_shape_t t = fa2_shape_of(s, m);
        tiled_gpu_info_t info;
        char w[256] = "";
        if (attention_fa2_regtile_gpu_info(&t, FA2_BR, &info, w, sizeof w)) return 1;
        snprintf(why, n, "fp32 prefill runs stage 05's fa2-regtile: %s", w);
        return 0;
    }
    tc_shape_t t;
    if (!tc_shape_of(s, m, &t, why, n)) return 0;
    if (prefill_kernel(s, m).hop) return 1;
    return attn_tc_supports(TC_BEST, &t, why, n);
}

static int replicated_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    return gpu ? gpu_supports(s, GQA_REPLICATED, why, n) : 1;
}
static int indexed_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    return gpu ? gpu_supports(s, GQA_INDEXED, why, n) : 1;
}
static int packed_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (!gpu && s->tune.br && s->tune.br > GQA_CPU_MAX_ROWS) {
        snprintf(why, n, "--br %zu: the CPU blocks hold at most %d rows", s->tune.br, GQA_CPU_MAX_ROWS);
        return 0;
    }
    return gpu ? gpu_supports(s, GQA_PACKED, why, n) : 1;
}

/* Tensor cores (P rounded to the storage type, bf16/fp16 GEMMs) in 16-bit
 * prefill; plain fp32 arithmetic in fp32 prefill (fa2-regtile), in the decode
 * kernel and on the CPU. */
static unsigned rounding_for(const attn_shape_t *s, int gpu)
{
    return gpu && !is_decode(s) && s->dt != DT_F32 ? (ATT_ROUND_P | ATT_MMA_LOWP) : 0u;
}

/* ---- the decode kernel's shape limits (host logic; the kernel is decode_gpu.cu) */

int gqa_decode_supports(const attn_shape_t *s, char *why, size_t n)
{
    if (s->seq_q != 1) {
        snprintf(why, n, "the decode kernel takes one query row per head (seq_q = 1), not %zu", s->seq_q);
        return 0;
    }
    if (!attn_dim_listed(GQA_DIMS, s->dim)) {
        snprintf(why, n, "head dim %zu: the decode kernel is compiled for d = " GQA_DECODE_DIMS_TEXT, s->dim);
        return 0;
    }
    if (s->batch > 65535 || s->seq_kv > (1u << 30)) {
        snprintf(why, n, "batch above 65535 (grid y) or more than 2^30 keys");
        return 0;
    }
    return 1;
}

int gqa_decode_max_hpb(const attn_shape_t *s) { return s->dim <= GQA_DECODE_MAX_HPB_D16 ? 16 : 8; }

int gqa_packed_hpb(const attn_shape_t *s)
{
    const int g = (int)group_of(s), top = gqa_decode_max_hpb(s);
    int h = g < top ? g : top;
    while (g % h) h--; /* the largest divisor of g up to top */
    return h;
}

#if !HAVE_CUDA
void gqa_repeat_kv_gpu(const attn_shape_t *s, const void *src, void *dst) { (void)s; (void)src; (void)dst; }
void gqa_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                    const gqa_decode_args_t *a)
{
    (void)s; (void)q; (void)k; (void)v; (void)o; (void)a;
}
const int *gqa_device_lengths(const attn_shape_t *s) { (void)s; return NULL; }
double gqa_read_ceiling_gbps(const attn_shape_t *s) { (void)s; return 0.0; }
#endif

#if HAVE_CUDA
static void prefill_run(const attn_shape_t *s, gqa_method_t m, const void *q, const void *k, const void *v, void *o)
{
    tc_shape_t t;
    char why[256];
    if (fp32_prefill(s)) {
        const attn_shape_t f = fa2_shape_of(s, m);
        attention_fa2_regtile64_gpu(&f, q, k, v, o, NULL);
        return;
    }
    const prefill_kernel_t pk = prefill_kernel(s, m);
    if (!tc_shape_of(s, m, &t, why, sizeof why) ||
        (pk.hop ? attn_hop_launch(pk.v, &t, q, k, v, o) : attn_tc_launch(pk.v, &t, q, k, v, o)))
        fprintf(stderr, "gqa: the tensor-core launch failed (%s); O stays poisoned\n", why);
}

static void decode_run(const attn_shape_t *s, int hpb, const void *q, const void *k, const void *v, void *o)
{
    gqa_decode_args_t a;
    memset(&a, 0, sizeof a);
    a.hpb = hpb;
    a.kv_len = gqa_device_lengths(s);
    gqa_decode_gpu(s, q, k, v, o, &a);
}

static void replicated_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    const attn_shape_t t = replicated_shape(s);
    char *kr = ws, *vr = kr + copy_bytes(s);
    gqa_repeat_kv_gpu(s, k, kr);
    gqa_repeat_kv_gpu(s, v, vr);
    if (is_decode(s)) decode_run(&t, 1, q, kr, vr, o);
    else prefill_run(s, GQA_REPLICATED, q, kr, vr, o);
}

static void indexed_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    (void)ws;
    if (is_decode(s)) decode_run(s, 1, q, k, v, o);
    else prefill_run(s, GQA_INDEXED, q, k, v, o);
}

static void packed_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    (void)ws;
    if (is_decode(s)) decode_run(s, gqa_packed_hpb(s), q, k, v, o);
    else prefill_run(s, GQA_PACKED, q, k, v, o);
}
#endif

/* ---- the tiles column and the lines under the table */

static const char *tiles_of(const attn_shape_t *s, int gpu, gqa_method_t m)
{
    if (!gpu) {
        const size_t U = m == GQA_PACKED ? group_of(s) * s->seq_q : s->seq_q, br = s->tune.br ? s->tune.br : GQA_CPU_BR;
        return fmt("%zux%zu", U < br ? U : br, s->tune.bc ? s->tune.bc : (size_t)GQA_BC);
    }
    if (is_decode(s)) return fmt("%dx%d", m == GQA_PACKED ? gqa_packed_hpb(s) : 1, GQA_BC);
    return fp32_prefill(s) ? "fa2-regtile" : prefill_name(s, m);
}
static const char *replicated_tiles(const attn_shape_t *s, int gpu) { return tiles_of(s, gpu, GQA_REPLICATED); }
static const char *indexed_tiles(const attn_shape_t *s, int gpu) { return tiles_of(s, gpu, GQA_INDEXED); }
static const char *packed_tiles(const attn_shape_t *s, int gpu) { return tiles_of(s, gpu, GQA_PACKED); }

/* K/V bytes each method loads (the model), against the K/V bytes once. */
static const char *kv_line(const attn_shape_t *s, gqa_method_t m)
{
    static char buf[4][160];
    static int k;
    char *b = buf[k++ & 3];
    const attn_shape_t t = replicated_shape(s);
    const double once = attn_kv_bytes_once(s);
    const double kv = m == GQA_REPLICATED ? gqa_blocks_kv_bytes(&t, GQA_INDEXED, NULL, NULL) : gqa_blocks_kv_bytes(s, m, NULL, NULL);
    snprintf(b, 160, "K/V tile loads (model) %.4g MB = %.2fx the %.4g MB of K/V", kv / 1e6, kv / once, once / 1e6);
    return b;
}

static const char *replicated_describe(const attn_shape_t *s)
{
    static char buf[640];
    snprintf(buf, sizeof buf,
             "replicated: repeat_kv copies K and V g = %zu times first (reads %.4g MB, writes %.4g MB, %.4g MB extra "
             "memory), then the MHA kernel on Hkv = Hq (GPU: %s; CPU: the tiled blocks): %s",
             group_of(s), 2.0 * (double)attn_kv_elems(s) * (double)dtype_size(s->dt) / 1e6,
             2.0 * (double)copy_bytes(s) / 1e6, 2.0 * (double)copy_bytes(s) / 1e6,
             is_decode(s) ? "the decode kernel (one block per query head)"
                          : fp32_prefill(s) ? "stage 05's fa2-regtile (fp32)" : prefill_name(s, GQA_REPLICATED),
             kv_line(s, GQA_REPLICATED));
    return buf;
}

static const char *indexed_describe(const attn_shape_t *s)
{
    static char buf[512];
    snprintf(buf, sizeof buf,
             "indexed: query head h reads K/V head h / %zu in place (no copy); one block per query head, so each K/V "
             "tile is loaded once per query head (the L2 may serve the g - 1 repeats): %s",
             group_of(s), kv_line(s, GQA_INDEXED));
    return buf;
}

static const char *packed_describe(const attn_shape_t *s)
{
    static char buf[512];
    if (is_decode(s))
        snprintf(buf, sizeof buf,
                 "packed: the %zu query heads of a group are the rows of one block (GPU: %d per block), each K/V "
                 "tile loaded once for all of them: %s",
                 group_of(s), gqa_packed_hpb(s), kv_line(s, GQA_PACKED));
    else
        snprintf(buf, sizeof buf,
                 "packed: Q of a group viewed as one head of g Nq = %zu rows (heads of a group are contiguous in Q), "
                 "K/V head kvh; in prefill each block of rows still reads all of K/V: %s",
                 group_of(s) * s->seq_q, kv_line(s, GQA_PACKED));
    return buf;
}

const attn_impl_t IMPL_GQA_REPLICATED = {
    .name = "replicated", .stage = "06", .rounding = 0, .ws_bytes = replicated_ws,
    .model_bytes = replicated_model, .supports = replicated_supports, .cpu = replicated_cpu,
    .gpu = GPU_FN(replicated_gpu), .describe = replicated_describe, .tiles = replicated_tiles,
    .rounding_for = rounding_for,
};

const attn_impl_t IMPL_GQA_INDEXED = {
    .name = "indexed", .stage = "06", .rounding = 0, .ws_bytes = NULL,
    .model_bytes = indexed_model, .supports = indexed_supports, .cpu = indexed_cpu,
    .gpu = GPU_FN(indexed_gpu), .describe = indexed_describe, .tiles = indexed_tiles,
    .rounding_for = rounding_for,
};

const attn_impl_t IMPL_GQA_PACKED = {
    .name = "packed", .stage = "06", .rounding = 0, .ws_bytes = NULL,
    .model_bytes = packed_model, .supports = packed_supports, .cpu = packed_cpu,
    .gpu = GPU_FN(packed_gpu), .describe = packed_describe, .tiles = packed_tiles,
    .rounding_for = rounding_for,
};
