/* The tensor-core ladder's table and its shape checks (plain C, built with or
 * without CUDA); the launches live in tc_launch.cu. Without CUDA every shape
 * is declined with the reason, and the launch functions below stand in. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "tc.h"

const tc_version_t TC_VERSIONS[] = {
    { "tc1_mma", "mma.sync m16n8k16, online softmax on the fragments, P from registers; plain smem, 64x64 tiles" },
    { "tc2_swizzle", "fragments by ldmatrix from swizzled (bank-conflict-free) shared memory" },
    { "tc3_pipeline", "K/V by cp.async, two stages, the next tile loading during this one" },
    { "tc4_exp2", "scale * log2(e) folded into one FFMA + ex2 per score" },
    { "tc5_tuned", "tiles and occupancy per head dim, k-step-outer S loop, tree reductions, immediate ldmatrix offsets, lazy O rescale, 16-byte O stores" },
    { "tc6_m32", "32 query rows per warp: each K/V fragment feeds two m16 tiles (Q re-read from shared memory)" },
};
const int TC_NVERSIONS = (int)(sizeof TC_VERSIONS / sizeof TC_VERSIONS[0]);

static int decline(char *why, size_t n, const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return 0;
}

int attn_tc_supports(int v, const tc_shape_t *s, char *why, size_t n)
{
    if (why && n) why[0] = 0;
    if (v < 0 || v >= TC_NVERSIONS) return decline(why, n, "no tensor-core version %d (0 .. %d)", v, TC_NVERSIONS - 1);
    if (!s) return decline(why, n, "no shape");
    if (!HAVE_CUDA) return decline(why, n, "this build has no CUDA (nvcc was not found at build time)");
    if (s->dt != DT_F16 && s->dt != DT_BF16)
        return decline(why, n, "%s: the tensor-core kernels take fp16 or bf16 (mma.sync m16n8k16)", dtype_name(s->dt));
    if (s->dim != 64 && s->dim != 96 && s->dim != 128) {
        if (s->dim <= 0 || s->dim % 16)
            return decline(why, n, "head dim %d: must be a multiple of 16, the k-step of m16n8k16", s->dim);
        if (s->dim > 128)
            return decline(why, n,
                           "head dim %d: a warp's 16 rows of O (d/2 fp32 registers per thread) and Q fragments "
                           "(d/4) leave no registers for S at d > 128 in these kernels",
                           s->dim);
        return decline(why, n, "head dim %d: kernels are instantiated for 64, 96 and 128 only", s->dim);
    }
    if (s->batch < 1 || s->heads < 1 || s->kv_heads < 1 || s->seq_q < 1 || s->seq_kv < 1)
        return decline(why, n, "sizes must be positive (batch %d, heads %d, kv_heads %d, seq_q %d, seq_kv %d)",
                       s->batch, s->heads, s->kv_heads, s->seq_q, s->seq_kv);
    if (s->heads % s->kv_heads)
        return decline(why, n, "heads %d is not a multiple of kv_heads %d", s->heads, s->kv_heads);
    if (s->heads > 65535 || s->batch > 65535)
        return decline(why, n, "heads %d or batch %d above 65535 (grid y and z)", s->heads, s->batch);
    if (s->seq_q > (1 << 30) || s->seq_kv > (1 << 30))
        return decline(why, n, "sequence lengths above 2^30 (32-bit row indices)");
    if (!(s->scale > 0.0f) || !isfinite(s->scale))
        return decline(why, n, "scale %g: must be positive and finite", (double)s->scale);
    return 1;
}

int attn_tcx_f16acc_supports(const tc_shape_t *s, char *why, size_t n)
{
    /* bf16 first: no build and no device changes that reason */
    if (s && s->dt == DT_BF16)
        return decline(why, n,
                       "bf16: tcx_f16acc accumulates in fp16, which mma.sync offers only for fp16 inputs (with bf16 "
                       "inputs m16n8k16 accumulates in fp32 only)");
    if (!attn_tc_supports(1, s, why, n)) return 0; /* tc2's conditions: fp16 or bf16, d, sizes, CUDA */
    return 1;
}

#if !HAVE_CUDA
int attn_tcx_f16acc_launch(const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    char why[256];
    (void)q; (void)k; (void)v_; (void)o;
    attn_tcx_f16acc_supports(s, why, sizeof why);
    fprintf(stderr, "attn_tcx_f16acc_launch: %s\n", why);
    return -1;
}

int attn_tc_launch(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    char why[256];
    (void)q; (void)k; (void)v_; (void)o;
    attn_tc_supports(v, s, why, sizeof why);
    fprintf(stderr, "attn_tc_launch: %s\n", why);
    return -1;
}

const char *attn_tc_describe(int v, const tc_shape_t *s)
{
    static char why[256];
    attn_tc_supports(v, s, why, sizeof why);
    return why;
}
#endif
