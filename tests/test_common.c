/* common/: fp16/bf16 conversion (against the compiler's _Float16 where it
 * exists, and against hand-checked bit patterns), the counter-based generator,
 * the ledger, .npy round trips, the option parser, and the stage programs'
 * answers to bad input (a message and exit status 2, never a crash). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "dtype.h"
#include "harness.h"
#include "ledger.h"
#include "npy.h"
#include "reference.h"
#include "report.h"
#include "rng.h"

static void test_f16_known_values(void **state)
{
    (void)state;
    assert_int_equal(f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(f32_to_f16(65504.0f), 0x7bff);       /* largest finite */
    assert_int_equal(f32_to_f16(65520.0f), 0x7c00);       /* halfway to 65536: rounds to even = inf */
    assert_int_equal(f32_to_f16(162754.79f), 0x7c00);     /* e^12 overflows */
    assert_int_equal(f32_to_f16(5.9604645e-08f), 0x0001); /* smallest subnormal */
    assert_int_equal(f32_to_f16(2.98e-08f), 0x0000);      /* below half of it: 0 */
    assert_int_equal(f32_to_f16(INFINITY), 0x7c00);
    assert_true((f32_to_f16(NAN) & 0x7fff) > 0x7c00);
    assert_true(f16_to_f32(0x7bff) == 65504.0f);
    assert_true(f16_to_f32(0x0001) == 5.9604645e-08f);
    assert_true(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
    assert_int_equal(f32_to_bf16(1.00390625f), 0x3f80);   /* 1 + 2^-8: tie, to even (down) */
    assert_int_equal(f32_to_bf16(1.01171875f), 0x3f82);   /* 1 + 3*2^-8: tie, to even (up) */
    assert_true(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    assert_true(dtype_round(DT_F16, expf(11.0f)) == 59872.0f); /* e^11 = 59874.1 fits */
    assert_true(isinf(dtype_round(DT_F16, expf(12.0f))));
}

/* Every fp16 bit pattern round-trips; the portable conversion rounds random
 * fp32 values exactly as the compiler's own _Float16 does (IEEE round to
 * nearest even). */
static void test_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32_portable((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(f32_to_f16_portable(f), h);
        assert_int_equal(f32_to_f16(f), h);
    }
#if defined(__FLT16_MAX__)
    rng_t r = { test_seed() };
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)rng_next(&r);
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f)) continue;
        _Float16 h = (_Float16)f;
        uint16_t hb;
        memcpy(&hb, &h, 2);
        if (f32_to_f16_portable(f) != hb) print_message("mismatch at %a: %04x vs %04x\n", f, f32_to_f16_portable(f), hb);
        assert_int_equal(f32_to_f16_portable(f), hb);
        assert_true(f16_to_f32_portable(hb) == (float)h);
    }
#else
    print_message("_Float16 not available: compared against known values only\n");
#endif
}

static void test_rng(void **state)
{
    (void)state;
    /* a pure function of (seed, stream, index) */
    assert_true(rng_u64(1, 0, 5) == rng_u64(1, 0, 5));
    assert_true(rng_u64(1, 0, 5) != rng_u64(2, 0, 5));
    assert_true(rng_u64(1, 0, 5) != rng_u64(1, 1, 5));
    double sum = 0, lo = 1, hi = -1;
    for (uint64_t i = 0; i < 100000; i++) {
        float u = rng_sym(test_seed(), 0, i);
        assert_true(u >= -1.0f && u < 1.0f);
        sum += u;
        lo = fmin(lo, u);
        hi = fmax(hi, u);
    }
    assert_true(fabs(sum / 100000) < 0.01); /* mean 0, sd of the mean 0.0018 */
    assert_true(lo < -0.999 && hi > 0.999);
    assert_true(rng_logit(7, 0, 3, 4.0f) == 4.0f * rng_sym(7, 0, 3));
}

static void test_ledger(void **state)
{
    (void)state;
    ledger_t lg = { 0 };
    hbm_t a = hbm_alloc(&lg, "a", 10, DT_F16), b = hbm_alloc(&lg, "b", 10, DT_F32);
    for (int i = 0; i < 10; i++) hbm_st(&a, (size_t)i, (float)i);
    for (int i = 0; i < 10; i++) hbm_st(&b, (size_t)i, hbm_ld(&a, (size_t)i) * 2);
    assert_int_equal(lg.bytes_written, 10 * 2 + 10 * 4);
    assert_int_equal(lg.bytes_read, 10 * 2);
    assert_int_equal(a.bytes_read, 20);
    assert_int_equal(b.bytes_written, 40);
    assert_true(hbm_ld(&b, 9) == 18.0f);
    /* the on-chip budget refuses what does not fit */
    lg.sram_budget = 1000;
    void *p = sram_alloc(&lg, 600);
    assert_non_null(p);
    assert_null(sram_alloc(&lg, 600));
    sram_free(&lg, p, 600);
    p = sram_alloc(&lg, 1000);
    assert_non_null(p);
    assert_int_equal(lg.sram_peak, 1000);
    sram_free(&lg, p, 1000);
    hbm_free(&a);
    hbm_free(&b);
}

