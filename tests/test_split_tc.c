/* Stage 07, split-tc: the decode kernel on tensor cores (decode_tc.cuh).
 * On the GPU, against the fp64 reference with the program's tolerance for
 * its roundings (P rounded to the storage type, tensor-core products): every
 * group size g in {1, 2, 3, 4, 8, 16, 32, 48} (rows padded to 16, two m16
 * tiles, two row blocks per group), every split count 1 .. 9 and one far
 * beyond the tiles (empty splits), a cache of 203 keys (the last tile holds
 * 11) and of 1 key, per-batch lengths 0, 1, 63, 64, 65, 203 (length 0: the
 * rows are exactly 0), d = 64 and 128, fp16 and bf16. A broken K/V policy
 * (tests/split_tc_broken.cu: K rows of neighbouring keys swapped; K/V of the
 * wrong head) run through the same kernel must fail the same check, and the
 * right policy through that path must pass it. On the CPU: the bandwidth
 * heuristic on the table's shapes, the shapes the kernel declines and why,
 * and the program's line. GPU cases skip without a GPU; STF_TEST_SMALL=1
 * shrinks them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/07_split_kv_decode/split.h"
#include "attn_harness.h"
#include "decode_harness.h"
#include "gpu.h"
#include "harness.h"
#include "test_main.h"

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }
/* The program's roundings for split-tc on the GPU (P rounded, tensor-core products): the tolerance it checks with */
#define TC_ROUNDING attn_impl_rounding(&IMPL_SPLIT_TC, &p.s, 1)

#if HAVE_CUDA
/* tests/split_tc_broken.cu: the kernel with a broken K/V policy (mode 0: K rows
 * of keys 2i and 2i + 1 swapped; mode 1: K/V head h + 1; mode 2: the right
 * policy through the same path), one split, O written. */
int test_split_tc_broken_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, int mode);
#endif

#if HAVE_CUDA
static int broken_mode;
static void run_broken(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, const int *dev_lens,
                       int splits, void *ws)
{
    (void)dev_lens; (void)splits; (void)ws; /* one split, all keys */
    assert_int_equal(test_split_tc_broken_gpu(s, q, k, v, o, broken_mode), 0);
}
#endif

/* The GPU run of split-tc with `splits`; lens (host) or NULL. mode < 0: the
 * production launcher; else the broken path of split_tc_broken.cu. */
static void run_tc(const attn_problem_t *p, const int *lens, int splits, void *o, int mode)
{
#if HAVE_CUDA
    broken_mode = mode;
    decode_run_gpu(p, lens, splits, o, mode < 0 ? split_tc_decode_gpu : run_broken);
#else
    (void)p; (void)lens; (void)splits; (void)o; (void)mode;
    fail_msg("no CUDA build");
#endif
}

