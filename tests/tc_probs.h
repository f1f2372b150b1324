/* Test problems of the tensor-core ladders (tests/test_attention_tc.c for
 * stage 05b, tests/test_hopper.c for stage 05c): random 16-bit inputs, the
 * rows checked and their fp64 reference (attention_ref_row), a run on the
 * GPU with the output poisoned, and the check against the tolerance
 * (attention_tolerance through attn_check_row). Header only: each test
 * keeps its own shapes, its own rungs and its own broken variants. */
#ifndef STF_TESTS_TC_PROBS_H
#define STF_TESTS_TC_PROBS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/05b_tensor_cores/tc.h"
#include "attention_ref.h"
#include "gpu.h"
#include "harness.h"
#include "rng.h"

/* One problem: host inputs, the rows checked and their fp64 reference. */
typedef struct {
    tc_shape_t s;
    void *q, *k, *v;
    size_t nq, nkv;
    size_t *rows, nrows;
    double *ref; /* nrows x d, in rows[] order */
    attn_row_stats_t *st;
} tcp_prob_t;

/* batch 2, `heads` query heads over 2 K/V heads (GQA indexing), scale 1/sqrt(d) */
static inline void tcp_shape(tc_shape_t *s, int heads, int Nq, int Nkv, int d, int causal, dtype_t dt)
{
    s->batch = 2;
    s->heads = heads;
    s->kv_heads = 2;
    s->seq_q = Nq;
    s->seq_kv = Nkv;
    s->dim = d;
    s->causal = causal;
    s->scale = (float)(1.0 / sqrt((double)d));
    s->dt = dt;
}

/* Keys visible to query row i: bottom-right causal, clipped at 0. */
static inline size_t tcp_visible(const tc_shape_t *s, int i)
{
    if (!s->causal) return (size_t)s->seq_kv;
    long n = (long)i + 1 + s->seq_kv - s->seq_q;
    return n < 0 ? 0 : n > s->seq_kv ? (size_t)s->seq_kv : (size_t)n;
}

static inline void *tcp_rand_array(dtype_t dt, size_t n, uint32_t stream, float scale)
{
    void *x = malloc(n * dtype_size(dt));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) dtype_set(x, dt, i, rng_logit(test_seed(), stream, i, scale));
    return x;
}

static inline void tcp_make(tcp_prob_t *p, const tc_shape_t *s, uint32_t stream)
{
    memset(p, 0, sizeof *p);
    p->s = *s;
    const size_t d = s->dim, es = dtype_size(s->dt);
    p->nq = (size_t)s->batch * s->heads * s->seq_q * d;
    p->nkv = (size_t)s->batch * s->kv_heads * s->seq_kv * d;
    /* q, k in [-2, 2): logits spread like randn inputs'; v in [-1, 1) */
    p->q = tcp_rand_array(s->dt, p->nq, stream, 2.0f);
    p->k = tcp_rand_array(s->dt, p->nkv, stream + 1, 2.0f);
    p->v = tcp_rand_array(s->dt, p->nkv, stream + 2, 1.0f);
    const size_t total = (size_t)s->batch * s->heads * s->seq_q;
    p->rows = malloc(total * sizeof *p->rows);
    assert_non_null(p->rows);
    /* every row of small problems; of larger ones the first and last 8 of
     * each (b, h), the first and last row of every 64-row block (the query
     * tiles of every rung are 64 or 128 rows, a warp group's 64) and every
     * 37th: the fp64 reference of all rows would cost minutes at d = 256 */
    for (size_t r = 0; r < total; r++) {
        const int i = (int)(r % (size_t)s->seq_q);
        if (total <= 1024 || i < 8 || i >= s->seq_q - 8 || i % 64 == 0 || i % 64 == 63 || i % 37 == 0)
            p->rows[p->nrows++] = r;
    }
    p->ref = malloc(p->nrows * d * sizeof *p->ref);
    p->st = malloc(p->nrows * sizeof *p->st);
    assert_non_null(p->ref);
    assert_non_null(p->st);
    for (size_t x = 0; x < p->nrows; x++) {
        const size_t r = p->rows[x], bh = r / (size_t)s->seq_q, b = bh / (size_t)s->heads, h = bh % (size_t)s->heads;
        const size_t kvs = b * (size_t)s->kv_heads + h / (size_t)(s->heads / s->kv_heads);
        const size_t n = tcp_visible(s, (int)(r % (size_t)s->seq_q));
        if (n == 0) { /* attention_ref_row gives NaN for no keys; tc.h and hopper.h promise zeros */
            memset(&p->st[x], 0, sizeof p->st[x]);
            for (size_t c = 0; c < d; c++) p->ref[x * d + c] = 0.0;
            continue;
        }
        attention_ref_row((const char *)p->q + r * d * es, (const char *)p->k + kvs * s->seq_kv * d * es,
                          (const char *)p->v + kvs * s->seq_kv * d * es, s->dt, n, d, s->scale, p->ref + x * d,
                          &p->st[x]);
    }
}

static inline void tcp_free(tcp_prob_t *p)
{
    free(p->q); free(p->k); free(p->v); free(p->rows); free(p->ref); free(p->st);
    memset(p, 0, sizeof *p);
}

/* attn_tc_launch, attn_hop_launch */
typedef int (*tcp_launch_fn)(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o);

/* Runs rung v (through launch) on p's inputs with shape *s (p->s unless a
 * test changes it) into o (host, p->nq elements), the device output
 * poisoned first. Returns the launch's status. */
