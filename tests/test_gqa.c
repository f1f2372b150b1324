/* Stage 06: replicated == indexed == packed == the fp64 reference over every
 * grouping of up to 32 query heads (Hkv any divisor of Hq), decode and
 * prefill, causal or not, odd lengths, the three storage types (fp32 prefill
 * on the GPU through stage 05's fa2-regtile); every head dim the decode
 * kernel is compiled for (32, 64, 96, 128, 192, 256) on the GPU, and odd ones
 * (1 .. 512) on the CPU; the ledger against the traffic models (packed decode
 * reads each K/V byte once, indexed g times, replicated pays the copy); head
 * counts that do not divide are rejected by the program (exit 2); and a
 * broken method (K/V head h % Hkv instead of h / g) must fail the same check,
 * on the CPU and the GPU (a broken repeat_kv written here: the production
 * kernels carry no fault hook). GPU cases skip without a GPU;
 * STF_TEST_SMALL=1 shrinks them (sanitizer). */
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

#include "../stages/06_gqa_attention/gqa.h"
#include "attn_harness.h"
#include "gpu.h"
#include "harness.h"

static const attn_impl_t *const METHODS[3] = { &IMPL_GQA_REPLICATED, &IMPL_GQA_INDEXED, &IMPL_GQA_PACKED };
static const dtype_t DTS[3] = { DT_F32, DT_F16, DT_BF16 };

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

/* Every method on one problem: each within tolerance of the reference; on
 * the CPU the three outputs must be identical bit for bit (the same
 * recurrence, key by key, whichever rows share a block). Returns how many
 * methods ran (a GPU method may decline the shape, with a reason). */
static int run_methods(attn_problem_t *p, int gpu, double *worst, int *bitsame)
{
    const size_t ob = (size_t)attn_q_elems(&p->s) * dtype_size(p->s.dt);
    void *out[3] = { NULL, NULL, NULL };
    int ran = 0;
    for (int m = 0; m < 3; m++) {
        char why[256] = "";
        if (!METHODS[m]->supports(&p->s, gpu, why, sizeof why)) {
            assert_true(gpu && strlen(why) > 10); /* the CPU takes every shape; a GPU decline says why */
            continue;
        }
        out[m] = malloc(ob);
        assert_non_null(out[m]);
        assert_int_equal(attn_run_impl(METHODS[m], gpu, p, out[m], NULL), 0);
        attn_check_t c;
        const double ratio = attn_check_all(p, out[m], attn_impl_rounding(METHODS[m], &p->s, gpu), &c);
        if (!(ratio <= 1.0) || c.nonfinite)
            print_message("%s %s: B=%zu Hq=%zu Hkv=%zu Nq=%zu Nk=%zu d=%zu causal=%d %s br=%zu bc=%zu: ratio %.3g, "
                          "%zu non-finite, %zu unresolved\n", gpu ? "gpu" : "cpu", METHODS[m]->name, p->s.batch,
                          p->s.heads, p->s.kv_heads, p->s.seq_q, p->s.seq_kv, p->s.dim, p->s.causal,
                          dtype_name(p->s.dt), p->s.tune.br, p->s.tune.bc, ratio, c.nonfinite, c.unresolved);
        assert_true(ratio <= 1.0);
        assert_int_equal(c.nonfinite, 0);
        if (ratio > *worst) *worst = ratio;
        ran++;
    }
    int same = out[0] && out[1] && out[2] && !memcmp(out[0], out[1], ob) && !memcmp(out[1], out[2], ob);
    if (!gpu) assert_true(same);
    if (bitsame) *bitsame += same;
    for (int m = 0; m < 3; m++) free(out[m]);
    return ran;
}

/* Hq = 1 .. 32, every divisor as Hkv; decode (Nq = 1) and prefill (odd
 * lengths), causal or not; small tiles on some cases so that blocks span
 * several tiles and a group spans several blocks. */
