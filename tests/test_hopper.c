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
#include "tc_probs.h"

#define ROUNDING (ATT_ROUND_P | ATT_MMA_LOWP)

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

#define NSHAPES 9
static const int SHAPES[NSHAPES][2] = { { 1, 1 },   { 7, 7 },     { 65, 65 },   { 200, 200 }, { 257, 257 },
                                        { 1, 257 }, { 65, 200 }, { 200, 65 }, { 257, 7 } };
#define NSMALL 3 /* the shapes with both lengths <= 65, for the sanitizers: (1,1) (7,7) (65,65) */
#define NDIMS 3
static const int DIMS[NDIMS] = { 64, 128, 256 };
static const dtype_t DTS[2] = { DT_F16, DT_BF16 };

typedef tcp_prob_t prob_t;

/* batch 2, 4 query heads over 2 K/V heads */
static void shape_set(tc_shape_t *s, int Nq, int Nkv, int d, int causal, dtype_t dt) { tcp_shape(s, 4, Nq, Nkv, d, causal, dt); }

static prob_t g_probs[NSHAPES][NDIMS][2][2];

static const prob_t *prob_get(int si, int di, int ti, int causal)
{
    prob_t *p = &g_probs[si][di][ti][causal];
    if (!p->q) {
        tc_shape_t s;
        shape_set(&s, SHAPES[si][0], SHAPES[si][1], DIMS[di], causal, DTS[ti]);
        tcp_make(p, &s, (uint32_t)(5000 + 100 * si + 10 * di + 2 * ti + causal) * 4u);
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
                    if (g_probs[a][b][c][e].q) tcp_free(&g_probs[a][b][c][e]);
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

static int run_hop(int v, const prob_t *p, const tc_shape_t *s, void *o) { return tcp_run(attn_hop_launch, v, p, s, o); }
static double check_hop(const prob_t *p, const void *o, attn_check_t *out) { return tcp_check(p, o, ROUNDING, out); }

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
    /* (200, 65), d 128, fp16, causal: rows 0..134 see no key */
    tcp_broken_outputs_fail(attn_hop_launch, HOP_NVERSIONS - 1, prob_get(7, 1, 0, 1), ROUNDING);
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

int main(void)
{
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_broken_launch_fails),
        cmocka_unit_test(test_broken_output_fails),
    };
    return tcp_main("attention stage 05c, Hopper", fixed, 3, test_version, HOP_VERSIONS, HOP_NVERSIONS, teardown_probs);
}
