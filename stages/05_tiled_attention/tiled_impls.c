/* Stage 05's glue: the implementations as rows of the stage's table
 * (attn_impl_t: supports, traffic model, tiles column, description), the
 * text of the tiles and of a GPU kernel's configuration, and, in a build
 * without CUDA, the kernels' info queries that answer "no GPU kernel". The
 * algorithms are in fa1_cpu.c, fa2_cpu.c (CPU), tiles.c (tile choice, closed
 * forms) and the .cu files (kernels).
 *
 * Run: build/bin/05_tiled_attention --kernel fa1,fa2,fa2-regtile,fa2-regtile-br128 */
#include <stdio.h>
#include <string.h>

#include "gpu.h"
#include "tiled.h"

/* ---- the tiles column and the GPU description */

void tiled_tiles(tiled_order_t ord, const attn_shape_t *s, size_t *br, size_t *bc)
{
    char why[384];
    if (tiled_choose(ord, s, br, bc, why, sizeof why)) *br = *bc = 0;
}

const char *tiled_tiles_text(tiled_order_t ord, const attn_shape_t *s)
{
    static char buf[4][32];
    static int k;
    char *b = buf[k++ & 3];
    size_t br, bc;
    tiled_tiles(ord, s, &br, &bc);
    snprintf(b, 32, "%zux%zu", br, bc);
    return b;
}

const char *tiled_gpu_text(int ok, const tiled_gpu_info_t *g, const char *why)
{
    static char buf[320];
    if (!ok) {
        snprintf(buf, sizeof buf, "GPU: n/a (%s)", why);
        return buf;
    }
    if (g->blocks_per_sm > 0)
        snprintf(buf, sizeof buf,
                 "GPU: %dx%d tiles, %d threads, %.1f KiB shared memory and %d registers per thread: %d block%s per SM "
                 "(%d warps)",
                 g->br, g->bc, g->threads, (double)g->smem / 1024.0, g->regs, g->blocks_per_sm,
                 g->blocks_per_sm == 1 ? "" : "s", g->blocks_per_sm * g->threads / 32);
    else
        snprintf(buf, sizeof buf, "GPU: %dx%d tiles, %d threads, %.1f KiB shared memory per block", g->br, g->bc,
                 g->threads, (double)g->smem / 1024.0);
    return buf;
}

/* ---- fa1 (fa1_cpu.c, fa1_gpu.cu) */

static double fa1_model(const attn_shape_t *s)
{
    size_t br, bc;
    tiled_tiles(TILED_FA1, s, &br, &bc);
    return br ? tiled_fa1_bytes(s, br, bc) : 0.0;
}

static const char *fa1_tiles_cell(const attn_shape_t *s, int gpu)
{
    (void)gpu; /* the GPU kernel runs the same tiles (supports() declines others) */
    return tiled_tiles_text(TILED_FA1, s);
}

static const char *fa1_describe(const attn_shape_t *s)
{
    static char buf[640];
    size_t br, bc;
    tiled_tiles(TILED_FA1, s, &br, &bc);
    tiled_gpu_info_t g;
    memset(&g, 0, sizeof g); /* read only when ok; zeroed for the compiler's sake */
    char why[256] = "";
    const int ok = attention_fa1_gpu_info(s, &g, why, sizeof why);
    snprintf(buf, sizeof buf,
             "fa1: K/V blocks outer, Q blocks inner; Br x Bc = %zu x %zu, %zu bytes on chip (CPU, fp32); O, l, m in "
             "HBM (%.4g MB, fp32), read and written back per pair of blocks; one GPU thread block per head, "
             "%zu in all; %s",
             br, bc, tiled_onchip_bytes(br, bc, s->dim), (double)tiled_fa1_ws_bytes(s) / 1e6,
             s->batch * s->heads, tiled_gpu_text(ok, &g, why));
    return buf;
}

static int fa1_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    size_t br, bc;
    if (tiled_choose(TILED_FA1, s, &br, &bc, why, n)) return 0;
    if (!gpu) return 1;
    tiled_gpu_info_t g;
    memset(&g, 0, sizeof g); /* read only when ok; zeroed for the compiler's sake */
    return attention_fa1_gpu_info(s, &g, why, n);
}

const attn_impl_t IMPL_ATTN_FA1 = {
    .name = "fa1", .stage = "05", .rounding = 0, .ws_bytes = tiled_fa1_ws_bytes,
    .model_bytes = fa1_model, .supports = fa1_supports,
    .cpu = attention_fa1_cpu, .gpu = GPU_FN(attention_fa1_gpu),
    .describe = fa1_describe, .tiles = fa1_tiles_cell,
};

/* ---- fa2 (fa2_cpu.c, fa2_gpu.cu) */

static double fa2_model(const attn_shape_t *s)
{
    size_t br, bc;
    tiled_tiles(TILED_FA2, s, &br, &bc);
    return br ? tiled_fa2_bytes(s, br, bc) : 0.0;
}

static const char *fa2_tiles_cell(const attn_shape_t *s, int gpu)
{
    (void)gpu; /* the GPU kernel runs the same tiles (supports() declines others) */
    return tiled_tiles_text(TILED_FA2, s);
}

