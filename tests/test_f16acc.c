/* Why the tensor-core kernels accumulate O in fp32: tc2_swizzle (fp32
 * accumulators) and tcx_f16acc (the same kernel with O accumulated in fp16,
 * mma.sync ...f16.f16.f16.f16) on the same fp16 inputs, every output row
 * against the fp64 reference (attention_ref_row).
 *
 * Shape: B 1, H 2 (MHA), d 64, seq_q 64 (one query block, all four warps),
 * seq_kv = 256, 4096, 16384, not causal. q, k ~ U[-2, 2) as in the other
 * attention tests; V twice:
 *   - V ~ U[0, 1), mean 0.5. Value vectors of real models are not zero-mean
 *     per channel; with a mean, the unnormalised output sum_j e^(s_j - m) v_j
 *     grows like l (the keys that matter), and each MMA's increment becomes a
 *     few fp16 ulps of it.
 *   - V ~ U[-1, 1), mean 0: the same sum is a random walk, of size
 *     sqrt(sum_j p_j^2), so its relative rounding error hardly grows: the
 *     inputs that hide the problem (printed, not asserted beyond sanity).
 * Error: attention_row_error (max_k |o_k - r_k| / A, A = sum_j p_j |v_jk|),
 * the worst row; tolerance: attention_tolerance(fp16, d, stats,
 * ATT_ROUND_P | ATT_MMA_LOWP), the stage's.
 *
 * Asserted:
 *   - fp32 accumulation (tc2) passes the tolerance on every problem;
 *   - with V of mean 0.5, the fp16 accumulator's worst error grows with
 *     seq_kv (strictly, 256 < 4096 < 16384) and at 16384 is at least
 *     F16ACC_FACTOR times tc2's;
 *   - sanity, so that a broken kernel cannot pass the two checks above by
 *     being wrong everywhere: fp16 accumulation gives finite outputs and a
 *     worst error below F16ACC_SANE (5% of the terms' size) where its sum
 *     stays small (V of mean 0.5 at 256 keys; zero-mean V at every length).
 * Whether fp16 accumulation fails the tolerance is printed, not asserted
 * (it is expected to, for V of mean 0.5).
 * The GPU case is skipped without a GPU; the verdict (judge) is tested on
 * the CPU against altered results, so that it is known to be able to fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/05b_tensor_cores/tc.h"
#include "attention_ref.h"
#include "gpu.h"
#include "harness.h"
#include "rng.h"

#define ROUNDING (ATT_ROUND_P | ATT_MMA_LOWP)
#define TC2 1                /* tc2_swizzle's index in TC_VERSIONS */
#define F16ACC_FACTOR 10.0   /* fp16 / fp32 accumulation error at 16384 keys, at least */
#define F16ACC_SANE 0.05     /* error of a kernel that computes attention at all */

static const int NKV[3] = { 256, 4096, 16384 };
enum { B = 1, H = 2, D = 64, NQ = 64 };

typedef struct {
    double err, ratio; /* worst row error, worst error / tolerance */
    size_t nonfinite;
    int ok; /* attn_check_ok */
} result_t;

/* One problem: inputs, reference rows and their statistics. */
typedef struct {
    tc_shape_t s;
    uint16_t *q, *k, *v;
    size_t nq, nkv;
    double *ref;
    attn_row_stats_t *st;
} prob_t;

static void prob_make(prob_t *p, int nkv, int v_mean_half)
{
    memset(p, 0, sizeof *p);
    p->s = (tc_shape_t){ B, H, H, NQ, nkv, D, 0, (float)(1.0 / sqrt((double)D)), DT_F16 };
    p->nq = (size_t)B * H * NQ * D;
    p->nkv = (size_t)B * H * nkv * D;
    p->q = malloc(p->nq * 2);
    p->k = malloc(p->nkv * 2);
    p->v = malloc(p->nkv * 2);
    p->ref = malloc((size_t)B * H * NQ * D * sizeof *p->ref);
    p->st = malloc((size_t)B * H * NQ * sizeof *p->st);
    assert_true(p->q && p->k && p->v && p->ref && p->st);
    const uint64_t seed = test_seed();
    for (size_t i = 0; i < p->nq; i++) dtype_set(p->q, DT_F16, i, rng_logit(seed, 501, i, 2.0f));
    for (size_t i = 0; i < p->nkv; i++) {
        dtype_set(p->k, DT_F16, i, rng_logit(seed, 502, i, 2.0f));
        /* mean 0.5: 0.5 + 0.5 U[-1, 1) = U[0, 1), each term exact in fp32 */
        const float u = rng_sym(seed, 503, i);
        dtype_set(p->v, DT_F16, i, v_mean_half ? 0.5f + 0.5f * u : u);
    }
    for (size_t r = 0; r < (size_t)B * H * NQ; r++) {
        const size_t bh = r / NQ; /* MHA: K/V slice = query head */
        attention_ref_row(p->q + r * D, p->k + bh * (size_t)nkv * D, p->v + bh * (size_t)nkv * D, DT_F16,
                          (size_t)nkv, D, p->s.scale, p->ref + r * D, &p->st[r]);
    }
}

