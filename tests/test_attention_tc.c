/* Stage 05b, the tensor-core ladder (stages/05b_tensor_cores/tc*.cu): every
 * version against the fp64 reference (attention_ref_row) with the stated
 * tolerance, attention_tolerance(dt, d, stats, ATT_ROUND_P | ATT_MMA_LOWP):
 * P is rounded to fp16/bf16 before the P V product, both GEMMs run on tensor
 * cores. Shapes: (seq_q, seq_kv) = (113, 203), (203, 113), (1, 4097),
 * (1000, 1000); d = 32, 64, 96, 128, 192, 256; fp16 and bf16; causal
 * (bottom-right) or not; batch 2, 8 query heads over 2 K/V heads (GQA
 * indexing). Every rung must take d = 64, 96, 128; tc5_tuned every d here,
 * tc6_m32 d = 32 too; a rung that declines a d says why.
 * Rows with no visible key (causal, seq_q > seq_kv) must be exact zeros.
 * So that the check cannot pass a wrong answer: a launch with a wrong scale,
 * a NaN, a perturbed element and a non-zero empty row must each fail it.
 * GPU cases skip (cmocka skip) without a GPU. STF_TEST_SMALL=1 runs small
 * shapes (for compute-sanitizer); STF_TEST_FILTER=PATTERN runs the matching
 * tests only (cmocka's filter: "tc5*"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/05_tiled_attention/tiled.h"
#include "../stages/05b_tensor_cores/tc.h"
#include "attention_ref.h"
#include "gpu.h"
#include "harness.h"
#include "tc_probs.h"

#define ROUNDING (ATT_ROUND_P | ATT_MMA_LOWP)

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

static const int SHAPES[4][2] = { { 113, 203 }, { 203, 113 }, { 1, 4097 }, { 1000, 1000 } };
static const int SHAPES_SMALL[4][2] = { { 113, 203 }, { 203, 113 }, { 1, 257 }, { 17, 33 } };
static const int DIMS[6] = { 32, 64, 96, 128, 192, 256 };
#define NDIMS 6

/* 1 when rung v must take head dim d (tc.h's promise) */
static int must_take(int v, int d)
{
    if (d == 64 || d == 96 || d == 128) return 1;
    if (!strcmp(TC_VERSIONS[v].name, "tc5_tuned")) return 1;
    if (!strcmp(TC_VERSIONS[v].name, "tc6_m32")) return d == 32;
    return 0;
}
static const dtype_t DTS[2] = { DT_F16, DT_BF16 };

typedef tcp_prob_t prob_t;

/* batch 2, 8 query heads over 2 K/V heads */
static void shape_set(tc_shape_t *s, int Nq, int Nkv, int d, int causal, dtype_t dt) { tcp_shape(s, 8, Nq, Nkv, d, causal, dt); }

/* The problems, made once and shared by every version's test. */
static prob_t g_probs[4][NDIMS][2][2];

static const prob_t *prob_get(int si, int di, int ti, int causal)
{
    prob_t *p = &g_probs[si][di][ti][causal];
    if (!p->q) {
        tc_shape_t s;
        const int(*sh)[2] = small_mode() ? SHAPES_SMALL : SHAPES;
        shape_set(&s, sh[si][0], sh[si][1], DIMS[di], causal, DTS[ti]);
        tcp_make(p, &s, (uint32_t)(1000 + 100 * si + 10 * di + 2 * ti + causal) * 4u);
    }
    return p;
}

static int teardown_probs(void **state)
{
    (void)state;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < NDIMS; b++)
            for (int c = 0; c < 2; c++)
                for (int e = 0; e < 2; e++)
                    if (g_probs[a][b][c][e].q) tcp_free(&g_probs[a][b][c][e]);
    return 0;
}

static int run_tc(int v, const prob_t *p, const tc_shape_t *s, void *o) { return tcp_run(attn_tc_launch, v, p, s, o); }
static double check_tc(const prob_t *p, const void *o, attn_check_t *out) { return tcp_check(p, o, ROUNDING, out); }

