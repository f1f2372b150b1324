/* See attention_ref.h. Everything here is fp64 and reads the stored values,
 * so the reference answers "what is the exact attention of these inputs", and
 * an implementation's error is its own arithmetic and its own roundings. */
#include "attention_ref.h"

#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void attn_shape_init(attn_shape_t *s, size_t B, size_t H, size_t Hkv, size_t Nq, size_t Nk, size_t d, int causal,
                     dtype_t dt)
{
    memset(s, 0, sizeof *s);
    s->batch = B;
    s->heads = H;
    s->kv_heads = Hkv;
    s->seq_q = Nq;
    s->seq_kv = Nk;
    s->dim = d;
    s->causal = causal;
    s->scale = (float)(1.0 / sqrt((double)d));
    s->dt = dt;
}

uint64_t attn_q_elems(const attn_shape_t *s) { return (uint64_t)s->batch * s->heads * s->seq_q * s->dim; }
uint64_t attn_kv_elems(const attn_shape_t *s) { return (uint64_t)s->batch * s->kv_heads * s->seq_kv * s->dim; }
uint64_t attn_rows(const attn_shape_t *s) { return (uint64_t)s->batch * s->heads * s->seq_q; }

size_t attn_visible_of(const attn_shape_t *s, size_t i, size_t nk)
{
    if (!s->causal) return nk;
    /* bottom-right: j <= i + Nk - Nq, i.e. i + 1 + Nk - Nq keys, clamped to [0, Nk] */
    const long long n = (long long)i + 1 + (long long)nk - (long long)s->seq_q;
    return n <= 0 ? 0 : (size_t)n > nk ? nk : (size_t)n;
}

size_t attn_visible_keys(const attn_shape_t *s, size_t i) { return attn_visible_of(s, i, s->seq_kv); }

size_t attn_kv_len(const attn_shape_t *s, size_t b)
{
    if (!s->varlen) return s->seq_kv;
    return s->seq_kv - (size_t)((uint64_t)b * s->seq_kv / (2 * (uint64_t)s->batch));
}

/* Pairs of one head of Nq queries against nk held keys. */
static uint64_t head_pairs(const attn_shape_t *s, uint64_t Nk)
{
    const uint64_t Nq = s->seq_q;
    if (!s->causal) return Nq * Nk;
    /* rows see 1 + off, 2 + off, ... keys (off = Nk - Nq), clamped at 0 */
    if (Nk >= Nq) return Nq * (Nq + 1) / 2 + Nq * (Nk - Nq);
    return Nk * (Nk + 1) / 2;
}

uint64_t attn_pairs(const attn_shape_t *s)
{
    if (!s->varlen) return (uint64_t)s->batch * s->heads * head_pairs(s, s->seq_kv);
    uint64_t p = 0;
    for (size_t b = 0; b < s->batch; b++) p += (uint64_t)s->heads * head_pairs(s, attn_kv_len(s, b));
    return p;
}

double attn_flops(const attn_shape_t *s) { return 4.0 * (double)s->dim * (double)attn_pairs(s); }

uint64_t attn_kv_slice(const attn_shape_t *s, uint64_t r)
{
    const uint64_t bh = r / s->seq_q, b = bh / s->heads, h = bh % s->heads;
    const uint64_t group = s->heads / s->kv_heads; /* query heads per K/V head */
    return b * s->kv_heads + h / group;
}

size_t attn_visible(const attn_shape_t *s, uint64_t r)
{
    const size_t b = (size_t)(r / ((uint64_t)s->seq_q * s->heads));
    return attn_visible_of(s, (size_t)(r % s->seq_q), attn_kv_len(s, b));
}

