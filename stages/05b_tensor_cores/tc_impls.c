/* Stage 05b's glue: the ladder's table (TC_VERSIONS), the shape checks and
 * launch dispatch of tc.h, and the ladder as rows of the stage's table
 * (attn_impl_t), so that the driver checks each rung against the fp64
 * reference, counts its DRAM traffic and times it beside the others. Plain C,
 * built with or without CUDA: without it every shape is declined with the
 * reason and the launch functions refuse.
 * The row glue (tc_ladder_t, TC_LADDER_ROW) and the size checks also serve
 * stage 05c's Hopper ladder, which links this stage.
 *
 * Traffic model (FlashAttention-2 order, per query head): Q read once and O
 * written once; every query tile of BQ rows streams the K/V tiles it can see,
 * BKV keys at a time, so K and V are read ceil(Nq / BQ) times in full when
 * not causal, and causal query tiles stop at the tile holding their last
 * visible key (tiles past the diagonal are never loaded):
 *     bytes = es (2 B H Nq d + 2 d B H sum_tiles min(Nk, BKV ceil(n_t / BKV)))
 * with n_t the keys visible to the tile's last row. The L2 serves many of the
 * repeated K/V reads; the "HBM meas" column shows how many reach DRAM.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --dim 128 --kernel tc6_m32 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "tc.h"

/* ---------------------------------------------------------------- the ladder */

const tc_version_t TC_VERSIONS[] = {
    { "tc1_mma", "mma.sync m16n8k16, online softmax on the fragments, P from registers; plain smem, 64x64 tiles" },
    { "tc2_swizzle", "fragments by ldmatrix from swizzled (bank-conflict-free) shared memory" },
    { "tc3_pipeline", "K/V by cp.async, two stages, the next tile loading during this one" },
    { "tc4_exp2", "scale * log2(e) folded into one FFMA + ex2 per score" },
    { "tc5a_kouter", "S = Q K^T with the k-step loop outside: BKV / 8 independent MMAs per step" },
    { "tc5b_tree", "row max and row sum reduced as trees instead of chains" },
    { "tc5c_immoff", "ldmatrix addresses as per-lane offsets plus compile-time immediates" },
    { "tc5d_lazy", "O rescale skipped when no row max of the warp moved (warp vote)" },
    { "tc5e_ostore", "O written through shared memory as 16-byte stores" },
    { "tc5f_qborrow", "the Q tile kept in stage 1's K/V buffers: shared memory 4 K/V buffers" },
    { "tc5_tuned", "tiles and occupancy per head dim; d = 32, 192, 256 too" },
    { "tc6_m32", "32 query rows per warp: each K/V fragment feeds two m16 tiles (Q re-read from shared memory)" },
};
const int TC_NVERSIONS = (int)(sizeof TC_VERSIONS / sizeof TC_VERSIONS[0]);
#define TC_MAX_VERSIONS 12 /* rows instantiated below (TC_ROWS) */

/* The head dims each rung is built for (tc_common.cuh's F::DIMS, as a list). */
static const int DIMS_BASE[] = { 64, 96, 128, 0 };
static const int DIMS_TUNED[] = { 32, 64, 96, 128, 192, 256, 0 };
static const int DIMS_M32[] = { 32, 64, 96, 128, 0 };
static const int *dims_of(int v)
{
    if (!strcmp(TC_VERSIONS[v].name, "tc5_tuned")) return DIMS_TUNED;
    if (!strcmp(TC_VERSIONS[v].name, "tc6_m32")) return DIMS_M32;
    return DIMS_BASE;
}

int tc_decline(char *why, size_t n, const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return 0;
}

int tc_shape_sizes_ok(const tc_shape_t *s, char *why, size_t n)
{
    if (s->batch < 1 || s->heads < 1 || s->kv_heads < 1 || s->seq_q < 1 || s->seq_kv < 1)
        return tc_decline(why, n, "sizes must be positive (batch %d, heads %d, kv_heads %d, seq_q %d, seq_kv %d)",
                       s->batch, s->heads, s->kv_heads, s->seq_q, s->seq_kv);
    if (s->heads % s->kv_heads)
        return tc_decline(why, n, "heads %d is not a multiple of kv_heads %d", s->heads, s->kv_heads);
    if (s->heads > 65535 || s->batch > 65535)
        return tc_decline(why, n, "heads %d or batch %d above 65535 (grid y and z)", s->heads, s->batch);
    if (s->seq_q > (1 << 30) || s->seq_kv > (1 << 30))
        return tc_decline(why, n, "sequence lengths above 2^30 (32-bit row indices)");
    if (!(s->scale > 0.0f) || !isfinite(s->scale))
        return tc_decline(why, n, "scale %g: must be positive and finite", (double)s->scale);
    return 1;
}

