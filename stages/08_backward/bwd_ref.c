/* Stage 08: the fp64 reference of the backward pass and the tolerance of each
 * gradient row (derivation: notes/08_backward.md, "How the gradients are
 * checked"; the forward's part is attention_ref.h's).
 *
 * The reference works from the stored inputs Q, K, V, dO (type dt), in fp64:
 *   s_ij = scale q_i . k_j,  L_i = m_i + ln sum_j e^{s_ij - m_i},  P_ij = e^{s_ij - L_i}
 *   O_i = sum_j P_ij v_j,  D_i = dO_i . O_i,  dP_ij = dO_i . v_j,  dS_ij = P_ij (dP_ij - D_i)
 *   dQ_i = scale sum_j dS_ij k_j,  dK_j = scale sum_i dS_ij q_i,  dV_j = sum_i P_ij dO_i
 * with j over the keys row i sees and, for dK and dV, i over every (query
 * head of the group, query row) that sees key j.
 *
 * Each gradient element g = sum_t a_t b_t (a = P or dS, b = dO, K or Q) is
 * bounded term by term, as the forward's output is:
 *   |fl(g) - g| <= (1 + u_s) [ sum_t |da_t| |b_t|             (errors of a from the arithmetic before it)
 *                              + c_n sum_t |a'_t b_t|          (the fp32 sum of n terms)
 *                              + u |g| ]                       (the scale multiply, dQ and dK)
 *                 + min(lambda u_s sqrt(m sum_t (a'_t b_t)^2), m u_s sum_t |a'_t b_t|)   (m 16-bit roundings of a)
 *                 + u_s |g|                                    (the gradient stored in dt)
 * where a' is a's gross size (P for dV; P (|dP| + |D|) for dS, which is the
 * size of what is rounded when dP - D cancels), c_n = 8 sqrt(n) u
 * [+ 2 u ceil(n/16) on tensor cores], and da:
 *   dP:  (8 sqrt(d) + 1) u sum_k |dO_k v_k| [+ 2u ceil(d/16) on tensor cores]
 *   D:   sum_k |dO_k| e_O + (8 sqrt(d) + 1) u sum_k |dO_k O_k|, e_O the forward's
 *        bound on each stored O element (attention_tolerance times A')
 *   L:   D_s + u (8 C + 16 + 8 sqrt(n)) + u |L|, D_s the logit bound of the forward
 *   P:   P rho, rho = e^{D_s + D_L + 2u (C + |L|) + 4u} - 1 (the logit, L and exp errors)
 *   dS:  P rho |dP - D| + P (|ddP| + |dD|) + 2 u P (|dP| + |D|)
 * plus, below the smallest normal of a 16-bit type, u_s min_normal per rounded
 * value (absolute). The row's tolerance is max_k bound_k / A', its error
 * max_k |g_k - r_k| / A', A' = max(A, min_normal), A = max_k sum_t |a'_t b_t|
 * (times scale for dQ and dK). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "reference.h"

#define LAMBDA 8.0
#define U32 (1.0 / 16777216.0)

void bwd_ref_free(bwd_ref_t *r)
{
    free(r->o); free(r->lse); free(r->dq); free(r->dk); free(r->dv); free(r->lse_tol);
    free(r->ost); free(r->rq); free(r->rk); free(r->rv);
    memset(r, 0, sizeof *r);
}

/* Accumulators of one gradient row: the value, A's sums, the deterministic
 * error sums, the sums of squares (per element k). */
typedef struct {
    double *g, *a, *det, *sq, *aw;
    double *cq, *ca; /* errors independent from row to row (D_i): sum of squares, sum of sizes */
    double *pk;      /* dQ: sum_j P_ij b_jk, signed (the row-constant error of D_i multiplies it) */
} acc_t;

static int acc_alloc(acc_t *x, size_t n)
{
    x->g = calloc(n, sizeof(double));
    x->a = calloc(n, sizeof(double));
    x->det = calloc(n, sizeof(double));
    x->sq = calloc(n, sizeof(double));
    x->aw = calloc(n, sizeof(double));
    x->cq = calloc(n, sizeof(double));
    x->ca = calloc(n, sizeof(double));
    x->pk = calloc(n, sizeof(double));
    return x->g && x->a && x->det && x->sq && x->aw && x->cq && x->ca && x->pk ? 0 : -1;
}

