/* GPU helpers with a C interface, so host code stays C11 and compiles (with
 * stubs, common/device/gpu_stub.c) where nvcc is missing. Everything that can fail
 * is checked; a CUDA error prints file, line and the call, and exits 1. */
#ifndef STF_GPU_H
#define STF_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#ifndef STF_NVCC_EMPTY
#define STF_NVCC_EMPTY 0
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this build has CUDA and a device answers; otherwise 0, and
 * gpu_unavailable_reason() says why ("built without nvcc", "no CUDA driver"). */
int gpu_available(void);
const char *gpu_unavailable_reason(void);

typedef struct {
    char name[256];
    int cc_major, cc_minor;
    int sm_count;
    size_t l2_bytes;
    size_t total_mem;
    size_t smem_optin; /* shared memory a block may opt in to */
    int driver_version, runtime_version; /* e.g. 13000 */
} gpu_info_t;

void gpu_info(gpu_info_t *info);

/* Device memory. gpu_try_malloc returns NULL (no exit) when the device has
 * too little free memory, so callers can say "does not fit" instead of dying. */
void *gpu_try_malloc(size_t bytes);
void *gpu_malloc(size_t bytes, const char *what);
void gpu_free(void *p);
void gpu_mem_info(size_t *free_bytes, size_t *total_bytes);
void gpu_h2d(void *dst, const void *src, size_t bytes);
void gpu_d2h(void *dst, const void *src, size_t bytes);
/* Copies `rows` rows of `row_bytes` from a pitched device matrix. */
void gpu_d2h_rows(void *dst, const void *src, size_t first_row, size_t rows, size_t row_bytes);
void gpu_sync(void);

/* Fills n elements with rng_logit(seed, stream, i, scale) stored in dt:
 * the same values the CPU generator produces. */
void gpu_fill_logits(void *d, dtype_t dt, size_t n, uint64_t seed, uint32_t stream, float scale);
/* Sets every byte to 0xff: NaN in fp32, fp16 and bf16. A checked run starts
 * from this, so an element the kernel failed to write shows up as NaN. */
void gpu_poison(void *d, size_t bytes);
/* Number of inf or NaN elements. */
size_t gpu_count_nonfinite(const void *d, dtype_t dt, size_t n);
/* Writes a buffer twice the L2 size, so the next kernel starts cold. */
void gpu_flush_l2(void);

/* Median time in ms of fn(arg) over `iters` runs, after `warmup` runs, with
 * CUDA events around each run; the L2 is flushed before each run when
 * flush_l2 is set. All runs of fn are asynchronous launches on stream 0. */
double gpu_time_median_ms(void (*fn)(void *), void *arg, int warmup, int iters, int flush_l2);

/* Device-to-device copy bandwidth in GB/s (bytes read + bytes written), the
 * ceiling every GPU table reports against: cudaMemcpy of `bytes`, median of
 * `iters`. Measured once per process and cached. */
double gpu_copy_gbps(void);

#ifdef __cplusplus
}
#endif

#endif