static inline int tcp_run(tcp_launch_fn launch, int v, const tcp_prob_t *p, const tc_shape_t *s, void *o)
{
    const size_t es = dtype_size(p->s.dt), qb = p->nq * es, kvb = p->nkv * es;
    void *dq = gpu_malloc(qb, "Q"), *dk = gpu_malloc(kvb, "K"), *dv = gpu_malloc(kvb, "V"), *dout = gpu_malloc(qb, "O");
    gpu_h2d(dq, p->q, qb);
    gpu_h2d(dk, p->k, kvb);
    gpu_h2d(dv, p->v, kvb);
    gpu_poison(dout, qb);
    int rc = launch(v, s, dq, dk, dv, dout);
    gpu_sync();
    gpu_d2h(o, dout, qb);
    gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(dout);
    return rc;
}

/* Worst error / tolerance over p's checked rows of o (NaN, inf or a
 * tolerance that is not finite: infinity); empty rows must be exact zeros. */
static inline double tcp_check(const tcp_prob_t *p, const void *o, unsigned rounding, attn_check_t *out)
{
    const size_t d = p->s.dim, es = dtype_size(p->s.dt);
    attn_check_t c;
    attn_check_init(&c);
    int empty_bad = 0;
    for (size_t x = 0; x < p->nrows; x++) {
        const void *row = (const char *)o + p->rows[x] * d * es;
        attn_check_row(&c, row, p->s.dt, p->ref + x * d, &p->st[x], d, rounding);
        if (p->st[x].n == 0)
            for (size_t k = 0; k < d; k++) empty_bad |= dtype_get(row, p->s.dt, k) != 0.0f;
    }
    if (out) *out = c;
    if (c.nonfinite || empty_bad || !isfinite(c.max_tol) || !(c.worst_ratio <= 1.0)) return INFINITY;
    return c.worst_ratio;
}

/* The check must fail broken copies of a passing output of rung v on p (a
 * causal problem with rows that see no key): one element of the first row
 * that sees the most keys 4 tolerances off, a NaN there, and a tiny non-zero
 * value in the first row that sees no key (it must be exact zeros). */
static inline void tcp_broken_outputs_fail(tcp_launch_fn launch, int v, const tcp_prob_t *p, unsigned rounding)
{
    const size_t d = p->s.dim, es = dtype_size(p->s.dt);
    size_t xe = p->nrows, xl = p->nrows;
    for (size_t x = 0; x < p->nrows; x++) {
        if (p->st[x].n == 0 && xe == p->nrows) xe = x;
        if (p->st[x].n > 0 && (xl == p->nrows || p->st[x].n > p->st[xl].n)) xl = x;
    }
    assert_true(xe < p->nrows && xl < p->nrows);
    void *o = malloc(p->nq * es), *bad = malloc(p->nq * es);
    assert_true(o && bad);
    assert_int_equal(tcp_run(launch, v, p, &p->s, o), 0);
    assert_true(tcp_check(p, o, rounding, NULL) <= 1.0);
    const size_t ol = p->rows[xl] * d;
    const double tol = attention_tolerance(p->s.dt, d, &p->st[xl], rounding);
    memcpy(bad, o, p->nq * es);
    dtype_set(bad, p->s.dt, ol + 5, (float)(p->ref[xl * d + 5] + 4.0 * tol * p->st[xl].amax));
    assert_true(tcp_check(p, bad, rounding, NULL) > 1.0);
    memcpy(bad, o, p->nq * es);
    dtype_set(bad, p->s.dt, ol + 7, NAN);
    assert_true(tcp_check(p, bad, rounding, NULL) > 1.0);
    memcpy(bad, o, p->nq * es);
    dtype_set(bad, p->s.dt, p->rows[xe] * d + 3, 1e-7f); /* an fp16 subnormal */
    assert_true(tcp_check(p, bad, rounding, NULL) > 1.0);
    free(bad);
    free(o);
}

/* main() of a ladder's test program: its fixed tests, then one test per rung
 * (named as the rung, its index as the state), STF_TEST_FILTER as in every
 * test program (test_main.h). Not STF_GPU_ONLY: the rungs' tests are not
 * named *_gpu, and each skips without a GPU. */
#define TCP_MAX_FIXED 8
#define TCP_MAX_RUNGS 16
static inline int tcp_main(const char *group, const struct CMUnitTest *fixed, int nfixed,
                           void (*per_rung)(void **), const tc_version_t *versions, int nversions,
                           int (*teardown)(void **))
{
    static const int idx[TCP_MAX_RUNGS] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
    struct CMUnitTest tests[TCP_MAX_FIXED + TCP_MAX_RUNGS];
    int n = 0;
    test_seed();
    if (nfixed > TCP_MAX_FIXED || nversions > TCP_MAX_RUNGS) { /* never drop a test silently */
        fprintf(stderr, "%s: %d fixed tests and %d rungs, more than tcp_main holds (%d, %d)\n", group, nfixed,
                nversions, TCP_MAX_FIXED, TCP_MAX_RUNGS);
        return 1;
    }
    for (int i = 0; i < nfixed; i++) tests[n++] = fixed[i];
    for (int v = 0; v < nversions; v++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(per_rung, (void *)&idx[v]);
        t.name = versions[v].name;
        tests[n++] = t;
    }
    if (getenv("STF_TEST_FILTER")) cmocka_set_test_filter(getenv("STF_TEST_FILTER"));
    return _cmocka_run_group_tests(group, tests, (size_t)n, NULL, teardown);
}

#endif
