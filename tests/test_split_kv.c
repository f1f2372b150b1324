/* Stage 07: split-KV decoding. For every number of splits from 1 to more than
 * the number of K/V tiles (so that some splits are empty), uneven last
 * splits, per-batch lengths including 0 and 1 (length 0: the output is 0),
 * MHA, GQA and MQA, fp32/fp16/bf16: the split result is within the tolerance
 * of the fp64 reference, and so is the unsplit one (stage 06's packed decode),
 * and the two agree with each other to within the same tolerance. The split
 * heuristic on known cases; the ledger against the model (the partial states'
 * traffic counted); every head dim (1 .. 512 on the CPU, the decode kernel's
 * 32 .. 256 on the GPU); --splits beyond the tiles clamped, --decode implied;
 * a broken combine (partial outputs summed without the rescale e^{m_z - M})
 * and a dropped split must fail the check, on the CPU and on the GPU (the
 * GPU's broken combine is a kernel of the tests, tests/split_broken.cu, run
 * on the partial states of the real kernel). GPU cases skip without a GPU;
 * STF_TEST_SMALL=1 shrinks them. */
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

#include "../stages/07_split_kv_decode/split.h"
#include "attn_harness.h"
#include "decode_harness.h"
#include "gpu.h"
#include "harness.h"
#include "test_main.h"

static const dtype_t DTS[3] = { DT_F32, DT_F16, DT_BF16 };
static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

/* Runs the split decode with `splits` on the CPU (through a ledger) or the GPU. */
static void run_split(const attn_problem_t *p, int gpu, const int *lens, int splits, void *o, ledger_t *lg_out)
{
    if (gpu) decode_run_gpu(p, lens, splits, o, split_decode_gpu);
    else decode_run_cpu(p, lens, splits, o, lg_out);
}

/* Normwise difference of two outputs, row by row, against the reference's
 * tolerance: split and unsplit must agree as closely as each agrees with fp64. */
static double agreement(const attn_problem_t *p, const void *a, const void *b)
{
    const size_t d = p->s.dim, es = dtype_size(p->s.dt);
    double worst = 0;
    for (uint64_t r = 0; r < attn_rows(&p->s); r++) {
        double ref[512];
        for (size_t c = 0; c < d; c++) ref[c] = dtype_get((const char *)b + r * d * es, p->s.dt, c);
        const double e = attention_row_error((const char *)a + r * d * es, p->s.dt, ref, &p->st[r], d);
        const double tol = 2.0 * attention_tolerance(p->s.dt, d, &p->st[r], 0); /* each side within tol of fp64 */
        if (!(e <= worst * tol)) worst = tol > 0 ? e / tol : INFINITY;
    }
    return worst;
}

static void splits_sweep(int gpu)
{
    /* (B, Hq, Hkv): MHA, GQA, MQA; lengths: the full cache, or varied with 0 and 1 */
    static const size_t heads[3][2] = { { 4, 4 }, { 8, 2 }, { 32, 1 } };
    static const int lens6[6] = { 0, 1, 63, 64, 65, 203 };
    const size_t Nk = 203, d = gpu ? 128 : 16; /* 4 tiles of 64, the last of 11 keys */
    const int max_splits = small_mode() ? 5 : 9;
    double worst = 0, worst_agree = 0;
    for (size_t h = 0; h < 3; h++)
        for (int varlen = 0; varlen < 2; varlen++)
            for (int t = 0; t < 3; t++) {
                if (small_mode() && gpu && t != 2) continue;
                attn_problem_t p;
                const size_t B = varlen ? 6 : 2;
                attn_problem_make(&p, B, heads[h][0], heads[h][1], 1, Nk, d, 0, DTS[t], 1.5f,
                                  (uint32_t)(7000 + 100 * h + 10 * varlen + t));
                const int *lens = varlen ? lens6 : NULL;
                attn_problem_ref(&p, lens);
                const size_t ob = (size_t)attn_q_elems(&p.s) * dtype_size(DTS[t]);
                void *unsplit = malloc(ob), *o = malloc(ob);
                run_split(&p, gpu, lens, 1, unsplit, NULL);
                attn_check_t c;
                double ratio = attn_check_all(&p, unsplit, 0, &c);
                assert_true(ratio <= 1.0);
                for (int S = 2; S <= max_splits; S++) { /* 9 > 4 tiles: splits 5 .. 9 include empty ranges */
                    run_split(&p, gpu, lens, S, o, NULL);
                    ratio = attn_check_all(&p, o, 0, &c);
                    const double agree = agreement(&p, o, unsplit);
                    if (!(ratio <= 1.0) || c.nonfinite || !(agree <= 1.0))
                        print_message("%s Hq=%zu Hkv=%zu varlen=%d %s splits=%d: ratio %.3g, agreement %.3g, %zu "
                                      "non-finite\n", gpu ? "gpu" : "cpu", heads[h][0], heads[h][1], varlen,
                                      dtype_name(DTS[t]), S, ratio, agree, c.nonfinite);
                    assert_true(ratio <= 1.0);
                    assert_int_equal(c.nonfinite, 0);
                    assert_true(agree <= 1.0);
                    if (ratio > worst) worst = ratio;
                    if (agree > worst_agree) worst_agree = agree;
                    if (varlen) /* batch element 0 holds no keys: its rows are exactly 0 */
                        for (size_t e = 0; e < heads[h][0] * d; e++) assert_true(dtype_get(o, DTS[t], e) == 0.0f);
                }
                free(unsplit);
                free(o);
                attn_problem_free(&p);
            }
    print_message("%s: splits 1..%d, worst error/tolerance %.3g, split vs unsplit %.3g\n", gpu ? "gpu" : "cpu",
                  max_splits, worst, worst_agree);
}
static void test_splits_cpu(void **state) { (void)state; splits_sweep(0); }
static void test_splits_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); splits_sweep(1); }

