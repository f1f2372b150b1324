/* Issue 16, the programs end to end on the CPU: each run that ended wrong
 * (nothing ran and exit 0; a value silently stored as inf; files too large
 * to load killed by the OOM killer; a CSV row with more fields than its
 * header; half-written --save-npy directories; head dims refused on the CPU)
 * now gives the right answer or a one-line message and exit 2. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attn_harness.h"
#include "gpu.h"
#include "harness.h"
#include "npy.h"
#include "report.h"

static int prog(const char *p, const char *args, char *out, size_t n)
{
    const int rc = attn_run_prog(p, args, "2>&1", out, n);
    print_message("%s %s -> %d\n", p, args, rc);
    return rc;
}

static char g_out[1 << 16];

/* Every CPU implementation takes any head dim from 1 to 512. */
static void test_head_dims_cpu(void **state)
{
    (void)state;
    static const int dims[] = { 1, 7, 80, 192, 256, 512 };
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        char a[200];
        snprintf(a, sizeof a, "--device cpu --iters 1 --warmup 0 --seq 9 --dim %d", dims[i]);
        assert_int_equal(prog("04_one_pass_attention", a, g_out, sizeof g_out), 0);
        assert_int_equal(prog("05_tiled_attention", a, g_out, sizeof g_out), 0);
        snprintf(a, sizeof a, "--device cpu --iters 1 --warmup 0 --seq 9 --heads 4 --kv-heads 2 --dim %d", dims[i]);
        assert_int_equal(prog("06_gqa_attention", a, g_out, sizeof g_out), 0);
        snprintf(a, sizeof a, "--device cpu --iters 1 --warmup 0 --decode --seq-kv 33 --heads 4 --kv-heads 2 --dim %d",
                 dims[i]);
        assert_int_equal(prog("07_split_kv_decode", a, g_out, sizeof g_out), 0);
        assert_null(strstr(g_out, "n/a")); /* every implementation ran */
    }
    assert_int_equal(prog("04_one_pass_attention", "--device cpu --dim 513", g_out, sizeof g_out), 2);
}

/* Nothing of the stage ran: exit 2 with the reasons. */
static void test_nothing_ran_programs(void **state)
{
    (void)state;
    assert_int_equal(prog("05b_tensor_cores", "--device cpu --seq 16 --iters 1", g_out, sizeof g_out), 2);
    assert_non_null(strstr(g_out, "none of this stage's own implementations ran"));
    /* at once (no earlier stage's row ran), the rungs' one reason said once */
    assert_null(strstr(g_out, "standard cpu"));
    assert_non_null(strstr(g_out, "tc1_mma, tc2_swizzle, "));
    assert_non_null(strstr(g_out, "tc6_m32: GPU only"));
    /* More splits than K/V tiles: stage 07 clamps them, says so, and runs. */
    assert_int_equal(prog("07_split_kv_decode", "--device cpu --decode --seq-kv 64 --splits 65536 --iters 1", g_out,
                          sizeof g_out), 0);
    assert_non_null(strstr(g_out, "--splits 65536 clamped to 1"));
    assert_null(strstr(g_out, "n/a"));
    /* a prefill shape: split-KV decoding declines it, before stage 06's packed runs */
    assert_int_equal(prog("07_split_kv_decode", "--device cpu --seq 16 --iters 1", g_out, sizeof g_out), 2);
    assert_non_null(strstr(g_out, "none of this stage's own implementations ran"));
    assert_non_null(strstr(g_out, "split, split-tc: split-KV decoding is for one query token"));
    assert_null(strstr(g_out, "packed cpu"));
    assert_int_equal(prog("05_tiled_attention", "--device cpu --seq 16 --iters 1 --kernel fa2-regtile", g_out,
                          sizeof g_out), 2);
    assert_non_null(strstr(g_out, "the implementations --kernel chose"));
    assert_int_equal(prog("05_tiled_attention", "--device cpu --seq 16 --iters 1 --kernel fa2", g_out, sizeof g_out), 0);
}

static void write_npy(const char *dir, const char *name, const float *x, const size_t *shape, int nd)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(npy_write_f32(path, x, shape, nd), 0);
}

