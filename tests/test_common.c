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
    int row = report_add_row(&r);
    report_set(&r, row, "impl", "naive");
    report_set(&r, row, "rows", "17");
    report_set(&r, row, "ok", "yes");
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
    row = report_add_row(&rb);
    report_set(&rb, row, "impl", "safe");
    report_set(&rb, row, "cols", "1000");
    report_set(&rb, row, "ok", "yes");
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
    int rc = cli_parse_opts(&spec, NULL, 0, argc, argv, o, devnull);
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

/* cli_parse on an argv given as an array (so values may hold spaces or be
 * empty); the message on err goes to msg. */
static int parse_v(int kind, const char *const *args, opts_t *o, char *msg, size_t n)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"prog";
    for (; *args && argc < 31; args++) argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    cli_spec_t spec = { "prog", "test", kind, NULL };
    /* an attention program's own options, as stages 05-07 declare them */
    static const cli_opt_t stage_opts[] = {
        { "kv-heads", "G", 65536, "key/value heads" }, { "br", "N", 4096, "query rows per tile" },
        { "bc", "N", 4096, "key rows per tile" },      { "sram", "BYTES", 1LL << 30, "on-chip bytes" },
        { "splits", "N", 65536, "K/V splits" },       { "varlen", NULL, 0, "variable K/V lengths" },
    };
    FILE *m = tmpfile();
    assert_non_null(m);
    int rc = kind == CLI_ATTENTION ? cli_parse_opts(&spec, stage_opts, 6, argc, argv, o, m)
                                   : cli_parse_opts(&spec, NULL, 0, argc, argv, o, m);
    rewind(m);
    size_t k = fread(msg, 1, n - 1, m);
    msg[k] = 0;
    fclose(m);
    return rc;
}

/* Options the parser got wrong: -xy named argv[0], a seed with a leading
 * space wrapped to 2^64-1, "010" was octal, --load-npy "" was accepted, and
 * --dim 100000 was refused as "not a positive integer" before the driver
 * could list the supported dims. */
static void test_cli_options(void **state)
{
    (void)state;
    static char longpath[CLI_PATH_MAX + 2];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = 0;
    static const struct { const char *args[4]; const char *want; } bad[] = {
        { { "-xy" }, "'-x'" },
        { { "-x" }, "'-x'" },
        { { "--sweep=1" }, "'--sweep' takes no value" },
        { { "--s", "1" }, "ambiguous" },
        { { "--seed", " -1" }, "--seed" },
        { { "--seed", "\t5" }, "--seed" },
        { { "--seed", "-0" }, "--seed" },
        { { "--seed", "18446744073709551616" }, "--seed" },
        { { "--seed", "0x" }, "--seed" },
        { { "--load-npy", "" }, "--load-npy" },
        { { "--save-npy", "" }, "--save-npy" },
        { { "--csv", "" }, "--csv" },
        { { "--load-npy", longpath }, "longer than" },
        { { "--save-npy", longpath }, "longer than" },
        { { "--csv", longpath }, "longer than" },
    };
    opts_t o;
    char msg[1024];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse_v(CLI_SOFTMAX, bad[i].args, &o, msg, sizeof msg);
        print_message("%.40s %.20s -> %d: %s", bad[i].args[0], bad[i].args[1] ? bad[i].args[1] : "", rc, msg);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(msg, bad[i].want));
        assert_null(strstr(msg, "'prog'"));
        assert_true(strchr(msg, '\n') == msg + strlen(msg) - 1); /* one line */
    }
    static const struct { const char *arg; uint64_t seed; } seeds[] = {
        { "0", 0 }, { "010", 10 }, { "0x10", 16 }, { "18446744073709551615", UINT64_MAX },
    };
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        const char *args[] = { "--seed", seeds[i].arg, NULL };
        assert_int_equal(parse_v(CLI_SOFTMAX, args, &o, msg, sizeof msg), 0);
        assert_true(o.seed == seeds[i].seed);
    }
    /* --dim: the parser takes any size; the driver says which dims the stage has */
    const char *dim[] = { "--dim", "100000", NULL };
    assert_int_equal(parse_v(CLI_ATTENTION, dim, &o, msg, sizeof msg), 0);
    const char *dim2[] = { "--dim", "99999999999", NULL };
    assert_int_equal(parse_v(CLI_ATTENTION, dim2, &o, msg, sizeof msg), 2);
    assert_non_null(strstr(msg, "--help"));
}