void attention_ref_row(const void *q, const void *k, const void *v, dtype_t dt, size_t n, size_t d, float scale,
                       double *out, attn_row_stats_t *st)
{
    double *sc = malloc((n ? n : 1) * sizeof *sc), *qd = malloc(d * sizeof *qd);
    double m = -INFINITY, cmax = 0, vmax = 0, smax = 0;
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
        /* Only finite logits carry rounding error: a -inf logit is a masked
         * key (its weight is 0 in every implementation), and a +inf one makes
         * the row NaN, judged by exact match. Neither is an overflow of S. */
        if (isfinite(sc[j])) {
            if (fabs(sc[j]) > smax) smax = fabs(sc[j]);
            if ((double)scale * mag > cmax) cmax = (double)scale * mag;
        }
    }
    /* All logits -inf (or no visible key): every weight is 0. PyTorch's SDPA
     * writes 0 there (its math path's _safe_softmax since 2.5, and the fused
     * kernels), as FlashAttention does: the exponents are taken against 0. */
    const double mb = m == -INFINITY ? 0.0 : m;
    double l = 0, l2 = 0;
    for (size_t j = 0; j < n; j++) {
        sc[j] = exp(sc[j] - mb);
        l += sc[j];
        l2 += sc[j] * sc[j];
    }
    double amax = 0, pv = 0, dev = 0;
    for (size_t c = 0; c < d; c++) {
        double acc = 0, aabs = 0, acc2 = 0;
        for (size_t j = 0; j < n; j++) {
            double vj = dtype_get(v, dt, j * d + c);
            if (sc[j] == 0.0 && isfinite(vj)) continue; /* a zero weight adds nothing ... */
            acc += sc[j] * vj;                           /* ... but 0 * NaN or 0 * inf is NaN, as in P V */
            if (!isfinite(vj)) continue; /* a non-finite column is judged by exact match, not by scale */
            aabs += sc[j] * fabs(vj);
            acc2 += sc[j] * sc[j] * vj * vj;
            if (fabs(vj) > vmax) vmax = fabs(vj);
        }
        out[c] = l > 0 ? acc / l : isfinite(acc) ? 0.0 : acc;
        if (l > 0 && aabs / l > amax) amax = aabs / l;
        double dv = 0; /* sum_j p_j^2 (v_jc - o_c)^2, over the finite terms */
        for (size_t j = 0; j < n && isfinite(out[c]) && l > 0; j++) {
            const double t = dtype_get(v, dt, j * d + c) - out[c];
            if (isfinite(t)) dv += sc[j] * sc[j] * t * t;
        }
        if (l > 0 && sqrt(acc2) / l > pv) pv = sqrt(acc2) / l;
        if (l > 0 && sqrt(dv) / l > dev) dev = sqrt(dv) / l;
    }
    /* A NaN logit (NaN in q or in a visible key row, or inf * 0) makes the
     * whole row NaN; a NaN or inf in V only its own column (above). */
    if (nan)
        for (size_t c = 0; c < d; c++) out[c] = NAN;
    double rmax = 0;
    for (size_t c = 0; c < d; c++)
        if (isfinite(out[c]) && fabs(out[c]) > rmax) rmax = fabs(out[c]);
    if (st) {
        st->n = n;
        st->amax = amax;
        st->cmax = cmax;
        st->vmax = vmax;
        st->smax = smax;
        st->psq = l > 0 ? l2 / (l * l) : 0.0;
        st->pv = pv;
        st->dev = dev;
        st->rmax = rmax;
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
    const char *k = (const char *)K + kv * s->seq_kv * d * es, *v = (const char *)V + kv * s->seq_kv * d * es;
    attention_ref_row(q, k, v, s->dt, attn_visible(s, r), d, s->scale, out, st);
}

static double denominator(dtype_t dt, const attn_row_stats_t *st) { return fmax(st->amax, dtype_min_normal(dt)); }

double attention_row_error(const void *o, dtype_t dt, const double *ref, const attn_row_stats_t *st, size_t d)
{
    double worst = 0;
    const double den = denominator(dt, st);
    for (size_t c = 0; c < d; c++) {
        const double x = dtype_get(o, dt, c), r = ref[c];
        const double e = check_elem_error(x, r, den);
        if (!(e <= worst)) worst = e; /* NaN never hides: it becomes the worst */
    }
    return worst;
}

