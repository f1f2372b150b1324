/* Option parsing shared by every stage executable (getopt_long).
 *
 * Every value is validated; a bad one gets a one-line message naming the
 * option and the accepted range, and the program exits with status 2. */
#ifndef STF_CLI_H
#define STF_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DEV_AUTO = 0, DEV_CPU = 1, DEV_GPU = 2 } device_sel_t;

/* Longest path accepted for --csv, --save-npy and --load-npy: the drivers
 * build DIR + "/name.npy" in char[4096], so a longer one would be cut short
 * silently. Longer paths are refused with a message. */
#define CLI_PATH_MAX 4000

/* Which family of options a program takes. */
enum { CLI_SOFTMAX = 1, CLI_ATTENTION = 2 };

/* Bits of opts_t.given: which options the user set explicitly. */
enum {
    GIVEN_ROWS = 1u << 0, GIVEN_COLS = 1u << 1, GIVEN_ITERS = 1u << 2,
    GIVEN_WARMUP = 1u << 3, GIVEN_BATCH = 1u << 4, GIVEN_HEADS = 1u << 5,
    GIVEN_SEQ = 1u << 6, GIVEN_DIM = 1u << 7, GIVEN_KV_HEADS = 1u << 8,
    GIVEN_SCALE = 1u << 9, GIVEN_SEQ_Q = 1u << 10, GIVEN_SEQ_KV = 1u << 11,
    GIVEN_BR = 1u << 12, GIVEN_BC = 1u << 13, GIVEN_SRAM = 1u << 14, GIVEN_SPLITS = 1u << 15,
    GIVEN_VARLEN = 1u << 16,
};

typedef struct {
    device_sel_t device;
    dtype_t dtype;
    long long rows, cols;          /* softmax */
    long long batch, heads, kv_heads, seq, dim; /* attention */
    long long seq_q, seq_kv;       /* --seq-q, --seq-kv (--seq sets both; --decode: seq_q = 1) */
    long long br, bc, sram, splits; /* tiling knobs of stages 05-07 */
    const char *kernels;           /* --kernel a,b,c: run only these implementations */
    int causal;
    int varlen;                    /* --varlen: per-batch K/V lengths (stage 07) */
    int iters, warmup;
    uint64_t seed;
    double scale;
    int sweep;
    const char *csv;
    const char *save_npy;
    const char *load_npy;
    unsigned given;
} opts_t;

typedef struct {
    const char *prog;    /* e.g. "01_naive_softmax" */
    const char *summary; /* one line for --help */
    int kind;            /* CLI_SOFTMAX or CLI_ATTENTION */
    const char *extra_help; /* stage-specific lines for --help, or NULL */
} cli_spec_t;

/* Returns 0 when the program should run, 1 when --help was printed (exit 0),
 * 2 on bad input (the message is already on `err`). Besides the values, it
 * checks the paths before any work: --csv FILE can be created or appended to
 * (a file it had to create for the check is removed again), --save-npy DIR
 * exists as a directory files can be written in or can be created (and is
 * removed again if it was), --load-npy DIR is not empty (that DIR holds
 * readable .npy files is the driver's check), and no path is longer than
 * CLI_PATH_MAX. Whether an existing CSV file's header matches the program's
 * columns is report_csv_check's job (report.h): the parser does not know them. */
int cli_parse(const cli_spec_t *spec, int argc, char **argv, opts_t *o, FILE *err);

/* Parses a strictly positive integer no larger than max: 0 on success. */
int cli_parse_count(const char *s, long long max, long long *out);

/* Resolves DEV_AUTO to DEV_CPU or DEV_GPU. Returns 2 (after a message) when
 * --device gpu was asked for and no GPU can be used. */
int cli_resolve_device(opts_t *o, FILE *err);

#ifdef __cplusplus
}
#endif

#endif