/* --csv and --save-npy are checked before any work and leave nothing behind. */
static void test_cli_paths(void **state)
{
    (void)state;
    char dir[] = "/tmp/stf_cli_XXXXXX", file[300], sub[300], csv[300], msg[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/plain", dir);
    FILE *f = fopen(file, "w");
    fputs("data\n", f);
    fclose(f);
    snprintf(sub, sizeof sub, "%s/new", dir);
    snprintf(csv, sizeof csv, "%s/new.csv", dir);
    char notdir[400];
    snprintf(notdir, sizeof notdir, "%s/x.csv", file);
    static char missing_csv[] = "/nonexistent-stf-dir/x.csv", missing_dir[] = "/nonexistent-stf-dir/out";
    const struct { const char *args[3]; const char *want; } bad[] = {
        { { "--csv", missing_csv }, "No such file" },
        { { "--csv", dir }, "directory" },
        { { "--csv", notdir }, "Not a directory" },
        { { "--csv", "/sys/stf-test.csv" }, "--csv" },         /* not writable, even for root */
        { { "--save-npy", missing_dir }, "No such file" },
        { { "--save-npy", file }, "not a directory" },
        { { "--save-npy", "/sys" }, "--save-npy" },
        { { "--save-npy", "/sys/stf-test" }, "--save-npy" },
    };
    opts_t o;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse_v(CLI_SOFTMAX, bad[i].args, &o, msg, sizeof msg);
        print_message("%s %s -> %d: %s", bad[i].args[0], bad[i].args[1], rc, msg);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(msg, bad[i].want));
        assert_non_null(strstr(msg, bad[i].args[0]));
        assert_non_null(strstr(msg, bad[i].args[1]));
        assert_true(strchr(msg, '\n') == msg + strlen(msg) - 1);
    }
    /* good paths pass and leave no trace: no empty CSV, no empty directory */
    const char *ok1[] = { "--csv", csv, "--save-npy", sub, NULL };
    assert_int_equal(parse_v(CLI_SOFTMAX, ok1, &o, msg, sizeof msg), 0);
    assert_int_equal(access(csv, F_OK), -1);
    assert_int_equal(access(sub, F_OK), -1);
    const char *ok2[] = { "--csv", file, "--save-npy", dir, NULL }; /* existing ones: untouched */
    assert_int_equal(parse_v(CLI_SOFTMAX, ok2, &o, msg, sizeof msg), 0);
    char buf[64];
    assert_int_equal(slurp(file, buf, sizeof buf), 5);
    snprintf(buf, sizeof buf, "rm -rf %s", dir);
    assert_int_equal(system(buf), 0);
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
        { "01_naive_softmax -xy", "'-x'" },
        { "04_one_pass_attention --dim 100000", "1 to 512" },
        { "05_tiled_attention --splits 4", "unknown option '--splits'" },
        { "06_gqa_attention --sram 4096", "unknown option '--sram'" },
        { "04_one_pass_attention --decode --seq-q 7", "--decode means --seq-q 1" },
        { "02_safe_softmax --scale 3 --load-npy /tmp", "--load-npy replaces" },
        { "03_online_softmax --load-npy ''", "--load-npy" },
        { "02_safe_softmax --csv /nonexistent-stf-dir/x.csv", "--csv" },
        { "04_one_pass_attention --save-npy /nonexistent-stf-dir/out", "--save-npy" },
    };
    char msg[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run_prog(cases[i][0], msg, sizeof msg);
        print_message("%s -> %d: %s", cases[i][0], rc, msg);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(msg, cases[i][1]));
    }
}

/* --load-npy of files that read fine but do not fit the stage: exit 2 with a
 * message naming the problem. Under `make sanitize` these runs also check that
 * the loaded arrays are freed on the way out (they leaked before). */