/* ---- every g, every split count, odd lengths, varlen, both 16-bit types, d = 64 and 128 */
static void test_groups_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    /* (Hq, Hkv): g = 1, 2, 3, 4, 8, 16, 32, 48 */
    static const size_t heads[8][2] = { { 4, 4 }, { 4, 2 }, { 6, 2 }, { 8, 2 }, { 16, 2 }, { 16, 1 }, { 64, 2 }, { 48, 1 } };
    static const int lens6[6] = { 0, 1, 63, 64, 65, 203 };
    static const dtype_t dts[2] = { DT_BF16, DT_F16 };
    const int max_splits = small_mode() ? 4 : 9;
    double worst = 0;
    int runs = 0;
    for (size_t h = 0; h < 8; h++)
        for (int dd = 0; dd < 2; dd++)
            for (int t = 0; t < 2; t++)
                for (int shape = 0; shape < 3; shape++) { /* 0: Nk = 203; 1: varlen; 2: Nk = 1 */
                    if (small_mode() && (t + dd + shape) % 2) continue;
                    const size_t d = dd ? 128 : 64, B = shape == 1 ? 6 : 2, Nk = shape == 2 ? 1 : 203;
                    const int *lens = shape == 1 ? lens6 : NULL;
                    attn_problem_t p;
                    attn_problem_make(&p, B, heads[h][0], heads[h][1], 1, Nk, d, 0, dts[t], 1.5f,
                                      (uint32_t)(8000 + 100 * h + 10 * dd + 3 * t + shape));
                    attn_problem_ref(&p, lens);
                    const size_t ob = (size_t)attn_q_elems(&p.s) * 2;
                    void *o = malloc(ob);
                    const int top = shape == 2 ? 3 : max_splits + 1;
                    for (int j = 1; j <= top; j++) {
                        const int S = j <= max_splits ? j : 40; /* 40 > 4 tiles: most splits empty */
                        run_tc(&p, lens, S, o, -1);
                        attn_check_t c;
                        const double ratio = attn_check_all(&p, o, TC_ROUNDING, &c);
                        if (!(ratio <= 1.0) || c.nonfinite)
                            print_message("gpu Hq=%zu Hkv=%zu d=%zu %s shape %d splits=%d: ratio %.3g, %zu non-finite\n",
                                          heads[h][0], heads[h][1], d, dtype_name(dts[t]), shape, S, ratio, c.nonfinite);
                        assert_true(ratio <= 1.0);
                        assert_int_equal(c.nonfinite, 0);
                        if (shape == 1) /* batch element 0 holds no keys: its rows are exactly 0 */
                            for (size_t e = 0; e < heads[h][0] * d; e++) assert_true(dtype_get(o, dts[t], e) == 0.0f);
                        if (ratio > worst) worst = ratio;
                        runs++;
                    }
                    free(o);
                    attn_problem_free(&p);
                }
    print_message("gpu split-tc: %d runs (g 1..48, splits 1..%d and 40, d 64/128, fp16/bf16), worst error/tolerance "
                  "%.3g\n", runs, max_splits, worst);
    assert_true(runs > 0);
}

/* --br 16 / 32: the rows per block forced (MQA as two blocks of 16; MHA with a padding tile) */
static size_t forced_br(const attn_shape_t *s) { return s->heads / s->kv_heads > 16 ? 16 : 32; }

/* The table's proportions at a smaller size: a long cache, the heuristic's split count, and each --br. */
static void test_long_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    const size_t nk = small_mode() ? 1500 : 20000;
    decode_long_gpu(nk, 8500, &IMPL_SPLIT_TC, split_tc_plan, split_tc_decode_gpu, forced_br);
}

/* ---- a broken kernel must fail the check that passes the right one */
static void test_broken_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int mode = 0; mode < 3; mode++) {
        attn_problem_t p;
        attn_problem_make(&p, 2, 16, 2, 1, 300, 128, 0, DT_BF16, 1.5f, 8700);
        attn_problem_ref(&p, NULL);
        void *o = malloc((size_t)attn_q_elems(&p.s) * 2);
        run_tc(&p, NULL, 1, o, mode);
        const double ratio = attn_check_all(&p, o, TC_ROUNDING, NULL);
        print_message("gpu split-tc %s: error/tolerance %.3g (%s)\n",
                      mode == 0 ? "K rows 2i, 2i+1 swapped" : mode == 1 ? "K/V of the next head" : "right policy",
                      ratio, mode < 2 ? "must exceed 1" : "must pass");
        if (mode < 2) assert_true(ratio > 1.0);
        else assert_true(ratio <= 1.0);
        free(o);
        attn_problem_free(&p);
    }
}

