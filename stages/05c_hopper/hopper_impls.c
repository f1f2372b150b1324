/* Stage 05c's glue: the ladder's table (HOP_VERSIONS), the shape checks and
 * launch dispatch of hopper.h, and the ladder as rows of the stage's table
 * (attn_impl_t), so that the driver checks each rung against the fp64
 * reference, counts its DRAM traffic and times it beside stage 05b's best
 * rung. Plain C, built with or without CUDA: without it (or without an
 * sm_90a build, or on a device other than compute capability 9.0) every
 * shape is declined with the reason and the launch functions refuse.
 *
 * Traffic model: stage 05b's (tc_impls.c), with the rung's tiles:
 *     bytes = es (2 B H Nq d + 2 d B H sum_tiles min(Nk, BKV ceil(n_t / BKV)))
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h1_wgmma */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gpu.h"
#include "hopper.h"

/* ---------------------------------------------------------------- the ladder */

const hop_version_t HOP_VERSIONS[] = {
    { "h1_wgmma", "wgmma (m64nNk16) from 128-byte-swizzled shared memory, S and P in registers; K/V by cp.async" },
    { "h2_tma", "K/V by TMA (one thread, tensor maps) into 2 stages on mbarriers (expect_tx, try_wait.parity)" },
    { "h3_warpspec", "a producer warp group (TMA) and two consumer groups, full/empty mbarriers, setmaxnreg 40/232" },
    { "h4_overlap", "S of tile t issued before the softmax of t, beside P V of t - 1 (intra-warpgroup overlap)" },
    { "h5_pingpong", "the two consumer groups take turns issuing their GEMMs (named barriers): ping-pong" },
    { "h6_stages", "3 K/V stages instead of 2 (d = 64, 128): the next tile loads while K_t and V_{t-1} are held" },
};
const int HOP_NVERSIONS = (int)(sizeof HOP_VERSIONS / sizeof HOP_VERSIONS[0]);
#define HOP_MAX_VERSIONS 6 /* rows instantiated below (HOP_ROWS) */

#if HAVE_CUDA
/* Each rung's launch and describe (h1_launch, h1_describe, ... in h*.cu), in
 * HOP_VERSIONS order: one X(n) per rung (attn_hop_launch checks the count). */
#define HOP_RUNGS(X) X(1) X(2) X(3) X(4) X(5) X(6)
#define HOP_DECLARE(n)                                                                  \
    int h##n##_launch(const tc_shape_t *, const void *, const void *, const void *, void *); \
    int h##n##_describe(const tc_shape_t *, char *, size_t);
HOP_RUNGS(HOP_DECLARE)
typedef int (*hop_launch_fn)(const tc_shape_t *, const void *, const void *, const void *, void *);
typedef int (*hop_describe_fn)(const tc_shape_t *, char *, size_t);
#define HOP_LAUNCH_ENTRY(n) h##n##_launch,
#define HOP_DESCRIBE_ENTRY(n) h##n##_describe,
static const hop_launch_fn LAUNCH[] = { HOP_RUNGS(HOP_LAUNCH_ENTRY) };
static const hop_describe_fn DESCRIBE[] = { HOP_RUNGS(HOP_DESCRIBE_ENTRY) };
#define HOP_NLAUNCH ((int)(sizeof LAUNCH / sizeof LAUNCH[0]))
#else
int hop_built_sm90a(void) { return 0; }
#endif

/* The device's compute capability, asked once (-1: no device). */
static int device_cc(void)
{
    static int cc = -2;
    if (cc == -2) {
        if (!gpu_available()) cc = -1;
        else {
            gpu_info_t gi;
            gpu_info(&gi);
            cc = 10 * gi.cc_major + gi.cc_minor;
        }
    }
    return cc;
}