static void all_groupings(int gpu)
{
    const size_t d_cpu = 16;
    static const size_t dims_prefill[3] = { 64, 96, 128 };               /* the tensor-core kernels' (and fa2-regtile's) */
    static const size_t dims_decode[6] = { 32, 64, 96, 128, 192, 256 }; /* the decode kernel's */
    size_t cases = 0, runs = 0;
    int bitsame = 0;
    double worst = 0;
    for (size_t H = 1; H <= 32; H++) {
        if (gpu && small_mode() && H != 1 && H != 6 && H != 32) continue;
        for (size_t Hkv = 1; Hkv <= H; Hkv++) {
            if (H % Hkv) continue;
            for (int decode = 0; decode < 2; decode++)
                for (int causal = 0; causal < 2; causal++) {
                    const size_t k = cases++;
                    const dtype_t dt = DTS[k % 3];
                    const size_t d = gpu ? (decode ? dims_decode[k % 6] : dims_prefill[k % 3]) : d_cpu;
                    const size_t B = 1 + k % 2;
                    const size_t Nq = decode ? 1 : (gpu ? 37 + 64 * (k % 3) : 17), Nk = decode ? (gpu ? 1 + 67 * (k % 5) : 1 + 36 * (k % 2)) : (gpu ? 101 : 23);
                    attn_problem_t p;
                    attn_problem_make(&p, B, H, Hkv, Nq, Nk, d, causal, dt, 1.5f, (uint32_t)(1000 + 3 * k));
                    if (!gpu && k % 3 == 1) { p.s.tune.br = 5; p.s.tune.bc = 7; }
                    attn_problem_ref(&p, NULL);
                    runs += (size_t)run_methods(&p, gpu, &worst, &bitsame);
                    attn_problem_free(&p);
                }
        }
    }
    print_message("%s: %zu shapes, %zu method runs, worst error/tolerance %.3g; all three bit-identical on %d shapes\n",
                  gpu ? "gpu" : "cpu", cases, runs, worst, bitsame);
    assert_true(runs >= cases); /* at least one method ran on every shape */
}
static void test_all_groupings_cpu(void **state) { (void)state; all_groupings(0); }
static void test_all_groupings_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); all_groupings(1); }

/* The decode kernel at realistic lengths (several tiles, 3 pipeline stages),
 * every row tile (hpb 1, 2, 4, 8, 16) and the MQA split into two blocks of 16. */
static void test_decode_long_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const size_t groups[][2] = { { 32, 32 }, { 32, 16 }, { 32, 8 }, { 32, 4 }, { 32, 2 }, { 32, 1 }, { 12, 4 } };
    const size_t ng = small_mode() ? 3 : 7, Nk = small_mode() ? 300 : 5000;
    double worst = 0;
    int bitsame = 0;
    for (size_t i = 0; i < ng; i++)
        for (int t = 0; t < 3; t++) {
            attn_problem_t p;
            attn_problem_make(&p, 2, groups[i][0], groups[i][1], 1, Nk + 13 * i, 128, 0, DTS[t], 1.0f,
                              (uint32_t)(5000 + 10 * i + t));
            attn_problem_ref(&p, NULL);
            assert_int_equal(run_methods(&p, 1, &worst, &bitsame), 3);
            attn_problem_free(&p);
        }
    print_message("gpu decode, long caches: worst error/tolerance %.3g; bit-identical on %d of %zu\n", worst, bitsame,
                  3 * ng);
}

/* The ledger counts exactly the model, and the K/V bytes are what each
 * method is about: decode, n keys, packed 2 d n B Hkv, indexed g times that,
 * replicated the same plus the copy (read once, written g times). */