static void acc_free(acc_t *x)
{
    free(x->g); free(x->a); free(x->det); free(x->sq); free(x->aw); free(x->cq); free(x->ca); free(x->pk);
}

static void acc_zero(acc_t *x, size_t n)
{
    memset(x->g, 0, n * sizeof(double));
    memset(x->a, 0, n * sizeof(double));
    memset(x->det, 0, n * sizeof(double));
    memset(x->sq, 0, n * sizeof(double));
    memset(x->aw, 0, n * sizeof(double));
    memset(x->cq, 0, n * sizeof(double));
    memset(x->ca, 0, n * sizeof(double));
    memset(x->pk, 0, n * sizeof(double));
}

/* Closes one row: out (d values), its bwd_row_t. mult: the factor applied to
 * the sum (scale for dQ and dK, 1 for dV). The 16-bit roundings of each term
 * are in sq (sum of w^2 t^2) and aw (sum of w |t|), w^2 the number of
 * roundings, each weighted by its relative size (smax^2 for a stored logit). */
static void acc_close(const acc_t *x, size_t off, size_t d, size_t n, double mult, int mma, dtype_t dt,
                      double rhoL, double dD, double *out, bwd_row_t *rw)
{
    const double us = dtype_unit_roundoff(dt);
    double cn = 8.0 * sqrt((double)n) * U32;
    if (mma && dt != DT_F32) cn += 2.0 * U32 * ceil((double)n / 16.0);
    double amax = 0, rmax = 0, bmax = 0;
    for (size_t k = 0; k < d; k++) {
        const double g = mult * x->g[off + k], a = mult * x->a[off + k];
        out[k] = g;
        if (a > amax) amax = a;
        if (fabs(g) > rmax) rmax = fabs(g);
        const double rnd = fmin(LAMBDA * us * sqrt(x->sq[off + k]) * mult, us * mult * x->aw[off + k]);
        /* dQ only (rhoL, dD > 0): the row-constant relative error of P (through L) moves the row in
         * proportion to itself; the error of D_i moves it by dD |sum_j P_ij k_j|. Rows of dK: the D_i
         * of different rows err independently (cq, ca). */
        const double corr = rhoL * fabs(g) + mult * dD * fabs(x->pk[off + k]) +
                            mult * fmin(LAMBDA * sqrt(x->cq[off + k]), x->ca[off + k]);
        const double b = (1.0 + us) * (mult * x->det[off + k] + corr + cn * a + (mult != 1.0 ? U32 * fabs(g) : 0.0)) +
                         rnd + us * fabs(g);
        if (b > bmax) bmax = b;
    }
    rw->amax = amax;
    rw->rmax = rmax;
    rw->n = n;
    rw->tol = bmax / fmax(amax, dtype_min_normal(dt));
}

static double *load_d(const void *p, dtype_t dt, size_t first, size_t n)
{
    double *x = malloc((n ? n : 1) * sizeof *x);
    if (x)
        for (size_t i = 0; i < n; i++) x[i] = dtype_get(p, dt, first + i);
    return x;
}

static size_t popcount3(unsigned m) { return (size_t)((m & 1u) != 0) + ((m & 2u) != 0) + ((m & 4u) != 0); }

/* stride 0: every row of the wanted groups, and their dK, dV; stride > 0:
 * only the rows (h - first head) Nq + i of a wanted group that are multiples
 * of stride, or the group's last row, and their O, L, dQ (no dK, dV). */
