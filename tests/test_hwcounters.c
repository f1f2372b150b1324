/* Tests for common/hwcounters: does the counter reading agree with traffic
 * whose size is known in advance? Without that check, a measured byte count
 * is just another number to believe.
 *
 * Everywhere: without a GPU the module must say "unavailable" and why.
 * On a GPU: a 512 MiB copy must read X and write X; three sweeps over 1 GiB
 * (far beyond the 50-60 MB L2) must read 3X; a cudaMemcpy must count like a
 * kernel copy; measurements must repeat without leaking state. Where the
 * counters are not permitted (no admin rights, a profiler already attached),
 * the GPU tests print the reason and skip: that is a property of the machine,
 * not a defect of the code.
 *
 * Each workload runs once before it is measured. The L2 is write-back: lines
 * written inside the range that are still dirty at hwc_end are not counted,
 * lines dirtied before hwc_begin and evicted inside it are. After one run of
 * the same workload the two amounts are the same, so the measured writes are
 * the workload's own. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "gpu.h"
#include "hwcounters.h"

#if HAVE_CUDA
#include <cuda_runtime_api.h>

/* tests/hwc_kernels.cu */
void hwc_test_copy(void *dst, const void *src, size_t bytes);
void hwc_test_read3(const float *src, size_t n, float *sink);
#define READ3_SINK_FLOATS 1024 /* HWC_READ3_MAX_BLOCKS there */
#endif

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

/* Returns 1 when the GPU tests can run; otherwise says why (the caller
 * skips). */
static int counters_ready(void)
{
    if (!gpu_available()) {
        print_message("no GPU: %s\n", gpu_unavailable_reason());
        return 0;
    }
    if (!hwc_available()) {
        print_message("hardware counters unavailable on this GPU, skipping: %s\n", hwc_reason());
        return 0;
    }
    /* A test that failed between hwc_begin and hwc_end left its range
     * open; close it so the failure does not cascade into this test. */
    (void)hwc_end(NULL, NULL);
    return 1;
}

/* (a) Runs everywhere. Without a GPU (or in a build without CUDA) the answer
 * must be 0 with a reason; with one, either answer is allowed, but 0 must
 * come with a reason, and the answer must not change between calls. */
static void test_unavailable_has_reason(void **state)
{
    int a = hwc_available();
    int b = hwc_available();
    assert_int_equal(a, b);
    print_message("hwc_available() = %d%s%s\n", a, a ? "" : ": ", a ? "" : hwc_reason());
    if (!gpu_available()) assert_int_equal(a, 0);
    if (!a) {
        assert_non_null(hwc_reason());
        assert_true(strlen(hwc_reason()) > 0);
        /* And the measuring calls fail cleanly instead of crashing. */
        double rd = 1, wr = 1;
        assert_int_equal(hwc_begin(), -1);
        assert_int_equal(hwc_end(&rd, &wr), -1);
        assert_true(rd == 0 && wr == 0);
        assert_true(strlen(hwc_reason()) > 0);
    }
#if !HAVE_CUDA
    assert_non_null(strstr(hwc_reason(), "built without CUDA"));
#endif
}

#if HAVE_CUDA
static void assert_within(double got, double want, double rel, const char *what)
{
    double err = fabs(got - want) / want;
    print_message("  %-26s %14.0f bytes, expected %14.0f (%+.2f%%, tolerance %.1f%%)\n", what, got, want,
                  100.0 * (got - want) / want, 100.0 * rel);
    if (!(err <= rel)) fail_msg("%s: measured %.0f bytes, expected %.0f within %.1f%%", what, got, want, 100.0 * rel);
}

static void measure_copy(void *dst, const void *src, size_t bytes, int use_memcpy, double *rd, double *wr)
{
    if (hwc_begin() != 0) fail_msg("hwc_begin failed: %s", hwc_reason());
    if (use_memcpy)
        assert_int_equal(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), cudaSuccess);
    else
        hwc_test_copy(dst, src, bytes);
    int rc = hwc_end(rd, wr);
    if (rc != 0) fail_msg("hwc_end failed: %s", hwc_reason());
}