int attn_tc_supports(int v, const tc_shape_t *s, char *why, size_t n)
{
    if (why && n) why[0] = 0;
    if (v < 0 || v >= TC_NVERSIONS) return tc_decline(why, n, "no tensor-core version %d (0 .. %d)", v, TC_NVERSIONS - 1);
    if (!s) return tc_decline(why, n, "no shape");
    if (!HAVE_CUDA) return tc_decline(why, n, "%s", gpu_unavailable_reason());
    if (s->dt != DT_F16 && s->dt != DT_BF16)
        return tc_decline(why, n, "%s: the tensor-core kernels take fp16 or bf16 (mma.sync m16n8k16)", dtype_name(s->dt));
    const int *dims = dims_of(v);
    int ok = 0;
    for (const int *d = dims; *d; d++) ok |= *d == s->dim;
    if (!ok) {
        if (s->dim <= 0 || s->dim % 16)
            return tc_decline(why, n, "head dim %d: must be a multiple of 16, the k-step of m16n8k16", s->dim);
        if (dims == DIMS_M32)
            return tc_decline(why, n,
                           "head dim %d: %s takes 32, 64, 96, 128 (O of 32 rows per warp is d fp32 registers per "
                           "thread, past the 255 limit at d > 128); tc5_tuned takes 32 ... 256",
                           s->dim, TC_VERSIONS[v].name);
        if (dims == DIMS_BASE)
            return tc_decline(why, n,
                           "head dim %d: %s is built for 64, 96, 128 (the ladder's shapes; tc5_tuned takes 32, 64, 96, "
                           "128, 192, 256)",
                           s->dim, TC_VERSIONS[v].name);
        return tc_decline(why, n, "head dim %d: %s is built for 32, 64, 96, 128, 192, 256", s->dim, TC_VERSIONS[v].name);
    }
    if (!tc_shape_sizes_ok(s, why, n)) return 0;
    return 1;
}

int attn_tcx_f16acc_supports(const tc_shape_t *s, char *why, size_t n)
{
    /* bf16 first: no build and no device changes that reason */
    if (s && s->dt == DT_BF16)
        return tc_decline(why, n,
                       "bf16: tcx_f16acc accumulates in fp16, which mma.sync offers only for fp16 inputs (with bf16 "
                       "inputs m16n8k16 accumulates in fp32 only)");
    if (!attn_tc_supports(1, s, why, n)) return 0; /* tc2's conditions: fp16 or bf16, d, sizes, CUDA */
    return 1;
}

/* ---------------------------------------------------------------- launches */

typedef int (*tc_launch_fn)(const tc_shape_t *, const void *, const void *, const void *, void *);
typedef int (*tc_describe_fn)(const tc_shape_t *, char *, size_t);
#if HAVE_CUDA
#define TC_DECL(p)                                                                    \
    int p##_launch(const tc_shape_t *, const void *, const void *, const void *, void *); \
    int p##_describe(const tc_shape_t *, char *, size_t);
TC_DECL(tc1) TC_DECL(tc2) TC_DECL(tc3) TC_DECL(tc4) TC_DECL(tc5a) TC_DECL(tc5b) TC_DECL(tc5c) TC_DECL(tc5d)
TC_DECL(tc5e) TC_DECL(tc5f) TC_DECL(tc5) TC_DECL(tc6)
int tcx_f16acc_launch(const tc_shape_t *, const void *, const void *, const void *, void *);
/* In TC_VERSIONS order (tc_rungs_match checks the count). */
static const tc_launch_fn LAUNCH[] = { tc1_launch,  tc2_launch,  tc3_launch,  tc4_launch,  tc5a_launch, tc5b_launch,
                                       tc5c_launch, tc5d_launch, tc5e_launch, tc5f_launch, tc5_launch,  tc6_launch };
