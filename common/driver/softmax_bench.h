/* The driver shared by the softmax stages (01-03): each stage lists its
 * implementations (the previous stage's first, then its own) and calls
 * softmax_stage_main. The driver generates or loads the input, runs every
 * implementation on the same input, checks each against the fp64 reference,
 * times it, and prints one table (and appends it to --csv). */
#ifndef STF_SOFTMAX_BENCH_H
#define STF_SOFTMAX_BENCH_H

#include <stddef.h>

#include "cli.h"
#include "dtype.h"
#include "ledger.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;  /* "copy", "naive", "safe", "online", "safe-onchip", "merge-onchip", ... */
    const char *stage; /* the stage that introduces it: "01", "02", ... */
    int passes;        /* sweeps over the row in device memory */
    int loads, stores; /* memory accesses per element, the model */
    int round_k;       /* roundings to the storage type on the path (tolerance) */
    int is_copy;       /* output must equal input bit for bit */
    /* 1 only for naive softmax: its overflow is the lesson of Q2, so a row
     * whose input really overflows the formula (reference.h,
     * softmax_row_overflows_naive) is reported, not judged. Every other
     * implementation is judged on every row. Its twin, underflow (every
     * e^{x_j} below the smallest normal: an all -200 fp32 row is 0/0),
     * is excused the same way, and reported separately. */
    int overflow_lesson;
    /* CPU implementation; every HBM access goes through the ledger. Returns 0,
     * or -1 when it cannot run this shape (the reason printed). */
    int (*cpu)(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
    /* GPU launcher (asynchronous, stream 0), or NULL in a build without CUDA. */
    void (*gpu)(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
    /* NULL when the implementation takes any shape; otherwise returns 1 when it
     * applies to `rows` rows of `cols` elements of dt on the given device
     * (gpu = 1: the GPU launcher, 0: the CPU implementation), else 0 with the
     * reason in why. A GPU-only path (a thread-block cluster, say) declines
     * on the CPU; a path for few long rows declines many short ones. */
    int (*applies)(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t why_len);
} softmax_impl_t;

typedef struct {
    const char *prog;     /* "03_online_softmax" */
    const char *summary;  /* one line for --help and the table title */
    const softmax_impl_t *const *impls;
    int nimpls;
    /* index of the stage's own first implementation; those before it are the
     * earlier stages' baselines. A run in which none of the stage's own ran
     * (all declined the shape, or no GPU kernel) fails: exit 2, with reasons. */
    int own;
    const cli_opt_t *opts; /* the stage's own options (cli.h), or NULL */
    int nopts;
} softmax_stage_t;

int softmax_stage_main(const softmax_stage_t *st, int argc, char **argv);

#if HAVE_CUDA
#define GPU_FN(f) f
#else
#define GPU_FN(f) NULL
#endif

#ifdef __cplusplus
}
#endif

#endif
