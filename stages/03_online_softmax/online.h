/* Stage 03: online softmax. The maximum and the denominator in one sweep,
 * rescaling the running sum whenever the maximum grows (Milakov & Gimelshein
 * 2018), then the normalising sweep. Built on the (m, d) state and its merge
 * (md.h), which also lets a row be cut across threads:
 *
 *   online         one block per row, 2 sweeps: 2 loads + 1 store
 *   merge-onchip   one block per row held in registers; each thread's (m, d)
 *                  from its registers (max, then sum), one merge across the
 *                  row: 1 load + 1 store */
#ifndef STF_STAGE03_H
#define STF_STAGE03_H

#include <stddef.h>

#include "../02_safe_softmax/safe.h"
#include "dtype.h"
#include "ledger.h"
#include "md.h"
#include "softmax_bench.h"

#ifdef __cplusplus
extern "C" {
#endif

int softmax_online_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
int softmax_merge_onchip_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);

void softmax_online_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
void softmax_merge_onchip_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);

extern const softmax_impl_t IMPL_ONLINE;        /* 2 loads + 1 store */
extern const softmax_impl_t IMPL_MERGE_ONCHIP;  /* 1 load + 1 store */

#ifdef __cplusplus
}
#endif

#endif