static const tc_describe_fn DESCRIBE[] = { tc1_describe,  tc2_describe,  tc3_describe,  tc4_describe,
                                           tc5a_describe, tc5b_describe, tc5c_describe, tc5d_describe,
                                           tc5e_describe, tc5f_describe, tc5_describe,  tc6_describe };
#define TC_NLAUNCH ((int)(sizeof LAUNCH / sizeof LAUNCH[0]))
#else
static const tc_launch_fn *LAUNCH;
static const tc_describe_fn *DESCRIBE;
#define TC_NLAUNCH TC_NVERSIONS
static int tcx_f16acc_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    (void)s; (void)q; (void)k; (void)v; (void)o;
    return -1;
}
#endif

/* The checks every launch makes before touching the device: the shape, a
 * device, and 16-byte aligned arrays. 0, or -1 with the reason on stderr. */
static int launch_checks(const char *fn, int ok, const char *why, const void *q, const void *k, const void *v,
                         const void *o)
{
    if (!ok) {
        fprintf(stderr, "%s: %s\n", fn, why);
        return -1;
    }
    if (!gpu_available()) {
        fprintf(stderr, "%s: %s\n", fn, gpu_unavailable_reason());
        return -1;
    }
    if (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16) {
        fprintf(stderr, "%s: Q, K, V and O must be 16-byte aligned (the kernels move 16-byte chunks)\n", fn);
        return -1;
    }
    return 0;
}

int attn_tc_launch(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    char why[256];
    if (TC_NLAUNCH != TC_NVERSIONS) {
        fprintf(stderr, "attn_tc_launch: internal error: %d versions, %d launchers\n", TC_NVERSIONS, TC_NLAUNCH);
        return -1;
    }
    const int ok = attn_tc_supports(v, s, why, sizeof why);
    if (launch_checks("attn_tc_launch", ok, why, q, k, v_, o)) return -1;
    if (!HAVE_CUDA || LAUNCH[v](s, q, k, v_, o)) {
        fprintf(stderr, "attn_tc_launch: %s has no kernel for this shape\n", TC_VERSIONS[v].name);
        return -1;
    }
    return 0;
}

const char *attn_tc_describe(int v, const tc_shape_t *s)
{
    static char buf[512];
    if (!attn_tc_supports(v, s, buf, sizeof buf)) return buf;
    if (!gpu_available()) {
        snprintf(buf, sizeof buf, "%s (no GPU to query: %s)", TC_VERSIONS[v].what, gpu_unavailable_reason());
        return buf;
    }
    if (!HAVE_CUDA || DESCRIBE[v](s, buf, sizeof buf)) snprintf(buf, sizeof buf, "no kernel for this shape");
    return buf;
}

/* The fp16-accumulating variant (tcx_f16acc.cu), not a ladder version: the
 * same checks as attn_tc_launch. */
