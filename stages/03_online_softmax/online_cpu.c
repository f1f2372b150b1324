/* Stage 03, online softmax. What changes from stage 02: the max sweep and the
 * sum sweep become one. Keep a running maximum m and a running sum d of
 * e^{x - m}; when a new element raises the maximum from m to m', every term
 * already in d was taken against the old m, so d is rescaled by e^{m - m'}:
 *     m' = max(m, x_j),   d' = d e^{m - m'} + e^{x_j - m'}
 * After the last element, d = sum_j e^{x_j - m_N} exactly (proof in
 * notes/03_online_softmax.md). The output still needs the final d, so a
 * second sweep remains:
 *     pass 1: (m, d) online        pass 2: y_j = e^{x_j - m} / d
 * Accesses per element: 2 loads + 1 store = 3 (Milakov & Gimelshein 2018).
 *
 * The on-chip variant: when the row fits in on-chip memory (simulated here by
 * the ledger's on-chip budget, the same 128 KiB the GPU kernel holds in
 * registers), load it once, run both sweeps on the copy, store once:
 * 1 load + 1 store = 2 accesses, the floor.
 *
 * -inf: until the first finite element, m = -inf and e^{x - m} would be
 * e^{-inf + inf} = NaN; exponents are then taken against 0 instead (ms), so
 * a -inf prefix adds exactly 0. A row of all -inf ends with d = 0 and gives
 * 0/0 = NaN, like stages 01 and 02; a NaN poisons d and the whole row.
 *
 * Run: build/bin/03_online_softmax --device cpu [--cols 65536] */
#include <math.h>
#include <stdio.h>

#include "online.h"

/* The exponent base: m, or 0 while no finite element has been seen. */
static float base_of(float m) { return m == -INFINITY ? 0.0f : m; }

int softmax_online_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        float m = -INFINITY, d = 0.0f;
        /* [snippet:online-passes] */
        for (size_t j = 0; j < cols; j++) { /* pass 1: max and sum together */
            float xj = hbm_ld(x, base + j);
            float mn = fmaxf(m, xj), ms = base_of(mn);
            d = d * expf(m - ms) + expf(xj - ms);
            m = mn;
        }
        const float ms = base_of(m);
        for (size_t j = 0; j < cols; j++) /* pass 2: normalise */
            hbm_st(y, base + j, expf(hbm_ld(x, base + j) - ms) / d);
        /* [/snippet] */
    }
    return 0;
}

size_t online_onchip_capacity(size_t cols, dtype_t dt)
{
    const size_t vec = 16 / dtype_size(dt);
    return cols % vec == 0 ? ONCHIP_MAX_BYTES / dtype_size(dt) : 32768;
}

int online_onchip_applies(size_t cols, dtype_t dt, char *why, size_t n)
{
    const size_t cap = online_onchip_capacity(cols, dt);
    if (cols > cap) {
        snprintf(why, n, "a row of %zu %s elements (%zu KiB) exceeds the %zu elements 1024 threads hold in registers; "
                 "the two-pass online softmax is what runs", cols, dtype_name(dt), cols * dtype_size(dt) / 1024, cap);
        return 0;
    }
    snprintf(why, n, "a row of %zu %s elements (%.1f KiB) fits in registers (at most %zu): 1 load + 1 store",
             cols, dtype_name(dt), cols * dtype_size(dt) / 1024.0, cap);
    return 1;
}

int softmax_online_onchip_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    char why[256];
    const dtype_t dt = x->dt;
    if (!online_onchip_applies(cols, dt, why, sizeof why)) {
        fprintf(stderr, "online-onchip: %s\n", why);
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
        float m = -INFINITY, d = 0.0f;
        for (size_t j = 0; j < cols; j++) { /* the only load of x */
            float xj = hbm_ld(x, base + j);
            dtype_set(row, dt, j, xj);
            float mn = fmaxf(m, xj), ms = base_of(mn);
            d = d * expf(m - ms) + expf(xj - ms);
            m = mn;
        }
        const float ms = base_of(m);
        for (size_t j = 0; j < cols; j++) hbm_st(y, base + j, expf(dtype_get(row, dt, j) - ms) / d);
    }
    sram_free(lg, row, cols * dtype_size(dt));
    return 0;
}

static int onchip_impl_applies(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t n)
{
    (void)rows;
    (void)gpu;
    return online_onchip_applies(cols, dt, why, n);
}

const softmax_impl_t IMPL_ONLINE = {
    .name = "online", .stage = "03", .passes = 2, .loads = 2, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_online_cpu, .gpu = GPU_FN(softmax_online_gpu), .applies = NULL,
};

const softmax_impl_t IMPL_ONLINE_ONCHIP = {
    .name = "online-onchip", .stage = "03", .passes = 1, .loads = 1, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_online_onchip_cpu, .gpu = GPU_FN(softmax_online_onchip_gpu), .applies = onchip_impl_applies,
};
