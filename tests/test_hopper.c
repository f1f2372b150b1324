/* Stage 05c, the Hopper ladder (stages/05c_hopper/h*.cu): every rung against
 * the fp64 reference (attention_ref_row) with the stage's tolerance,
 * attention_tolerance(dt, d, stats, ATT_ROUND_P | ATT_MMA_LOWP), on odd
 * shapes: (seq_q, seq_kv) = (1, 1), (7, 7), (65, 65), (200, 200), (257, 257),
 * (1, 257), (65, 200), (200, 65), (257, 7); d = 64, 128 and 256; fp16 and bf16;
 * causal (bottom-right: Nq > Nk leaves rows with no key, which must be exact
 * zeros) or not; batch 2, 4 query heads over 2 K/V heads (GQA indexing).
 * Every rung must take every one of these problems on a compute-capability
 * 9.0 device with an sm_90a build, and each test counts the problems it ran
 * (a rung that ran none fails). So that the check cannot pass a wrong
 * answer: a launch with the causal flag flipped, one with a wrong scale, a
 * perturbed element, a NaN and a non-zero empty row must each fail it.
 * GPU cases skip (cmocka skip) without a GPU, or on a device or build the
 * stage declines (said in the message). STF_TEST_SMALL=1 runs the shapes
 * up to 65 only (for compute-sanitizer); STF_TEST_FILTER=PATTERN runs the
 * matching tests only ("h1*"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/05c_hopper/hopper.h"
#include "attention_ref.h"
#include "gpu.h"
#include "harness.h"
#include "rng.h"

#define ROUNDING (ATT_ROUND_P | ATT_MMA_LOWP)

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

#define NSHAPES 9
static const int SHAPES[NSHAPES][2] = { { 1, 1 },   { 7, 7 },     { 65, 65 },   { 200, 200 }, { 257, 257 },
                                        { 1, 257 }, { 65, 200 }, { 200, 65 }, { 257, 7 } };
#define NSMALL 3 /* the shapes with both lengths <= 65, for the sanitizers: (1,1) (7,7) (65,65) */
#define NDIMS 3
static const int DIMS[NDIMS] = { 64, 128, 256 };
static const dtype_t DTS[2] = { DT_F16, DT_BF16 };

typedef struct {
    tc_shape_t s;
    void *q, *k, *v;
    size_t nq, nkv;
    double *ref; /* indexed by row; only rows with checked[r] are computed */
    attn_row_stats_t *st;
    unsigned char *checked;
} prob_t;

static void shape_set(tc_shape_t *s, int Nq, int Nkv, int d, int causal, dtype_t dt)
{
    s->batch = 2;
    s->heads = 4;
    s->kv_heads = 2;
    s->seq_q = Nq;
    s->seq_kv = Nkv;
    s->dim = d;
    s->causal = causal;
    s->scale = (float)(1.0 / sqrt((double)d));
    s->dt = dt;
}

static size_t visible(const tc_shape_t *s, int i)
{
    if (!s->causal) return (size_t)s->seq_kv;
    long n = (long)i + 1 + s->seq_kv - s->seq_q;
    return n < 0 ? 0 : n > s->seq_kv ? (size_t)s->seq_kv : (size_t)n;
}

static void *rand_array(dtype_t dt, size_t n, uint32_t stream, float scale)
{
    void *x = malloc(n * dtype_size(dt));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) dtype_set(x, dt, i, rng_logit(test_seed(), stream, i, scale));
    return x;
}