static void test_programs_reject_bad_npy(void **state)
{
    (void)state;
    char dir[] = "/tmp/stf_badnpy_XXXXXX", path[600], args[800], msg[512];
    assert_non_null(mkdtemp(dir));
    static float data[4 * 16 * 16 + 1];
    for (size_t i = 0; i < sizeof data / sizeof *data; i++) data[i] = (float)(i % 7) * 0.125f;
    static const struct {
        const char *prog, *name;
        size_t q[4], kv[4]; /* q (or x for softmax: rank 2 or 3) and k, v */
        int rank;
        const char *want;
    } cases[] = {
        { "04_one_pass_attention", "dim513", { 1, 1, 1, 513 }, { 1, 1, 1, 513 }, 4, "d = 513 (from the files: q.npy [1,1,1,513]" },
        { "04_one_pass_attention", "gqa", { 1, 4, 16, 16 }, { 1, 2, 16, 16 }, 4, "q.npy [1,4,16,16], k.npy [1,2,16,16]" },
        { "04_one_pass_attention", "batch", { 2, 2, 16, 16 }, { 1, 2, 8, 16 }, 4, "shapes disagree" },
        { "03_online_softmax", "rank3", { 2, 3, 4 }, { 0 }, 3, "3 dimensions, 2 expected" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char sub[100];
        snprintf(sub, sizeof sub, "%s/%s", dir, cases[i].name);
        assert_int_equal(ensure_dir(sub), 0);
        if (cases[i].prog[1] == '4') {
            snprintf(path, sizeof path, "%s/q.npy", sub);
            assert_int_equal(npy_write_f32(path, data, cases[i].q, 4), 0);
            snprintf(path, sizeof path, "%s/k.npy", sub);
            assert_int_equal(npy_write_f32(path, data, cases[i].kv, 4), 0);
            snprintf(path, sizeof path, "%s/v.npy", sub);
            assert_int_equal(npy_write_f32(path, data, cases[i].kv, 4), 0);
        } else {
            snprintf(path, sizeof path, "%s/x.npy", sub);
            assert_int_equal(npy_write_f32(path, data, cases[i].q, cases[i].rank), 0);
        }
        snprintf(args, sizeof args, "%s --device cpu --iters 1 --warmup 0 --load-npy %s", cases[i].prog, sub);
        int rc = run_prog(args, msg, sizeof msg);
        print_message("%s -> %d: %s", cases[i].name, rc, msg);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(msg, cases[i].want));
    }
    snprintf(args, sizeof args, "rm -rf %s", dir);
    assert_int_equal(system(args), 0);
}

/* One CSV file, one layout: a softmax table and then an attention table into
 * the same file, or any program into a file of another layout, is refused
 * (exit 2, a message naming the file and the column) and the file keeps its
 * single header. */
static void test_programs_refuse_foreign_csv(void **state)
{
    (void)state;
    char dir[] = "/tmp/stf_csvp_XXXXXX", csv[100], args[400], msg[512], buf[8192];
    assert_non_null(mkdtemp(dir));
    snprintf(csv, sizeof csv, "%s/t.csv", dir);
    snprintf(args, sizeof args, "01_naive_softmax --device cpu --rows 2 --cols 16 --iters 1 --warmup 0 --csv %s", csv);
    assert_int_equal(run_prog(args, msg, sizeof msg), 0);
    snprintf(args, sizeof args, "02_safe_softmax --device cpu --rows 2 --cols 16 --iters 1 --warmup 0 --csv %s", csv);
    assert_int_equal(run_prog(args, msg, sizeof msg), 0); /* same layout: appended */
    const size_t len = slurp(csv, buf, sizeof buf);
    snprintf(args, sizeof args, "04_one_pass_attention --device cpu --seq 8 --dim 16 --iters 1 --warmup 0 --csv %s", csv);
    int rc = run_prog(args, msg, sizeof msg);
    print_message("attention into a softmax CSV -> %d: %s", rc, msg);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(msg, csv));
    assert_non_null(strstr(msg, "column"));
    char after[8192];
    assert_int_equal(slurp(csv, after, sizeof after), len);
    assert_string_equal(after, buf);
    FILE *f = fopen(csv, "w");
    fputs("a,b,c\n1,2,3\n", f);
    fclose(f);
    snprintf(args, sizeof args, "03_online_softmax --device cpu --rows 2 --cols 16 --iters 1 --warmup 0 --csv %s", csv);
    rc = run_prog(args, msg, sizeof msg);
    print_message("softmax into a foreign CSV -> %d: %s", rc, msg);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(msg, "column 1 is 'a'"));
    assert_int_equal(slurp(csv, after, sizeof after), 12);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    assert_int_equal(system(args), 0);
}

