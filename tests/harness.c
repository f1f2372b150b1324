#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "reference.h"

uint64_t test_seed(void)
{
    static uint64_t seed;
    static int done;
    if (!done) {
        const char *s = getenv("STF_TEST_SEED");
        seed = s ? strtoull(s, NULL, 0) : 20261128ull;
        printf("random inputs: seed %llu (set STF_TEST_SEED to change)\n", (unsigned long long)seed);
        done = 1;
    }
    return seed;
}

int test_run_softmax(const softmax_impl_t *im, int gpu, dtype_t dt, size_t rows, size_t cols,
                     const void *hx, void *hy, ledger_t *lg_out)
{
    const size_t bytes = rows * cols * dtype_size(dt);
    if (!gpu) {
        ledger_t lg = { 0 };
        hbm_t x = hbm_wrap(&lg, "x", (void *)hx, rows * cols, dt), y = hbm_wrap(&lg, "y", hy, rows * cols, dt);
        memset(hy, 0xff, bytes);
        int rc = im->cpu(&x, &y, rows, cols);
        if (lg_out) *lg_out = lg;
        return rc;
    }
    if (im->applies) {
        char why[256];
        if (!im->applies(rows, cols, dt, gpu, why, sizeof why)) return -1;
    }
    void *dx = gpu_malloc(bytes, "test input"), *dy = gpu_malloc(bytes, "test output");
    gpu_h2d(dx, hx, bytes);
    gpu_poison(dy, bytes);
    im->gpu(dx, dy, rows, cols, dt);
    gpu_sync();
    gpu_d2h(hy, dy, bytes);
    gpu_free(dx);
    gpu_free(dy);
    return 0;
}

double test_check_softmax(const softmax_impl_t *im, dtype_t dt, size_t rows, size_t cols, const void *hx,
                          const void *hy)
{
    const size_t es = dtype_size(dt);
    double *ref = malloc(cols * sizeof *ref);
    check_t c;
    check_init(&c);
    for (size_t r = 0; r < rows; r++) {
        const void *xr = (const char *)hx + r * cols * es, *yr = (const char *)hy + r * cols * es;
        softmax_ref_row(xr, dt, cols, ref);
        check_row(&c, yr, dt, ref, cols, softmax_tolerance(dt, cols, row_range(xr, dt, cols), im->round_k));
    }
    free(ref);
    return c.worst_ratio;
}
