/* Stage 02: safe softmax, y_i = e^{x_i - m} / sum_j e^{x_j - m}, m = max_j x_j;
 * and the same three sweeps with the row held on chip (registers), so that
 * device memory sees one load and one store per element. */
#ifndef STF_STAGE02_H
#define STF_STAGE02_H

#include <stddef.h>

#include "dtype.h"
#include "ledger.h"
#include "softmax_bench.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A row on chip: the GPU kernels (onchip.cuh) hold it in registers, at most
 * 8 vectors of 16 bytes per thread, 1024 threads per row, i.e. 128 KiB (half
 * the register file of an H100/H200 SM). Rows whose length is not a multiple
 * of the 16-byte vector fall back to single elements, 32 per thread: 32768
 * elements. The CPU versions enforce the same budget through the ledger's
 * simulated on-chip memory. Stage 03's merge-onchip uses the same rule. */
#define ONCHIP_MAX_BYTES (128u * 1024u)
size_t onchip_capacity(size_t cols, dtype_t dt);
int onchip_applies(size_t cols, dtype_t dt, char *why, size_t why_len);

int softmax_safe_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
int softmax_safe_onchip_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
void softmax_safe_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
void softmax_safe_onchip_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);

extern const softmax_impl_t IMPL_SAFE;        /* 3 loads + 1 store per element */
extern const softmax_impl_t IMPL_SAFE_ONCHIP; /* 1 load + 1 store: the row stays on chip */

#ifdef __cplusplus
}
#endif

#endif
