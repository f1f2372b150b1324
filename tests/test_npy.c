/* The .npy reader on valid, malformed and hostile files: every header NumPy
 * writes or accepts reads back exactly; every bad file gets -1, a NULL buffer
 * and one line that names the problem; truncations at every length and random
 * byte flips (seed printed; STF_TEST_SEED replays) never crash and never
 * succeed with a size the file does not hold. Under `make sanitize` the same
 * runs also catch any out-of-bounds read or leak in the parser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "npy.h"
#include "rng.h"

static char g_dir[64];
static char g_path[600];

/* The files live in /dev/shm when there is one: thousands of rewrites of a
 * file on a disk mounted with 'discard' take seconds each hundred. */
static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/stf_npy_XXXXXX", access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_path, sizeof g_path, "%s/a.npy", g_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A .npy image: magic, version major.0, the header length (2 bytes in 1.0,
 * 4 in 2.0 and 3.0), the dict padded with spaces and a final newline to a
 * multiple of 64 bytes, then nbytes of data. Returns the image's size. */
static size_t build(unsigned char *buf, size_t cap, int major, const char *dict, const void *data, size_t nbytes)
{
    const size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hlen = dl + 1;
    hlen += (64 - (pre + hlen) % 64) % 64;
    assert_true(pre + hlen + nbytes <= cap);
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)((hlen >> 8) & 0xff);
    if (major != 1) {
        buf[10] = (unsigned char)((hlen >> 16) & 0xff);
        buf[11] = (unsigned char)(hlen >> 24);
    }
    memcpy(buf + pre, dict, dl);
    memset(buf + pre + dl, ' ', hlen - dl - 1);
    buf[pre + hlen - 1] = '\n';
    if (nbytes) memcpy(buf + pre + hlen, data, nbytes);
    return pre + hlen + nbytes;
}

static void write_file(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* npy_read_f32 with its standard error captured into msg (through a pipe:
 * one message is far below the pipe's buffer). */
static int read_capture(const char *path, int nd, float **data, size_t *shape, char *msg, size_t n)
{
    fflush(stderr);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fds[1], 2) >= 0);
    close(fds[1]);
    int rc = npy_read_f32(path, nd, data, shape);
    fflush(stderr);
    dup2(saved, 2); /* closes the last write end: the read below ends */
    close(saved);
    size_t k = 0;
    ssize_t r;
    while (k + 1 < n && (r = read(fds[0], msg + k, n - 1 - k)) > 0) k += (size_t)r;
    msg[k] = 0;
    close(fds[0]);
    return rc;
}

/* Exactly one line, ending in a newline. */
static int one_line(const char *msg)
{
    const char *nl = strchr(msg, '\n');
    return nl && nl[1] == 0 && nl > msg;
}

static float g_data[64];

static void fill_data(void)
{
    for (int i = 0; i < 64; i++) g_data[i] = (float)i * 0.5f - 7.25f;
}

/* ---- headers NumPy writes or accepts: spaces or none, any key order, either
 * quote, trailing commas, version 2.0 and 3.0 */
static void test_valid_headers(void **state)
{
    (void)state;
    fill_data();
    static const char *dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",  /* what NumPy writes */
        "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",          /* no spaces */
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",    /* another order */
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}", /* double quotes */
        "{ 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , 'descr' : '<f4' , }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3,), }", /* what this project wrote */
    };
    unsigned char buf[512];
    char msg[512];
    for (size_t i = 0; i < sizeof dicts / sizeof *dicts; i++)
        for (int major = 1; major <= 3; major++) {
            size_t n = build(buf, sizeof buf, major, dicts[i], g_data, 6 * sizeof(float));
            write_file(g_path, buf, n);
            float *x = NULL;
            size_t shape[NPY_MAX_DIMS] = { 0 };
            int rc = read_capture(g_path, 2, &x, shape, msg, sizeof msg);
            if (rc) print_message("rejected (version %d.0): %s\n  %s", major, dicts[i], msg);
            assert_int_equal(rc, 0);
            assert_int_equal(shape[0], 2);
            assert_int_equal(shape[1], 3);
            assert_memory_equal(x, g_data, 6 * sizeof(float));
            free(x);
        }
    /* one dimension: (6,) */
    size_t n = build(buf, sizeof buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", g_data, 24);
    write_file(g_path, buf, n);
    float *x = NULL;
    size_t shape[NPY_MAX_DIMS];
    assert_int_equal(read_capture(g_path, 1, &x, shape, msg, sizeof msg), 0);
    assert_int_equal(shape[0], 6);
    free(x);
}

