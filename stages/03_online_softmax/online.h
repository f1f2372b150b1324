/* Stage 03: online softmax. The maximum and the denominator in one sweep,
 * rescaling the running sum whenever the maximum grows (Milakov & Gimelshein
 * 2018), then the normalising sweep; and the variant that keeps a whole row
 * on chip when it fits, so the row is read once. */
#ifndef STF_STAGE03_H
#define STF_STAGE03_H

#include <stddef.h>

#include "dtype.h"
#include "ledger.h"
#include "softmax_bench.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The on-chip variant holds a row in registers: at most 8 vectors of 16 bytes
 * per thread, 1024 threads per row, i.e. 128 KiB (half the register file of
 * an H100/H200 SM). Rows whose length is not a multiple of the 16-byte
 * vector fall back to single elements, 32 per thread: 32768 elements. */
#define ONCHIP_MAX_BYTES (128u * 1024u)
size_t online_onchip_capacity(size_t cols, dtype_t dt);
int online_onchip_applies(size_t cols, dtype_t dt, char *why, size_t why_len);

int softmax_online_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
int softmax_online_onchip_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);

void softmax_online_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
void softmax_online_onchip_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);

extern const softmax_impl_t IMPL_ONLINE;        /* 2 loads + 1 store */
extern const softmax_impl_t IMPL_ONLINE_ONCHIP; /* 1 load + 1 store */

#ifdef __cplusplus
}
#endif

#endif
