/* Stage 04: standard and one-pass attention, CPU and GPU, against the fp64
 * reference (common/numerics/attention_ref.h) with the stated tolerance; the merge's
 * associativity; invariance under a joint permutation of keys and values;
 * large logits; the ledger against the traffic models; bad input to the
 * program; and, so that none of these checks is vacuous, deliberately broken
 * implementations that the same check must reject.
 * GPU cases skip (cmocka skip) where no GPU can be used.
 * STF_TEST_SMALL=1 shrinks the GPU matrix (for compute-sanitizer). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../stages/04_one_pass_attention/attention.h"
#include "attention_ref.h"
#include "attn_harness.h"
#include "gpu.h"
#include "harness.h"
#include "npy.h"
#include "rng.h"

static const dtype_t DTYPES[] = { DT_F32, DT_F16, DT_BF16 };
static const attn_impl_t *const IMPLS[] = { &IMPL_ATTN_STANDARD, &IMPL_ATTN_ONE_PASS };

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

/* ---- accuracy: N in 1, 17, 100, 1000, d in 16, 32, 64, 80, 128 (GPU: and
 * 96, 256, every kernel instance), causal or not, fp32/fp16/bf16. */
static void accuracy(int gpu)
{
    static const size_t Ns[] = { 1, 17, 100, 1000 };
    static const size_t dims_cpu[] = { 16, 32, 64, 80, 128 }, dims_gpu[] = { 16, 32, 64, 80, 96, 128, 256 };
    const size_t *dims = gpu ? dims_gpu : dims_cpu;
    const size_t ndims = gpu ? 7 : 5, nN = small_mode() ? 3 : 4;
    double worst[2] = { 0, 0 };
    for (size_t a = 0; a < nN; a++)
        for (size_t b = 0; b < ndims; b++)
            for (int causal = 0; causal < 2; causal++)
                for (size_t t = 0; t < 3; t++) {
                    const size_t N = Ns[a], d = dims[b];
                    /* several (b, h) slices where cheap: the slice indexing is checked too */
                    const size_t B = N >= 1000 ? 1 : N >= 100 ? 1 : 2, H = N >= 1000 ? 1 : N >= 100 ? 2 : 3;
                    attn_problem_t p;
                    attn_problem_make(&p, B, H, H, N, N, d, causal, DTYPES[t], 1.5f, (uint32_t)(100 * a + 10 * b + t));
                    attn_problem_ref(&p, NULL);
                    void *o = malloc((size_t)attn_q_elems(&p.s) * dtype_size(DTYPES[t]));
                    for (int k = 0; k < 2; k++) {
                        assert_int_equal(attn_run_impl(IMPLS[k], gpu, &p, o, NULL), 0);
                        attn_check_t c;
                        double ratio = attn_check_rows(&p, o, IMPLS[k]->rounding, &c);
                        if (ratio > worst[k]) worst[k] = ratio;
                        if (ratio > 1.0 || c.nonfinite)
                            print_message("%s %s N=%zu d=%zu causal=%d %s: error %.3g, tolerance %.3g (ratio %.3g), "
                                          "%zu non-finite\n", gpu ? "gpu" : "cpu", IMPLS[k]->name, N, d, causal,
                                          dtype_name(DTYPES[t]), c.max_err, c.max_tol, ratio, c.nonfinite);
                        assert_true(ratio <= 1.0);
                        assert_int_equal(c.nonfinite, 0);
                    }
                    free(o);
                    attn_problem_free(&p);
                }
    print_message("%s: worst error/tolerance: standard %.3g, one-pass %.3g\n", gpu ? "gpu" : "cpu", worst[0], worst[1]);
}
static void test_accuracy_cpu(void **state) { (void)state; accuracy(0); }

/* ---- query and key lengths that differ (decode is Nq = 1), causal masks
 * aligned bottom-right, grouped K/V heads read by index: one-pass through
 * every case; standard where it accepts the shape (MHA, and no query row
 * left without a visible key), and it must say why when it declines. */
