/* The traffic ledger: every CPU implementation reads and writes its "HBM"
 * arrays only through hbm_ld/hbm_st, which count the bytes. The CPU figures in
 * every table are therefore counted, not assumed.
 *
 * For tiled algorithms (stage 05) the ledger also tracks a simulated on-chip
 * memory: sram_alloc fails once the live on-chip bytes would exceed the budget,
 * so a CPU tiling that would not fit in a GPU's shared memory cannot pretend
 * to. */
#ifndef STF_LEDGER_H
#define STF_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t sram_budget; /* 0: unlimited */
    uint64_t sram_live;
    uint64_t sram_peak;
} ledger_t;

/* An array in simulated device memory. The per-array counters let a test ask
 * "how often was Q read?" as well as "how many bytes in all?". */
typedef struct {
    void *data;
    size_t n;
    dtype_t dt;
    ledger_t *lg;
    const char *name;
    uint64_t bytes_read;
    uint64_t bytes_written;
} hbm_t;

uint64_t ledger_total(const ledger_t *lg);

/* Wraps existing storage (n elements of dt) as an HBM array. */
hbm_t hbm_wrap(ledger_t *lg, const char *name, void *data, size_t n, dtype_t dt);
/* Allocates zero-initialised storage; returns data == NULL when out of memory. */
hbm_t hbm_alloc(ledger_t *lg, const char *name, size_t n, dtype_t dt);
void hbm_free(hbm_t *a);

static inline float hbm_ld(hbm_t *a, size_t i)
{
    size_t b = dtype_size(a->dt);
    a->bytes_read += b;
    a->lg->bytes_read += b;
    return dtype_get(a->data, a->dt, i);
}

/* Stores v rounded to the array's type (round to nearest even). */
static inline void hbm_st(hbm_t *a, size_t i, float v)
{
    size_t b = dtype_size(a->dt);
    a->bytes_written += b;
    a->lg->bytes_written += b;
    dtype_set(a->data, a->dt, i, v);
}

/* int32 arrays (stage 07's block tables, lengths, free lists): wrapped with
 * DT_F32 (4 bytes per element) and read or written as integers. */
static inline int32_t hbm_ld_i32(hbm_t *a, size_t i)
{
    a->bytes_read += 4;
    a->lg->bytes_read += 4;
    return ((const int32_t *)a->data)[i];
}
static inline void hbm_st_i32(hbm_t *a, size_t i, int32_t v)
{
    a->bytes_written += 4;
    a->lg->bytes_written += 4;
    ((int32_t *)a->data)[i] = v;
}

/* Simulated on-chip memory. Returns NULL (and prints why) when the request
 * would exceed the budget or the host is out of memory. */
void *sram_alloc(ledger_t *lg, size_t bytes);
void sram_free(ledger_t *lg, void *p, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