/* ---- bad files: -1, a NULL buffer, one line naming the problem */
static void test_bad_headers(void **state)
{
    (void)state;
    fill_data();
    static const struct {
        const char *dict;
        size_t nbytes; /* data bytes in the file */
        int nd;        /* dimensions asked for */
        const char *want; /* in the message */
    } cases[] = {
        /* a spoofed descr: Python keeps the last value of a repeated key */
        { "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, 2, "'descr' twice" },
        { "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'x': \"'descr': '<f4'\"}", 48, 2, "'x'" },
        { "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), 'fortran_order': False}", 24, 2, "twice" },
        { "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 48, 2, "'<f8'" },
        { "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", 24, 2, "'>f4'" },
        { "{'descr': '<f4 ', 'fortran_order': False, 'shape': (2, 3), }", 24, 2, "'<f4 '" },
        { "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24, 2, "Fortran" },
        /* shapes whose byte count wraps 64 bits, or that are negative */
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387905, 1), }", 4, 2, "too large" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967297), }", 4, 2, "too large" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 1), }", 4, 2, "too large" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }", 24, 2, "negative" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 24, 2, "negative" },
        /* shapes that are not tuples of integers */
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 3), }", 24, 2, "shape" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", 24, 2, "shape" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, }", 24, 2, "shape" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", 24, 1, "tuple" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }", 24, 2, "shape" },
        /* missing keys, broken dicts */
        { "{'descr': '<f4', 'fortran_order': False, }", 24, 2, "'shape'" },
        { "{'fortran_order': False, 'shape': (2, 3), }", 24, 2, "'descr'" },
        { "{'descr': '<f4', 'shape': (2, 3), }", 24, 2, "'fortran_order'" },
        { "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3), }", 24, 2, "fortran_order" },
        { "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3), }", 24, 2, "header" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } x", 24, 2, "after" },
        { "'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", 24, 2, "header" },
        { "{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3), }", 24, 2, "header" },
        /* sizes */
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20, 2, "truncated" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, 2, "after the data" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", 0, 2, "empty" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 24, 4, "2 dimensions" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, 2, "0 dimensions" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1), }", 4, 4, "6 dimensions" },
    };
    unsigned char buf[1024];
    char msg[1024];
    float big[16] = { 0 };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = build(buf, sizeof buf, 1, cases[i].dict, big, cases[i].nbytes);
        write_file(g_path, buf, n);
        float *x = (float *)(uintptr_t)1;
        size_t shape[NPY_MAX_DIMS];
        int rc = read_capture(g_path, cases[i].nd, &x, shape, msg, sizeof msg);
        print_message("%s -> %d: %s", cases[i].dict, rc, msg);
        if (rc == 0) free(x);
        assert_int_equal(rc, -1);
        assert_null(x);
        assert_non_null(strstr(msg, cases[i].want));
        assert_non_null(strstr(msg, g_path)); /* names the file */
        assert_true(one_line(msg));
    }
}