static const char *fa2_describe(const attn_shape_t *s)
{
    static char buf[640];
    size_t br, bc;
    tiled_tiles(TILED_FA2, s, &br, &bc);
    tiled_counts_t c;
    tiled_count_blocks(s, br, bc, &c);
    tiled_gpu_info_t g;
    memset(&g, 0, sizeof g); /* read only when ok; zeroed for the compiler's sake */
    char why[256] = "";
    const int ok = attention_fa2_gpu_info(s, &g, why, sizeof why);
    snprintf(buf, sizeof buf,
             "fa2: Q block outer, K/V blocks inner; Br x Bc = %zu x %zu, %zu bytes on chip (CPU, fp32); K and V read "
             "once per query block; blocks computed %llu of %llu (%llu skipped, %llu masked); %s",
             br, bc, tiled_onchip_bytes(br, bc, s->dim), (unsigned long long)c.computed,
             (unsigned long long)c.total, (unsigned long long)c.skipped, (unsigned long long)c.masked,
             tiled_gpu_text(ok, &g, why));
    return buf;
}

static int fa2_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    size_t br, bc;
    if (tiled_choose(TILED_FA2, s, &br, &bc, why, n)) return 0;
    if (!gpu) return 1;
    tiled_gpu_info_t g;
    memset(&g, 0, sizeof g); /* read only when ok; zeroed for the compiler's sake */
    return attention_fa2_gpu_info(s, &g, why, n);
}

const attn_impl_t IMPL_ATTN_FA2 = {
    .name = "fa2", .stage = "05", .rounding = 0, .ws_bytes = NULL,
    .model_bytes = fa2_model, .supports = fa2_supports,
    .cpu = attention_fa2_cpu, .gpu = GPU_FN(attention_fa2_gpu),
    .describe = fa2_describe, .tiles = fa2_tiles_cell,
};

/* ---- the register-tiled FA2 kernels (fa2_regtile_gpu.cu). GPU only: their
 * loop order and their traffic are fa2's, whose CPU version (fa2_cpu.c,
 * --br 64 or 128 --bc 64) counts it. */

static double rt_model(const attn_shape_t *s, size_t br) { return tiled_fa2_bytes(s, br, 64); }
static double rt64_model(const attn_shape_t *s) { return rt_model(s, 64); }
static double rt128_model(const attn_shape_t *s) { return rt_model(s, 128); }

static int rt_supports(const attn_shape_t *s, int gpu, int br, char *why, size_t n)
{
    if (!gpu) {
        snprintf(why, n, "GPU only; its loop order and traffic are fa2's: run fa2 with --br %d --bc 64 on the CPU", br);
        return 0;
    }
    tiled_gpu_info_t g;
    memset(&g, 0, sizeof g); /* read only when ok; zeroed for the compiler's sake */
    return attention_fa2_regtile_gpu_info(s, br, &g, why, n);
}
static int rt64_supports(const attn_shape_t *s, int gpu, char *why, size_t n) { return rt_supports(s, gpu, 64, why, n); }
static int rt128_supports(const attn_shape_t *s, int gpu, char *why, size_t n)
{
    return rt_supports(s, gpu, 128, why, n);
}

static const char *rt64_tiles(const attn_shape_t *s, int gpu) { (void)s; (void)gpu; return "64x64"; }
static const char *rt128_tiles(const attn_shape_t *s, int gpu) { (void)s; (void)gpu; return "128x64"; }

static const char *rt_describe(const attn_shape_t *s, int br, const char *name)
{
    static char buf[2][640];
    char *b = buf[br == 128];
    tiled_gpu_info_t g;
    memset(&g, 0, sizeof g); /* read only when ok; zeroed for the compiler's sake */
    char why[256] = "";
    const int ok = attention_fa2_regtile_gpu_info(s, br, &g, why, sizeof why);
    tiled_counts_t c;
    tiled_count_blocks(s, (size_t)br, 64, &c);
    snprintf(b, sizeof buf[0],
             "%s: 16 x 16 threads, each a %d x 4 micro-tile of S and %d x %zu of O in registers; blocks computed %llu "
             "of %llu (%llu skipped, %llu masked); %s",
             name, br / 16, br / 16, s->dim / 16, (unsigned long long)c.computed, (unsigned long long)c.total,
             (unsigned long long)c.skipped, (unsigned long long)c.masked, tiled_gpu_text(ok, &g, why));
    return b;
}
static const char *rt64_describe(const attn_shape_t *s) { return rt_describe(s, 64, "fa2-regtile"); }
static const char *rt128_describe(const attn_shape_t *s) { return rt_describe(s, 128, "fa2-regtile-br128"); }

const attn_impl_t IMPL_ATTN_FA2_REGTILE = {
    .name = "fa2-regtile", .stage = "05", .rounding = 0, .ws_bytes = NULL,
    .model_bytes = rt64_model, .supports = rt64_supports,
    .cpu = NULL, .gpu = GPU_FN(attention_fa2_regtile64_gpu),
    .describe = rt64_describe, .tiles = rt64_tiles,
};

const attn_impl_t IMPL_ATTN_FA2_REGTILE128 = {
    .name = "fa2-regtile-br128", .stage = "05", .rounding = 0, .ws_bytes = NULL,
    .model_bytes = rt128_model, .supports = rt128_supports,
    .cpu = NULL, .gpu = GPU_FN(attention_fa2_regtile128_gpu),
    .describe = rt128_describe, .tiles = rt128_tiles,
};

/* ---- a build without CUDA: the kernels' info queries answer "no GPU kernel
 * in this build" (the launchers are not referenced: GPU_FN makes them NULL) */
#if !HAVE_CUDA
static int none(char *why, size_t n)
{
    snprintf(why, n, "%s", gpu_unavailable_reason());
    return 0;
}
int attention_fa1_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n)
{
    (void)s; (void)info;
    return none(why, n);
}
int attention_fa2_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n)
{
    (void)s; (void)info;
    return none(why, n);
}
int attention_fa2_regtile_gpu_info(const attn_shape_t *s, int br, tiled_gpu_info_t *info, char *why, size_t n)
{
    (void)s; (void)br; (void)info;
    return none(why, n);
}
#endif