static void check_copy(size_t x, int use_memcpy)
{
    void *src = gpu_malloc(x, "copy source");
    void *dst = gpu_malloc(x, "copy destination");
    gpu_fill_logits(src, DT_F32, x / sizeof(float), 7, 1, 4.0f);
    gpu_fill_logits(dst, DT_F32, x / sizeof(float), 7, 2, 4.0f);
    gpu_sync();

    double rd, wr;
    measure_copy(dst, src, x, use_memcpy, &rd, &wr); /* warm-up: puts the L2 into its steady state */
    measure_copy(dst, src, x, use_memcpy, &rd, &wr);
    print_message("%s of %zu MiB:\n", use_memcpy ? "cudaMemcpy D2D" : "copy kernel", x / MiB);
    /* Reads and writes each: the L2 can hold back at most its own size of
     * dirty lines (about 10% of X), so each is only roughly X; their sum is
     * the tight check. */
    assert_within(rd, (double)x, 0.15, "DRAM read");
    assert_within(wr, (double)x, 0.15, "DRAM write");
    assert_within(rd + wr, 2.0 * (double)x, 0.03, "DRAM read + write");

    gpu_free(dst);
    gpu_free(src);
}
#endif

/* (b), (d) A copy kernel of X = 512 MiB reads X and writes X. */
static void test_copy_kernel_512mib(void **state)
{
    if (!counters_ready()) skip();
#if HAVE_CUDA
    check_copy(512 * MiB, 0);
#endif
}

/* The API promises cudaMemcpy is counted too (a user range covers
 * everything on the device, not only kernels). */
static void test_memcpy_512mib(void **state)
{
    if (!counters_ready()) skip();
#if HAVE_CUDA
    check_copy(512 * MiB, 1);
#endif
}

/* (c), (d) Three full sweeps over 1 GiB read 3 GiB from DRAM: the buffer is
 * about 20 times the L2, so almost nothing survives from one sweep to the
 * next. */
static void test_read_three_times_1gib(void **state)
{
    if (!counters_ready()) skip();
#if HAVE_CUDA
    const size_t x = 1 * GiB, n = x / sizeof(float);
    float *buf = gpu_malloc(x, "read buffer");
    float *sink = gpu_malloc(READ3_SINK_FLOATS * sizeof(float), "read sink");
    gpu_fill_logits(buf, DT_F32, n, 11, 3, 4.0f);
    gpu_sync();

    hwc_test_read3(buf, n, sink); /* warm-up, as for the copies */
    gpu_sync();

    double rd, wr;
    if (hwc_begin() != 0) fail_msg("hwc_begin failed: %s", hwc_reason());
    hwc_test_read3(buf, n, sink);
    if (hwc_end(&rd, &wr) != 0) fail_msg("hwc_end failed: %s", hwc_reason());
    print_message("three sweeps over %zu MiB (writes, not checked: %.0f bytes):\n", x / MiB, wr);
    assert_within(rd, 3.0 * (double)x, 0.03, "DRAM read");

    gpu_free(sink);
    gpu_free(buf);
#endif
}

/* (e) Misuse fails cleanly and leaves nothing behind, and two measurements
 * in a row give the same answer. */
static void test_repeat_and_misuse(void **state)
{
    if (!counters_ready()) skip();
#if HAVE_CUDA
    const size_t x = 512 * MiB;
    void *src = gpu_malloc(x, "copy source");
    void *dst = gpu_malloc(x, "copy destination");
    gpu_fill_logits(src, DT_F32, x / sizeof(float), 5, 1, 4.0f);
    gpu_sync();
    double rd, wr;

    /* end without begin */
    assert_int_equal(hwc_end(&rd, &wr), -1);
    assert_true(strlen(hwc_reason()) > 0);
    print_message("end without begin: %s\n", hwc_reason());

    /* begin twice: the second fails, the first measurement carries on */
    if (hwc_begin() != 0) fail_msg("hwc_begin failed: %s", hwc_reason());
    assert_int_equal(hwc_begin(), -1);
    print_message("begin twice: %s\n", hwc_reason());
    hwc_test_copy(dst, src, 1 * MiB);
    if (hwc_end(&rd, &wr) != 0) fail_msg("hwc_end after a refused second begin: %s", hwc_reason());
    assert_int_equal(hwc_end(&rd, &wr), -1); /* already closed */

    /* Warm-up, then two measurements back to back. */
    double r[2], w[2];
    measure_copy(dst, src, x, 0, &rd, &wr);
    for (int i = 0; i < 2; i++) {
        measure_copy(dst, src, x, 0, &r[i], &w[i]);
        print_message("measurement %d:\n", i + 1);
        assert_within(r[i] + w[i], 2.0 * (double)x, 0.03, "DRAM read + write");
    }
    assert_within(r[1] + w[1], r[0] + w[0], 0.03, "second vs first");

    gpu_free(dst);
    gpu_free(src);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unavailable_has_reason),
        cmocka_unit_test(test_copy_kernel_512mib),
        cmocka_unit_test(test_memcpy_512mib),
        cmocka_unit_test(test_read_three_times_1gib),
        cmocka_unit_test(test_repeat_and_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
