/* Shared by the attention tests (stages 04 to 07): a random attention
 * problem, its fp64 reference, running an implementation (attn_impl_t) on the
 * CPU (through a ledger) or the GPU (poisoned output and workspace), checking
 * every row, and running a stage program. */
#ifndef STF_TEST_ATTN_HARNESS_H
#define STF_TEST_ATTN_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "attention_bench.h"
#include "attention_ref.h"
#include "ledger.h"

typedef struct {
    attn_shape_t s;
    void *q, *k, *v;         /* host, storage type */
    const int *lens;         /* per-batch K/V lengths for the reference, or NULL (attn_visible) */
    double *ref;             /* rows x d */
    attn_row_stats_t *st;    /* rows */
} attn_problem_t;

/* Inputs rng_logit(test_seed(), stream .. stream + 2, i, scale) in dt. */
void attn_problem_make(attn_problem_t *p, size_t B, size_t H, size_t Hkv, size_t Nq, size_t Nk, size_t d, int causal,
                       dtype_t dt, float scale, uint32_t stream);
/* The fp64 reference of every row; with lens, row r of batch b sees lens[b]
 * keys (bottom-right when causal). */
void attn_problem_ref(attn_problem_t *p, const int *lens);
void attn_problem_free(attn_problem_t *p);

typedef struct {
    ledger_t lg;
    hbm_t q, k, v, o;
} attn_counts_t;

/* Runs im on p's inputs (with the tiles of p->s.tune) into o (host, q
 * elements of dt), poisoned first. gpu = 0: through a fresh ledger (returned
 * in cnt when not NULL); gpu = 1: on the device, output and workspace
 * poisoned (every value read must have been written). Returns the
 * implementation's status. */
int attn_run_impl(const attn_impl_t *im, int gpu, const attn_problem_t *p, void *o, attn_counts_t *cnt);
/* Checks every row of o; returns the worst error / tolerance of the judged
 * rows (<= 1 passes them) and the accumulated check in c (may be NULL): the
 * caller looks at c's non-finite, excused and unresolved rows itself. */
double attn_check_rows(const attn_problem_t *p, const void *o, unsigned rounding, attn_check_t *c);
/* As attn_check_rows, with the verdict folded in: a check that is not ok
 * (attn_check_ok) returns more than 1 (INFINITY if its ratio alone passes). */
double attn_check_all(const attn_problem_t *p, const void *o, unsigned rounding, attn_check_t *c);

/* Runs build/bin/<prog> <args> (or $STF_BIN_DIR/<prog>) with the shell
 * redirection redir (e.g. "2>&1 >/dev/null": stderr only) and returns its
 * exit status; out receives what it printed (at most n - 1 bytes). */
int attn_run_prog(const char *prog, const char *args, const char *redir, char *out, size_t n);

#endif
