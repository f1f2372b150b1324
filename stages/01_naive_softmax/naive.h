/* Stage 01: softmax by its formula, y_i = e^{x_i} / sum_j e^{x_j}, on each row
 * of a rows x cols matrix; and the floor it is measured against, a copy.
 *
 * Every implementation has a CPU version (plain C through the traffic ledger)
 * and a GPU launcher (asynchronous, stream 0, C linkage). */
#ifndef STF_STAGE01_H
#define STF_STAGE01_H

#include <stddef.h>

#include "dtype.h"
#include "ledger.h"
#include "softmax_bench.h"

#ifdef __cplusplus
extern "C" {
#endif

int copy_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
int softmax_naive_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);

void copy_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
void softmax_naive_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);

extern const softmax_impl_t IMPL_COPY;  /* 1 load + 1 store per element: the floor */
extern const softmax_impl_t IMPL_NAIVE; /* 2 loads + 1 store per element */

#ifdef __cplusplus
}
#endif

#endif