static void test_ledger_counts(void **state)
{
    (void)state;
    static const size_t heads[][2] = { { 8, 2 }, { 32, 8 }, { 32, 1 }, { 6, 6 } };
    for (size_t i = 0; i < 4; i++)
        for (int decode = 0; decode < 2; decode++) {
            attn_problem_t p;
            const size_t Nq = decode ? 1 : 70, Nk = decode ? 333 : 70, H = heads[i][0], Hkv = heads[i][1], d = 16;
            attn_problem_make(&p, 2, H, Hkv, Nq, Nk, d, decode ? 0 : 1, DT_BF16, 1.0f, (uint32_t)(2000 + 10 * i));
            const size_t es = 2, g = H / Hkv, B = 2;
            void *o = malloc((size_t)attn_q_elems(&p.s) * es);
            attn_counts_t c[3];
            for (int m = 0; m < 3; m++) {
                assert_int_equal(attn_run_impl(METHODS[m], 0, &p, o, &c[m]), 0);
                assert_int_equal(ledger_total(&c[m].lg), (uint64_t)METHODS[m]->model_bytes(&p.s));
                assert_int_equal(c[m].q.bytes_read, attn_q_elems(&p.s) * es);
                assert_int_equal(c[m].o.bytes_written, attn_q_elems(&p.s) * es);
            }
            const uint64_t once = (uint64_t)B * Hkv * Nk * d * es; /* K (or V) read once */
            if (decode) {
                assert_int_equal(c[2].k.bytes_read, once);
                assert_int_equal(c[2].v.bytes_read, once);
                assert_int_equal(c[1].k.bytes_read, g * once);
                assert_int_equal(c[0].k.bytes_read, once); /* the copy reads the source once ... */
                /* ... and everything else the replicated run moves is the copy's writes and g x once of tile loads */
                assert_int_equal(ledger_total(&c[0].lg) - ledger_total(&c[1].lg), 2 * once + 2 * g * once);
            } else {
                /* prefill: blocks of 64 rows of one head read K/V per block; packing the group's rows changes little */
                assert_true(c[2].k.bytes_read <= c[1].k.bytes_read);
                assert_true(c[2].k.bytes_read * 2 >= c[1].k.bytes_read || g == 1);
            }
            print_message("Hq=%zu Hkv=%zu %s: bytes replicated %llu, indexed %llu, packed %llu\n", H, Hkv,
                          decode ? "decode" : "prefill", (unsigned long long)ledger_total(&c[0].lg),
                          (unsigned long long)ledger_total(&c[1].lg), (unsigned long long)ledger_total(&c[2].lg));
            free(o);
            attn_problem_free(&p);
        }
}

/* ---- a broken method: K/V head h % Hkv instead of h / g */

static int broken_indexed_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    const size_t d = s->dim, Nk = s->seq_kv, g = s->heads / s->kv_heads;
    float qr[256], acc[256];
    for (uint64_t r = 0; r < attn_rows(s); r++) {
        const uint64_t bh = r / s->seq_q, b = bh / s->heads, h = bh % s->heads;
        const uint64_t slice = b * s->kv_heads + h % s->kv_heads; /* wrong: should be h / g */
        (void)g;
        for (size_t c = 0; c < d; c++) qr[c] = hbm_ld(q, (size_t)r * d + c);
        attn_state_t st;
        attn_state_init(&st, acc, d);
        attention_one_pass_range(k, v, (size_t)slice * Nk * d, d, s->scale, qr, 0, attn_visible(s, r), &st);
        attn_state_finish(&st, d, acc);
        for (size_t c = 0; c < d; c++) hbm_st(o, (size_t)r * d + c, acc[c]);
    }
    return 0;
}

