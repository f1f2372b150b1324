#include "ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t ledger_total(const ledger_t *lg) { return lg->bytes_read + lg->bytes_written; }

hbm_t hbm_wrap(ledger_t *lg, const char *name, void *data, size_t n, dtype_t dt)
{
    hbm_t a = { data, n, dt, lg, name, 0, 0 };
    return a;
}

hbm_t hbm_alloc(ledger_t *lg, const char *name, size_t n, dtype_t dt)
{
    void *p = calloc(n ? n : 1, dtype_size(dt));
    return hbm_wrap(lg, name, p, n, dt);
}

void hbm_free(hbm_t *a)
{
    free(a->data);
    a->data = NULL;
    a->n = 0;
}

void *sram_alloc(ledger_t *lg, size_t bytes)
{
    if (lg->sram_budget && lg->sram_live + bytes > lg->sram_budget) {
        fprintf(stderr,
                "error: on-chip request of %zu bytes exceeds the simulated budget "
                "(%llu of %llu bytes already live)\n",
                bytes, (unsigned long long)lg->sram_live,
                (unsigned long long)lg->sram_budget);
        return NULL;
    }
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "error: host out of memory for %zu on-chip bytes\n", bytes);
        return NULL;
    }
    lg->sram_live += bytes;
    if (lg->sram_live > lg->sram_peak) lg->sram_peak = lg->sram_live;
    return p;
}

void sram_free(ledger_t *lg, void *p, size_t bytes)
{
    if (!p) return;
    free(p);
    lg->sram_live -= bytes;
}
