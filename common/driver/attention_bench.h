/* The driver shared by the attention stages (04-06), the counterpart of
 * softmax_bench.h: each stage lists its implementations (the previous
 * stage's first, then its own) and calls attention_stage_main. The driver
 * generates Q, K, V (or loads them), runs every implementation on the same
 * input, checks each against the fp64 reference (common/numerics/attention_ref.h),
 * times it, and prints one table per shape (and appends it to --csv). */
#ifndef STF_ATTENTION_BENCH_H
#define STF_ATTENTION_BENCH_H

#include <stddef.h>

#include "attention_ref.h"
#include "cli.h"
#include "dtype.h"
#include "ledger.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;  /* "standard", "one-pass", ... */
    const char *stage; /* the stage that introduces it: "04", ... */
    unsigned rounding; /* ATT_ROUND_* flags: enters the tolerance */
    /* Bytes of intermediates it needs beside Q, K, V, O (the N x N arrays S
     * and P of standard attention); NULL: none. The driver allocates them, so
     * it can say "does not fit" before running. */
    size_t (*ws_bytes)(const attn_shape_t *s);
    /* The HBM traffic model, in bytes: what the ledger must count exactly. */
    double (*model_bytes)(const attn_shape_t *s);
    /* NULL when it takes every shape the stage accepts; otherwise 1 when it
     * can run shape s on the device (gpu = 1) or the CPU (gpu = 0), else 0
     * with the reason in why (head dim, dtype, tile limits, GPU only, ...).
     * The table then shows "n/a: why" and the other implementations run. The
     * launchers and CPU functions are only called on shapes it accepts, and
     * never exit(). */
    int (*supports)(const attn_shape_t *s, int gpu, char *why, size_t why_len);
    /* CPU implementation; every HBM access through the ledger (q->lg), the
     * intermediates in ws. Returns 0, or -1 when it cannot run (reason printed). */
    int (*cpu)(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws);
    /* GPU launcher (asynchronous, stream 0), or NULL in a build without CUDA. */
    void (*gpu)(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);
    /* One line describing a shape-dependent choice (printed under the table),
     * or NULL. */
    const char *(*describe)(const attn_shape_t *s);
    /* The tile shape for the "tiles" column ("64x64"), or NULL (untiled). */
    const char *(*tiles)(const attn_shape_t *s, int gpu);
    /* When the roundings depend on the shape or the device (stage 06: tensor
     * cores in prefill, CUDA cores in decode, plain fp32 on the CPU): the
     * ATT_ROUND_* flags for this run, replacing `rounding`. NULL: `rounding`. */
    unsigned (*rounding_for)(const attn_shape_t *s, int gpu);
    /* Non-NULL for a demonstration (stage 04's standard-s16: S stored in 16
     * bits): what it demonstrates, one line. Its result is checked against
     * the tolerance of its rounding flags and reported ("demo: 25x tol" or
     * "demo: within tol", with the error and the tolerance), but neither its
     * failure nor its absence fails the run: the failure is the lesson. */
    const char *demo;
    /* Non-NULL when the implementation keeps the inputs in its own layout
     * (stage 07's paged K/V cache): called once per shape, after ws is
     * allocated and before the checked run, untimed and uncounted, with K
     * and V as the driver made them (device pointers when gpu, else host).
     * Returns 0, or -1 (reason printed): the run is then a failure. */
    int (*prepare)(const attn_shape_t *s, int gpu, const void *k, const void *v, void *ws);
    /* Non-NULL for an implementation that runs only when asked for (stage
     * 07's paged cache, by --page-size): 0 leaves it out of the table unless
     * --kernel names it (then supports() says why it cannot run). */
    int (*listed)(const attn_shape_t *s);
} attn_impl_t;

/* The rounding flags the check uses for im on s. */
unsigned attn_impl_rounding(const attn_impl_t *im, const attn_shape_t *s, int gpu);

/* Head dimensions every program takes: 1 to ATTN_DIM_MAX. The CPU
 * implementations take each; a GPU kernel compiled for some of them declines
 * the others through supports(), and the table says why. */
#define ATTN_DIM_MAX 512

typedef struct {
    const char *prog;    /* "04_one_pass_attention" */
    const char *summary; /* one line for --help and the table title */
    const attn_impl_t *const *impls;
    int nimpls;
    /* index of the stage's own first implementation (o.npy); those before it
     * are the earlier stages' baselines. A run in which none of the stage's
     * own implementations (or, with --kernel, none of the chosen ones) ran is
     * a failure, exit 2, with each one's reason. */
    int own;
    /* The head dims the stage's GPU kernels are compiled for (0-terminated),
     * shown in --help; NULL: none listed. Not a limit of the program. */
    const int *dims;
    /* The stage's own options beyond the attention family's (declared in its
     * main.c; cli.h, cli_opt_t). The driver reads these names when declared:
     *   kv-heads N  (K/V heads; without it Hkv = H, grouped heads refused)
     *   br N, bc N, sram BYTES, splits N  (attn_tune_t, 0 when not given)
     *   varlen      (attn_shape_t.varlen) */
    const cli_opt_t *opts;
    int nopts;
    /* The defaults, so that a bare run runs the stage's own implementations:
     * dtype when --dtype is not given (0: fp32; the tensor-core ladder: bf16),
     * and decode = 1 for a decode stage (Nq = 1 unless --seq, --seq-q or
     * --decode says otherwise). */
    dtype_t dtype_default;
    int decode_default;
} attn_stage_t;

/* What stages 06-07 add (a separate struct, so that the earlier stages'
 * attn_stage_t stays as it is). */
typedef struct {
    /* Decode (seq_q = 1) on the GPU: the measured read-only bandwidth in GB/s
     * for this shape's K/V bytes, timed as the implementations are (L2
     * flushed, median); the "% read" column is K/V GB/s against it. NULL: no
     * such column. */
    double (*read_ceiling_gbps)(const attn_shape_t *s);
    /* Checks the stage's own options on a shape before anything runs: 1 when
     * fine, else 0 with a one-line reason (the program exits 2). NULL: none. */
    int (*validate)(const attn_shape_t *s, char *why, size_t n);
    /* Runs after each shape's table (stage 07: the append kernel's own row);
     * returns 0, or 1 when it failed (the program fails). NULL: nothing. */
    int (*after_shape)(const attn_shape_t *s, int gpu);
} attn_stage_ext_t;

/* K and V bytes a decode step must read once: 2 es d Hkv sum_b n_b (n_b the
 * keys batch element b holds). The "K/V GB/s" column divides it by the time. */
double attn_kv_bytes_once(const attn_shape_t *s);

int attention_stage_main(const attn_stage_t *st, int argc, char **argv);
/* The same with stage 06-07 extras (ext may be NULL). */
int attention_stage_main_ext(const attn_stage_t *st, const attn_stage_ext_t *ext, int argc, char **argv);

/* Shared with the tests: 1 when d is in the 0-terminated list. */
int attn_dim_listed(const int *dims, size_t d);

#ifndef GPU_FN
#if HAVE_CUDA
#define GPU_FN(f) f
#else
#define GPU_FN(f) NULL
#endif
#endif

#ifdef __cplusplus
}
#endif

#endif
