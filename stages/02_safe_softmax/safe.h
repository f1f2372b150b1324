/* Stage 02: safe softmax, y_i = e^{x_i - m} / sum_j e^{x_j - m}, m = max_j x_j. */
#ifndef STF_STAGE02_H
#define STF_STAGE02_H

#include <stddef.h>

#include "dtype.h"
#include "ledger.h"
#include "softmax_bench.h"

#ifdef __cplusplus
extern "C" {
#endif

int softmax_safe_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
void softmax_safe_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);

extern const softmax_impl_t IMPL_SAFE; /* 3 loads + 1 store per element */

#ifdef __cplusplus
}
#endif

#endif