static void lengths_differ(int gpu)
{
    static const size_t lens[][2] = { { 113, 203 }, { 203, 113 }, { 1, 300 }, { 17, 1 }, { 64, 64 } };
    static const size_t heads[][2] = { { 2, 2 }, { 6, 2 }, { 4, 1 } };
    for (size_t a = 0; a < 5; a++)
        for (size_t h = 0; h < 3; h++)
            for (int causal = 0; causal < 2; causal++)
                for (size_t t = 0; t < 3; t++) {
                    attn_problem_t p;
                    attn_problem_make(&p, 2, heads[h][0], heads[h][1], lens[a][0], lens[a][1], 32, causal, DTYPES[t], 1.5f,
                                  (uint32_t)(900 + 30 * a + 10 * h + t));
                    attn_problem_ref(&p, NULL);
                    void *o = malloc((size_t)attn_q_elems(&p.s) * dtype_size(DTYPES[t]));
                    for (int k = 0; k < 2; k++) {
                        char why[256] = "";
                        if (IMPLS[k]->supports && !IMPLS[k]->supports(&p.s, gpu, why, sizeof why)) {
                            assert_true(strlen(why) > 10); /* declined, with a reason */
                            assert_true(IMPLS[k] == &IMPL_ATTN_STANDARD);
                            continue;
                        }
                        assert_int_equal(attn_run_impl(IMPLS[k], gpu, &p, o, NULL), 0);
                        attn_check_t c;
                        const double ratio = attn_check_rows(&p, o, IMPLS[k]->rounding, &c);
                        if (!attn_check_ok(&c))
                            print_message("%s %s Nq=%zu Nk=%zu H=%zu Hkv=%zu causal=%d %s: ratio %.3g, %zu unresolved\n",
                                          gpu ? "gpu" : "cpu", IMPLS[k]->name, lens[a][0], lens[a][1], heads[h][0],
                                          heads[h][1], causal, dtype_name(DTYPES[t]), ratio, c.unresolved);
                        assert_true(attn_check_ok(&c));
                    }
                    /* rows with no visible key (causal, Nq > Nk) are exactly 0 */
                    if (causal && lens[a][0] > lens[a][1]) {
                        assert_int_equal(attn_visible_keys(&p.s, 0), 0);
                        for (size_t c = 0; c < 32; c++) assert_true(dtype_get(o, DTYPES[t], c) == 0.0f);
                    }
                    free(o);
                    attn_problem_free(&p);
                }
}
static void test_lengths_differ_cpu(void **state) { (void)state; lengths_differ(0); }
static void test_lengths_differ_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); lengths_differ(1); }

/* Bottom-right alignment and pair counts, against a direct count. */
static void test_visible_counts(void **state)
{
    (void)state;
    static const size_t lens[][2] = { { 113, 203 }, { 203, 113 }, { 1, 300 }, { 17, 1 }, { 64, 64 }, { 5, 0 } };
    for (size_t a = 0; a < 6; a++)
        for (int causal = 0; causal < 2; causal++) {
            attn_shape_t s;
            attn_shape_init(&s, 2, 3, 3, lens[a][0], lens[a][1], 16, causal, DT_F32);
            uint64_t pairs = 0;
            for (size_t i = 0; i < s.seq_q; i++) {
                size_t n = 0;
                for (size_t j = 0; j < s.seq_kv; j++) n += !causal || (long long)j <= (long long)i + (long long)s.seq_kv - (long long)s.seq_q;
                assert_int_equal(attn_visible_keys(&s, i), n);
                pairs += n;
            }
            assert_int_equal(attn_pairs(&s), 6 * pairs);
        }
}
static void test_accuracy_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); accuracy(1); }

/* ---- the reference itself, on cases with a known answer */
static void test_reference_known_cases(void **state)
{
    (void)state;
    const size_t d = 16, N = 9;
    float q[16], k[9 * 16], v[9 * 16];
    double out[16];
    attn_row_stats_t st;
    for (size_t i = 0; i < N * d; i++) {
        k[i] = rng_logit(test_seed(), 7, i, 1.0f);
        v[i] = rng_logit(test_seed(), 8, i, 1.0f);
    }
    for (size_t c = 0; c < d; c++) q[c] = rng_logit(test_seed(), 9, c, 1.0f);
    /* one key: the output is its value row, exactly */
    attention_ref_row(q, k, v, DT_F32, 1, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) assert_true(out[c] == (double)v[c]);
    assert_int_equal(st.n, 1);
    /* q = 0: every key equally likely, the output is the mean of V */
    for (size_t c = 0; c < d; c++) q[c] = 0.0f;
    attention_ref_row(q, k, v, DT_F32, N, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) {
        double mean = 0;
        for (size_t j = 0; j < N; j++) mean += v[j * d + c];
        assert_true(fabs(out[c] - mean / N) <= 1e-15);
    }
    assert_true(st.cmax == 0.0);
    /* PyTorch's SDPA semantics (notes/04, "NaN and -inf in Q, K, V"):
     * a NaN in V[j, c] makes column c NaN, and only column c */
    v[3] = NAN;
    attention_ref_row(q, k, v, DT_F32, N, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) assert_true(c == 3 ? isnan(out[c]) : isfinite(out[c]));
    v[3] = 0.5f;
    /* an inf in V[j, c]: column c is inf (p_j > 0), the rest finite */
    v[2 * d + 5] = INFINITY;
    attention_ref_row(q, k, v, DT_F32, N, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) assert_true(c == 5 ? out[c] == INFINITY : isfinite(out[c]));
    v[2 * d + 5] = 0.5f;
    /* a NaN in q: the whole row NaN */
    q[1] = NAN;
    attention_ref_row(q, k, v, DT_F32, N, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) assert_true(isnan(out[c]));
    /* a -inf logit is a masked key: q > 0 in component 0, k_j[0] = -inf gives
     * s_j = -inf, and the row equals attention over the other keys; smax and
     * cmax count finite logits only (no overflow of S, no infinite tolerance) */
    for (size_t c = 0; c < d; c++) q[c] = 0.1f + 0.01f * (float)c;
    double *want = malloc(d * sizeof *want);
    assert_non_null(want);
    attention_ref_row(q, k + d, v + d, DT_F32, N - 1, d, 0.25f, want, NULL);
    const float k00 = k[0];
    k[0] = -INFINITY;
    attention_ref_row(q, k, v, DT_F32, N, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) assert_true(fabs(out[c] - want[c]) <= 1e-12);
    assert_true(isfinite(st.smax) && isfinite(st.cmax));
    assert_false(attn_row_overflows_s(DT_F16, &st, ATT_ROUND_S));
    assert_true(isfinite(attention_tolerance(DT_F16, d, &st, ATT_ROUND_S | ATT_ROUND_P)));
    /* every key -inf: zeros (PyTorch >= 2.5's SDPA, FlashAttention) */
    for (size_t j = 0; j < N; j++) k[j * d] = -INFINITY;
    attention_ref_row(q, k, v, DT_F32, N, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) assert_true(out[c] == 0.0);
    assert_true(st.rmax == 0.0);
    /* a +inf logit: e^{inf - inf}, the row NaN */
    k[0] = INFINITY;
    attention_ref_row(q, k, v, DT_F32, N, d, 0.25f, out, &st);
    for (size_t c = 0; c < d; c++) assert_true(isnan(out[c]));
    for (size_t j = 0; j < N; j++) k[j * d] = k00;
    free(want);
}

