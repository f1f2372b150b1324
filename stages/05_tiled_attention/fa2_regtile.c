/* Stage 05, the table entries of the register-tiled FA2 kernels
 * (fa2_regtile_gpu.cu). GPU only: their loop order and their traffic are
 * fa2's, whose CPU version (fa2_cpu.c, --br 64 or 128 --bc 64) counts it.
 *
 * Run: build/bin/05_tiled_attention --kernel fa2-regtile,fa2-regtile-br128 */
#include <stdio.h>

#include "tiled.h"

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
