/* attn_tc_launch and attn_tc_describe (tc.h): the checks of attn_tc_supports
 * (tc_api.c), then the version's own launcher (tc1_mma.cu ... tc5_tuned.cu). */
#include <stdint.h>
#include <stdio.h>

#include "gpu.h"
#include "tc.h"

extern "C" {
int tc1_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
int tc2_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
int tc3_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
int tc4_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
int tc5_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
int tc6_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
int tc1_describe(const tc_shape_t *, char *, size_t);
int tc2_describe(const tc_shape_t *, char *, size_t);
int tc3_describe(const tc_shape_t *, char *, size_t);
int tc4_describe(const tc_shape_t *, char *, size_t);
int tc5_describe(const tc_shape_t *, char *, size_t);
int tc6_describe(const tc_shape_t *, char *, size_t);
int tcx_f16acc_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
}

typedef int (*tc_launch_fn)(const tc_shape_t *, const void *, const void *, const void *, void *);
typedef int (*tc_describe_fn)(const tc_shape_t *, char *, size_t);
static const tc_launch_fn LAUNCH[] = { tc1_launch, tc2_launch, tc3_launch, tc4_launch, tc5_launch, tc6_launch };
static const tc_describe_fn DESCRIBE[] = { tc1_describe, tc2_describe, tc3_describe, tc4_describe, tc5_describe, tc6_describe };

extern "C" int attn_tc_launch(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    char why[256];
    if (v >= 0 && v < TC_NVERSIONS && (int)(sizeof LAUNCH / sizeof LAUNCH[0]) != TC_NVERSIONS) {
        fprintf(stderr, "attn_tc_launch: internal error: %d versions, %d launchers\n", TC_NVERSIONS,
                (int)(sizeof LAUNCH / sizeof LAUNCH[0]));
        return -1;
    }
    if (!attn_tc_supports(v, s, why, sizeof why)) {
        fprintf(stderr, "attn_tc_launch: %s\n", why);
        return -1;
    }
    if (!gpu_available()) {
        fprintf(stderr, "attn_tc_launch: %s\n", gpu_unavailable_reason());
        return -1;
    }
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v_ | (uintptr_t)o) % 16) {
        fprintf(stderr, "attn_tc_launch: Q, K, V and O must be 16-byte aligned (the kernels move 16-byte chunks)\n");
        return -1;
    }
    if (LAUNCH[v](s, q, k, v_, o)) {
        fprintf(stderr, "attn_tc_launch: %s has no kernel for this shape\n", TC_VERSIONS[v].name);
        return -1;
    }
    return 0;
}

extern "C" const char *attn_tc_describe(int v, const tc_shape_t *s)
{
    static char buf[512];
    if (!attn_tc_supports(v, s, buf, sizeof buf)) return buf;
    if (!gpu_available()) {
        snprintf(buf, sizeof buf, "%s (no GPU to query: %s)", TC_VERSIONS[v].what, gpu_unavailable_reason());
        return buf;
    }
    if (DESCRIBE[v](s, buf, sizeof buf)) snprintf(buf, sizeof buf, "no kernel for this shape");
    return buf;
}

/* The fp16-accumulating variant (tcx_f16acc.cu), not a ladder version: the
 * same checks as attn_tc_launch. */
extern "C" int attn_tcx_f16acc_launch(const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    char why[256];
    if (!attn_tcx_f16acc_supports(s, why, sizeof why)) {
        fprintf(stderr, "attn_tcx_f16acc_launch: %s\n", why);
        return -1;
    }
    if (!gpu_available()) {
        fprintf(stderr, "attn_tcx_f16acc_launch: %s\n", gpu_unavailable_reason());
        return -1;
    }
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v_ | (uintptr_t)o) % 16) {
        fprintf(stderr, "attn_tcx_f16acc_launch: Q, K, V and O must be 16-byte aligned\n");
        return -1;
    }
    if (tcx_f16acc_launch(s, q, k, v_, o)) {
        fprintf(stderr, "attn_tcx_f16acc_launch: no kernel for this shape\n");
        return -1;
    }
    return 0;
}