static void test_broken_head_index_cpu(void **state)
{
    (void)state;
    attn_impl_t broken = IMPL_GQA_INDEXED;
    broken.cpu = broken_indexed_cpu;
    attn_problem_t p;
    attn_problem_make(&p, 2, 8, 2, 1, 200, 32, 0, DT_F32, 1.5f, 3000);
    attn_problem_ref(&p, NULL);
    void *o = malloc((size_t)attn_q_elems(&p.s) * 4);
    assert_int_equal(attn_run_impl(&broken, 0, &p, o, NULL), 0);
    const double ratio = attn_check_all(&p, o, 0, NULL);
    print_message("broken (K/V head h %% Hkv): error/tolerance %.3g (must exceed 1)\n", ratio);
    assert_true(ratio > 1.0);
    free(o);
    attn_problem_free(&p);
}

/* The same broken method on the GPU: a repeat_kv that copies K/V head h % Hkv
 * to slot h (done here through the host), then the decode kernel in MHA
 * layout, as the replicated method runs it. */
static void broken_replicated_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws)
{
    const size_t es = dtype_size(s->dt), slice = s->seq_kv * s->dim * es;
    const size_t src_bytes = s->batch * s->kv_heads * slice, dst_bytes = s->batch * s->heads * slice;
    char *hs = malloc(src_bytes), *hd = malloc(dst_bytes);
    assert_non_null(hs);
    assert_non_null(hd);
    char *kr = ws, *vr = kr + dst_bytes;
    const void *src[2] = { k, v };
    char *dst[2] = { kr, vr };
    for (int t = 0; t < 2; t++) {
        gpu_d2h(hs, src[t], src_bytes);
        for (size_t b = 0; b < s->batch; b++)
            for (size_t h = 0; h < s->heads; h++) /* wrong: should be h / g */
                memcpy(hd + (b * s->heads + h) * slice, hs + (b * s->kv_heads + h % s->kv_heads) * slice, slice);
        gpu_h2d(dst[t], hd, dst_bytes);
    }
    free(hs);
    free(hd);
    attn_shape_t t = *s;
    t.kv_heads = s->heads;
    gqa_decode_args_t a = { 1, NULL };
    gqa_decode_gpu(&t, q, kr, vr, o, &a);
}

static void test_broken_head_index_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    attn_problem_t p;
    attn_problem_make(&p, 2, 8, 2, 1, 300, 128, 0, DT_BF16, 1.5f, 3100);
    attn_problem_ref(&p, NULL);
    void *o = malloc((size_t)attn_q_elems(&p.s) * 2);
    attn_impl_t broken = IMPL_GQA_REPLICATED;
    broken.gpu = broken_replicated_gpu;
    assert_int_equal(attn_run_impl(&broken, 1, &p, o, NULL), 0);
    const double ratio = attn_check_all(&p, o, 0, NULL);
    print_message("gpu broken repeat_kv (K/V head h %% Hkv): error/tolerance %.3g (must exceed 1)\n", ratio);
    assert_true(ratio > 1.0);
    assert_int_equal(attn_run_impl(&IMPL_GQA_REPLICATED, 1, &p, o, NULL), 0);
    assert_true(attn_check_all(&p, o, 0, NULL) <= 1.0); /* and the head index was the only thing wrong */
    free(o);
    attn_problem_free(&p);
}

/* ---- head dims: the CPU takes any d (1 .. 512); the decode kernel its
 * compiled list, in every storage type and row tile (MHA hpb 1, GQA g = 4,
 * MQA g = 16), over lengths that end mid-tile */
static void test_head_dims_cpu(void **state)
{
    (void)state;
    static const size_t dims[] = { 1, 3, 32, 80, 96, 192, 256, 512 };
    double worst = 0;
    int bitsame = 0;
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        for (int decode = 0; decode < 2; decode++) {
            attn_problem_t p;
            attn_problem_make(&p, 1, 4, 2, decode ? 1 : 9, 70 + i, dims[i], !decode, DTS[i % 3], 1.0f,
                              (uint32_t)(3500 + 10 * i + decode));
            attn_problem_ref(&p, NULL);
            assert_int_equal(run_methods(&p, 0, &worst, &bitsame), 3);
            attn_problem_free(&p);
        }
    print_message("cpu, d = 1 .. 512: worst error/tolerance %.3g\n", worst);
}

