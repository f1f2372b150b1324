/* See attention_ref.h. Everything here is fp64 and reads the stored values,
 * so the reference answers "what is the exact attention of these inputs", and
 * an implementation's error is its own arithmetic and its own roundings. */
#include "attention_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void attn_shape_init(attn_shape_t *s, size_t B, size_t H, size_t Hkv, size_t N, size_t d, int causal, dtype_t dt)
{
    s->batch = B;
    s->heads = H;
    s->kv_heads = Hkv;
    s->seq = N;
    s->dim = d;
    s->causal = causal;
    s->scale = (float)(1.0 / sqrt((double)d));
    s->dt = dt;
}

uint64_t attn_q_elems(const attn_shape_t *s) { return (uint64_t)s->batch * s->heads * s->seq * s->dim; }
uint64_t attn_kv_elems(const attn_shape_t *s) { return (uint64_t)s->batch * s->kv_heads * s->seq * s->dim; }
uint64_t attn_rows(const attn_shape_t *s) { return (uint64_t)s->batch * s->heads * s->seq; }

uint64_t attn_pairs(const attn_shape_t *s)
{
    const uint64_t N = s->seq, bh = (uint64_t)s->batch * s->heads;
    return bh * (s->causal ? N * (N + 1) / 2 : N * N);
}

double attn_flops(const attn_shape_t *s)
{
    double f = 4.0 * (double)s->batch * (double)s->heads * (double)s->seq * (double)s->seq * (double)s->dim;
    return s->causal ? f / 2 : f;
}

uint64_t attn_kv_slice(const attn_shape_t *s, uint64_t r)
{
    const uint64_t bh = r / s->seq, b = bh / s->heads, h = bh % s->heads;
    const uint64_t group = s->heads / s->kv_heads; /* query heads per K/V head */
    return b * s->kv_heads + h / group;
}

size_t attn_visible(const attn_shape_t *s, uint64_t r) { return s->causal ? (size_t)(r % s->seq) + 1 : s->seq; }

void attention_ref_row(const void *q, const void *k, const void *v, dtype_t dt, size_t n, size_t d, float scale,
                       double *out, attn_row_stats_t *st)
{
    double *sc = malloc((n ? n : 1) * sizeof *sc), *qd = malloc(d * sizeof *qd);
    double m = -INFINITY, cmax = 0, vmax = 0;
    int nan = 0;
    if (!sc || !qd) abort(); /* a few KiB: running out here means the host is gone */
    for (size_t c = 0; c < d; c++) qd[c] = dtype_get(q, dt, c);
    for (size_t j = 0; j < n; j++) {
        double dot = 0, mag = 0;
        for (size_t c = 0; c < d; c++) {
            double kc = dtype_get(k, dt, j * d + c);
            dot += qd[c] * kc;
            mag += fabs(qd[c] * kc);
        }
        sc[j] = (double)scale * dot;
        if (isnan(sc[j])) nan = 1;
        else if (sc[j] > m) m = sc[j];
        if ((double)scale * mag > cmax) cmax = (double)scale * mag;
    }
    double l = 0;
    for (size_t j = 0; j < n; j++) {
        sc[j] = exp(sc[j] - m);
        l += sc[j];
    }
    double amax = 0;
    for (size_t c = 0; c < d; c++) {
        double acc = 0, aabs = 0;
        for (size_t j = 0; j < n; j++) {
            double vj = dtype_get(v, dt, j * d + c);
            acc += sc[j] * vj;
            aabs += sc[j] * fabs(vj);
            if (isnan(vj)) nan = 1;
            if (fabs(vj) > vmax) vmax = fabs(vj);
        }
        out[c] = acc / l;
        if (aabs / l > amax) amax = aabs / l;
    }
    if (nan || n == 0 || m == -INFINITY)
        for (size_t c = 0; c < d; c++) out[c] = NAN;
    if (st) {
        st->n = n;
        st->amax = amax;
        st->cmax = cmax;
        st->vmax = vmax;
    }
    free(sc);
    free(qd);
}

void attention_ref_at(const attn_shape_t *s, const void *Q, const void *K, const void *V, uint64_t r, double *out,
                      attn_row_stats_t *st)
{
    const size_t es = dtype_size(s->dt), d = s->dim;
    const uint64_t kv = attn_kv_slice(s, r);
    const char *q = (const char *)Q + r * d * es;
    const char *k = (const char *)K + kv * s->seq * d * es, *v = (const char *)V + kv * s->seq * d * es;
    attention_ref_row(q, k, v, s->dt, attn_visible(s, r), d, s->scale, out, st);
}

static double denominator(dtype_t dt, const attn_row_stats_t *st) { return fmax(st->amax, dtype_min_normal(dt)); }

double attention_row_error(const void *o, dtype_t dt, const double *ref, const attn_row_stats_t *st, size_t d)
{
    double worst = 0;
    const double den = denominator(dt, st);
    for (size_t c = 0; c < d; c++) {
        double x = dtype_get(o, dt, c), r = ref[c], e;
        if (isnan(r)) e = isnan(x) ? 0.0 : INFINITY;
        else if (!isfinite(x)) e = INFINITY;
        else e = fabs(x - r) / den;
        if (e > worst) worst = e;
    }
    return worst;
}

double attention_tolerance(dtype_t dt, size_t d, const attn_row_stats_t *st, unsigned rounding)
{
    const double u = 1.0 / 16777216.0, us = dtype_unit_roundoff(dt), mn = dtype_min_normal(dt);
    const double C = st->cmax, n = (double)st->n;
    double D = (8.0 * sqrt((double)d) + 1.0) * u * C;
    if (rounding & ATT_ROUND_S) D += us * (C + mn);
    /* the fp32 part, then the final rounding: |fl(x) - r| <= u_s |x| + |x - r|
     * <= u_s A + (1 + u_s) |x - r| */
    double tol = (1.0 + us) * (expm1(2.0 * D) + u * (8.0 * C + 16.0 + 16.0 * sqrt(n))) + us;
    if (rounding & ATT_ROUND_P) tol += us * (1.0 + n * mn * st->vmax / denominator(dt, st));
    if ((rounding & ATT_MMA_LOWP) && dt != DT_F32) tol += 2.0 * u * (ceil((double)d / 16) + ceil(n / 16));
    return tol;
}

void attn_check_init(attn_check_t *c) { memset(c, 0, sizeof *c); }

double attn_check_row(attn_check_t *c, const void *o, dtype_t dt, const double *ref, const attn_row_stats_t *st,
                      size_t d, unsigned rounding)
{
    const double e = attention_row_error(o, dt, ref, st, d), tol = attention_tolerance(dt, d, st, rounding);
    for (size_t k = 0; k < d; k++) c->nonfinite += !isfinite(dtype_get(o, dt, k));
    if (e > c->max_err) c->max_err = e;
    if (e / tol > c->worst_ratio) c->worst_ratio = e / tol;
    if (tol > c->max_tol) c->max_tol = tol;
    c->rows++;
    return e;
}

int attn_check_ok(const attn_check_t *c) { return c->rows > 0 && c->worst_ratio <= 1.0; }