/* ---- the merge */

/* Keys [j0, j1) of one row, as a partial state; k, v wrapped for the range function. */
static void partial(hbm_t *k, hbm_t *v, size_t d, float scale, const float *q, size_t j0, size_t j1, attn_state_t *st,
                    float *o)
{
    attn_state_init(st, o, d);
    attention_one_pass_range(k, v, 0, d, scale, q, j0, j1, st);
}

/* Random splits of the key range, merged in a random order (random pairs
 * until one state is left), give the one-pass output within the one-pass
 * tolerance (each is an fp32 evaluation of the same sum in a different
 * association; the tolerance bounds either against fp64). And the per-key
 * recurrence is, bit for bit, attn_merge with one-key states. */
static void test_merge_associative(void **state)
{
    (void)state;
    const size_t N = 500, d = 64;
    attn_problem_t p;
    attn_problem_make(&p, 1, 1, 1, N, N, d, 0, DT_F32, 2.0f, 300);
    attn_problem_ref(&p, NULL);
    ledger_t lg = { 0 };
    hbm_t k = hbm_wrap(&lg, "K", p.k, N * d, DT_F32), v = hbm_wrap(&lg, "V", p.v, N * d, DT_F32);
    rng_t rng = { test_seed() ^ 0x51ed };
    float q[64], one[64], out1[64], out2[64];
    enum { MAXPARTS = 16 };
    float ostore[MAXPARTS][64];
    double worst = 0;
    for (size_t row = 0; row < N; row += 37) {
        for (size_t c = 0; c < d; c++) q[c] = ((const float *)p.q)[row * d + c];
        attn_state_t ref1;
        partial(&k, &v, d, p.s.scale, q, 0, N, &ref1, one);
        attn_state_finish(&ref1, d, out1);
        const double tol = attention_tolerance(DT_F32, d, &p.st[row], 0);
        for (int trial = 0; trial < 20; trial++) {
            /* cut points */
            const size_t parts = 2 + (size_t)rng_below(&rng, MAXPARTS - 1);
            size_t cut[MAXPARTS + 1];
            cut[0] = 0;
            cut[parts] = N;
            for (size_t i = 1; i < parts; i++) cut[i] = (size_t)rng_below(&rng, N + 1);
            for (size_t i = 1; i < parts; i++) /* sort; empty parts allowed: they must merge as the identity */
                for (size_t j = i + 1; j < parts; j++)
                    if (cut[j] < cut[i]) { size_t t = cut[i]; cut[i] = cut[j]; cut[j] = t; }
            attn_state_t stt[MAXPARTS];
            for (size_t i = 0; i < parts; i++) partial(&k, &v, d, p.s.scale, q, cut[i], cut[i + 1], &stt[i], ostore[i]);
            size_t live = parts;
            while (live > 1) { /* merge two random states, in a random order */
                size_t a = (size_t)rng_below(&rng, live), b = (size_t)rng_below(&rng, live - 1);
                if (b >= a) b++;
                attn_merge(&stt[a], &stt[b], d);
                stt[b] = stt[live - 1];
                live--;
            }
            attn_state_finish(&stt[0], d, out2);
            double e = 0;
            for (size_t c = 0; c < d; c++) e = fmax(e, fabs((double)out2[c] - out1[c]) / p.st[row].amax);
            if (e / tol > worst) worst = e / tol;
            assert_true(e <= tol);
        }
        /* the recurrence is the merge with one-key states (s, 1, v_j): bit for bit */
        attn_state_t acc, key;
        float oacc[64], okey[64];
        attn_state_init(&acc, oacc, d);
        for (size_t j = 0; j < N; j++) {
            float dot = 0.0f;
            for (size_t c = 0; c < d; c++) dot += q[c] * ((const float *)p.k)[j * d + c];
            key.m = p.s.scale * dot;
            key.l = 1.0f;
            key.o = okey;
            for (size_t c = 0; c < d; c++) okey[c] = ((const float *)p.v)[j * d + c];
            attn_merge(&acc, &key, d);
        }
        attn_state_finish(&acc, d, out2);
        assert_memory_equal(out1, out2, d * sizeof(float));
        /* the empty state is the identity, on either side */
        attn_state_t empty, copy;
        float oempty[64], ocopy[64];
        attn_state_init(&empty, oempty, d);
        copy = ref1;
        copy.o = ocopy;
        memcpy(ocopy, one, sizeof ocopy);
        attn_merge(&copy, &empty, d);
        assert_true(copy.m == ref1.m && copy.l == ref1.l);
        assert_memory_equal(ocopy, one, d * sizeof(float));
        attn_merge(&empty, &ref1, d);
        assert_true(empty.m == ref1.m && empty.l == ref1.l);
        assert_memory_equal(oempty, one, d * sizeof(float));
    }
    print_message("random splits merged in random order: worst |difference| / tolerance = %.3g\n", worst);
    attn_problem_free(&p);
}