/* The benchmark's proportions at a smaller size on the GPU: long caches, the
 * heuristic's split counts, every row tile. */
static void test_long_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    decode_long_gpu(small_mode() ? 700 : 9000, 7500, &IMPL_SPLIT_KV, split_plan, split_decode_gpu, NULL);
}

/* FA2's heuristic on the cases the note discusses (H200: 132 SMs x 2 blocks). */
static void test_heuristic(void **state)
{
    (void)state;
    assert_int_equal(split_heuristic(256, 264, 512, 128), 1);  /* MHA, B = 8: the grid already fills the chip */
    assert_int_equal(split_heuristic(64, 264, 512, 128), 4);   /* GQA 32/8, B = 8: 4 x 64 = 256 blocks, 0.97 wave */
    assert_int_equal(split_heuristic(8, 264, 2048, 128), 29);  /* GQA, B = 1, 128k: 29 x 8 = 232 blocks, 0.88 wave */
    assert_int_equal(split_heuristic(8, 264, 3, 128), 3);      /* never more splits than tiles */
    assert_int_equal(split_heuristic(1, 264, 1, 128), 1);
    /* the 85% rule: with 212 slots, 64 blocks: 3 splits give 0.906 of a wave, the first within 85% of the best */
    assert_int_equal(split_heuristic(64, 212, 512, 128), 3);
}

/* The ledger counts the model, and the extra bytes of the split are the
 * partial states (written, then read) and the re-read of Q. */
static void test_ledger_cpu(void **state)
{
    (void)state;
    attn_problem_t p;
    attn_problem_make(&p, 2, 8, 2, 1, 1000, 16, 0, DT_BF16, 1.0f, 7700);
    const size_t ob = (size_t)attn_q_elems(&p.s) * 2, rows = 16, d = 16;
    void *o = malloc(ob);
    ledger_t l1, l4;
    run_split(&p, 0, NULL, 1, o, &l1);
    run_split(&p, 0, NULL, 4, o, &l4);
    assert_int_equal(ledger_total(&l1), (uint64_t)gqa_blocks_bytes(&p.s, GQA_PACKED, NULL, NULL));
    const uint64_t partial = 4 * rows * (d + 2) * 4; /* written once, read once */
    const uint64_t qre = 3 * rows * d * 2;           /* Q read by 4 blocks per group instead of 1 */
    assert_int_equal(ledger_total(&l4) - ledger_total(&l1), 2 * partial + qre);
    p.s.tune.splits = 4;
    assert_int_equal(ledger_total(&l4), (uint64_t)IMPL_SPLIT_KV.model_bytes(&p.s));
    free(o);
    attn_problem_free(&p);
}

/* ---- broken combines must fail */
static void broken_combine(const attn_shape_t *s, int splits, split_partials_t *part, hbm_t *o, int mode)
{
    const size_t d = s->dim, rows = (size_t)attn_rows(s);
    for (size_t r = 0; r < rows; r++) {
        float L = 0, O[64] = { 0 };
        for (int z = 0; z < splits; z++) {
            if (mode == 1 && z == splits - 1) continue; /* a dropped split */
            const size_t at = (size_t)z * rows + r;
            L += hbm_ld(&part->l, at); /* mode 0: no rescale by e^{m_z - M} */
            for (size_t e = 0; e < d; e++) O[e] += hbm_ld(&part->o, at * d + e);
            (void)hbm_ld(&part->m, at);
        }
        for (size_t e = 0; e < d; e++) hbm_st(o, r * d + e, L == 0 ? 0 : O[e] / L);
    }
}