/* ---- the preamble: magic, version, header length */
static void test_bad_preamble(void **state)
{
    (void)state;
    unsigned char buf[512];
    char msg[512];
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    struct { int at; unsigned char val; const char *want; } cases[] = {
        { 0, 'X', "not a .npy file" }, { 6, 4, "version 4.0" }, { 7, 1, "version 1.1" },
        { 9, 0xff, "truncated" },     /* header length past the end of the file */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = build(buf, sizeof buf, 1, dict, g_data, 24);
        buf[cases[i].at] = cases[i].val;
        write_file(g_path, buf, n);
        float *x = NULL;
        size_t shape[NPY_MAX_DIMS];
        int rc = read_capture(g_path, 2, &x, shape, msg, sizeof msg);
        print_message("byte %d = %d -> %d: %s", cases[i].at, cases[i].val, rc, msg);
        assert_int_equal(rc, -1);
        assert_null(x);
        assert_non_null(strstr(msg, cases[i].want));
        assert_true(one_line(msg));
    }
    /* a directory where the file should be */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/d.npy", g_dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    float *x = NULL;
    size_t shape[NPY_MAX_DIMS];
    assert_int_equal(read_capture(dir, 2, &x, shape, msg, sizeof msg), -1);
    print_message("a directory -> %s", msg);
    assert_non_null(strstr(msg, "not a regular file"));
    rmdir(dir);
    /* a missing file */
    snprintf(dir, sizeof dir, "%s/missing.npy", g_dir);
    assert_int_equal(read_capture(dir, 2, &x, shape, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, "cannot open"));
}

/* A successful read must describe the file exactly: the header ends where the
 * (possibly mutated) length field says, the data fill the rest of the file,
 * and the buffer holds those bytes. */
static void check_success(const unsigned char *buf, size_t n, int nd, const float *x, const size_t *shape)
{
    size_t count = 1;
    for (int i = 0; i < nd; i++) count *= shape[i];
    size_t end = buf[6] == 1 ? 10 + ((size_t)buf[8] | (size_t)buf[9] << 8)
                             : 12 + ((size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24);
    assert_true(count > 0);
    assert_int_equal(end + count * sizeof(float), n);
    assert_memory_equal(x, buf + end, count * sizeof(float));
}

/* ---- a valid file cut at every length: always a clean error */
static void test_truncations(void **state)
{
    (void)state;
    fill_data();
    unsigned char buf[512];
    char msg[512];
    for (int major = 1; major <= 2; major++) {
        size_t full = build(buf, sizeof buf, major, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }",
                            g_data, 15 * sizeof(float));
        for (size_t len = 0; len < full; len++) {
            write_file(g_path, buf, len);
            float *x = NULL;
            size_t shape[NPY_MAX_DIMS];
            int rc = read_capture(g_path, 2, &x, shape, msg, sizeof msg);
            if (rc != -1 || x || !one_line(msg))
                print_message("version %d.0 cut at %zu of %zu -> %d: %s", major, len, full, rc, msg);
            if (rc == 0) free(x);
            assert_int_equal(rc, -1);
            assert_null(x);
            assert_true(one_line(msg));
        }
        write_file(g_path, buf, full);
        float *x = NULL;
        size_t shape[NPY_MAX_DIMS];
        assert_int_equal(read_capture(g_path, 2, &x, shape, msg, sizeof msg), 0);
        check_success(buf, full, 2, x, shape);
        free(x);
    }
}

/* ---- random byte flips, mostly in the header: either a clean error or a
 * read that matches the file exactly. */