/* ---- every version on every shape */
static void test_version(void **state)
{
    SKIP_WITHOUT_GPU();
    const int v = *(const int *)*state;
    double worst = 0;
    int ran = 0, declined = 0;
    for (int si = 0; si < 4; si++)
        for (int di = 0; di < NDIMS; di++)
            for (int ti = 0; ti < 2; ti++)
                for (int causal = 0; causal < 2; causal++) {
                    const prob_t *p = prob_get(si, di, ti, causal);
                    char why[256];
                    if (!attn_tc_supports(v, &p->s, why, sizeof why)) {
                        if (must_take(v, DIMS[di])) {
                            print_message("%s declines d=%d: %s\n", TC_VERSIONS[v].name, p->s.dim, why);
                            fail();
                        }
                        assert_true(strlen(why) > 0);
                        if (!declined++) print_message("%s declines d=%d: %s\n", TC_VERSIONS[v].name, p->s.dim, why);
                        continue;
                    }
                    void *o = malloc(p->nq * dtype_size(p->s.dt));
                    assert_non_null(o);
                    assert_int_equal(run_tc(v, p, &p->s, o), 0);
                    attn_check_t c;
                    const double r = check_tc(p, o, &c);
                    if (!(r <= 1.0))
                        print_message("%s (%d, %d) d=%d %s causal=%d: error %.3g, tolerance %.3g, ratio %.3g, "
                                      "%zu non-finite\n", TC_VERSIONS[v].name, p->s.seq_q, p->s.seq_kv, p->s.dim,
                                      dtype_name(p->s.dt), causal, c.max_err, c.max_tol, c.worst_ratio, c.nonfinite);
                    assert_true(r <= 1.0);
                    if (r > worst) worst = r;
                    ran++;
                    free(o);
                }
    print_message("%s: %d problems, worst error/tolerance %.3f (%d declined)\n", TC_VERSIONS[v].name, ran, worst,
                  declined);
}

/* ---- the check rejects broken results */

/* A wrong softmax scale (x 1.1) changes every row that sees more than one key. */
static void test_broken_scale_fails(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    const prob_t *p = prob_get(0, 1, 1, 0); /* (113, 203), d 64, bf16, not causal */
    void *o = malloc(p->nq * dtype_size(p->s.dt));
    assert_non_null(o);
    for (int v = 0; v < TC_NVERSIONS; v++) {
        tc_shape_t s = p->s;
        assert_int_equal(run_tc(v, p, &s, o), 0);
        assert_true(check_tc(p, o, NULL) <= 1.0);
        s.scale *= 1.1f;
        assert_int_equal(run_tc(v, p, &s, o), 0);
        const double r = check_tc(p, o, NULL);
        print_message("%s with scale x 1.1: error/tolerance %.3g (must fail)\n", TC_VERSIONS[v].name, r);
        assert_true(r > 1.0);
    }
    free(o);
}

/* One element off by 4 tolerances, a NaN, a non-zero empty row. */
static void test_broken_output_fails(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    /* (203, 113), d 128, fp16, causal: rows 0..89 see no key */
    tcp_broken_outputs_fail(attn_tc_launch, TC_NVERSIONS - 1, prob_get(1, 3, 0, 1), ROUNDING);
}

/* ---- what is declined, and why (no GPU needed) */
static void test_supports(void **state)
{
    (void)state;
    tc_shape_t s;
    char why[256];
    shape_set(&s, 64, 64, 64, 0, DT_BF16);
    for (int v = 0; v < TC_NVERSIONS; v++) {
        assert_non_null(TC_VERSIONS[v].name);
        assert_non_null(TC_VERSIONS[v].what);
        assert_int_equal(attn_tc_supports(v, &s, why, sizeof why), HAVE_CUDA ? 1 : 0);
        assert_true(strlen(attn_tc_describe(v, &s)) > 0);
    }
    const struct { int d, kvh, nq; dtype_t dt; float scale; } bad[] = {
        { 80, 2, 64, DT_BF16, 0.1f }, { 256, 2, 64, DT_BF16, 0.1f }, { 72, 2, 64, DT_F16, 0.1f },
        { 64, 3, 64, DT_BF16, 0.1f }, { 64, 2, 0, DT_BF16, 0.1f },   { 64, 2, 64, DT_F32, 0.1f },
        { 64, 2, 64, DT_BF16, 0.0f }, { 64, 2, 64, DT_BF16, NAN },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shape_set(&s, bad[i].nq, 64, bad[i].d, 0, bad[i].dt);
        s.kv_heads = bad[i].kvh;
        s.scale = bad[i].scale;
        why[0] = 0;
        assert_int_equal(attn_tc_supports(0, &s, why, sizeof why), 0);
        assert_true(strlen(why) > 0);
        /* the launch refuses before touching the device: no GPU needed */
        assert_int_equal(attn_tc_launch(0, &s, NULL, NULL, NULL, NULL), -1);
    }
    /* the head dims each rung promises, and a reason for the others */
    for (int v = 0; v < TC_NVERSIONS; v++)
        for (int di = 0; di < NDIMS; di++) {
            shape_set(&s, 64, 64, DIMS[di], 0, DT_F16);
            why[0] = 0;
            const int ok = attn_tc_supports(v, &s, why, sizeof why);
            if (HAVE_CUDA && must_take(v, DIMS[di])) assert_int_equal(ok, 1);
            if (!ok) assert_true(strlen(why) > 0);
        }
    shape_set(&s, 64, 64, 64, 0, DT_BF16);
    assert_int_equal(attn_tc_supports(-1, &s, why, sizeof why), 0);
    assert_int_equal(attn_tc_supports(TC_NVERSIONS, &s, why, sizeof why), 0);
    assert_int_equal(attn_tc_supports(0, NULL, why, sizeof why), 0);
}