static void test_npy_roundtrip(void **state)
{
    (void)state;
    char dir[] = "/tmp/stf_npy_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    float data[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++) data[i] = (float)i * 0.25f - 3;
    size_t shape[4] = { 2, 3, 4, 5 }, got[NPY_MAX_DIMS];
    assert_int_equal(npy_write_f32(path, data, shape, 4), 0);
    float *back = NULL;
    assert_int_equal(npy_read_f32(path, 4, &back, got), 0);
    assert_memory_equal(got, shape, sizeof shape);
    assert_memory_equal(back, data, sizeof data);
    free(back);
    assert_int_equal(npy_read_f32(path, 2, &back, got), -1); /* wrong rank */
    snprintf(path, sizeof path, "%s/missing.npy", dir);
    assert_int_equal(npy_read_f32(path, 2, &back, got), -1);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Reads a whole small file into buf; returns its length. */
static size_t slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
    return k;
}

/* One CSV file never gets two layouts: report_csv_check accepts a missing or
 * empty file and the same header, and names the first differing column
 * otherwise; report_csv_append refuses (appends nothing to) a mismatched file. */
static void test_report_csv_layout(void **state)
{
    (void)state;
    char dir[] = "/tmp/stf_csv_XXXXXX", path[300], buf[4096], msg[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.csv", dir);
    static const report_col_t A[] = { { "impl", "impl", 5 }, { "rows", "rows", 5 }, { "ok", "ok", 3 } };
    static const report_col_t B[] = { { "impl", "impl", 5 }, { "cols", "cols", 5 }, { "ok", "ok", 3 } };
    static const report_col_t C[] = { { "impl", "impl", 5 }, { "rows", "rows", 5 }, { "ok", "ok", 3 }, { "x", "x", 3 } };
    env_stamp_t e;
    memset(&e, 0, sizeof e);
    snprintf(e.device, sizeof e.device, "cpu");
    snprintf(e.commit, sizeof e.commit, "abc");
    FILE *m = tmpfile();
    assert_non_null(m);

    assert_int_equal(report_csv_check(path, A, 3, m), 0); /* missing: fine, and not created */
    assert_int_equal(access(path, F_OK), -1);
    FILE *f = fopen(path, "w");
    fclose(f);
    assert_int_equal(report_csv_check(path, B, 3, m), 0); /* empty: fine */

    report_t r;
    report_init(&r, A, 3);
    report_row(&r, "naive", "17", "yes");
    assert_int_equal(report_csv_append(&r, path, &e), 0);
    assert_int_equal(report_csv_check(path, A, 3, m), 0);
    assert_int_equal(report_csv_append(&r, path, &e), 0);
    const size_t len = slurp(path, buf, sizeof buf);
    assert_non_null(strstr(buf, "impl,rows,ok,device_name,driver,runtime,commit,date\n"));
    assert_null(strstr(strchr(buf, '\n') + 1, "impl,")); /* the header once */
    assert_int_equal(ftell(m), 0);                          /* nothing said so far */

    static const struct { const report_col_t *cols; int n; const char *want; } bad[] = {
        { B, 3, "column 2" }, /* rows vs cols */
        { C, 4, "column 4" }, /* one more column */
        { A, 2, "column 3" }, /* one fewer */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rewind(m);
        assert_int_equal(ftruncate(fileno(m), 0), 0);
        assert_int_equal(report_csv_check(path, bad[i].cols, bad[i].n, m), -1);
        fflush(m);
        rewind(m);
        size_t k = fread(msg, 1, sizeof msg - 1, m);
        msg[k] = 0;
        print_message("%s", msg);
        assert_non_null(strstr(msg, path));
        assert_non_null(strstr(msg, bad[i].want));
        assert_true(strchr(msg, '\n') == msg + k - 1); /* one line */
    }
    /* append refuses the mismatched layout and leaves the file as it was */
    report_t rb;
    report_init(&rb, B, 3);
    report_row(&rb, "safe", "1000", "yes");
    assert_int_equal(report_csv_append(&rb, path, &e), -1);
    char after[4096];
    assert_int_equal(slurp(path, after, sizeof after), len);
    assert_string_equal(after, buf);
    /* a directory is not a CSV file */
    assert_int_equal(report_csv_check(dir, A, 3, m), -1);
    fclose(m);
    snprintf(buf, sizeof buf, "rm -rf %s", dir);
    assert_int_equal(system(buf), 0);
}

static int parse(const char *line, opts_t *o)
{
    char buf[512], *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "prog %s", line);
    for (char *t = strtok(buf, " "); t && argc < 31; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    cli_spec_t spec = { "prog", "test", CLI_SOFTMAX, NULL };
    FILE *devnull = fopen("/dev/null", "w");
    int rc = cli_parse(&spec, argc, argv, o, devnull);
    fclose(devnull);
    return rc;
}

static void test_cli_parse(void **state)
{
    (void)state;
    opts_t o;
    assert_int_equal(parse("--rows 17 --cols 1000 --dtype fp16 --device cpu --seed 5 --scale 12", &o), 0);
    assert_int_equal(o.rows, 17);
    assert_int_equal(o.cols, 1000);
    assert_int_equal(o.dtype, DT_F16);
    assert_int_equal(o.device, DEV_CPU);
    assert_int_equal(o.seed, 5);
    assert_true(o.scale == 12.0);
    static const char *bad[] = {
        "--rows 0", "--rows -5", "--cols 1e3", "--cols abc", "--cols 99999999999", "--dtype fp8",
        "--device tpu", "--iters 0", "--warmup -1", "--scale 0", "--scale nan", "--scale -2",
        "--bogus", "--rows", "extra", "--seed -1", "--sweep --load-npy x", "--heads 4",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse(bad[i], &o);
        if (rc != 2) print_message("accepted: %s\n", bad[i]);
        assert_int_equal(rc, 2);
    }
    assert_int_equal(parse("--help", &o), 1);
}

/* Runs a stage program; returns its exit status, and fills msg with the first
 * line of its standard error. */
static int run_prog(const char *args, char *msg, size_t n)
{
    const char *dir = getenv("STF_BIN_DIR") ? getenv("STF_BIN_DIR") : "build/bin";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/%s 2>&1 >/dev/null | head -n 1", dir, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    msg[0] = 0;
    if (!fgets(msg, (int)n, p)) msg[0] = 0;
    pclose(p);
    snprintf(cmd, sizeof cmd, "%s/%s >/dev/null 2>&1", dir, args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void test_programs_reject_bad_input(void **state)
{
    (void)state;
    static const char *cases[][2] = {
        { "01_naive_softmax --rows 0", "--rows" },
        { "02_safe_softmax --cols -3", "--cols" },
        { "03_online_softmax --frobnicate", "unknown option" },
        { "03_online_softmax --dtype int8", "--dtype" },
        { "01_naive_softmax --device cpu --rows 2000000000 --cols 2000000000", "too large" },
        { "02_safe_softmax --device cpu --rows 100000 --cols 1000000", "memory" },
        { "03_online_softmax --load-npy /nonexistent", "cannot open" },
        { "03_online_softmax --load-npy /tmp --rows 3", "cannot be combined" },
    };
    char msg[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run_prog(cases[i][0], msg, sizeof msg);
        print_message("%s -> %d: %s", cases[i][0], rc, msg);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(msg, cases[i][1]));
    }
}

/* The programs run end to end on the CPU: a table, exit 0; and --save-npy
 * writes files that --load-npy reads back to the same result. */
static void test_programs_run_cpu(void **state)
{
    (void)state;
    char msg[512], dir[] = "/tmp/stf_run_XXXXXX", args[512];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(run_prog("01_naive_softmax --device cpu --rows 3 --cols 17 --iters 1", msg, sizeof msg), 0);
    snprintf(args, sizeof args, "03_online_softmax --device cpu --rows 5 --cols 1000 --iters 1 --save-npy %s", dir);
    assert_int_equal(run_prog(args, msg, sizeof msg), 0);
    snprintf(args, sizeof args, "03_online_softmax --device cpu --iters 1 --load-npy %s", dir);
    assert_int_equal(run_prog(args, msg, sizeof msg), 0);
    char path[300];
    size_t shape[NPY_MAX_DIMS];
    float *x = NULL, *y = NULL;
    snprintf(path, sizeof path, "%s/x.npy", dir);
    assert_int_equal(npy_read_f32(path, 2, &x, shape), 0);
    assert_int_equal(shape[0], 5);
    assert_int_equal(shape[1], 1000);
    snprintf(path, sizeof path, "%s/y.npy", dir);
    assert_int_equal(npy_read_f32(path, 2, &y, shape), 0);
    for (int r = 0; r < 5; r++) { /* rows of y sum to 1 */
        double s = 0;
        for (int j = 0; j < 1000; j++) s += y[r * 1000 + j];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    free(x);
    free(y);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    assert_int_equal(system(args), 0);
}

int main(void)
{
    test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_known_values), cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_rng),              cmocka_unit_test(test_ledger),
        cmocka_unit_test(test_npy_roundtrip),    cmocka_unit_test(test_cli_parse),
        cmocka_unit_test(test_report_csv_layout),
        cmocka_unit_test(test_programs_reject_bad_input), cmocka_unit_test(test_programs_run_cpu),
    };
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