/* A finite value the storage type cannot hold is refused, with its index. */
static void test_unfit_values(void **state)
{
    (void)state;
    char dir[] = "/tmp/stf_unfit_XXXXXX", a[700];
    assert_non_null(mkdtemp(dir));
    float x[4 * 64];
    for (size_t i = 0; i < 4 * 64; i++) x[i] = (float)(i % 5) * 0.25f;
    x[2 * 64 + 7] = 7e4f;
    const size_t sh2[2] = { 4, 64 };
    write_npy(dir, "x.npy", x, sh2, 2);
    snprintf(a, sizeof a, "--device cpu --iters 1 --dtype fp16 --load-npy %s", dir);
    assert_int_equal(prog("03_online_softmax", a, g_out, sizeof g_out), 2);
    assert_non_null(strstr(g_out, "holds 70000 at [2,7]"));
    snprintf(a, sizeof a, "--device cpu --iters 1 --dtype bf16 --load-npy %s", dir); /* bf16 holds it */
    assert_int_equal(prog("03_online_softmax", a, g_out, sizeof g_out), 0);
    const size_t sh4[4] = { 1, 1, 4, 8 };
    float q[32], k[32];
    for (size_t i = 0; i < 32; i++) q[i] = k[i] = (float)(i % 3) * 0.5f;
    q[1 * 8 + 3] = -1e5f;
    write_npy(dir, "q.npy", q, sh4, 4);
    write_npy(dir, "k.npy", k, sh4, 4);
    write_npy(dir, "v.npy", k, sh4, 4);
    snprintf(a, sizeof a, "--device cpu --iters 1 --dtype fp16 --load-npy %s", dir);
    assert_int_equal(prog("04_one_pass_attention", a, g_out, sizeof g_out), 2);
    assert_non_null(strstr(g_out, "q.npy [1,1,4,8] holds -100000 at [0,0,1,3]"));
    snprintf(a, sizeof a, "rm -rf %s", dir);
    assert_int_equal(system(a), 0);
}

/* A .npy file of the given shape whose data is a hole (sparse: no disk used). */
static int sparse_npy(const char *path, const size_t *shape, int nd)
{
    float one = 0.0f;
    const size_t s1[1] = { 1 };
    if (npy_write_f32(path, &one, s1, 1)) return -1;
    /* rewrite the header for the real shape: same length (the padding absorbs it) */
    FILE *f = fopen(path, "r+b");
    if (!f) return -1;
    char hdr[118];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < nd; i++) {
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%s%zu", i ? ", " : "", shape[i]);
        count *= shape[i];
    }
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    memset(hdr + n, ' ', sizeof hdr - (size_t)n - 1);
    hdr[sizeof hdr - 1] = '\n';
    fseek(f, 10, SEEK_SET);
    fwrite(hdr, 1, sizeof hdr, f);
    fclose(f);
    return truncate(path, (off_t)(128 + count * 4));
}

/* Files too large for this machine: a message and exit 2 from the headers,
 * before any data is read (24 GiB was an OOM kill after 65 s). */
static void test_too_large_files(void **state)
{
    (void)state;
    const double host = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    char dir[] = "/tmp/stf_large_XXXXXX", path[600], a[700];
    assert_non_null(mkdtemp(dir));
    /* three arrays of d = 64 floats per row, together as large as the host */
    const size_t N = (size_t)(host / (3.0 * 64 * 4)) + 1;
    const size_t sh[4] = { 1, 1, N, 64 };
    const char *names[] = { "q.npy", "k.npy", "v.npy" };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (sparse_npy(path, sh, 4)) {
            print_message("no sparse files here: skipped\n");
            snprintf(a, sizeof a, "rm -rf %s", dir);
            assert_int_equal(system(a), 0);
            skip();
        }
    }
    snprintf(a, sizeof a, "--device cpu --iters 1 --load-npy %s", dir);
    assert_int_equal(prog("05_tiled_attention", a, g_out, sizeof g_out), 2);
    assert_non_null(strstr(g_out, "Nothing was read"));
    const size_t sx[2] = { N, 3 * 64 };
    snprintf(path, sizeof path, "%s/x.npy", dir);
    assert_int_equal(sparse_npy(path, sx, 2), 0);
    assert_int_equal(prog("03_online_softmax", a, g_out, sizeof g_out), 2);
    assert_non_null(strstr(g_out, "nothing was read"));
    snprintf(a, sizeof a, "rm -rf %s", dir);
    assert_int_equal(system(a), 0);
}

/* Fields of one CSV line, RFC 4180 (quoted fields may hold commas). */
static int csv_fields(const char *line)
{
    int n = 1, q = 0;
    for (const char *c = line; *c && *c != '\n'; c++) {
        if (*c == '"') q = !q;
        else if (*c == ',' && !q) n++;
    }
    return n;
}