static int compute(bwd_ref_t *r, const attn_shape_t *s, const void *q, const void *k, const void *v, const void *dout,
                   unsigned rounding, unsigned fwd_rounding, const unsigned char *want, size_t stride)
{
    memset(r, 0, sizeof *r);
    r->s = *s;
    const dtype_t dt = s->dt;
    const size_t d = s->dim, Nq = s->seq_q, Nk = s->seq_kv, H = s->heads, Hkv = s->kv_heads, G = H / Hkv;
    const size_t E = (size_t)attn_q_elems(s), Ekv = (size_t)attn_kv_elems(s), R = (size_t)attn_rows(s);
    const size_t KVR = s->batch * Hkv * Nk;
    const double us = dtype_unit_roundoff(dt), mn = dtype_min_normal(dt), sc = (double)s->scale;
    const int mma = (rounding & BWD_MMA_LOWP) && dt != DT_F32;
    /* roundings of each term's a: P for dV; P, dP, dS for dQ and dK */
    const double mV = (rounding & BWD_ROUND_P) ? 1.0 : 0.0;
    const double mS = (double)popcount3(rounding & (BWD_ROUND_P | BWD_ROUND_DP | BWD_ROUND_DS));
    const double dotc = (8.0 * sqrt((double)d) + 1.0) * U32 + (mma ? 2.0 * U32 * ceil((double)d / 16.0) : 0.0);

    r->o = calloc(E ? E : 1, sizeof(double));
    r->dq = calloc(E ? E : 1, sizeof(double));
    r->dk = calloc(Ekv ? Ekv : 1, sizeof(double));
    r->dv = calloc(Ekv ? Ekv : 1, sizeof(double));
    r->lse = calloc(R ? R : 1, sizeof(double));
    r->lse_tol = calloc(R ? R : 1, sizeof(double));
    r->ost = calloc(R ? R : 1, sizeof *r->ost);
    r->rq = calloc(R ? R : 1, sizeof *r->rq);
    r->rk = calloc(KVR ? KVR : 1, sizeof *r->rk);
    r->rv = calloc(KVR ? KVR : 1, sizeof *r->rv);
    acc_t aq = { 0 }, ak = { 0 }, av = { 0 };
    double *sv = malloc((Nk ? Nk : 1) * sizeof *sv), *P = malloc((Nk ? Nk : 1) * sizeof *P);
    size_t *cnt = malloc((Nk ? Nk : 1) * sizeof *cnt);
    double *Q = malloc((d ? d : 1) * sizeof *Q), *dO = malloc((d ? d : 1) * sizeof *dO);
    double *dPr = malloc((Nk ? Nk : 1) * sizeof *dPr), *dPa_r = malloc((Nk ? Nk : 1) * sizeof *dPa_r);
    int rc = -1;
    if (!r->o || !r->dq || !r->dk || !r->dv || !r->lse || !r->lse_tol || !r->ost || !r->rq || !r->rk || !r->rv ||
        !sv || !P || !cnt || !Q || !dO || !dPr || !dPa_r || acc_alloc(&aq, d ? d : 1) || acc_alloc(&ak, Nk * d > 0 ? Nk * d : 1) ||
        acc_alloc(&av, Nk * d > 0 ? Nk * d : 1))
        goto out;
    for (size_t x = 0; x < R; x++) r->rq[x].tol = -1;
    for (size_t x = 0; x < KVR; x++) r->rk[x].tol = r->rv[x].tol = -1;

    for (size_t g = 0; g < s->batch * Hkv; g++) {
        if (want && !want[g]) continue;
        const size_t b = g / Hkv, hkv = g % Hkv;
        double *K = load_d(k, dt, g * Nk * d, Nk * d), *V = load_d(v, dt, g * Nk * d, Nk * d);
        if (!K || !V) { free(K); free(V); goto out; }
        acc_zero(&ak, Nk * d);
        acc_zero(&av, Nk * d);
        memset(cnt, 0, Nk * sizeof *cnt);
        for (size_t h = hkv * G; h < (hkv + 1) * G; h++) {
            const size_t bh = b * H + h;
            for (size_t i = 0; i < Nq; i++) {
                const size_t row = bh * Nq + i, n = attn_visible_keys(s, i), gi = (h - hkv * G) * Nq + i;
                if (stride && gi % stride && gi + 1 != G * Nq) continue;
                const char *qrow = (const char *)q + row * d * dtype_size(dt);
                attn_row_stats_t *st = &r->ost[row];
                attention_ref_row(qrow, (const char *)k + g * Nk * d * dtype_size(dt),
                                  (const char *)v + g * Nk * d * dtype_size(dt), dt, n, d, s->scale, r->o + row * d, st);
                for (size_t x = 0; x < d; x++) {
                    Q[x] = dtype_get(q, dt, row * d + x);
                    dO[x] = dtype_get(dout, dt, row * d + x);
                }
                /* logits, L, P */
                double m = -INFINITY;
                for (size_t j = 0; j < n; j++) {
                    double dot = 0;
                    for (size_t x = 0; x < d; x++) dot += Q[x] * K[j * d + x];
                    sv[j] = sc * dot;
                    if (sv[j] > m) m = sv[j];
                }
                double l = 0;
                for (size_t j = 0; j < n; j++) l += exp(sv[j] - m);
                const double L = (n == 0 || m == -INFINITY) ? -INFINITY : m + log(l);
                r->lse[row] = L;
                const double C = st->cmax, Ds = dotc * C; /* the logit's bound: the dot product, then the scale multiply */
                double DL = Ds + U32 * (8.0 * C + 16.0 + 8.0 * sqrt((double)n)) + U32 * (isfinite(L) ? fabs(L) : 0);
                if (fwd_rounding & ATT_ROUND_S) DL += us * (st->smax + mn); /* L from stored logits */
                r->lse_tol[row] = DL;
                /* P's relative error: per pair (its logit, the exponent's argument and exp) and per row (L,
                 * the same for every key of the row) */
                const double rho = expm1(Ds + 2.0 * U32 * (C + (isfinite(L) ? fabs(L) : 0)) + 4.0 * U32);
                double rhoL = expm1(DL);
                double ps2 = 0;
                for (size_t j = 0; j < n; j++) {
                    P[j] = exp(sv[j] - L);
                    ps2 += P[j] * P[j] * sv[j] * sv[j];
                }
                /* S stored in dt (standard): logit j rounds by u_s |s_j|, independently (weight s_j^2 in
                 * the sums of squares below), and moves every weight of the row through the normaliser
                 * (lambda u_s sqrt(sum_j p_j^2 s_j^2), or at worst e^{2 u_s (smax + min_normal)} - 1) */
                if (rounding & BWD_ROUND_S) rhoL += fmin(LAMBDA * us * sqrt(ps2), expm1(2.0 * us * (st->smax + mn)));
                /* dP_ij for the row, then D and the bound on its error through the forward's stored O:
                 * the forward's error propagated to D = dO . O to first order, term by term:
                 *   O stored in dt:       sum_k dO_k O_k eps_k       -> lambda u_s sqrt(sum_k (dO_k O_k)^2)
                 *   P rounded (16 bits):  sum_j p_j eps_j dP_j       -> lambda u_s sqrt(sum_j p_j^2 dP_j^2)
                 *   S rounded (16 bits):  sum_j p_j d_j (dP_j - D)   -> lambda u_s smax sqrt(sum_j p_j^2 (dP_j - D)^2)
                 *   the fp32 rest of the forward's bound: sum_k |dO_k| times it (all of one sign)
                 * each probabilistic term capped by its worst case (as in attention_ref.h). */
                double D = 0, dO1 = 0, dOO = 0, dOO2 = 0;
                for (size_t x = 0; x < d; x++) {
                    const double t1 = dO[x] * r->o[row * d + x];
                    D += t1;
                    dO1 += fabs(dO[x]);
                    dOO += fabs(t1);
                    dOO2 += t1 * t1;
                }
                double pp2 = 0, pp1 = 0, pd2 = 0, pd1 = 0;
                for (size_t j = 0; j < n; j++) {
                    double dp = 0, dpa = 0;
                    for (size_t x = 0; x < d; x++) {
                        dp += dO[x] * V[j * d + x];
                        dpa += fabs(dO[x] * V[j * d + x]);
                    }
                    dPr[j] = dp;
                    dPa_r[j] = dpa;
                    pp2 += P[j] * P[j] * dp * dp;
                    pp1 += P[j] * fabs(dp);
                    pd2 += P[j] * P[j] * sv[j] * sv[j] * (dp - D) * (dp - D);
                    pd1 += P[j] * fabs(sv[j]) * fabs(dp - D);
                }
                const double Af = fmax(st->amax, mn);
                const double f32part = fmax(attention_tolerance(dt, d, st, fwd_rounding & ATT_MMA_LOWP) - us * st->rmax / Af, 0);
                /* the independent roundings add in quadrature; capped by their worst case, all of one sign */
                const int fP = (fwd_rounding & ATT_ROUND_P) != 0, fS = (fwd_rounding & ATT_ROUND_S) != 0;
                double dD = fmin(LAMBDA * us * sqrt(dOO2 + fP * pp2 + fS * pd2), us * (dOO + fP * pp1 + fS * pd1)) +
                            dO1 * f32part * Af + (8.0 * sqrt((double)d) + 1.0) * U32 * dOO;
                if (fP) dD += dO1 * us * (double)n * mn * st->vmax; /* P below the smallest normal */
                acc_zero(&aq, d);
                for (size_t j = 0; j < n; j++) {
                    const double *Kj = K + j * d, dP = dPr[j], dPa = dPa_r[j];
                    /* gS: the size of what the kernel subtracts and rounds, its D (within dD of ours) included */
                    const double p = P[j], dS = p * (dP - D), gS = p * (fabs(dP) + fabs(D) + dD);
                    const double ws2 = (rounding & BWD_ROUND_S) ? sv[j] * sv[j] : 0.0;
                    const double wV2 = mV + ws2, wS2 = mS + ws2;              /* independent: squares add */
                    const double wVw = mV + sqrt(ws2), wSw = mS + sqrt(ws2); /* worst case: all of one sign */
                    const double ddS = p * rho * fabs(dP - D) + p * dotc * dPa + 2.0 * U32 * gS +
                                       us * mn * (((rounding & BWD_ROUND_P) ? fabs(dP) + fabs(D) : 0) +
                                                  ((rounding & BWD_ROUND_DP) ? p : 0) + ((rounding & BWD_ROUND_DS) ? 1 : 0));
                    const double dPv = p * (rho + rhoL) + (mV ? us * mn : 0);
                    cnt[j]++;
                    for (size_t x = 0; x < d; x++) {
                        aq.g[x] += dS * Kj[x];
                        aq.a[x] += gS * fabs(Kj[x]);
                        aq.det[x] += ddS * fabs(Kj[x]);
                        aq.sq[x] += wS2 * gS * Kj[x] * gS * Kj[x];
                        aq.aw[x] += wSw * gS * fabs(Kj[x]);
                        aq.pk[x] += p * Kj[x];
                        if (stride) continue; /* sampled rows: no dK, dV */
                        const size_t o = j * d + x;
                        ak.g[o] += dS * Q[x];
                        ak.a[o] += gS * fabs(Q[x]);
                        ak.det[o] += (ddS + rhoL * fabs(dS)) * fabs(Q[x]);
                        ak.cq[o] += p * dD * Q[x] * p * dD * Q[x];
                        ak.ca[o] += p * dD * fabs(Q[x]);
                        ak.sq[o] += wS2 * gS * Q[x] * gS * Q[x];
                        ak.aw[o] += wSw * gS * fabs(Q[x]);
                        av.g[o] += p * dO[x];
                        av.a[o] += p * fabs(dO[x]);
                        av.det[o] += dPv * fabs(dO[x]);
                        av.sq[o] += wV2 * p * dO[x] * p * dO[x];
                        av.aw[o] += wVw * p * fabs(dO[x]);
                    }
                }
                acc_close(&aq, 0, d, n, sc, mma, dt, rhoL, dD, r->dq + row * d, &r->rq[row]);
                if (isnan(L) || isnan(D))
                    for (size_t x = 0; x < d; x++) r->dq[row * d + x] = NAN;
            }
        }
        for (size_t j = 0; j < Nk && !stride; j++) {
            const size_t kr = g * Nk + j;
            acc_close(&ak, j * d, d, cnt[j], sc, mma, dt, 0, 0, r->dk + kr * d, &r->rk[kr]);
            acc_close(&av, j * d, d, cnt[j], 1.0, mma, dt, 0, 0, r->dv + kr * d, &r->rv[kr]);
        }
        free(K);
        free(V);
    }
    rc = 0;
out:
    acc_free(&aq); acc_free(&ak); acc_free(&av);
    free(sv); free(P); free(cnt); free(Q); free(dO); free(dPr); free(dPa_r);
    if (rc) bwd_ref_free(r);
    return rc;
}