/* ---- keys and values permuted together: the output is unchanged (each
 * result is within tol of the same exact value, so within 2 tol of each other). */
static void permutation(int gpu)
{
    const size_t B = 1, H = 2, N = 300, d = 64;
    for (size_t t = 0; t < 3; t++) {
        attn_problem_t p, pp;
        attn_problem_make(&p, B, H, H, N, N, d, 0, DTYPES[t], 2.0f, 400);
        attn_problem_ref(&p, NULL);
        attn_problem_make(&pp, B, H, H, N, N, d, 0, DTYPES[t], 2.0f, 400);
        size_t perm[300];
        rng_t rng = { test_seed() + 77 };
        for (size_t j = 0; j < N; j++) perm[j] = j;
        for (size_t j = N - 1; j > 0; j--) { /* Fisher-Yates */
            size_t r = (size_t)rng_below(&rng, j + 1), x = perm[j];
            perm[j] = perm[r];
            perm[r] = x;
        }
        const size_t es = dtype_size(DTYPES[t]);
        for (size_t bh = 0; bh < B * H; bh++)
            for (size_t j = 0; j < N; j++) {
                memcpy((char *)pp.k + ((bh * N + j) * d) * es, (char *)p.k + ((bh * N + perm[j]) * d) * es, d * es);
                memcpy((char *)pp.v + ((bh * N + j) * d) * es, (char *)p.v + ((bh * N + perm[j]) * d) * es, d * es);
            }
        const size_t n = (size_t)attn_q_elems(&p.s);
        void *o1 = malloc(n * es), *o2 = malloc(n * es);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(attn_run_impl(IMPLS[k], gpu, &p, o1, NULL), 0);
            assert_int_equal(attn_run_impl(IMPLS[k], gpu, &pp, o2, NULL), 0);
            double worst = 0;
            for (uint64_t r = 0; r < attn_rows(&p.s); r++) {
                const double tol = attention_tolerance(DTYPES[t], d, &p.st[r], IMPLS[k]->rounding);
                double e = 0;
                for (size_t c = 0; c < d; c++)
                    e = fmax(e, fabs((double)dtype_get(o1, DTYPES[t], r * d + c) - dtype_get(o2, DTYPES[t], r * d + c)) /
                                    fmax(p.st[r].amax, dtype_min_normal(DTYPES[t])));
                if (e / (2 * tol) > worst) worst = e / (2 * tol);
            }
            if (worst > 1.0)
                print_message("%s %s %s: permuted output differs, |difference| / (2 tol) = %.3g\n", gpu ? "gpu" : "cpu",
                              IMPLS[k]->name, dtype_name(DTYPES[t]), worst);
            assert_true(worst <= 1.0);
        }
        free(o1);
        free(o2);
        attn_problem_free(&p);
        attn_problem_free(&pp);
    }
}
static void test_permutation_cpu(void **state) { (void)state; permutation(0); }
static void test_permutation_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); permutation(1); }

