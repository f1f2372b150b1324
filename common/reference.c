#include "reference.h"

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

void check_init(check_t *c) { memset(c, 0, sizeof *c); }

void check_row(check_t *c, const void *y, dtype_t dt, const double *ref, size_t n, double tol)
{
    double floor_ = dtype_min_normal(dt), worst = 0;
    for (size_t j = 0; j < n; j++) {
        double v = dtype_get(y, dt, j), r = ref[j], e;
        if (!isfinite(v)) c->nonfinite++;
        if (isnan(r)) e = isnan(v) ? 0.0 : INFINITY;
        else if (!isfinite(v)) e = INFINITY;
        else e = fabs(v - r) / fmax(fabs(r), floor_);
        if (e > worst) worst = e;
    }
    if (worst > c->max_rel) c->max_rel = worst;
    double ratio = worst / tol;
    if (ratio > c->worst_ratio) c->worst_ratio = ratio;
    if (tol > c->max_tol) c->max_tol = tol;
    c->rows++;
}

int check_ok(const check_t *c) { return c->rows > 0 && c->worst_ratio <= 1.0; }

double softmax_tolerance(dtype_t dt, size_t cols, double range, int k)
{
    const double u32 = 1.0 / 16777216.0;
    return k * dtype_unit_roundoff(dt) + u32 * (4.0 * range + 16.0 + 8.0 * sqrt((double)cols));
}