int attn_hop_supports(int v, const tc_shape_t *s, char *why, size_t n)
{
    if (why && n) why[0] = 0;
    if (v < 0 || v >= HOP_NVERSIONS) return tc_decline(why, n, "no Hopper version %d (0 .. %d)", v, HOP_NVERSIONS - 1);
    if (!s) return tc_decline(why, n, "no shape");
    if (!HAVE_CUDA) return tc_decline(why, n, "%s", gpu_unavailable_reason());
    if (!hop_built_sm90a())
        return tc_decline(why, n,
                       "this build did not compile stage 05c for sm_90a (wgmma, TMA and setmaxnreg exist only "
                       "there): build with CUDA_ARCH=90");
    if (s->dt != DT_F16 && s->dt != DT_BF16)
        return tc_decline(why, n, "%s: wgmma's 16-bit inputs are fp16 or bf16", dtype_name(s->dt));
    if (s->dim != 64 && s->dim != 128 && s->dim != 256)
        return tc_decline(why, n,
                       "head dim %d: the Hopper rungs are built for 64, 128 and 256 (whole 128-byte swizzle panels of "
                       "64 columns; stage 05b's tc5_tuned also takes 32, 96, 192)",
                       s->dim);
    if (!tc_shape_sizes_ok(s, why, n)) return 0;
    const int cc = device_cc();
    if (cc >= 0 && cc != 90)
        return tc_decline(why, n, "device of compute capability %d.%d: sm_90a code runs on 9.0 (H100/H200) only", cc / 10,
                       cc % 10);
    return 1;
}

static int launch_checks(int ok, const char *why, const void *q, const void *k, const void *v, const void *o)
{
    if (!ok) {
        fprintf(stderr, "attn_hop_launch: %s\n", why);
        return -1;
    }
    if (!gpu_available()) {
        fprintf(stderr, "attn_hop_launch: %s\n", gpu_unavailable_reason());
        return -1;
    }
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16) {
        fprintf(stderr, "attn_hop_launch: Q, K, V and O must be 16-byte aligned (16-byte copies, TMA)\n");
        return -1;
    }
    return 0;
}

int attn_hop_launch(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    char why[256];
    const int ok = attn_hop_supports(v, s, why, sizeof why);
    if (launch_checks(ok, why, q, k, v_, o)) return -1;
#if HAVE_CUDA
    if (HOP_NLAUNCH != HOP_NVERSIONS) {
        fprintf(stderr, "attn_hop_launch: internal error: %d versions, %d launchers\n", HOP_NVERSIONS, HOP_NLAUNCH);
        return -1;
    }
    if (LAUNCH[v](s, q, k, v_, o) == 0) return 0;
#endif
    fprintf(stderr, "attn_hop_launch: %s has no kernel for this shape\n", HOP_VERSIONS[v].name);
    return -1;
}

const char *attn_hop_describe(int v, const tc_shape_t *s)
{
    static char buf[512];
    if (!attn_hop_supports(v, s, buf, sizeof buf)) return buf;
    if (!gpu_available()) {
        snprintf(buf, sizeof buf, "%s (no GPU to query: %s)", HOP_VERSIONS[v].what, gpu_unavailable_reason());
        return buf;
    }
#if HAVE_CUDA
    if (HOP_NLAUNCH == HOP_NVERSIONS && DESCRIBE[v](s, buf, sizeof buf) == 0) return buf;
#endif
    snprintf(buf, sizeof buf, "no kernel for this shape");
    return buf;
}

/* ---------------------------------------------------------------- rows of the table */

/* stage 05b's row glue (tc_impls.c) with this ladder's checks and kernels */
static const tc_ladder_t HOP_LADDER = {
    "05c", "GPU only: Hopper (sm_90a) kernels (the CPU twin of their algorithm is stage 05's fa2)",
    HOP_VERSIONS, &HOP_NVERSIONS, attn_hop_supports, attn_hop_launch, attn_hop_describe,
};

/* rows 0 .. HOP_MAX_VERSIONS - 1: one per rung */
#define HOP_ROWS(X, L) X(L, 0) X(L, 1) X(L, 2) X(L, 3) X(L, 4) X(L, 5)
TC_LADDER_IMPLS(attn_hop_impls, HOP_LADDER, HOP_MAX_VERSIONS, HOP_ROWS)