int bwd_ref_compute_groups(bwd_ref_t *r, const attn_shape_t *s, const void *q, const void *k, const void *v,
                           const void *dout, unsigned rounding, unsigned fwd_rounding, const unsigned char *want)
{
    return compute(r, s, q, k, v, dout, rounding, fwd_rounding, want, 0);
}

int bwd_ref_compute_rows(bwd_ref_t *r, const attn_shape_t *s, const void *q, const void *k, const void *v,
                         const void *dout, unsigned rounding, unsigned fwd_rounding, const unsigned char *want,
                         size_t stride)
{
    return compute(r, s, q, k, v, dout, rounding, fwd_rounding, want, stride ? stride : 1);
}

int bwd_ref_compute(bwd_ref_t *r, const attn_shape_t *s, const void *q, const void *k, const void *v, const void *dout,
                    unsigned rounding, unsigned fwd_rounding)
{
    return bwd_ref_compute_groups(r, s, q, k, v, dout, rounding, fwd_rounding, NULL);
}

double bwd_ref_loss(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *dout)
{
    const size_t d = s->dim;
    double *o = malloc((d ? d : 1) * sizeof *o), f = 0;
    if (!o) return NAN;
    for (uint64_t r = 0; r < attn_rows(s); r++) {
        attention_ref_at(s, q, k, v, r, o, NULL);
        for (size_t x = 0; x < d; x++) f += o[x] * dtype_get(dout, s->dt, (size_t)r * d + x);
    }
    free(o);
    return f;
}