/* ---- large logits: inputs 30 * U[-1, 1) give logits of several hundred
 * (e^300 overflows every type); nothing overflows, and everything that keeps
 * S in fp32 stays within tolerance. At 300 * U[-1, 1), the logits exceed
 * fp16's 65504: standard attention in fp16 stores S and overflows (Q2 again),
 * while one-pass, which keeps s in fp32 registers, does not. */
static void large_logits(int gpu)
{
    for (size_t t = 0; t < 3; t++)
        for (int causal = 0; causal < 2; causal++) {
            attn_problem_t p;
            attn_problem_make(&p, 1, 2, 2, 256, 256, 64, causal, DTYPES[t], 30.0f, 500);
            attn_problem_ref(&p, NULL);
            void *o = malloc((size_t)attn_q_elems(&p.s) * dtype_size(DTYPES[t]));
            for (int k = 0; k < 2; k++) {
                assert_int_equal(attn_run_impl(IMPLS[k], gpu, &p, o, NULL), 0);
                attn_check_t c;
                double ratio = attn_check_rows(&p, o, IMPLS[k]->rounding, &c);
                assert_int_equal(c.nonfinite, 0);
                /* standard attention in fp16/bf16 rounds logits of ~1000 to a
                 * spacing of 0.5 (fp16) or 8 (bf16): its bound is vacuous there */
                if (IMPLS[k] == &IMPL_ATTN_ONE_PASS || DTYPES[t] == DT_F32) {
                    if (ratio > 1.0) print_message("%s %s %s: ratio %.3g\n", gpu ? "gpu" : "cpu", IMPLS[k]->name,
                                                   dtype_name(DTYPES[t]), ratio);
                    assert_true(ratio <= 1.0);
                }
            }
            free(o);
            attn_problem_free(&p);
        }
    attn_problem_t p;
    attn_problem_make(&p, 1, 1, 1, 64, 64, 64, 0, DT_F16, 300.0f, 600);
    attn_problem_ref(&p, NULL);
    void *o = malloc((size_t)attn_q_elems(&p.s) * 2);
    attn_check_t c;
    /* standard-s16 stores S in fp16: logits past 65504 become inf, and with
     * the flag that says so (ATT_ROUND_S) those rows are the excused lesson */
    assert_int_equal(attn_run_impl(&IMPL_ATTN_STANDARD_S16, gpu, &p, o, NULL), 0);
    attn_check_rows(&p, o, ATT_ROUND_S | ATT_ROUND_P, &c);
    assert_true(c.nonfinite > 0);
    print_message("standard-s16 fp16 at 300 U[-1,1): %zu of %zu rows overflow S (excused), worst ratio of the rest "
                  "%.3g, %zu unresolved\n", c.excused, c.rows, c.worst_ratio, c.unresolved);
    assert_true(c.excused > 0); /* rows whose logits pass 65504: the lesson, excused, not judged */
    assert_false(attn_check_ok(&c)); /* the other rows: unresolved, never a pass */
    /* standard keeps S in fp32: nothing overflows, nothing is excused */
    assert_int_equal(attn_run_impl(&IMPL_ATTN_STANDARD, gpu, &p, o, NULL), 0);
    attn_check_rows(&p, o, IMPL_ATTN_STANDARD.rounding, &c);
    assert_int_equal(c.nonfinite, 0);
    assert_int_equal(c.excused, 0);
    assert_false(attn_check_ok(&c)); /* unresolved, as one-pass below */
    assert_int_equal(attn_run_impl(&IMPL_ATTN_ONE_PASS, gpu, &p, o, NULL), 0);
    attn_check_rows(&p, o, IMPL_ATTN_ONE_PASS.rounding, &c);
    assert_int_equal(c.nonfinite, 0); /* s stays in fp32 registers: nothing overflows */
    /* but logits of ~1e5 carry fp32 rounding errors of order 1e-2 in the
     * exponent: the derived tolerance exceeds what the check can resolve, so
     * the check says so (unresolved, a failure), never "ok" */
    assert_true(c.unresolved > 0);
    assert_false(attn_check_ok(&c));
    free(o);
    attn_problem_free(&p);
}
static void test_large_logits_cpu(void **state) { (void)state; large_logits(0); }
static void test_large_logits_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); large_logits(1); }

/* ---- the ledger counts exactly the traffic models; one-pass touches no
 * N x N array (it has none: no workspace, nothing on the simulated chip). */