static void test_csv_quoted(void **state)
{
    (void)state;
    char path[] = "/tmp/stf_csv_XXXXXX", a[700], line[4096];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    snprintf(a, sizeof a, "--device cpu --scale 100 --rows 64 --cols 64 --iters 1 --csv %s", path);
    assert_int_equal(prog("01_naive_softmax", a, g_out, sizeof g_out), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    const int want = csv_fields(line);
    int rows = 0, quoted = 0;
    while (fgets(line, sizeof line, f)) {
        assert_int_equal(csv_fields(line), want);
        quoted += strstr(line, ",yes (63 excused),") != NULL;
        rows++;
    }
    fclose(f);
    unlink(path);
    assert_int_equal(rows, 2);
    assert_int_equal(quoted, 1);
    /* RFC 4180 for any cell that holds a comma, a quote or a line break */
    char buf[256] = "";
    FILE *m = fmemopen(buf, sizeof buf, "w");
    assert_non_null(m);
    report_csv_cell(m, "a, b", ',');
    report_csv_cell(m, "say \"x\"", ',');
    report_csv_cell(m, "plain", '\n');
    fclose(m);
    assert_string_equal(buf, "\"a, b\",\"say \"\"x\"\"\",plain\n");
}

/* --save-npy: the files appear under their names only when the run
 * completes; a run that ends in exit 2 leaves none, and no temporary file. */
static void test_save_npy_atomic(void **state)
{
    (void)state;
    char dir[] = "/tmp/stf_save_XXXXXX", a[700], cmd[800];
    assert_non_null(mkdtemp(dir));
    snprintf(a, sizeof a, "--device cpu --seq 8 --dim 8 --iters 1 --save-npy %s", dir);
    assert_int_equal(prog("04_one_pass_attention", a, g_out, sizeof g_out), 0);
    snprintf(cmd, sizeof cmd, "test -f %s/q.npy -a -f %s/o.npy -a -f %s/meta.json -a -z \"$(ls -A %s | grep tmp)\"", dir,
             dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s/*", dir);
    assert_int_equal(system(cmd), 0);
    /* nothing of stage 05b runs on the CPU: exit 2 after q, k, v were written */
    snprintf(a, sizeof a, "--device cpu --seq 8 --iters 1 --save-npy %s", dir);
    assert_int_equal(prog("05b_tensor_cores", a, g_out, sizeof g_out), 2);
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Inputs whose exact outputs are 0, NaN in V, -inf keys: every stage's
 * implementations are right, and the programs say so (exit 0). On the CPU
 * (d = 16) and, when there is one, on the GPU (d = 64, where every kernel
 * family is compiled): the semantics of notes/04, "NaN and -inf in Q, K, V". */
static void semantics(int gpu)
{
    char dir[] = "/tmp/stf_sem_XXXXXX", a[700];
    assert_non_null(mkdtemp(dir));
    enum { N = 40 };
    const size_t D = gpu ? 64 : 16;
    float *q = malloc(2 * N * D * sizeof *q), *k = malloc(2 * N * D * sizeof *k), *v = malloc(2 * N * D * sizeof *v);
    assert_true(q && k && v);
    const size_t sh[4] = { 1, 2, N, D };
    const char *dts[] = { "fp32", "fp16", "bf16" };
    static const char *const what[] = { "all zero", "V = 0 in head 1", "-inf in k[..., 0]", "NaN in V[5, 3]" };
    for (int c = 0; c < 4; c++) {
        for (size_t i = 0; i < 2 * N * D; i++) {
            q[i] = c == 0 ? 0.0f : (float)((i * 7) % 11) / 11.0f - 0.4f;
            k[i] = c == 0 ? 0.0f : (float)((i * 5) % 13) / 13.0f - 0.5f;
            v[i] = c == 0 ? 0.0f : (float)((i * 3) % 17) / 17.0f - 0.5f;
            if (c == 1 && i >= N * D) v[i] = 0.0f;       /* head 1: V = 0 */
            if (c == 2 && i % D == 0) k[i] = -INFINITY; /* every key masked where q_0 > 0, NaN rows where q_0 < 0 */
        }
        if (c == 3) v[5 * D + 3] = NAN; /* key 5, column 3 of head 0 */
        write_npy(dir, "q.npy", q, sh, 4);
        write_npy(dir, "k.npy", k, sh, 4);
        write_npy(dir, "v.npy", v, sh, 4);
        for (int t = 0; t < 3; t++) {
            print_message("%s, %s, %s:\n", what[c], dts[t], gpu ? "GPU" : "CPU");
            snprintf(a, sizeof a, "--device %s --iters 1 --warmup 0 --dtype %s --load-npy %s", gpu ? "gpu" : "cpu",
                     dts[t], dir);
            int rc = prog("05_tiled_attention", a, g_out, sizeof g_out);
            if (rc) print_message("%s\n", g_out);
            assert_int_equal(rc, 0);
            rc = prog("04_one_pass_attention", a, g_out, sizeof g_out);
            if (rc) print_message("%s\n", g_out);
            assert_int_equal(rc, 0);
            assert_null(strstr(g_out, "excused"));
            if (gpu) {
                rc = prog("06_gqa_attention", a, g_out, sizeof g_out);
                if (rc) print_message("%s\n", g_out);
                assert_int_equal(rc, 0);
                if (t > 0) { /* the tensor cores take fp16 and bf16 */
                    rc = prog("05b_tensor_cores", a, g_out, sizeof g_out);
                    if (rc) print_message("%s\n", g_out);
                    assert_int_equal(rc, 0);
                }
            }
        }
    }
    free(q);
    free(k);
    free(v);
    snprintf(a, sizeof a, "rm -rf %s", dir);
    assert_int_equal(system(a), 0);
}
static void test_semantics_programs(void **state)
{
    (void)state;
    semantics(0);
}
static void test_semantics_programs_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    semantics(1);
}

int main(void)
{
    test_seed();
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_dims_cpu),      cmocka_unit_test(test_nothing_ran_programs),
        cmocka_unit_test(test_unfit_values),       cmocka_unit_test(test_too_large_files),
        cmocka_unit_test(test_csv_quoted),         cmocka_unit_test(test_save_npy_atomic),
        cmocka_unit_test(test_semantics_programs), cmocka_unit_test(test_semantics_programs_gpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