static void prob_free(prob_t *p)
{
    free(p->q); free(p->k); free(p->v); free(p->ref); free(p->st);
    memset(p, 0, sizeof *p);
}

/* Runs tc2 (f16acc = 0) or tcx_f16acc (1) on p, output poisoned first, and
 * checks every row. */
static result_t run_check(const prob_t *p, int f16acc)
{
    const size_t qb = p->nq * 2, kvb = p->nkv * 2;
    void *dq = gpu_malloc(qb, "Q"), *dk = gpu_malloc(kvb, "K"), *dv = gpu_malloc(kvb, "V"), *dout = gpu_malloc(qb, "O");
    uint16_t *o = malloc(qb);
    assert_non_null(o);
    gpu_h2d(dq, p->q, qb);
    gpu_h2d(dk, p->k, kvb);
    gpu_h2d(dv, p->v, kvb);
    gpu_poison(dout, qb);
    const int rc = f16acc ? attn_tcx_f16acc_launch(&p->s, dq, dk, dv, dout) : attn_tc_launch(TC2, &p->s, dq, dk, dv, dout);
    assert_int_equal(rc, 0);
    gpu_sync();
    gpu_d2h(o, dout, qb);
    gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(dout);

    attn_check_t c;
    attn_check_init(&c);
    for (size_t r = 0; r < (size_t)B * H * NQ; r++) attn_check_row(&c, o + r * D, DT_F16, p->ref + r * D, &p->st[r], D, ROUNDING);
    free(o);
    return (result_t){ c.max_err, c.worst_ratio, c.nonfinite, attn_check_ok(&c) };
}

/* The verdict on the six problems' results, r[v][i] for V of mean 0.5
 * (v = 1) or 0 (v = 0) at NKV[i]: NULL when every assertion above holds,
 * else the first that does not. Every comparison is written so that a NaN
 * fails it. */
static const char *judge(const result_t r32[2][3], const result_t r16[2][3])
{
    for (int vm = 0; vm < 2; vm++)
        for (int i = 0; i < 3; i++) {
            if (!r32[vm][i].ok) return "fp32 accumulation (tc2) fails the tolerance";
            if (r16[vm][i].nonfinite) return "fp16 accumulation gives non-finite outputs";
        }
    if (!(r16[1][0].err < F16ACC_SANE)) return "fp16 accumulation is wrong already at 256 keys (V of mean 0.5)";
    for (int i = 0; i < 3; i++)
        if (!(r16[0][i].err < F16ACC_SANE)) return "fp16 accumulation is wrong with zero-mean V";
    if (!(r16[1][0].err < r16[1][1].err && r16[1][1].err < r16[1][2].err))
        return "fp16 accumulation's error does not grow with seq_kv (V of mean 0.5)";
    if (!(r16[1][2].err >= F16ACC_FACTOR * r32[1][2].err))
        return "fp16 accumulation is not clearly worse than fp32 at 16384 keys (V of mean 0.5)";
    return NULL;
}