static void test_ledger_models(void **state)
{
    (void)state;
    for (size_t t = 0; t < 2; t++)
        for (int causal = 0; causal < 2; causal++) {
            attn_problem_t p;
            attn_problem_make(&p, 2, 3, 3, 50, 50, 32, causal, DTYPES[t], 1.0f, 700);
            const attn_shape_t *s = &p.s;
            const uint64_t es = dtype_size(s->dt), E = attn_q_elems(s), pairs = attn_pairs(s);
            const uint64_t bh = s->batch * s->heads, N = s->seq_q, d = s->dim;
            void *o = malloc(E * es);
            attn_counts_t c;

            assert_null(IMPL_ATTN_ONE_PASS.ws_bytes);
            assert_int_equal(attn_run_impl(&IMPL_ATTN_ONE_PASS, 0, &p, o, &c), 0);
            assert_int_equal(ledger_total(&c.lg), (uint64_t)IMPL_ATTN_ONE_PASS.model_bytes(s));
            assert_int_equal(c.q.bytes_read, E * es);
            assert_int_equal(c.k.bytes_read, d * pairs * es); /* every visible K row, once per query row */
            assert_int_equal(c.v.bytes_read, d * pairs * es);
            assert_int_equal(c.o.bytes_written, E * es);
            assert_int_equal(c.q.bytes_written + c.k.bytes_written + c.v.bytes_written + c.o.bytes_read, 0);
            /* every byte is accounted for by Q, K, V, O: no other array exists */
            assert_int_equal(ledger_total(&c.lg), c.q.bytes_read + c.k.bytes_read + c.v.bytes_read + c.o.bytes_written);
            assert_int_equal(c.lg.sram_peak, 0);

            assert_int_equal(IMPL_ATTN_STANDARD.ws_bytes(s), bh * N * N * (4 + es));
            assert_int_equal(attn_run_impl(&IMPL_ATTN_STANDARD, 0, &p, o, &c), 0);
            assert_int_equal(ledger_total(&c.lg), (uint64_t)IMPL_ATTN_STANDARD.model_bytes(s));
            assert_int_equal(c.q.bytes_read, E * es);
            assert_int_equal(c.k.bytes_read, E * es);
            assert_int_equal(c.v.bytes_read, E * es);
            assert_int_equal(c.o.bytes_written, E * es);
            /* the rest is S in fp32 (written, read twice, the mask) and P in
             * the storage type (written, read) */
            const uint64_t nn = bh * N * N, mask = causal ? bh * N * (N - 1) / 2 : 0;
            assert_int_equal(ledger_total(&c.lg) - 4 * E * es, (3 * nn + mask) * 4 + 2 * nn * es);
            /* standard-s16: S and P in the storage type, 4 B H N^2 (row-on-chip softmax) plus the mask */
            assert_int_equal(IMPL_ATTN_STANDARD_S16.ws_bytes(s), 2 * bh * N * N * es);
            assert_int_equal(attn_run_impl(&IMPL_ATTN_STANDARD_S16, 0, &p, o, &c), 0);
            assert_int_equal(ledger_total(&c.lg), (uint64_t)IMPL_ATTN_STANDARD_S16.model_bytes(s));
            assert_true(attention_standard_onchip(s));
            assert_int_equal(ledger_total(&c.lg) - 4 * E * es, (4 * nn + mask) * es);
            free(o);
            attn_problem_free(&p);
        }
    /* Dao et al.'s comparison in numbers, counted: at d = 64 one-pass moves
     * more (2 d pairs of K/V) than standard's N^2 terms once N > ~50, until
     * tiling (stage 05) shares each K/V load among many query rows. */
    attn_problem_t p;
    attn_problem_make(&p, 1, 1, 1, 200, 200, 64, 0, DT_F16, 1.0f, 710);
    void *o = malloc((size_t)attn_q_elems(&p.s) * 2);
    attn_counts_t c1, c2;
    assert_int_equal(attn_run_impl(&IMPL_ATTN_ONE_PASS, 0, &p, o, &c1), 0);
    assert_int_equal(attn_run_impl(&IMPL_ATTN_STANDARD, 0, &p, o, &c2), 0);
    print_message("N = 200, d = 64, fp16: one-pass %llu bytes, standard %llu bytes (counted)\n",
                  (unsigned long long)ledger_total(&c1.lg), (unsigned long long)ledger_total(&c2.lg));
    assert_true(ledger_total(&c1.lg) > ledger_total(&c2.lg));
    free(o);
    attn_problem_free(&p);
}

/* ---- the program on bad input: exit 2 with a message that names the problem */
static int run_prog(const char *args, char *out, size_t n, int want_stdout)
{
    return attn_run_prog("04_one_pass_attention", args, want_stdout ? "2>/dev/null" : "2>&1 >/dev/null", out, n);
}

static void test_program_rejects_bad_input(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        { "--seq 0", "--seq" },
        { "--dim 513", "1 to 512" },
        { "--kv-heads 3 --heads 4", "unknown option '--kv-heads'" },
        { "--br 16", "unknown option '--br'" },
        { "--splits 4", "unknown option '--splits'" },
        { "--decode --seq-q 7", "--decode means --seq-q 1" },
        { "--scale 2 --load-npy /tmp", "--load-npy replaces" },
        { "--device cpu --seq 2000000 --batch 1000", "memory" },
        { "--device cpu --batch 1048576 --heads 65536 --seq 16777216", "too large" },
        { "--sweep --seq 512", "cannot be combined" },
        { "--load-npy /nonexistent", "cannot open" },
    };
    char msg[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run_prog(cases[i][0], msg, sizeof msg, 0);
        print_message("%s -> %d: %s", cases[i][0], rc, msg);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(msg, cases[i][1]));
    }
}

