/* Stage 02, safe softmax with the row on chip. What changes from safe_cpu.c:
 * the row is loaded into on-chip memory once, and the three sweeps (max, sum,
 * normalise) run over that copy. Device memory sees 1 load + 1 store per
 * element, the floor, without any of stage 03's online rescaling: when the
 * row fits on chip, the max sweep costs no memory traffic, and the online
 * trick has nothing left to save. (Stage 03's merge-onchip shows the other
 * side: same 2 accesses, one block-wide reduction instead of two.)
 *
 * The on-chip budget is the GPU kernel's (ONCHIP_MAX_BYTES of registers per
 * row), enforced by the ledger's simulated on-chip memory: a row that would
 * not fit in registers is refused here as on the GPU (onchip_applies).
 *
 * Run: build/bin/02_safe_softmax --device cpu --cols 8192 (the "safe-onchip" row) */
#include <math.h>
#include <stdio.h>

#include "blocked_sum.h"
#include "safe.h"

size_t onchip_capacity(size_t cols, dtype_t dt)
{
    const size_t vec = 16 / dtype_size(dt);
    return cols % vec == 0 ? ONCHIP_MAX_BYTES / dtype_size(dt) : 32768;
}

int onchip_applies(size_t cols, dtype_t dt, char *why, size_t n)
{
    const size_t cap = onchip_capacity(cols, dt);
    if (cols > cap) {
        snprintf(why, n, "a row of %zu %s elements (%zu KiB) exceeds the %zu elements 1024 threads hold in registers",
                 cols, dtype_name(dt), cols * dtype_size(dt) / 1024, cap);
        return 0;
    }
    snprintf(why, n, "a row of %zu %s elements (%.1f KiB) fits in registers (at most %zu): 1 load + 1 store", cols,
             dtype_name(dt), cols * dtype_size(dt) / 1024.0, cap);
    return 1;
}

int softmax_safe_onchip_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    char why[256];
    const dtype_t dt = x->dt;
    if (!onchip_applies(cols, dt, why, sizeof why)) {
        fprintf(stderr, "safe-onchip: %s\n", why);
        return -1;
    }
    ledger_t *lg = x->lg;
    const uint64_t saved = lg->sram_budget;
    lg->sram_budget = ONCHIP_MAX_BYTES;
    void *row = sram_alloc(lg, cols * dtype_size(dt)); /* the row, in its storage type, on chip */
    lg->sram_budget = saved;
    if (!row) return -1;
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        float m = -INFINITY;
        for (size_t j = 0; j < cols; j++) { /* the only load of x; sweep 1 (max) rides along */
            const float xj = hbm_ld(x, base + j);
            dtype_set(row, dt, j, xj);
            m = fmaxf(m, xj);
        }
        fsum_t acc; /* sweep 2, on chip */
        fsum_init(&acc);
        for (size_t j = 0; j < cols; j++) fsum_add(&acc, expf(dtype_get(row, dt, j) - m));
        const float d = fsum_total(&acc);
        for (size_t j = 0; j < cols; j++) hbm_st(y, base + j, expf(dtype_get(row, dt, j) - m) / d); /* sweep 3 */
    }
    sram_free(lg, row, cols * dtype_size(dt));
    return 0;
}

static int safe_onchip_impl_applies(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t n)
{
    (void)rows;
    (void)gpu;
    return onchip_applies(cols, dt, why, n);
}

const softmax_impl_t IMPL_SAFE_ONCHIP = {
    .name = "safe-onchip", .stage = "02", .passes = 1, .loads = 1, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_safe_onchip_cpu, .gpu = GPU_FN(softmax_safe_onchip_gpu), .applies = safe_onchip_impl_applies,
};