int attn_tcx_f16acc_launch(const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    char why[256];
    const int ok = attn_tcx_f16acc_supports(s, why, sizeof why);
    if (launch_checks("attn_tcx_f16acc_launch", ok, why, q, k, v_, o)) return -1;
    if (tcx_f16acc_launch(s, q, k, v_, o)) {
        fprintf(stderr, "attn_tcx_f16acc_launch: no kernel for this shape\n");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- rows of the table */

tc_shape_t tc_shape_from(const attn_shape_t *s)
{
    tc_shape_t t = { (int)s->batch, (int)s->heads, (int)s->kv_heads, (int)s->seq_q, (int)s->seq_kv, (int)s->dim,
                     s->causal, s->scale, s->dt };
    return t;
}

/* The shape's tiles, read from the kernel's own description ("Q tile 64 x
 * K/V tile 64, ..."): one source for the tile sizes. 0 on success. */
static int tiles_of(const tc_ladder_t *L, int v, const attn_shape_t *s, int *bq, int *bkv)
{
    const tc_shape_t t = tc_shape_from(s);
    if (!L->supports(v, &t, NULL, 0)) return -1;
    return sscanf(L->describe(v, &t), "Q tile %d x K/V tile %d", bq, bkv) == 2 && *bq > 0 && *bkv > 0 ? 0 : -1;
}

int tc_row_supports(const tc_ladder_t *L, int v, const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (!gpu) {
        snprintf(why, n, "%s", L->cpu_decline);
        return 0;
    }
    if (s->batch > 65535 || s->heads > 65535 || s->seq_q > (1u << 30) || s->seq_kv > (1u << 30)) {
        snprintf(why, n, "sizes beyond the kernels' 32-bit indices and grid");
        return 0;
    }
    const tc_shape_t t = tc_shape_from(s);
    return L->supports(v, &t, why, n);
}

double tc_row_model(const tc_ladder_t *L, int v, const attn_shape_t *s)
{
    int bq = 0, bkv = 0;
    const double es = (double)dtype_size(s->dt), d = (double)s->dim;
    double kv_rows = 0;
    if (tiles_of(L, v, s, &bq, &bkv)) return 0;
    for (size_t t0 = 0; t0 < s->seq_q; t0 += (size_t)bq) {
        const size_t last = t0 + (size_t)bq < s->seq_q ? t0 + (size_t)bq - 1 : s->seq_q - 1;
        const size_t n = attn_visible_keys(s, last);
        size_t keys = (n + (size_t)bkv - 1) / (size_t)bkv * (size_t)bkv;
        if (keys > s->seq_kv) keys = s->seq_kv;
        kv_rows += (double)keys;
    }
    const double bh = (double)s->batch * (double)s->heads;
    return es * (2.0 * (double)attn_q_elems(s) + 2.0 * d * bh * kv_rows);
}

const char *tc_row_tiles(const tc_ladder_t *L, int v, const attn_shape_t *s, int gpu)
{
    static char buf[8][32];
    static int k;
    char *b = buf[k++ & 7];
    int bq = 0, bkv = 0;
    if (!gpu || tiles_of(L, v, s, &bq, &bkv)) return "-";
    snprintf(b, 32, "%dx%d", bq, bkv);
    return b;
}

const char *tc_row_describe(const tc_ladder_t *L, int v, const attn_shape_t *s)
{
    static char buf[8][600];
    static int k;
    char *b = buf[k++ & 7];
    const tc_shape_t t = tc_shape_from(s);
    if (v < 0 || v >= *L->nversions) return "no such rung"; /* callable with any v, not only from a row */
    snprintf(b, 600, "%s: %s; %s", L->versions[v].name, L->versions[v].what, L->describe(v, &t));
    return b;
}

void tc_row_launch(const tc_ladder_t *L, int v, const attn_shape_t *s, const void *q, const void *k, const void *v_,
                   void *o)
{
    const tc_shape_t t = tc_shape_from(s);
    (void)L->launch(v, &t, q, k, v_, o); /* supports() accepted the shape: it launches */
}

const attn_impl_t *const *tc_ladder_rows(const tc_ladder_t *L, const attn_impl_t *const *src, int nsrc,
                                         attn_impl_t *rows, const attn_impl_t **list, int *n)
{
    /* every rung needs its row (TC_ROWS, HOP_ROWS): a rung left out would vanish from the table */
    int nv = 0;
    while (nv < nsrc && src[nv]) nv++;
    if (nv != *L->nversions) {
        fprintf(stderr, "stage %s: %d rungs but %d rows (TC_ROWS / HOP_ROWS must list every rung)\n", L->stage,
                *L->nversions, nv);
        exit(2);
    }
    if (!list[0])
        for (int v = 0; v < nv; v++) {
            rows[v] = *src[v];
            rows[v].name = L->versions[v].name;
            rows[v].stage = L->stage;
            list[v] = &rows[v];
        }
    *n = nv;
    return list;
}

static const tc_ladder_t TC_LADDER = {
    "05b", "GPU only: mma.sync tensor-core kernels (the CPU twin of their algorithm is stage 05's fa2)",
    TC_VERSIONS, &TC_NVERSIONS, attn_tc_supports, attn_tc_launch, attn_tc_describe,
};

#define TC_ROWS(X, L) X(L, 0) X(L, 1) X(L, 2) X(L, 3) X(L, 4) X(L, 5) X(L, 6) X(L, 7) X(L, 8) X(L, 9) X(L, 10) X(L, 11)
TC_LADDER_IMPLS(attn_tc_impls, TC_LADDER, TC_MAX_VERSIONS, TC_ROWS)
