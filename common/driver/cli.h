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

/* The entries of a static array: a stage's main() counts its implementations
 * and options with it, so an entry added to the list is never left out of
 * the count (stage 07 once listed six and ran five). */
#define STF_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef enum { DEV_AUTO = 0, DEV_CPU = 1, DEV_GPU = 2 } device_sel_t;

/* Longest path accepted for --csv, --save-npy and --load-npy: the drivers
 * build DIR + "/name.npy" in char[4096], so a longer one would be cut short
 * silently. Longer paths are refused with a message. */
#define CLI_PATH_MAX 4000

/* Which family of options a program takes. */
enum { CLI_SOFTMAX = 1, CLI_ATTENTION = 2 };

/* An option one stage adds to its family's, declared in that stage's main.c
 * and handed to the driver, which hands it to cli_parse_opts:
 *
 *     static const cli_opt_t OPTS[] = {
 *         { "chunks", "N", 64, "split each row into N chunks (default: chosen per shape)" },
 *         { "verbose", NULL, 0, "print each chunk" },
 *     };
 *
 * arg: the value's name in --help ("N"), or NULL for a flag; a value is an
 * integer from 1 to max. A program knows only its family's options and its
 * stage's: any other is an unknown option (exit 2), so an option that would
 * change nothing is never accepted silently. Read the values back with
 * cli_opt_given / cli_opt_value. */
typedef struct {
    const char *name; /* without the leading "--" */
    const char *arg;  /* NULL: a flag */
    long long max;
    const char *help; /* one line */
} cli_opt_t;
#define CLI_OPTS_MAX 8

/* Bits of opts_t.given: which of the family's options the user set explicitly. */
enum {
    GIVEN_ROWS = 1u << 0, GIVEN_COLS = 1u << 1, GIVEN_ITERS = 1u << 2,
    GIVEN_WARMUP = 1u << 3, GIVEN_BATCH = 1u << 4, GIVEN_HEADS = 1u << 5,
    GIVEN_SEQ = 1u << 6, GIVEN_DIM = 1u << 7,
    GIVEN_SCALE = 1u << 9, GIVEN_SEQ_Q = 1u << 10, GIVEN_SEQ_KV = 1u << 11,
    GIVEN_DECODE = 1u << 17, GIVEN_SEED = 1u << 18, GIVEN_DTYPE = 1u << 19,
};

typedef struct {
    device_sel_t device;
    dtype_t dtype;
    long long rows, cols;          /* softmax */
    long long batch, heads, seq, dim; /* attention */
    long long seq_q, seq_kv;       /* --seq-q, --seq-kv (--seq sets both; --decode: seq_q = 1) */
    const char *kernels;           /* --kernel a,b,c: run only these implementations */
    int causal;
    int iters, warmup;
    uint64_t seed;
    double scale;
    int sweep;
    const char *csv;
    const char *save_npy;
    const char *load_npy;
    unsigned given;
    /* the stage's own options (cli_parse_opts): values and which were given */
    const cli_opt_t *opts;
    int nopts;
    long long opt_val[CLI_OPTS_MAX];
    unsigned opt_given;
} opts_t;

typedef struct {
    const char *prog;    /* e.g. "01_naive_softmax" */
    const char *summary; /* one line for --help */
    int kind;            /* CLI_SOFTMAX or CLI_ATTENTION */
    const char *extra_help; /* stage-specific lines for --help, or NULL */
} cli_spec_t;

/* 1 when the stage option `name` was given; its value (0 when not given, 1
 * for a given flag). A name the stage did not declare is never given. */
int cli_opt_given(const opts_t *o, const char *name);
long long cli_opt_value(const opts_t *o, const char *name);

/* Returns 0 when the program should run, 1 when --help was printed (exit 0),
 * 2 on bad input (the message is already on `err`). Besides the values, it
 * checks the paths before any work: --csv FILE can be created or appended to
 * (a file it had to create for the check is removed again), --save-npy DIR
 * exists as a directory files can be written in or can be created (and is
 * removed again if it was), --load-npy DIR is not empty (that DIR holds
 * readable .npy files is the driver's check), and no path is longer than
 * CLI_PATH_MAX. Whether an existing CSV file's header matches the program's
 * columns is report_csv_check's job (report.h): the parser does not know them.
 * Conflicts refused here: --seq with --seq-q/--seq-kv/--decode, --decode
 * with --seq-q, --sweep with --load-npy or --save-npy, and --scale or --seed
 * with --load-npy (the file replaces the generated input they describe). */
int cli_parse_opts(const cli_spec_t *spec, const cli_opt_t *opts, int nopts, int argc, char **argv, opts_t *o,
                   FILE *err);

/* 1 when the --kernel list (comma-separated names, or NULL: all) names name. */
int cli_kernel_selected(const char *list, const char *name);

/* Parses a strictly positive integer no larger than max: 0 on success. */
int cli_parse_count(const char *s, long long max, long long *out);

/* Resolves DEV_AUTO to DEV_CPU or DEV_GPU. Returns 2 (after a message) when
 * --device gpu was asked for and no GPU can be used. */
int cli_resolve_device(const char *prog, opts_t *o, FILE *err);

#ifdef __cplusplus
}
#endif

#endif