static void test_mutations(void **state)
{
    (void)state;
    fill_data();
    const uint64_t seed = test_seed();
    rng_t r = { seed ^ 0x6e7079ull };
    const int iters = getenv("STF_NPY_FUZZ_ITERS") ? atoi(getenv("STF_NPY_FUZZ_ITERS")) : 4000;
    print_message("%d mutated files from seed %llu\n", iters, (unsigned long long)seed);
    static const char *dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }",
        "{'descr':'<f4','fortran_order':False,'shape':(3,5)}",
        "{'shape': (15,), 'descr': '<f4', 'fortran_order': False}",
    };
    static const unsigned char interesting[] = { 0, ' ', '\n', '\'', '"', ',', ':', '(', ')', '{', '}', '-', '0',
                                                 '1', '9', 'L', 0x7f, 0x80, 0xff };
    int accepted = 0;
    for (int it = 0; it < iters; it++) {
        unsigned char orig[512], buf[512];
        const int major = 1 + (int)rng_below(&r, 2);
        const char *dict = dicts[rng_below(&r, 3)];
        const int nd = strstr(dict, "(15,)") ? 1 : 2;
        size_t n = build(orig, sizeof orig, major, dict, g_data, 15 * sizeof(float));
        memcpy(buf, orig, n);
        const size_t hdr_end = n - 15 * sizeof(float);
        const int flips = 1 + (int)rng_below(&r, 3);
        for (int k = 0; k < flips; k++) {
            size_t at = rng_below(&r, 10) ? rng_below(&r, hdr_end) : rng_below(&r, n);
            uint64_t how = rng_below(&r, 3);
            if (how == 0) buf[at] ^= (unsigned char)(1u << rng_below(&r, 8));
            else if (how == 1) buf[at] = interesting[rng_below(&r, sizeof interesting)];
            else buf[at] = (unsigned char)rng_below(&r, 256);
        }
        if (rng_below(&r, 8) == 0) n = rng_below(&r, n + 1); /* and sometimes cut */
        write_file(g_path, buf, n);
        float *x = NULL;
        size_t shape[NPY_MAX_DIMS];
        char msg[1024];
        int rc = read_capture(g_path, nd, &x, shape, msg, sizeof msg);
        if (rc == 0) {
            check_success(buf, n, nd, x, shape);
            free(x);
            accepted++;
        } else {
            if (rc != -1 || x || !one_line(msg)) print_message("iteration %d -> %d: %s", it, rc, msg);
            assert_int_equal(rc, -1);
            assert_null(x);
            assert_true(one_line(msg));
        }
    }
    print_message("%d of %d mutated files still valid (flips in the data or padding)\n", accepted, iters);
}

/* ---- random text as the header, behind a valid preamble */
static void test_random_headers(void **state)
{
    (void)state;
    rng_t r = { test_seed() ^ 0x686472ull };
    static const char alphabet[] = "{}()[]'\",: 0123456789-+.descrfortan_ohpTrueFals<>f4\n\t";
    for (int it = 0; it < 2000; it++) {
        char dict[200];
        size_t len = rng_below(&r, sizeof dict - 1);
        for (size_t i = 0; i < len; i++) dict[i] = alphabet[rng_below(&r, sizeof alphabet - 1)];
        dict[len] = 0;
        unsigned char buf[512];
        size_t n = build(buf, sizeof buf, 1, dict, g_data, rng_below(&r, 64));
        write_file(g_path, buf, n);
        float *x = NULL;
        size_t shape[NPY_MAX_DIMS];
        char msg[1024];
        int rc = read_capture(g_path, 2, &x, shape, msg, sizeof msg);
        if (rc == 0) {
            check_success(buf, n, 2, x, shape);
            free(x);
        } else {
            assert_int_equal(rc, -1);
            assert_null(x);
            assert_true(one_line(msg));
        }
    }
}

/* ---- the writer's files read back, at every rank */
static void test_write_read(void **state)
{
    (void)state;
    fill_data();
    size_t shapes[4][4] = { { 60 }, { 6, 10 }, { 2, 3, 10 }, { 1, 2, 3, 10 } };
    for (int nd = 1; nd <= 4; nd++) {
        assert_int_equal(npy_write_f32(g_path, g_data, shapes[nd - 1], nd), 0);
        float *x = NULL;
        size_t shape[NPY_MAX_DIMS];
        char msg[512];
        assert_int_equal(read_capture(g_path, nd, &x, shape, msg, sizeof msg), 0);
        assert_memory_equal(shape, shapes[nd - 1], (size_t)nd * sizeof(size_t));
        assert_memory_equal(x, g_data, 60 * sizeof(float));
        free(x);
        struct stat st;
        assert_int_equal(stat(g_path, &st), 0);
        assert_int_equal(st.st_size % 64, (60 * sizeof(float)) % 64); /* header padded to 64 bytes */
    }
}

int main(void)
{
    test_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_headers), cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_preamble),  cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_mutations),     cmocka_unit_test(test_random_headers),
        cmocka_unit_test(test_write_read),
    };
    if (getenv("STF_GPU_ONLY")) cmocka_set_test_filter("*_gpu");
    return cmocka_run_group_tests_name("npy", tests, setup, teardown);
}
