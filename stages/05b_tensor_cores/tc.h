/* Stage 05b: FlashAttention-2's forward pass on tensor cores (mma.sync),
 * built as a ladder of kernels, each one change away from the previous and
 * each runnable on its own (--kernel NAME; tools/ladder_diff.sh N shows the
 * change of rung N):
 *   tc1_mma.cu tc2_swizzle.cu tc3_pipeline.cu tc4_exp2.cu, tc5a_kouter ...
 *   tc5f_qborrow and tc5_tuned (one kernel, tc5_steps.cuh: each rung one
 *   more flag; instances in tc5_steps.cu, tc5_tuned.cu), tc6_m32.cu
 *   (device helpers: tc_common.cuh)
 * and tcx_f16acc.cu, a numerics demonstration outside the ladder.
 *
 *   O = softmax(Q K^T * scale) V     fp16 or bf16 storage, fp32 accumulation
 *
 * Loop order (FlashAttention-2): one thread block per tile of query rows of
 * one (batch, head); its warps own 16 (tc6: 32) query rows each and stream
 * the K/V tiles of that head through shared memory, carrying the
 * online-softmax state (m, l, O) in registers.
 *
 * Layout: Q, O are [batch, heads, seq_q, dim]; K, V are [batch, kv_heads,
 * seq_kv, dim]; row-major, contiguous, base pointers 16-byte aligned (any
 * cudaMalloc). Query head h reads K/V head h / (heads / kv_heads) (GQA; MHA
 * when kv_heads = heads).
 * Causal masking is bottom-right aligned: key j is visible to query i iff
 * j <= i + seq_kv - seq_q. A query row that sees no key outputs zeros.
 * Supported: dt DT_F16 or DT_BF16; head dim 64, 96 or 128 on every rung,
 * also 32, 192 and 256 on tc5_tuned and 32 on tc6_m32 (attn_tc_supports says
 * why anything else is declined). */
#ifndef STF_STAGE05_TC_H
#define STF_STAGE05_TC_H

#include <stddef.h>

#include "attention_bench.h"
#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int batch, heads, kv_heads, seq_q, seq_kv, dim, causal;
    float scale; /* the softmax scale: 1/sqrt(dim) rounded to fp32 by the caller */
    dtype_t dt;  /* DT_F16 or DT_BF16 */
} tc_shape_t;

typedef struct {
    const char *name; /* "tc1_mma", ... */
    const char *what; /* the change against the previous version, one line */
} tc_version_t;

extern const tc_version_t TC_VERSIONS[];
extern const int TC_NVERSIONS;

/* 1 when version v (0-based) can run shape s, else 0 and the reason in why
 * (n bytes, may be NULL). Never exits. */
int attn_tc_supports(int v, const tc_shape_t *s, char *why, size_t n);

/* Writes the reason (printf format) into why (n bytes, may be NULL) and
 * returns 0: "declined", for the supports functions. */