/* ---- the check */

void bwd_check_init(bwd_check_t *c) { memset(c, 0, sizeof *c); }

double bwd_check_row(bwd_check_t *c, const void *g, dtype_t dt, const double *ref, const bwd_row_t *rw, size_t d)
{
    const double den = fmax(rw->amax, dtype_min_normal(dt));
    double e = 0;
    for (size_t x = 0; x < d; x++) {
        const double y = dtype_get(g, dt, x);
        c->nonfinite += !isfinite(y);
        const double ex = check_elem_error(y, ref[x], den);
        if (!(ex <= e)) e = ex;
    }
    c->rows++;
    if (!(e <= c->max_err)) c->max_err = e;
    if (!(rw->tol <= c->max_tol)) c->max_tol = rw->tol;
    /* A row whose exact value is 0 (no term: n = 0; or dQ of a row that sees
     * one key, where dS = 0) is judged against its bound alone: 0 is the
     * answer there. Any other row is judged only when its bound is below
     * CHECK_TOL_CAP and below half the error an all-zero row would have
     * (rmax / A'); otherwise it is excused (counted; see bwd_check_ok). */
    if (rw->rmax > 0 && (!(rw->tol <= CHECK_TOL_CAP) || !(rw->tol < 0.5 * rw->rmax / den))) {
        if (getenv("STF_BWD_DEBUG"))
            fprintf(stderr, "excused row: n %zu, A %.3g, rmax/A %.3g, tol %.3g, err %.3g\n", rw->n, rw->amax,
                    rw->rmax / den, rw->tol, e);
        c->excused++;
        return e;
    }
    if (getenv("STF_BWD_DEBUG") && !(e <= rw->tol))
        fprintf(stderr, "failing row: n %zu, A %.3g, rmax %.3g, tol %.3g, err %.3g\n", rw->n, rw->amax, rw->rmax,
                rw->tol, e);
    if (rw->rmax == 0) { /* no cap: the bound of an exact zero */
        const double ratio = e == 0 ? 0 : e / rw->tol;
        if (!(ratio <= c->worst_ratio)) c->worst_ratio = isnan(ratio) ? INFINITY : ratio;
        return e;
    }
    c->worst_ratio = fold_ratio(c->worst_ratio, e, rw->tol > 0 ? rw->tol : 1e-300, &c->unresolved);
    return e;
}