static void test_head_dims_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const size_t dims[] = { 32, 64, 96, 128, 192, 256 };
    static const size_t heads[3][2] = { { 4, 4 }, { 8, 2 }, { 16, 1 } };
    double worst = 0;
    int bitsame = 0;
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        for (int t = 0; t < 3; t++)
            for (size_t h = 0; h < 3; h++) {
                if (small_mode() && h != (size_t)t) continue;
                attn_problem_t p;
                const size_t Nk = small_mode() ? 77 : 333 + 17 * i; /* several tiles, the last one partial */
                attn_problem_make(&p, 2, heads[h][0], heads[h][1], 1, Nk, dims[i], 0, DTS[t], 1.0f,
                                  (uint32_t)(3600 + 100 * i + 10 * t + h));
                attn_problem_ref(&p, NULL);
                assert_int_equal(run_methods(&p, 1, &worst, &bitsame), 3);
                attn_problem_free(&p);
            }
    print_message("gpu decode, d = 32 .. 256, fp32/fp16/bf16: worst error/tolerance %.3g\n", worst);
    /* a head dim the kernel is not compiled for is declined with the reason */
    attn_shape_t s;
    attn_shape_init(&s, 1, 4, 2, 1, 100, 80, 0, DT_BF16);
    char why[256] = "";
    assert_int_equal(IMPL_GQA_PACKED.supports(&s, 1, why, sizeof why), 0);
    assert_non_null(strstr(why, "compiled for"));
}

/* ---- the program on bad input */
static int run_prog(const char *prog, const char *args, char *out, size_t n)
{
    return attn_run_prog(prog, args, "2>&1 >/dev/null", out, n);
}

static void test_program_rejects_bad_input(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        { "--heads 6 --kv-heads 4", "must divide" },
        { "--heads 32 --kv-heads 5 --decode --seq-kv 64", "must divide" },
        { "--heads 4 --kv-heads 8", "must divide" },
        { "--dim 513", "1 to 512" },
        { "--varlen --decode", "unknown option '--varlen'" },
        { "--kernel repeated", "no implementation named" },
        { "--kv-heads 0", "--kv-heads" },
    };
    char msg[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int rc = run_prog("06_gqa_attention", cases[i][0], msg, sizeof msg);
        print_message("%s -> %d: %s", cases[i][0], rc, msg);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(msg, cases[i][1]));
    }
}

/* ---- the program end to end: every row passes, on a GQA decode and prefill shape */
static void test_program_runs_cpu(void **state)
{
    (void)state;
    char msg[4096];
    assert_int_equal(run_prog("06_gqa_attention", "--device cpu --heads 8 --kv-heads 2 --decode --seq-kv 300 --iters 1",
                              msg, sizeof msg), 0);
    assert_int_equal(run_prog("06_gqa_attention", "--device cpu --heads 4 --kv-heads 1 --seq 65 --causal --dtype fp16 --iters 1",
                              msg, sizeof msg), 0);
}

int main(void)
{
    test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_groupings_cpu),
        cmocka_unit_test(test_ledger_counts),
        cmocka_unit_test(test_broken_head_index_cpu),
        cmocka_unit_test(test_head_dims_cpu),
        cmocka_unit_test(test_program_rejects_bad_input),
        cmocka_unit_test(test_program_runs_cpu),
        cmocka_unit_test(test_all_groupings_gpu),
        cmocka_unit_test(test_decode_long_gpu),
        cmocka_unit_test(test_broken_head_index_gpu),
        cmocka_unit_test(test_head_dims_gpu),
    };
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    if (getenv("STF_TEST_FILTER")) cmocka_set_test_filter(getenv("STF_TEST_FILTER")); /* e.g. "*head_dims*" */
    return cmocka_run_group_tests_name("stage 06 GQA", tests, NULL, NULL);
}