int tc_decline(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The checks every tensor-core ladder makes of a shape's sizes and scale
 * (positive, heads a multiple of kv_heads, grid and 32-bit index limits, a
 * positive finite scale): 1, or 0 with the reason in why. */
int tc_shape_sizes_ok(const tc_shape_t *s, char *why, size_t n);

/* Asynchronous launch on stream 0. Returns 0, or -1 (reason printed to
 * stderr) when the shape is unsupported. CUDA errors exit with file and line
 * (common/device/gpu_check.h). */
int attn_tc_launch(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o);

/* One line on tiles, threads, shared memory per block, registers and
 * occupancy (blocks/SM) of version v at shape s. The string is static
 * (overwritten by the next call). */
const char *attn_tc_describe(int v, const tc_shape_t *s);

/* ---- Not a ladder step: tcx_f16acc.cu, tc2 with O accumulated in fp16
 * (mma.sync ...f16.f16.f16.f16), a numerics demonstration of why the ladder
 * accumulates in fp32 (tests/test_f16acc.c). fp16 inputs only. Kept out of
 * TC_VERSIONS and of the stage table: its error grows with seq_kv and fails
 * the stage's tolerance, by design. */

/* 1 when tcx_f16acc can run shape s, else 0 and the reason in why (n bytes,
 * may be NULL): tc2's conditions, and dt DT_F16. */
int attn_tcx_f16acc_supports(const tc_shape_t *s, char *why, size_t n);
/* As attn_tc_launch: asynchronous, 0 or -1 with the reason on stderr. */
int attn_tcx_f16acc_launch(const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o);

/* The versions as rows of the stage-05b table (tc_impls.c): *n of them, in
 * ladder order, named as TC_VERSIONS. GPU only (the CPU declines them). */
const attn_impl_t *const *attn_tc_impls(int *n);

/* ---- A ladder of tensor-core kernels as rows of a stage's table. Stage
 * 05b's mma.sync rungs and stage 05c's Hopper rungs share this glue
 * (tc_impls.c): the shape checks, the traffic model read from the rung's
 * tiles, the table's columns and the launch. */
typedef struct {
    const char *stage;       /* "05b": the stage column */
    const char *cpu_decline; /* why the CPU declines every rung */
    const tc_version_t *versions;
    const int *nversions;
    int (*supports)(int v, const tc_shape_t *s, char *why, size_t n);
    int (*launch)(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o);
    const char *(*describe)(int v, const tc_shape_t *s); /* starts "Q tile BQ x K/V tile BKV" */
} tc_ladder_t;

tc_shape_t tc_shape_from(const attn_shape_t *s);
int tc_row_supports(const tc_ladder_t *L, int v, const attn_shape_t *s, int gpu, char *why, size_t n);
double tc_row_model(const tc_ladder_t *L, int v, const attn_shape_t *s);
const char *tc_row_tiles(const tc_ladder_t *L, int v, const attn_shape_t *s, int gpu);
const char *tc_row_describe(const tc_ladder_t *L, int v, const attn_shape_t *s);
void tc_row_launch(const tc_ladder_t *L, int v, const attn_shape_t *s, const void *q, const void *k, const void *v_,
                   void *o);
/* The rows src[0 .. nsrc - 1] copied into rows[] with their names and stage
 * filled in from L, listed in list[]; *n = *L->nversions of them. A row list
 * that misses a rung (a NULL before the count) exits 2 naming the stage. */
const attn_impl_t *const *tc_ladder_rows(const tc_ladder_t *L, const attn_impl_t *const *src, int nsrc,
                                         attn_impl_t *rows, const attn_impl_t **list, int *n);

/* Row V of ladder L (a static tc_ladder_t in the including file): the
 * callbacks of attn_impl_t, which carry no context, bound to (L, V). */
#define TC_LADDER_ROW(L, V)                                                                                          \
    static int L##_sup##V(const attn_shape_t *s, int gpu, char *why, size_t n)                                       \
    {                                                                                                                \
        return tc_row_supports(&L, V, s, gpu, why, n);                                                               \
    }                                                                                                                \
    static double L##_mod##V(const attn_shape_t *s) { return tc_row_model(&L, V, s); }                              \
    static const char *L##_des##V(const attn_shape_t *s) { return tc_row_describe(&L, V, s); }                      \
    static const char *L##_til##V(const attn_shape_t *s, int gpu) { return tc_row_tiles(&L, V, s, gpu); }           \
    __attribute__((unused)) static void L##_gpu##V(const attn_shape_t *s, const void *q, const void *k,             \
                                                   const void *v, void *o, void *ws)                                \
    {                                                                                                                \
        (void)ws;                                                                                                    \
        tc_row_launch(&L, V, s, q, k, v, o);                                                                         \
    }                                                                                                                \
    static const attn_impl_t L##_row##V = {                                                                          \
        .rounding = ATT_ROUND_P | ATT_MMA_LOWP, .supports = L##_sup##V, .model_bytes = L##_mod##V, .cpu = NULL,      \
        .gpu = GPU_FN(L##_gpu##V), .describe = L##_des##V, .tiles = L##_til##V,                                      \
    };
#define TC_LADDER_ROW_PTR(L, V) &L##_row##V,

/* A ladder's rows and its list function FN (attn_tc_impls, attn_hop_impls):
 * ROWS(X, L) expands X(L, v) for every rung v < MAX, e.g.
 *   #define HOP_ROWS(X, L) X(L, 0) X(L, 1) ... X(L, 5)
 *   TC_LADDER_IMPLS(attn_hop_impls, HOP_LADDER, HOP_MAX_VERSIONS, HOP_ROWS) */
#define TC_LADDER_IMPLS(FN, L, MAX, ROWS)                                                                            \
    ROWS(TC_LADDER_ROW, L)                                                                                           \
    const attn_impl_t *const *FN(int *n)                                                                             \
    {                                                                                                                \
        static attn_impl_t rows[MAX];                                                                                \
        static const attn_impl_t *list[MAX];                                                                         \
        static const attn_impl_t *const src[MAX] = { ROWS(TC_LADDER_ROW_PTR, L) };                                   \
        return tc_ladder_rows(&L, src, MAX, rows, list, n);                                                          \
    }

#ifdef __cplusplus
}
#endif

#endif