static void prob_make(prob_t *p, const tc_shape_t *s, uint32_t stream)
{
    memset(p, 0, sizeof *p);
    p->s = *s;
    const size_t d = s->dim, es = dtype_size(s->dt);
    p->nq = (size_t)s->batch * s->heads * s->seq_q * d;
    p->nkv = (size_t)s->batch * s->kv_heads * s->seq_kv * d;
    p->q = rand_array(s->dt, p->nq, stream, 2.0f);
    p->k = rand_array(s->dt, p->nkv, stream + 1, 2.0f);
    p->v = rand_array(s->dt, p->nkv, stream + 2, 1.0f);
    const size_t total = (size_t)s->batch * s->heads * s->seq_q;
    p->ref = malloc(total * d * sizeof *p->ref);
    p->st = malloc(total * sizeof *p->st);
    assert_non_null(p->ref);
    assert_non_null(p->st);
    p->checked = calloc(total, 1);
    assert_non_null(p->checked);
    for (size_t r = 0; r < total; r++) {
        /* every row of small problems; of larger ones, per (b, h), the first and
         * last 8 rows, the first and last row of every 64-row block (the query
         * tiles are 128 rows, a warp group's 64) and every 37th: the fp64
         * reference of every row costs more than the GPU runs */
        const int i = (int)(r % (size_t)s->seq_q);
        if (!(total <= 1024 || i < 8 || i >= s->seq_q - 8 || i % 64 == 0 || i % 64 == 63 || i % 37 == 0)) continue;
        p->checked[r] = 1;
        const size_t bh = r / (size_t)s->seq_q, b = bh / (size_t)s->heads, h = bh % (size_t)s->heads;
        const size_t kvs = b * (size_t)s->kv_heads + h / (size_t)(s->heads / s->kv_heads);
        const size_t n = visible(s, (int)(r % (size_t)s->seq_q));
        if (n == 0) { /* no visible key: hopper.h promises zeros */
            memset(&p->st[r], 0, sizeof p->st[r]);
            for (size_t c = 0; c < d; c++) p->ref[r * d + c] = 0.0;
            continue;
        }
        attention_ref_row((const char *)p->q + r * d * es, (const char *)p->k + kvs * s->seq_kv * d * es,
                          (const char *)p->v + kvs * s->seq_kv * d * es, s->dt, n, d, s->scale, p->ref + r * d,
                          &p->st[r]);
    }
}

static void prob_free(prob_t *p)
{
    free(p->q); free(p->k); free(p->v); free(p->ref); free(p->st); free(p->checked);
    memset(p, 0, sizeof *p);
}

static prob_t g_probs[NSHAPES][NDIMS][2][2];

static const prob_t *prob_get(int si, int di, int ti, int causal)
{
    prob_t *p = &g_probs[si][di][ti][causal];
    if (!p->q) {
        tc_shape_t s;
        shape_set(&s, SHAPES[si][0], SHAPES[si][1], DIMS[di], causal, DTS[ti]);
        prob_make(p, &s, (uint32_t)(5000 + 100 * si + 10 * di + 2 * ti + causal) * 4u);
    }
    return p;
}

static int teardown_probs(void **state)
{
    (void)state;
    for (int a = 0; a < NSHAPES; a++)
        for (int b = 0; b < NDIMS; b++)
            for (int c = 0; c < 2; c++)
                for (int e = 0; e < 2; e++)
                    if (g_probs[a][b][c][e].q) prob_free(&g_probs[a][b][c][e]);
    return 0;
}

/* Skips (cmocka) without a GPU, or where this build or device makes the
 * stage decline every shape (not an sm_90a build, not compute capability
 * 9.0): the reason is printed. */
static void skip_unless_hopper(void)
{
    SKIP_WITHOUT_GPU();
    tc_shape_t s;
    char why[256];
    shape_set(&s, 64, 64, 64, 0, DT_BF16);
    if (!attn_hop_supports(0, &s, why, sizeof why)) {
        print_message("stage 05c declines every shape here (%s): skipped\n", why);
        skip();
    }
}

/* Runs version v on p's inputs with shape *s into o (host, p->nq elements),
 * the device output poisoned first. Returns attn_hop_launch's status. */
static int run_hop(int v, const prob_t *p, const tc_shape_t *s, void *o)
{
    const size_t es = dtype_size(p->s.dt), qb = p->nq * es, kvb = p->nkv * es;
    void *dq = gpu_malloc(qb, "Q"), *dk = gpu_malloc(kvb, "K"), *dv = gpu_malloc(kvb, "V"), *dout = gpu_malloc(qb, "O");
    gpu_h2d(dq, p->q, qb);
    gpu_h2d(dk, p->k, kvb);
    gpu_h2d(dv, p->v, kvb);
    gpu_poison(dout, qb);
    int rc = attn_hop_launch(v, s, dq, dk, dv, dout);
    gpu_sync();
    gpu_d2h(o, dout, qb);
    gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(dout);
    return rc;
}

/* Worst error / tolerance over the checked rows of o (NaN, inf or a tolerance that
 * is not finite: infinity); empty rows must be exact zeros. */
static double check_hop(const prob_t *p, const void *o, attn_check_t *out)
{
    const size_t d = p->s.dim, es = dtype_size(p->s.dt);
    const size_t total = (size_t)p->s.batch * p->s.heads * p->s.seq_q;
    attn_check_t c;
    attn_check_init(&c);
    int empty_bad = 0;
    for (size_t r = 0; r < total; r++) {
        if (!p->checked[r]) continue;
        const void *row = (const char *)o + r * d * es;
        attn_check_row(&c, row, p->s.dt, p->ref + r * d, &p->st[r], d, ROUNDING);
        if (p->st[r].n == 0)
            for (size_t k = 0; k < d; k++) empty_bad |= dtype_get(row, p->s.dt, k) != 0.0f;
    }
    if (out) *out = c;
    if (c.nonfinite || empty_bad || !isfinite(c.max_tol) || !(c.worst_ratio <= 1.0)) return INFINITY;
    return c.worst_ratio;
}