/* ---- the rows of the table, the glue stage 05c shares (no GPU needed): a
 * made-up ladder whose one rung takes d = 64 with tiles of 64 x 32 */
static int fake_launched;
static int fake_supports(int v, const tc_shape_t *s, char *why, size_t n)
{
    (void)v;
    return s->dim == 64 ? 1 : tc_decline(why, n, "fake: d %d", s->dim);
}
static int fake_launch(int v, const tc_shape_t *s, const void *q, const void *k, const void *v_, void *o)
{
    (void)q, (void)k, (void)v_, (void)o;
    fake_launched = 1000 * v + s->dim;
    return 0;
}
static const char *fake_describe(int v, const tc_shape_t *s)
{
    (void)v, (void)s;
    return "Q tile 64 x K/V tile 32, made up";
}
static const tc_version_t FAKE_VERSIONS[] = { { "f1", "first" }, { "f2", "second" } };
static const int FAKE_N = 2;
static const tc_ladder_t FAKE = { "99", "fake: GPU only", FAKE_VERSIONS, &FAKE_N, fake_supports, fake_launch, fake_describe };
TC_LADDER_ROW(FAKE, 0)
TC_LADDER_ROW(FAKE, 1)

static void test_ladder_rows(void **state)
{
    (void)state;
    attn_shape_t s;
    memset(&s, 0, sizeof s);
    s.batch = 1, s.heads = 2, s.kv_heads = 2, s.seq_q = 100, s.seq_kv = 70, s.dim = 64, s.scale = 0.125f, s.dt = DT_BF16;
    char why[256];
    assert_int_equal(tc_row_supports(&FAKE, 1, &s, 0, why, sizeof why), 0);
    assert_string_equal(why, "fake: GPU only");
    assert_int_equal(tc_row_supports(&FAKE, 1, &s, 1, why, sizeof why), 1);
    s.dim = 128;
    assert_int_equal(tc_row_supports(&FAKE, 1, &s, 1, why, sizeof why), 0);
    assert_string_equal(why, "fake: d 128");
    assert_string_equal(tc_row_tiles(&FAKE, 0, &s, 1), "-"); /* declined: no tiles, no model */
    assert_true(tc_row_model(&FAKE, 0, &s) == 0.0);
    s.dim = 64;
    s.batch = 70000;
    assert_int_equal(tc_row_supports(&FAKE, 0, &s, 1, why, sizeof why), 0);
    assert_non_null(strstr(why, "32-bit"));
    s.batch = 1;
    assert_string_equal(tc_row_tiles(&FAKE, 0, &s, 1), "64x32");
    assert_string_equal(tc_row_tiles(&FAKE, 0, &s, 0), "-");
    /* the model against stage 05's FA2 count with the same tiles, masked or not
     * (every query tile sees a key here, so the two agree) */
    for (int causal = 0; causal < 2; causal++) {
        s.causal = causal;
        assert_true(tc_row_model(&FAKE, 1, &s) == tiled_fa2_bytes(&s, 64, 32));
    }
    s.causal = 0;
    /* not causal: 2 query tiles, each reads all 70 keys of K and V */
    assert_true(tc_row_model(&FAKE, 0, &s) == 2.0 * (2.0 * 2 * 100 * 64 + 2.0 * 64 * 2 * 140));
    assert_string_equal(tc_row_describe(&FAKE, 1, &s), "f2: second; Q tile 64 x K/V tile 32, made up");
    assert_string_equal(tc_row_describe(&FAKE, 2, &s), "no such rung");
    fake_launched = 0;
    tc_row_launch(&FAKE, 1, &s, NULL, NULL, NULL, NULL);
    assert_int_equal(fake_launched, 1064);
    static attn_impl_t rows[2];
    static const attn_impl_t *list[2];
    const attn_impl_t *const src[2] = { &FAKE_row0, &FAKE_row1 };
    int n = 0;
    const attn_impl_t *const *r = tc_ladder_rows(&FAKE, src, 2, rows, list, &n);
    assert_int_equal(n, 2);
    assert_string_equal(r[1]->name, "f2");
    assert_string_equal(r[0]->stage, "99");
    assert_true(r[0]->model_bytes(&s) == tc_row_model(&FAKE, 0, &s));
    assert_string_equal(r[1]->tiles(&s, 1), "64x32");
    assert_int_equal(r[1]->supports(&s, 0, why, sizeof why), 0);
    assert_true(r[0]->cpu == NULL);
}

int main(void)
{
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_ladder_rows),
        cmocka_unit_test(test_broken_scale_fails),
        cmocka_unit_test(test_broken_output_fails),
    };
    /* STF_TEST_FILTER="tc5*": only the matching tests (compute-sanitizer runs on a few rungs) */
    return tcp_main("attention stage 05b, tensor cores", fixed, 4, test_version, TC_VERSIONS, TC_NVERSIONS,
                    teardown_probs);
}
