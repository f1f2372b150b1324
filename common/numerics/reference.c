#include "reference.h"

#include <float.h>
#include <math.h>
#include <string.h>

void softmax_ref_row(const void *x, dtype_t dt, size_t cols, double *out)
{
    double m = -INFINITY;
    int nan = 0;
    for (size_t j = 0; j < cols; j++) {
        double v = dtype_get(x, dt, j);
        if (isnan(v)) nan = 1;
        else if (v > m) m = v;
    }
    if (nan || m == -INFINITY) { /* NaN in the row, or no finite maximum: 0/0 */
        for (size_t j = 0; j < cols; j++) out[j] = NAN;
        return;
    }
    double s = 0;
    for (size_t j = 0; j < cols; j++) {
        out[j] = exp((double)dtype_get(x, dt, j) - m);
        s += out[j];
    }
    for (size_t j = 0; j < cols; j++) out[j] /= s;
}

double row_range(const void *x, dtype_t dt, size_t cols)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t j = 0; j < cols; j++) {
        double v = dtype_get(x, dt, j);
        if (!isfinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    return hi > lo ? hi - lo : 0.0;
}

double check_elem_error(double x, double r, double den)
{
    if (isnan(r) || isnan(x)) return isnan(r) && isnan(x) ? 0.0 : INFINITY;
    if (isinf(r) || isinf(x)) return x == r ? 0.0 : INFINITY;
    return fabs(x - r) / den;
}

double fold_ratio(double worst, double err, double tol, size_t *unresolved)
{
    double ratio = err / tol;
    if (!(tol <= CHECK_TOL_CAP)) { /* NaN, inf or too wide: the check cannot resolve this row */
        ++*unresolved;
        ratio = INFINITY;
    }
    if (isnan(ratio)) ratio = INFINITY; /* 0/0 or inf/inf */
    return ratio > worst ? ratio : worst;
}

int check_verdict(size_t rows, size_t excused, size_t unresolved, double worst_ratio)
{
    (void)excused;
    return rows > 0 && unresolved == 0 && worst_ratio <= 1.0;
}

void check_init(check_t *c) { memset(c, 0, sizeof *c); }

void check_row(check_t *c, const void *y, dtype_t dt, const double *ref, size_t n, double tol)
{
    double floor_ = dtype_min_normal(dt), worst = 0;
    for (size_t j = 0; j < n; j++) {
        double v = dtype_get(y, dt, j), r = ref[j];
        if (!isfinite(v)) c->nonfinite++;
        double e = check_elem_error(v, r, fmax(fabs(r), floor_));
        if (!(e <= worst)) worst = e;
    }
    if (!(worst <= c->max_rel)) c->max_rel = worst;
    if (!(tol <= c->max_tol)) c->max_tol = tol;
    c->worst_ratio = fold_ratio(c->worst_ratio, worst, tol, &c->unresolved);
    c->rows++;
}

void check_row_excused(check_t *c, const void *y, dtype_t dt, size_t n)
{
    for (size_t j = 0; j < n; j++) c->nonfinite += !isfinite(dtype_get(y, dt, j));
    c->rows++;
    c->excused++;
}

int check_ok(const check_t *c) { return check_verdict(c->rows, c->excused, c->unresolved, c->worst_ratio); }

int softmax_row_breaks_naive(const void *x, dtype_t dt, size_t cols)
{
    const double big = dtype_max_finite(dt);
    double sum = 0, emax = 0;
    int any = 0;
    for (size_t j = 0; j < cols; j++) {
        const double v = dtype_get(x, dt, j);
        if (isnan(v)) return NAIVE_OK; /* NaN: the row is NaN for every formula */
        if (v == -INFINITY) continue;  /* e^-inf = 0 exactly, in every formula */
        any = 1;
        const double e = exp(v);
        if (e > big) return NAIVE_OVERFLOW;
        sum += e;
        if (e > emax) emax = e;
    }
    if (sum > FLT_MAX) return NAIVE_OVERFLOW;
    /* The twin: every e^{x_j} below the smallest normal of the type it is
     * stored in loses its relative precision, and below half the smallest
     * subnormal it is 0, so the sum is 0 and the row 0/0 (an all -200 fp32 row). */
    if (any && emax < dtype_min_normal(dt)) return NAIVE_UNDERFLOW;
    return NAIVE_OK;
}

int softmax_row_overflows_naive(const void *x, dtype_t dt, size_t cols)
{
    return softmax_row_breaks_naive(x, dt, cols) == NAIVE_OVERFLOW;
}

double softmax_tolerance(dtype_t dt, size_t cols, double range, int k)
{
    const double u32 = 1.0 / 16777216.0;
    const double R = 2.0 * 149.0 * log(2.0);
    return k * dtype_unit_roundoff(dt) + u32 * (4.0 * fmin(range, R) + 16.0 + 8.0 * sqrt((double)cols));
}