/* ---- the program end to end on the CPU: --save-npy then --load-npy gives the
 * same output, bit for bit. */
static void test_program_npy_roundtrip_cpu(void **state)
{
    (void)state;
    char d1[] = "/tmp/stf_attn_XXXXXX", d2[] = "/tmp/stf_attn_XXXXXX", args[512], out[8192];
    assert_non_null(mkdtemp(d1));
    assert_non_null(mkdtemp(d2));
    snprintf(args, sizeof args, "--device cpu --batch 2 --heads 2 --seq 33 --dim 32 --causal --dtype fp16 --iters 1 "
                                "--save-npy %s", d1);
    assert_int_equal(run_prog(args, out, sizeof out, 1), 0);
    snprintf(args, sizeof args, "--device cpu --dtype fp16 --iters 1 --causal --load-npy %s --save-npy %s", d1, d2);
    assert_int_equal(run_prog(args, out, sizeof out, 1), 0);
    char p1[600], p2[600];
    float *o1 = NULL, *o2 = NULL;
    size_t sh1[4], sh2[4];
    snprintf(p1, sizeof p1, "%s/o.npy", d1);
    snprintf(p2, sizeof p2, "%s/o.npy", d2);
    assert_int_equal(npy_read_f32(p1, 4, &o1, sh1), 0);
    assert_int_equal(npy_read_f32(p2, 4, &o2, sh2), 0);
    assert_memory_equal(sh1, sh2, sizeof sh1);
    assert_int_equal(sh1[0] * sh1[1] * sh1[2] * sh1[3], 2 * 2 * 33 * 32);
    assert_memory_equal(o1, o2, 2 * 2 * 33 * 32 * sizeof(float));
    free(o1);
    free(o2);
    snprintf(args, sizeof args, "rm -rf %s %s", d1, d2);
    assert_int_equal(system(args), 0);
}

/* ---- the standard intermediates cannot be held: the program says so, marks
 * the row, and still runs one-pass (N = 131072, H = 2, fp32: S and P need
 * 256 GiB, and Nq Nk = 2^34 is past cuBLAS's int strides, which is the
 * reason the program gives first since standard checks them; either reason
 * is the row's message). */
static void test_program_does_not_fit_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    if (small_mode()) skip();
    char out[16384];
    int rc = run_prog("--device gpu --batch 1 --heads 2 --seq 131072 --dim 64 --iters 1 --warmup 0", out, sizeof out, 1);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "standard: n/a"));
    assert_true(strstr(out, "does not fit") || strstr(out, "must stay below 2^31"));
    const char *op = strstr(out, "one-pass gpu"), *eol = op ? strchr(op, '\n') : NULL;
    assert_non_null(op);
    const char *yes = strstr(op, " yes");
    assert_true(yes && (!eol || yes < eol)); /* the one-pass row itself passed */
}

/* ---- broken implementations: the same check must reject each of them. */

/* o is not rescaled when m grows (l is): early keys keep their stale weight. */
static int broken_no_rescale_o(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    const size_t d = s->dim, N = s->seq_kv;
    float qr[256], acc[256];
    for (uint64_t r = 0; r < attn_rows(s); r++) {
        for (size_t c = 0; c < d; c++) qr[c] = hbm_ld(q, r * d + c), acc[c] = 0;
        float m = -INFINITY, l = 0;
        const size_t base = attn_kv_slice(s, r) * N * d;
        for (size_t j = 0; j < attn_visible(s, r); j++) {
            float dot = 0;
            for (size_t c = 0; c < d; c++) dot += qr[c] * hbm_ld(k, base + j * d + c);
            const float sj = s->scale * dot, mn = fmaxf(m, sj);
            l = l * expf(m - mn) + expf(sj - mn);
            for (size_t c = 0; c < d; c++) acc[c] += expf(sj - mn) * hbm_ld(v, base + j * d + c);
            m = mn;
        }
        for (size_t c = 0; c < d; c++) hbm_st(o, r * d + c, acc[c] / l);
    }
    return 0;
}

/* Forgets the 1/sqrt(d) scale. */
static int broken_no_scale(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    attn_shape_t t = *s;
    t.scale = 1.0f;
    return attention_one_pass_cpu(&t, q, k, v, o, ws);
}