/* ---- every rung on every problem */
static void test_version(void **state)
{
    skip_unless_hopper();
    const int v = *(const int *)*state;
    double worst = 0;
    int ran = 0, want = 0, bad = 0;
    const int nsh = small_mode() ? NSMALL : NSHAPES;
    for (int x = 0; x < nsh; x++)
        for (int di = 0; di < NDIMS; di++)
            for (int ti = 0; ti < 2; ti++)
                for (int causal = 0; causal < 2; causal++) {
                    const prob_t *p = prob_get(x, di, ti, causal);
                    char why[256];
                    want++;
                    if (!attn_hop_supports(v, &p->s, why, sizeof why)) {
                        print_message("%s declines (%d, %d) d=%d: %s\n", HOP_VERSIONS[v].name, p->s.seq_q,
                                      p->s.seq_kv, p->s.dim, why);
                        fail();
                    }
                    void *o = malloc(p->nq * dtype_size(p->s.dt));
                    assert_non_null(o);
                    assert_int_equal(run_hop(v, p, &p->s, o), 0);
                    attn_check_t c;
                    const double r = check_hop(p, o, &c);
                    /* every failing problem is listed (the pattern over d, length and causal
                     * locates a fault), and the test fails after the loop */
                    if (!(r <= 1.0) && bad++ < 24)
                        print_message("%s (%d, %d) d=%d %s causal=%d: error %.3g, tolerance %.3g, ratio %.3g, "
                                      "%zu non-finite\n", HOP_VERSIONS[v].name, p->s.seq_q, p->s.seq_kv, p->s.dim,
                                      dtype_name(p->s.dt), causal, c.max_err, c.max_tol, c.worst_ratio, c.nonfinite);
                    if (!(r <= worst)) worst = r;
                    ran++;
                    free(o);
                }
    print_message("%s: ran %d of %d problems, %d failed, worst error/tolerance %.3f\n", HOP_VERSIONS[v].name, ran,
                  want, bad, worst);
    assert_true(ran > 0 && ran == want);
    assert_int_equal(bad, 0);
}

/* ---- the check rejects broken results */

/* The causal flag flipped (a causal problem run without the mask, and the
 * other way round) and a wrong softmax scale (x 1.1): every rung. */
static void test_broken_launch_fails(void **state)
{
    (void)state;
    skip_unless_hopper();
    const prob_t *pc = prob_get(6, 1, 1, 1); /* (65, 200), d 128, bf16, causal */
    const prob_t *pn = prob_get(3, 0, 0, 0); /* (200, 200), d 64, fp16, not causal */
    void *o = malloc((pc->nq > pn->nq ? pc->nq : pn->nq) * 2);
    assert_non_null(o);
    for (int v = 0; v < HOP_NVERSIONS; v++) {
        const prob_t *ps[2] = { pc, pn };
        for (int i = 0; i < 2; i++) {
            const prob_t *p = ps[i];
            tc_shape_t s = p->s;
            assert_int_equal(run_hop(v, p, &s, o), 0);
            assert_true(check_hop(p, o, NULL) <= 1.0);
            s.causal = !s.causal;
            assert_int_equal(run_hop(v, p, &s, o), 0);
            double r = check_hop(p, o, NULL);
            print_message("%s with the causal flag flipped (%d, %d): error/tolerance %.3g (must fail)\n",
                          HOP_VERSIONS[v].name, s.seq_q, s.seq_kv, r);
            assert_true(r > 1.0);
            s = p->s;
            s.scale *= 1.1f;
            assert_int_equal(run_hop(v, p, &s, o), 0);
            r = check_hop(p, o, NULL);
            print_message("%s with scale x 1.1: error/tolerance %.3g (must fail)\n", HOP_VERSIONS[v].name, r);
            assert_true(r > 1.0);
        }
    }
    free(o);
}