/* ---- CPU: the bandwidth heuristic on the table's shapes (an H200: 132 SMs x 2 blocks) */
static void test_heuristic_bw(void **state)
{
    (void)state;
    const long slots = 264;
    const double fixed = 9e6;
    double c1, cS;
    /* part per split: B Hq rows x (2 x 4 (d + 2) + 2 d) bytes at d = 128, bf16 */
    const double row = 2.0 * 4.0 * 130.0 + 256.0;
    /* MHA, B = 8, 32k: 256 blocks already fill 0.97 of the slots: no split */
    assert_int_equal(split_heuristic_bw(256, slots, 512, 8 * 32 * 32768.0 * 512, 256 * row, fixed, 1024, &c1, &cS), 1);
    assert_true(fabs(c1 - 264.0 / 256.0) < 1e-9);
    /* MQA, B = 1, 128k: one block; enough splits for about a wave, each still thousands of keys */
    const int s_mqa = split_heuristic_bw(1, slots, 2048, 131072.0 * 512, 32 * row, fixed, 1024, &c1, &cS);
    print_message("MQA B=1 128k: %d splits, cost %.3g (unsplit %.3g)\n", s_mqa, cS, c1);
    assert_true(s_mqa >= 200 && s_mqa <= 264);
    assert_true(c1 > 200.0 && cS < 1.5);
    /* GQA, B = 1, 128k: 8 blocks */
    const int s_gqa = split_heuristic_bw(8, slots, 2048, 8 * 131072.0 * 512, 32 * row, fixed, 1024, &c1, &cS);
    print_message("GQA B=1 128k: %d splits, cost %.3g\n", s_gqa, cS);
    assert_true(s_gqa * 8 >= 200 && s_gqa * 8 <= 264);
    /* partial states that cost as much as they gain: when a split's partials
     * are as large as the K/V, no split pays */
    assert_int_equal(split_heuristic_bw(8, slots, 2048, 1e6, 1e6, 0, 1024, &c1, &cS), 1);
    /* never more splits than tiles */
    assert_int_equal(split_heuristic_bw(1, slots, 3, 1e9, 1.0, 0, 1024, NULL, NULL), 3);
    assert_int_equal(split_heuristic_bw(1, slots, 1, 1e9, 1.0, 0, 1024, NULL, NULL), 1);
}

/* ---- CPU: the shapes the kernel declines, with the reason */
static void test_supports(void **state)
{
    (void)state;
    attn_shape_t s;
    char why[256];
    attn_shape_init(&s, 1, 32, 1, 1, 1000, 128, 0, DT_BF16);
    assert_int_equal(split_tc_supports(&s, why, sizeof why), 1);
    assert_int_equal(split_tc_rows(&s), 32);
    /* the tolerance the GPU check uses: P rounded to the storage type, tensor-core products; the CPU run: none */
    assert_int_equal(attn_impl_rounding(&IMPL_SPLIT_TC, &s, 1), ATT_ROUND_P | ATT_MMA_LOWP);
    assert_int_equal(attn_impl_rounding(&IMPL_SPLIT_TC, &s, 0), 0);
    s.dim = 64;
    assert_int_equal(split_tc_supports(&s, why, sizeof why), 1);
    s.dim = 96;
    assert_int_equal(split_tc_supports(&s, why, sizeof why), 0);
    assert_non_null(strstr(why, "head dim 96"));
    s.dim = 128;
    s.dt = DT_F32;
    assert_int_equal(split_tc_supports(&s, why, sizeof why), 0);
    assert_non_null(strstr(why, "fp32"));
    attn_shape_init(&s, 1, 8, 8, 1, 1000, 128, 0, DT_F16);
    assert_int_equal(split_tc_rows(&s), 16);
    s.seq_q = 4;
    assert_int_equal(split_tc_supports(&s, why, sizeof why), 0);
}

/* ---- the program: split-tc's line, --kernel, --splits */
static void test_program_cpu(void **state)
{
    (void)state;
    char out[16384];
    assert_int_equal(attn_run_prog("07_split_kv_decode",
                                   "--device cpu --seq-kv 1000 --heads 16 --kv-heads 1 --batch 2 --dtype bf16 "
                                   "--kernel split-tc --iters 1", "2>&1", out, sizeof out), 0);
    assert_non_null(strstr(out, "split-tc: g = 16"));
    assert_non_null(strstr(out, "the bandwidth model"));
    assert_int_equal(attn_run_prog("07_split_kv_decode",
                                   "--device cpu --seq-kv 1000 --heads 8 --kv-heads 2 --varlen --batch 3 --dtype fp16 "
                                   "--kernel split-tc --splits 5 --iters 1", "2>&1", out, sizeof out), 0);
    assert_non_null(strstr(out, "5 splits (--splits; the bandwidth model would take"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heuristic_bw),
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_program_cpu),
        cmocka_unit_test(test_groups_gpu),
        cmocka_unit_test(test_long_gpu),
        cmocka_unit_test(test_broken_gpu),
    };
    return test_main("stage 07 split-tc (tensor-core decode)", tests, NULL);
}