static void test_f16acc_error_grows(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    result_t r32[2][3], r16[2][3];
    for (int vm = 1; vm >= 0; vm--) {
        print_message("V ~ %s: fp16 inputs, B %d, H %d, d %d, seq_q %d, not causal; every row against fp64; "
                      "error = attention_row_error (max |o - r| / A), tolerance ATT_ROUND_P | ATT_MMA_LOWP\n",
                      vm ? "U[0, 1) (mean 0.5)" : "U[-1, 1) (mean 0)", B, H, D, NQ);
        print_message("  seq_kv | fp32 acc (tc2_swizzle): max err  err/tol  pass | fp16 acc (tcx_f16acc): max err  "
                      "err/tol  pass | fp16/fp32\n");
        for (int i = 0; i < 3; i++) {
            prob_t p;
            prob_make(&p, NKV[i], vm);
            r32[vm][i] = run_check(&p, 0);
            r16[vm][i] = run_check(&p, 1);
            prob_free(&p);
            print_message("  %6d | %28.3e %8.3f  %-4s | %29.3e %8.3f  %-4s | %9.1f\n", NKV[i], r32[vm][i].err,
                          r32[vm][i].ratio, r32[vm][i].ok ? "yes" : "NO", r16[vm][i].err, r16[vm][i].ratio,
                          r16[vm][i].ok ? "yes" : "NO", r16[vm][i].err / r32[vm][i].err);
        }
    }
    const char *why = judge((const result_t(*)[3])r32, (const result_t(*)[3])r16);
    if (why) print_message("FAILED: %s\n", why);
    assert_null(why);
    print_message("fp16 accumulation at seq_kv 16384, V of mean 0.5: %s the stage's tolerance (err/tol %.2f)\n",
                  r16[1][2].ok ? "passes" : "FAILS", r16[1][2].ratio);
}

/* The verdict rejects broken results (no GPU needed): built from a passing
 * set of the expected size, each altered the way a broken kernel, a broken
 * reference or a check that cannot fail would alter it. */
static void test_f16acc_judge_rejects(void **state)
{
    (void)state;
    /* illustrative results that pass: fp32 inside its tolerance, fp16's
     * error growing from 2e-3 to 2e-2 with V of mean 0.5 */
    const result_t good32[2][3] = { { { 1.8e-4, 0.22, 0, 1 }, { 6.3e-5, 0.09, 0, 1 }, { 2.9e-5, 0.02, 0, 1 } },
                                    { { 5.0e-4, 0.46, 0, 1 }, { 4.9e-4, 0.47, 0, 1 }, { 4.8e-4, 0.26, 0, 1 } } };
    const result_t good16[2][3] = { { { 6.0e-4, 0.80, 0, 1 }, { 5.9e-4, 0.91, 0, 1 }, { 8.3e-4, 0.59, 0, 1 } },
                                    { { 1.9e-3, 1.75, 0, 0 }, { 7.6e-3, 7.04, 0, 0 }, { 1.9e-2, 10.2, 0, 0 } } };
    result_t a[2][3], b[2][3];
    assert_null(judge(good32, good16));
#define RESET() (memcpy(a, good32, sizeof a), memcpy(b, good16, sizeof b))
    RESET(); a[1][2].ok = 0; /* fp32 fails its tolerance */
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); b[1][2] = a[1][2]; /* the "fp16" kernel accumulates in fp32 after all */
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); memcpy(b, a, sizeof b); /* both kernels the same */
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); b[1][1].err = 3e-2; /* no growth from 4096 to 16384 */
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); for (int i = 0; i < 3; i++) b[1][i].err = 0.5 + i; /* wrong everywhere, growing */
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); b[0][2].err = 0.3; /* wrong on zero-mean V */
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); b[1][2].err = NAN;
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); a[1][2].err = NAN; /* fp32's error unknown: the factor cannot be shown */
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
    RESET(); b[0][1].nonfinite = 3;
    assert_non_null(judge((const result_t(*)[3])a, (const result_t(*)[3])b));
#undef RESET
}

/* What is declined, and why (no GPU needed). */
static void test_f16acc_supports(void **state)
{
    (void)state;
    tc_shape_t s = { B, H, H, NQ, 256, D, 0, 0.125f, DT_F16 };
    char why[256];
    assert_int_equal(attn_tcx_f16acc_supports(&s, why, sizeof why), HAVE_CUDA ? 1 : 0);
    s.dt = DT_BF16;
    why[0] = 0;
    assert_int_equal(attn_tcx_f16acc_supports(&s, why, sizeof why), 0);
    print_message("bf16 declined: %s\n", why);
    assert_non_null(strstr(why, "fp16"));
    assert_int_equal(attn_tcx_f16acc_launch(&s, NULL, NULL, NULL, NULL), -1); /* refused before the device */
    s.dt = DT_F16;
    s.dim = 80;
    assert_int_equal(attn_tcx_f16acc_supports(&s, why, sizeof why), 0);
    assert_int_equal(attn_tcx_f16acc_launch(&s, NULL, NULL, NULL, NULL), -1);
}

int main(void)
{
    test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16acc_supports),
        cmocka_unit_test(test_f16acc_judge_rejects),
        cmocka_unit_test(test_f16acc_error_grows),
    };
    return cmocka_run_group_tests_name("fp16 vs fp32 accumulation (tcx_f16acc, tc2_swizzle)", tests, NULL, NULL);
}