/* Causal off by one: query i also sees key i + 1. */
static int broken_causal_off_by_one(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    const size_t d = s->dim, N = s->seq_kv;
    float qr[256], acc[256], out[256];
    for (uint64_t r = 0; r < attn_rows(s); r++) {
        for (size_t c = 0; c < d; c++) qr[c] = hbm_ld(q, r * d + c);
        attn_state_t st;
        attn_state_init(&st, acc, d);
        size_t n = attn_visible(s, r) + 1;
        if (n > N) n = N;
        attention_one_pass_range(k, v, attn_kv_slice(s, r) * N * d, d, s->scale, qr, 0, n, &st);
        attn_state_finish(&st, d, out);
        for (size_t c = 0; c < d; c++) hbm_st(o, r * d + c, out[c]);
    }
    return 0;
}

/* An fp32 run whose output went through bf16 on the way: fp32 results must
 * meet fp32's bound, not bf16's (the tolerance is not so loose that a lost
 * 16 bits of precision slips through). */
static int broken_bf16_o(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    int rc = attention_one_pass_cpu(s, q, k, v, o, ws);
    for (size_t i = 0; i < o->n; i++) dtype_set(o->data, o->dt, i, dtype_round(DT_BF16, dtype_get(o->data, o->dt, i)));
    return rc;
}

/* The weights p_j rounded to bf16 before they multiply V (what a kernel does
 * when it feeds P to a bf16 tensor-core product), in an fp32 run whose
 * tolerance has no term for it; the denominator l keeps the exact p_j. */
static int broken_bf16_p(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    const size_t d = s->dim, N = s->seq_kv;
    float qr[256], acc[256];
    for (uint64_t r = 0; r < attn_rows(s); r++) {
        for (size_t c = 0; c < d; c++) qr[c] = hbm_ld(q, r * d + c), acc[c] = 0;
        float m = -INFINITY, l = 0;
        const size_t base = attn_kv_slice(s, r) * N * d;
        for (size_t j = 0; j < attn_visible(s, r); j++) {
            float dot = 0;
            for (size_t c = 0; c < d; c++) dot += qr[c] * hbm_ld(k, base + j * d + c);
            const float sj = s->scale * dot, mn = fmaxf(m, sj), alpha = expf(m - mn), p = expf(sj - mn);
            const float pb = dtype_round(DT_BF16, p);
            l = l * alpha + p;
            for (size_t c = 0; c < d; c++) acc[c] = acc[c] * alpha + pb * hbm_ld(v, base + j * d + c);
            m = mn;
        }
        for (size_t c = 0; c < d; c++) hbm_st(o, r * d + c, acc[c] / l);
    }
    return 0;
}

static void test_checks_reject_broken(void **state)
{
    (void)state;
    int (*fns[5])(const attn_shape_t *, hbm_t *, hbm_t *, hbm_t *, hbm_t *, void *) = {
        broken_no_rescale_o, broken_no_scale, broken_causal_off_by_one, broken_bf16_o, broken_bf16_p,
    };
    static const char *names[5] = { "no rescale of o", "no 1/sqrt(d)", "causal off by one",
                                    "fp32 output rounded to bf16", "P rounded to bf16 before P V" };
    for (int b = 0; b < 5; b++) {
        attn_impl_t broken = IMPL_ATTN_ONE_PASS;
        broken.cpu = fns[b];
        attn_problem_t p;
        attn_problem_make(&p, 1, 2, 2, 300, 300, 64, b == 2, DT_F32, 2.0f, 800);
        attn_problem_ref(&p, NULL);
        void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
        assert_int_equal(attn_run_impl(&broken, 0, &p, o, NULL), 0);
        double ratio = attn_check_rows(&p, o, broken.rounding, NULL);
        print_message("broken one-pass (%s): error/tolerance = %.3g (must exceed 1)\n", names[b], ratio);
        assert_true(ratio > 1.0);
        free(o);
        attn_problem_free(&p);
    }
}

int main(void)
{
    test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_known_cases),
        cmocka_unit_test(test_accuracy_cpu),
        cmocka_unit_test(test_lengths_differ_cpu),
        cmocka_unit_test(test_lengths_differ_gpu),
        cmocka_unit_test(test_visible_counts),
        cmocka_unit_test(test_merge_associative),
        cmocka_unit_test(test_permutation_cpu),
        cmocka_unit_test(test_large_logits_cpu),
        cmocka_unit_test(test_ledger_models),
        cmocka_unit_test(test_program_rejects_bad_input),
        cmocka_unit_test(test_program_npy_roundtrip_cpu),
        cmocka_unit_test(test_checks_reject_broken),
        cmocka_unit_test(test_accuracy_gpu),
        cmocka_unit_test(test_permutation_gpu),
        cmocka_unit_test(test_large_logits_gpu),
        cmocka_unit_test(test_program_does_not_fit_gpu),
    };
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    return cmocka_run_group_tests_name("attention stage 04", tests, NULL, NULL);
}
