/* The fp64 reference every softmax stage and test is checked against, the
 * error measure, and the tolerance with its derivation (notes/01_naive_softmax.md,
 * section "How results are checked"). */
#ifndef STF_REFERENCE_H
#define STF_REFERENCE_H

#include <stddef.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Safe softmax of one stored row, computed in fp64 from the stored values.
 * A row of all -inf gives NaN everywhere (0/0), a NaN anywhere gives a row of
 * NaN: the conventions every stage follows (and torch.softmax too). */
void softmax_ref_row(const void *x, dtype_t dt, size_t cols, double *out);

/* max - min over the finite entries of a stored row (0 when fewer than two):
 * the largest |x - m| an exponent argument can take, which enters the
 * tolerance because an fp32 rounding of that argument is amplified by exp. */
double row_range(const void *x, dtype_t dt, size_t cols);

/* Relative error of y against ref, element by element:
 *   |y_i - r_i| / max(|r_i|, min_normal(dt))
 * The floor keeps subnormal outputs of fp16 from dominating: below the
 * smallest normal, fp16 has a fixed absolute spacing, not a relative one.
 * NaN where the reference is NaN is a match; any other non-finite value, or a
 * finite value where the reference is NaN, counts as an infinite error. */
typedef struct {
    double max_rel;     /* worst element, over all rows checked (NaN and inf propagate) */
    double worst_ratio; /* max over judged rows of (row error / row tolerance); inf when unresolved */
    double max_tol;     /* largest tolerance used */
    size_t nonfinite;   /* inf or NaN elements in the output */
    size_t rows;        /* rows checked */
    size_t excused;     /* rows not judged: the naive formula overflows there (the lesson of stage 01) */
    size_t unresolved;  /* rows whose tolerance is not finite or above CHECK_TOL_CAP */
} check_t;

/* The rules every check in the project follows (softmax and attention):
 *  - an element's error is |x - r| / den; matching non-finite values (NaN and
 *    NaN, inf and the same inf) are equal; any other non-finite value on
 *    either side is an infinite error. NaN never compares its way to a pass.
 *  - a tolerance that is not finite, or above CHECK_TOL_CAP, means the check
 *    cannot tell a right answer from a wrong one on this input (an all-zero
 *    softmax has relative error 1, an all-zero attention row error 1): the row
 *    fails as "unresolved", it never passes.
 * 1/16 = 16 bf16 roundings: far above what any correct implementation here
 * needs (bf16 softmax stored three times, stage 01: 1.2e-2). Attention rows
 * have a second guard against outputs that cancel towards 0 (attention_ref.h). */
#define CHECK_TOL_CAP (1.0 / 16.0)
double check_elem_error(double x, double r, double den);
/* Folds one row's error and tolerance into a running worst ratio. */
double fold_ratio(double worst, double err, double tol, size_t *unresolved);
/* Pass: some row checked, none unresolved, every judged row within tolerance. */
int check_verdict(size_t rows, size_t excused, size_t unresolved, double worst_ratio);

void check_init(check_t *c);
/* Checks one row and folds it into c. */
void check_row(check_t *c, const void *y, dtype_t dt, const double *ref, size_t n, double tol);
/* Counts one row as checked but not judged (its overflow is the lesson). */
void check_row_excused(check_t *c, const void *y, dtype_t dt, size_t n);
int check_ok(const check_t *c);

/* 1 when the naive formula must overflow on this stored row: some e^{x_j}
 * exceeds the largest finite value of dt (e^x is stored in dt), or the fp32
 * sum of the e^{x_j} exceeds FLT_MAX. Computed in fp64. Only naive softmax
 * may be excused, and only on such rows. */
int softmax_row_overflows_naive(const void *x, dtype_t dt, size_t cols);
/* The same with its twin: NAIVE_OVERFLOW as above; NAIVE_UNDERFLOW when
 * every finite e^{x_j} is below the smallest normal of dt (they lose their
 * relative precision, and an all -200 fp32 row sums to 0: 0/0); NAIVE_OK
 * otherwise (also for NaN rows and all -inf rows, NaN for every formula). */
enum { NAIVE_OK = 0, NAIVE_OVERFLOW = 1, NAIVE_UNDERFLOW = 2 };
int softmax_row_breaks_naive(const void *x, dtype_t dt, size_t cols);

/* The tolerance for a softmax output row:
 *   tol = k * u_s + u_32 * (4 * min(range, R) + 16 + 8 * sqrt(cols))
 * u_s: unit roundoff of the storage type; k: how many times a value on the
 * path is rounded to it (1 when only the output is stored; 3 for stage 01,
 * whose e^x is a value of the storage type as in the formula, and whose
 * denominator and output inherit that rounding). range = row_range().
 * 2 u range: the exponent argument x - m is rounded when formed, and (GPU)
 *   again when scaled by log2 e; each rounding of an argument t costs a
 *   relative u |t| in e^t, and |t| <= range.
 * 2 u range: online softmax's rescalings e^(m - m') of the running sum; their
 *   arguments add up to at most the range.
 * R = 2 ln(2^149) = 206.5: an fp32 exponential of an argument below
 *   -ln(2^149) = -103.3 is 0 whatever its rounding, so only arguments within
 *   103.3 of the maximum carry a rounding error into the output, and the
 *   rescalings that matter add up to no more than that again. Without this
 *   cap a row of range 6e6 had a tolerance of 1.4 (140%), and an all-zero
 *   output passed.
 * 16 u: the exponentials themselves (exp2f and glibc's expf are within 2 ulp,
 *   at most 4 u; two on any path) and the division.
 * 8 sqrt(n) u: the probabilistic bound of Higham & Mary (SIAM J. Sci. Comput.
 *   41(5), 2019) for an n-term fp32 sum with lambda = 8, which holds except
 *   with probability below 2n exp(-32). */
double softmax_tolerance(dtype_t dt, size_t cols, double range, int k);

#ifdef __cplusplus
}
#endif

#endif