double attention_tolerance(dtype_t dt, size_t d, const attn_row_stats_t *st, unsigned rounding)
{
    const double u = 1.0 / 16777216.0, us = dtype_unit_roundoff(dt), mn = dtype_min_normal(dt), lambda = 8.0;
    const double C = st->cmax, n = (double)st->n, A = denominator(dt, st);
    double D = (8.0 * sqrt((double)d) + 1.0) * u * C, extra = 0.0;
    if (rounding & ATT_ROUND_S) { /* the smaller of two valid bounds: probabilistic (first order) or worst case */
        const double worst = expm1(2.0 * us * (st->smax + mn));
        if (us * st->smax <= 1.0 / 16.0) extra += fmin(lambda * us * st->smax * st->dev / A, worst);
        else D += us * (st->smax + mn);
    }
    if (rounding & ATT_ROUND_P) extra += fmin(lambda * us * st->pv / A, us) + us * n * mn * st->vmax / A;
    if ((rounding & ATT_MMA_LOWP) && dt != DT_F32) extra += 2.0 * u * (ceil((double)d / 16) + ceil(n / 16));
    /* the fp32 part, then the final rounding: |fl(x) - r| <= u_s |x| + |x - r| */
    return (1.0 + us) * (expm1(2.0 * D) + u * (8.0 * C + 16.0 + 16.0 * sqrt(n))) + us * st->rmax / A + extra;
}

void attn_check_init(attn_check_t *c) { memset(c, 0, sizeof *c); }

int attn_row_overflows_s(dtype_t dt, const attn_row_stats_t *st, unsigned rounding)
{
    /* fp32 S overflows exactly where fp32 registers would: no lesson there.
     * smax counts finite logits only: a -inf key is a mask, not an overflow. */
    return (rounding & ATT_ROUND_S) && dt != DT_F32 && st->smax > dtype_max_finite(dt);
}

double attn_check_row(attn_check_t *c, const void *o, dtype_t dt, const double *ref, const attn_row_stats_t *st,
                      size_t d, unsigned rounding)
{
    for (size_t k = 0; k < d; k++) c->nonfinite += !isfinite(dtype_get(o, dt, k));
    c->rows++;
    if (attn_row_overflows_s(dt, st, rounding)) {
        /* The lesson of storing S in a 16-bit type: this row's logits do not
         * fit it. Its output is not judged; every other row is. */
        c->excused++;
        return 0.0;
    }
    const double e = attention_row_error(o, dt, ref, st, d);
    double tol = attention_tolerance(dt, d, st, rounding);
    if (!(e <= c->max_err)) c->max_err = e;
    /* An all-zero row would have error zero_err = rmax / A'. When the exact
     * result is 0 (rmax = 0: V = 0, all-zero inputs, every key masked) zero
     * is the right answer and e <= tol is an absolute bound, |o_k| <= tol A'.
     * Otherwise a tolerance not below half of zero_err could pass an all-zero
     * output (long rows average random V towards 0 like 1/sqrt(n) while the
     * bound grows like sqrt(n) u): the row is judged at half of zero_err
     * instead, which no answer without a correct leading digit meets. */
    size_t finite = 0;
    for (size_t k = 0; k < d; k++) finite += isfinite(ref[k]) != 0;
    if (!finite) {
        /* NaN everywhere (a NaN logit, a logit of +inf): judged by exact
         * match alone, NaN for NaN; no tolerance enters */
        c->nan_rows++;
        if (!(e == 0.0)) c->worst_ratio = INFINITY;
        return e;
    }
    const double zero_err = st->rmax / denominator(dt, st);
    if (st->rmax == 0.0) {
        c->zero_rows++;
    } else if (tol <= CHECK_TOL_CAP && !(tol < 0.5 * zero_err)) {
        tol = 0.5 * zero_err;
        c->capped++;
    }
    if (!(tol <= c->max_tol)) c->max_tol = tol;
    c->worst_ratio = fold_ratio(c->worst_ratio, e, tol, &c->unresolved);
    return e;
}

int attn_check_ok(const attn_check_t *c) { return check_verdict(c->rows, c->excused, c->unresolved, c->worst_ratio); }
