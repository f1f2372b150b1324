/* Shared by the test programs: the printed seed, and running a softmax
 * implementation on the CPU (through a ledger) or the GPU (poisoned output). */
#ifndef STF_TEST_HARNESS_H
#define STF_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "ledger.h"
#include "softmax_bench.h"

/* The seed for random inputs: STF_TEST_SEED from the environment, else a
 * fixed default. Printed once, so a failure can be replayed. */
uint64_t test_seed(void);

/* Runs `im` on rows x cols elements of hx (storage type dt) into hy.
 * gpu = 0: CPU through a fresh ledger, returned in *lg when lg != NULL.
 * gpu = 1: copies to the device, poisons the output, launches, copies back.
 * Returns the implementation's status (0, or -1 when it refused the shape). */
int test_run_softmax(const softmax_impl_t *im, int gpu, dtype_t dt, size_t rows, size_t cols,
                     const void *hx, void *hy, ledger_t *lg);

/* Checks every row of hy against the fp64 reference with the implementation's
 * tolerance; returns the worst error/tolerance ratio (<= 1 passes). */
double test_check_softmax(const softmax_impl_t *im, dtype_t dt, size_t rows, size_t cols,
                          const void *hx, const void *hy);

#define SKIP_WITHOUT_GPU()                                                   \
    do {                                                                     \
        if (!gpu_available()) {                                              \
            print_message("no GPU (%s): skipped\n", gpu_unavailable_reason()); \
            skip();                                                          \
        }                                                                    \
    } while (0)

#endif
