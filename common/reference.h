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
    double max_rel;     /* worst element, over all rows checked */
    double worst_ratio; /* max over rows of (row error / row tolerance) */
    double max_tol;     /* largest tolerance used */
    size_t nonfinite;   /* inf or NaN elements in the output */
    size_t rows;        /* rows checked */
} check_t;

void check_init(check_t *c);
/* Checks one row and folds it into c. */
void check_row(check_t *c, const void *y, dtype_t dt, const double *ref, size_t n, double tol);
int check_ok(const check_t *c);

/* The tolerance for a softmax output row:
 *   tol = k * u_s + u_32 * (4 * range + 16 + 8 * sqrt(cols))
 * u_s: unit roundoff of the storage type; k: how many times a value on the
 * path is rounded to it (1 when only the output is stored; 3 for stage 01,
 * whose e^x is a value of the storage type as in the formula, and whose
 * denominator and output inherit that rounding). range = row_range().
 * 2 u range: the exponent argument x - m is rounded when formed, and (GPU)
 *   again when scaled by log2 e; each rounding of an argument t costs a
 *   relative u |t| in e^t, and |t| <= range.
 * 2 u range: online softmax's rescalings e^(m - m') of the running sum; their
 *   arguments add up to at most the range.
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