static void test_broken_combine_cpu(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        attn_problem_t p;
        attn_problem_make(&p, 2, 8, 2, 1, 600, 16, 0, DT_F32, 2.0f, 7800);
        attn_problem_ref(&p, NULL);
        const int S = 3;
        const size_t rows = 16, d = 16;
        float *ws = malloc(split_partial_bytes(&p.s, S));
        void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
        ledger_t lg = { 0 };
        hbm_t q = hbm_wrap(&lg, "Q", p.q, rows * d, DT_F32), k = hbm_wrap(&lg, "K", p.k, 2 * 2 * 600 * d, DT_F32);
        hbm_t v = hbm_wrap(&lg, "V", p.v, 2 * 2 * 600 * d, DT_F32), oo = hbm_wrap(&lg, "O", o, rows * d, DT_F32);
        split_partials_t part = { hbm_wrap(&lg, "m", ws + S * rows * d, S * rows, DT_F32),
                                  hbm_wrap(&lg, "l", ws + S * rows * d + S * rows, S * rows, DT_F32),
                                  hbm_wrap(&lg, "o", ws, S * rows * d, DT_F32) };
        assert_int_equal(split_partials_cpu(&p.s, &q, &k, &v, NULL, S, &part), 0);
        broken_combine(&p.s, S, &part, &oo, mode);
        const double bad = attn_check_all(&p, o, 0, NULL);
        split_combine_cpu(&p.s, S, &part, &oo);
        const double good = attn_check_all(&p, o, 0, NULL);
        print_message("combine %s: error/tolerance %.3g (must exceed 1); the right combine %.3g\n",
                      mode ? "dropping a split" : "without the rescale", bad, good);
        assert_true(bad > 1.0);
        assert_true(good <= 1.0);
        free(ws);
        free(o);
        attn_problem_free(&p);
    }
}

#if HAVE_CUDA
/* tests/split_broken.cu */
void test_split_broken_combine_gpu(const attn_shape_t *s, int splits, const float *pm, const float *pl, const float *po,
                                   void *o, int mode);
#endif

static void test_broken_combine_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
#if HAVE_CUDA
    for (int mode = 0; mode < 2; mode++) {
        attn_problem_t p;
        attn_problem_make(&p, 2, 8, 2, 1, 600, 128, 0, DT_BF16, 2.0f, 7850);
        attn_problem_ref(&p, NULL);
        const int S = 3;
        const attn_shape_t *s = &p.s;
        const size_t qb = (size_t)attn_q_elems(s) * 2, kvb = (size_t)attn_kv_elems(s) * 2, n = S * (size_t)attn_rows(s);
        void *dq = gpu_malloc(qb, "Q"), *dk = gpu_malloc(kvb, "K"), *dv = gpu_malloc(kvb, "V"), *dout = gpu_malloc(qb, "O");
        float *ws = gpu_malloc(split_partial_bytes(s, S), "partials");
        float *po = ws, *pm = po + n * s->dim, *pl = pm + n;
        gpu_h2d(dq, p.q, qb);
        gpu_h2d(dk, p.k, kvb);
        gpu_h2d(dv, p.v, kvb);
        void *o = malloc(qb);
        assert_int_equal(split_partials_gpu(s, dq, dk, dv, NULL, S, pm, pl, po), 0);
        gpu_poison(dout, qb);
        test_split_broken_combine_gpu(s, S, pm, pl, po, dout, mode);
        gpu_sync();
        gpu_d2h(o, dout, qb);
        const double bad = attn_check_all(&p, o, 0, NULL);
        gpu_poison(dout, qb);
        split_combine_gpu(s, S, pm, pl, po, dout);
        gpu_sync();
        gpu_d2h(o, dout, qb);
        const double good = attn_check_all(&p, o, 0, NULL);
        print_message("gpu combine %s: error/tolerance %.3g (must exceed 1); the right combine %.3g\n",
                      mode ? "dropping a split" : "without the rescale", bad, good);
        assert_true(bad > 1.0);
        assert_true(good <= 1.0);
        gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(dout); gpu_free(ws);
        free(o);
        attn_problem_free(&p);
    }
#endif
}

/* ---- head dims: any d on the CPU; the decode kernel's list on the GPU,
 * fp32 included, split and unsplit */