int bwd_check_ok(const bwd_check_t *c)
{
    /* excused: at most one row, or one in eight, and never every row */
    const int few = c->excused == 0 || (c->excused < c->rows && (c->excused == 1 || c->excused * 8 <= c->rows));
    return few && check_verdict(c->rows, c->excused, c->unresolved, c->worst_ratio);
}

int bwd_check_all(const bwd_ref_t *r, const void *dq, const void *dk, const void *dv, dtype_t dt, bwd_check_t c[3])
{
    const attn_shape_t *s = &r->s;
    const size_t d = s->dim, es = dtype_size(dt), R = (size_t)attn_rows(s), KVR = s->batch * s->kv_heads * s->seq_kv;
    for (int i = 0; i < 3; i++) bwd_check_init(&c[i]);
    for (size_t x = 0; x < R; x++)
        if (r->rq[x].tol >= 0) bwd_check_row(&c[0], (const char *)dq + x * d * es, dt, r->dq + x * d, &r->rq[x], d);
    for (size_t x = 0; x < KVR; x++) {
        if (r->rk[x].tol >= 0) bwd_check_row(&c[1], (const char *)dk + x * d * es, dt, r->dk + x * d, &r->rk[x], d);
        if (r->rv[x].tol >= 0) bwd_check_row(&c[2], (const char *)dv + x * d * es, dt, r->dv + x * d, &r->rv[x], d);
    }
    return bwd_check_ok(&c[0]) && bwd_check_ok(&c[1]) && bwd_check_ok(&c[2]);
}