/* A bad --csv or --save-npy stops the program before any work: exit 2 and
 * not a line on stdout (the run header is the first thing a run prints). */
static void test_programs_check_paths_first(void **state)
{
    (void)state;
    const char *dir = getenv("STF_BIN_DIR") ? getenv("STF_BIN_DIR") : "build/bin";
    static const char *cases[] = {
        "02_safe_softmax --device cpu --rows 4 --cols 100 --csv /nonexistent-stf-dir/x.csv",
        "04_one_pass_attention --device cpu --seq 16 --dim 16 --csv /nonexistent-stf-dir/x.csv",
        "03_online_softmax --device cpu --rows 4 --cols 100 --save-npy /nonexistent-stf-dir/out",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char cmd[1024], out[256] = "";
        snprintf(cmd, sizeof cmd, "%s/%s 2>/dev/null", dir, cases[i]);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t k = fread(out, 1, sizeof out - 1, p);
        out[k] = 0;
        int st = pclose(p);
        print_message("%s -> %d, %zu bytes on stdout\n", cases[i], WIFEXITED(st) ? WEXITSTATUS(st) : -1, k);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
        assert_int_equal(k, 0);
    }
}

/* The CSV stamp's commit is the program's own tree's, whatever the current
 * directory: run from a directory outside any git tree, the stamp must still
 * name the commit of the tree the binary was built in. */
static void test_stamp_commit_from_program_tree(void **state)
{
    (void)state;
    char bindir[4096], exp[64] = "", cmd[8192], cwd[] = "/tmp/stf_cwd_XXXXXX";
    const char *dir = getenv("STF_BIN_DIR") ? getenv("STF_BIN_DIR") : "build/bin";
    if (dir[0] == '/') {
        snprintf(bindir, sizeof bindir, "%s", dir);
    } else {
        char here[2048];
        assert_non_null(getcwd(here, sizeof here));
        snprintf(bindir, sizeof bindir, "%s/%s", here, dir);
    }
    snprintf(cmd, sizeof cmd, "git -C '%s' rev-parse --short HEAD 2>/dev/null", bindir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    if (!fgets(exp, sizeof exp, p)) exp[0] = 0;
    pclose(p);
    exp[strcspn(exp, "\n")] = 0;
    if (!exp[0]) {
        print_message("%s is not in a git tree: the stamp must say 'unknown'\n", bindir);
        snprintf(exp, sizeof exp, "unknown");
    }
    assert_non_null(mkdtemp(cwd));
    snprintf(cmd, sizeof cmd,
             "cd %s && env -u STF_COMMIT '%s/01_naive_softmax' --device cpu --rows 2 --cols 3 --iters 1 --warmup 0 "
             "--csv out.csv >/dev/null",
             cwd, bindir);
    assert_int_equal(system(cmd), 0);
    char path[300], buf[4096];
    snprintf(path, sizeof path, "%s/out.csv", cwd);
    assert_true(slurp(path, buf, sizeof buf) > 0);
    /* the first data row: ..., commit, date */
    char *row = strchr(buf, '\n');
    assert_non_null(row);
    row++;
    row[strcspn(row, "\n")] = 0;
    char *date = strrchr(row, ',');
    assert_non_null(date);
    *date = 0;
    char *commit = strrchr(row, ',');
    assert_non_null(commit);
    commit++;
    commit[strcspn(commit, "+")] = 0; /* "+dirty" */
    print_message("stamp commit '%s', the program's tree '%s'\n", commit, exp);
    assert_string_equal(commit, exp);
    snprintf(cmd, sizeof cmd, "rm -rf %s", cwd);
    assert_int_equal(system(cmd), 0);
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
        cmocka_unit_test(test_report_csv_layout), cmocka_unit_test(test_cli_options),
        cmocka_unit_test(test_cli_paths),
        cmocka_unit_test(test_programs_reject_bad_input), cmocka_unit_test(test_programs_run_cpu),
        cmocka_unit_test(test_programs_reject_bad_npy), cmocka_unit_test(test_programs_refuse_foreign_csv),
        cmocka_unit_test(test_programs_check_paths_first), cmocka_unit_test(test_stamp_commit_from_program_tree),
    };
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