static void head_dims(int gpu)
{
    static const size_t cpu_dims[] = { 1, 5, 32, 80, 192, 256, 512 }, gpu_dims[] = { 32, 64, 96, 128, 192, 256 };
    const size_t *dims = gpu ? gpu_dims : cpu_dims, nd = gpu ? 6 : 7;
    double worst = 0;
    for (size_t i = 0; i < nd; i++)
        for (int t = 0; t < 3; t++) {
            if (!gpu && t != (int)(i % 3)) continue;
            if (gpu && small_mode() && t != (int)(i % 3)) continue;
            attn_problem_t p;
            const size_t Nk = gpu ? 700 + 13 * i : 150; /* 11 or 3 tiles of 64, the last partial */
            attn_problem_make(&p, 2, 8, 2, 1, Nk, dims[i], 0, DTS[t], 1.0f, (uint32_t)(7900 + 10 * i + t));
            attn_problem_ref(&p, NULL);
            void *o = malloc((size_t)attn_q_elems(&p.s) * dtype_size(DTS[t]));
            static const int splits[3] = { 1, 3, 7 };
            for (int j = 0; j < 3; j++) {
                run_split(&p, gpu, NULL, splits[j], o, NULL);
                attn_check_t c;
                const double ratio = attn_check_all(&p, o, 0, &c);
                if (!(ratio <= 1.0))
                    print_message("%s d=%zu %s splits=%d: ratio %.3g\n", gpu ? "gpu" : "cpu", dims[i],
                                  dtype_name(DTS[t]), splits[j], ratio);
                assert_true(ratio <= 1.0);
                assert_int_equal(c.nonfinite, 0);
                if (ratio > worst) worst = ratio;
            }
            free(o);
            attn_problem_free(&p);
        }
    print_message("%s head dims: worst error/tolerance %.3g\n", gpu ? "gpu" : "cpu", worst);
}
static void test_head_dims_cpu(void **state) { (void)state; head_dims(0); }
static void test_head_dims_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); head_dims(1); }

/* ---- the program */
static int run_prog(const char *args, char *out, size_t n, int want_stdout)
{
    return attn_run_prog("07_split_kv_decode", args, want_stdout ? "2>&1" : "2>&1 >/dev/null", out, n);
}

static void test_program_cpu(void **state)
{
    (void)state;
    char out[16384];
    assert_int_equal(run_prog("--device cpu --decode --seq-kv 1000 --heads 8 --kv-heads 2 --batch 3 --varlen --iters 1",
                              out, sizeof out, 1), 0);
    assert_non_null(strstr(out, "FA2's heuristic"));
    assert_int_equal(run_prog("--device cpu --decode --seq-kv 1000 --heads 4 --kv-heads 1 --splits 7 --iters 1 --dtype fp16",
                              out, sizeof out, 1), 0);
    assert_non_null(strstr(out, "7 splits (--splits)"));
    /* prefill: the split declines with its reason; stage 06's packed still
     * runs, but a run in which none of the stage's own ran fails (exit 2) */
    assert_int_equal(run_prog("--device cpu --seq 40 --heads 4 --kv-heads 2 --iters 1", out, sizeof out, 1), 2);
    assert_non_null(strstr(out, "one query token"));
    /* --splits beyond the tiles: clamped, with the reason (1000 keys: 16 tiles) */
    assert_int_equal(run_prog("--device cpu --decode --seq-kv 1000 --heads 4 --kv-heads 1 --splits 65536 --iters 1",
                              out, sizeof out, 1), 0);
    assert_non_null(strstr(out, "--splits 65536 clamped to 16"));
    /* a decode stage: without --decode or a query length, the split runs (decode) */
    assert_int_equal(run_prog("--device cpu --seq-kv 300 --heads 4 --kv-heads 2 --iters 1", out, sizeof out, 1), 0);
    assert_non_null(strstr(out, "FA2's heuristic"));
    assert_null(strstr(out, "n/a"));
    assert_int_equal(run_prog("--heads 6 --kv-heads 4 --decode", out, sizeof out, 0), 2);
    assert_int_equal(run_prog("--splits 0 --decode", out, sizeof out, 0), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heuristic),
        cmocka_unit_test(test_splits_cpu),
        cmocka_unit_test(test_ledger_cpu),
        cmocka_unit_test(test_broken_combine_cpu),
        cmocka_unit_test(test_head_dims_cpu),
        cmocka_unit_test(test_program_cpu),
        cmocka_unit_test(test_splits_gpu),
        cmocka_unit_test(test_long_gpu),
        cmocka_unit_test(test_broken_combine_gpu),
        cmocka_unit_test(test_head_dims_gpu),
    };
    return test_main("stage 07 split-KV decoding", tests, NULL);
}