/* One element off by 4 tolerances, a NaN, a non-zero empty row. */
static void test_broken_output_fails(void **state)
{
    (void)state;
    skip_unless_hopper();
    const prob_t *p = prob_get(7, 1, 0, 1); /* (200, 65), d 128, fp16, causal: rows 0..134 see no key */
    const size_t d = p->s.dim, es = dtype_size(p->s.dt);
    void *o = malloc(p->nq * es), *bad = malloc(p->nq * es);
    assert_non_null(o);
    assert_non_null(bad);
    const int v = HOP_NVERSIONS - 1;
    assert_int_equal(run_hop(v, p, &p->s, o), 0);
    assert_true(check_hop(p, o, NULL) <= 1.0);
    const size_t re = 3, rl = 199; /* an empty row, and the row seeing all 65 keys */
    assert_true(p->checked[re] && p->checked[rl] && p->st[re].n == 0 && p->st[rl].n == 65);
    const double tol = attention_tolerance(p->s.dt, d, &p->st[rl], ROUNDING);
    memcpy(bad, o, p->nq * es);
    dtype_set(bad, p->s.dt, rl * d + 5, (float)(p->ref[rl * d + 5] + 4.0 * tol * p->st[rl].amax));
    assert_true(check_hop(p, bad, NULL) > 1.0);
    memcpy(bad, o, p->nq * es);
    dtype_set(bad, p->s.dt, rl * d + 7, NAN);
    assert_true(check_hop(p, bad, NULL) > 1.0);
    memcpy(bad, o, p->nq * es);
    dtype_set(bad, p->s.dt, re * d + 3, 1e-7f); /* an fp16 subnormal */
    assert_true(check_hop(p, bad, NULL) > 1.0);
    free(o);
    free(bad);
}

/* ---- what is declined, and why (no GPU needed) */
static void test_supports(void **state)
{
    (void)state;
    tc_shape_t s;
    char why[256];
    shape_set(&s, 64, 64, 64, 0, DT_BF16);
    for (int v = 0; v < HOP_NVERSIONS; v++) {
        assert_non_null(HOP_VERSIONS[v].name);
        assert_non_null(HOP_VERSIONS[v].what);
        why[0] = 0;
        const int ok = attn_hop_supports(v, &s, why, sizeof why);
        if (!ok) assert_true(strlen(why) > 0);
        if (!HAVE_CUDA || !hop_built_sm90a()) assert_int_equal(ok, 0); /* the CPU build declines, with the reason */
        assert_true(strlen(attn_hop_describe(v, &s)) > 0);
    }
    const struct { int d, kvh, nq; dtype_t dt; float scale; } bad[] = {
        { 80, 2, 64, DT_BF16, 0.1f }, { 96, 2, 64, DT_BF16, 0.1f }, { 32, 2, 64, DT_F16, 0.1f }, { 192, 2, 64, DT_BF16, 0.1f },
        { 64, 3, 64, DT_BF16, 0.1f }, { 64, 2, 0, DT_BF16, 0.1f },   { 64, 2, 64, DT_F32, 0.1f },
        { 64, 2, 64, DT_BF16, 0.0f }, { 64, 2, 64, DT_BF16, NAN },
    };
    for (int v = 0; v < HOP_NVERSIONS; v++)
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            shape_set(&s, bad[i].nq, 64, bad[i].d, 0, bad[i].dt);
            s.kv_heads = bad[i].kvh;
            s.scale = bad[i].scale;
            why[0] = 0;
            assert_int_equal(attn_hop_supports(v, &s, why, sizeof why), 0);
            assert_true(strlen(why) > 0);
            /* the launch refuses before touching the device: no GPU needed */
            assert_int_equal(attn_hop_launch(v, &s, NULL, NULL, NULL, NULL), -1);
        }
    shape_set(&s, 64, 64, 64, 0, DT_BF16);
    assert_int_equal(attn_hop_supports(-1, &s, why, sizeof why), 0);
    assert_int_equal(attn_hop_supports(HOP_NVERSIONS, &s, why, sizeof why), 0);
    assert_int_equal(attn_hop_supports(0, NULL, why, sizeof why), 0);
}

static const int VIDX[] = { 0, 1, 2, 3, 4, 5, 6, 7 };

int main(void)
{
    test_seed();
    struct CMUnitTest tests[3 + 8];
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_broken_launch_fails),
        cmocka_unit_test(test_broken_output_fails),
    };
    int n = 0;
    for (int i = 0; i < 3; i++) tests[n++] = fixed[i];
    for (int v = 0; v < HOP_NVERSIONS && v < 8; v++) {
        struct CMUnitTest t = cmocka_unit_test_prestate(test_version, (void *)&VIDX[v]);
        t.name = HOP_VERSIONS[v].name;
        tests[n++] = t;
    }
    if (getenv("STF_TEST_FILTER")) cmocka_set_test_filter(getenv("STF_TEST_FILTER"));
    return _cmocka_run_group_tests("attention stage 05c, Hopper", tests, (size_t)n, NULL, teardown_probs);
}
