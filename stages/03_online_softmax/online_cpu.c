/* Stage 03, online softmax. What changes from stage 02: the max sweep and the
 * sum sweep become one. Keep a running maximum m and a running sum d of
 * e^{x - m}; when a new element raises the maximum from m to m', every term
 * already in d was taken against the old m, so d is rescaled by e^{m - m'}:
 *     m' = max(m, x_j),   d' = d e^{m - m'} + e^{x_j - m'}     (md_push, md.h)
 * After the last element, d = sum_j e^{x_j - m_N} exactly (proof in
 * notes/03_online_softmax.md). The output still needs the final d, so a
 * second sweep remains:
 *     pass 1: (m, d) online        pass 2: y_j = e^{x_j - m} / d
 * Accesses per element: 2 loads + 1 store = 3 (Milakov & Gimelshein 2018).
 *
 * Summation order: the recurrence runs over blocks of 256 elements, and the
 * blocks' states are merged pairwise (md_acc_t, md.h), which is how the GPU
 * kernel's threads and trees order it. One sequential recurrence over a row
 * of 262147 wide logits (4 N(0,1)) drifted to 3.9e-4, past the 2.5e-4
 * tolerance; blocked, it stays within rounding of the safe softmax.
 *
 * merge-onchip: when the row fits in on-chip memory (simulated here by the
 * ledger's on-chip budget, the 128 KiB the GPU kernel holds in registers,
 * stage 02's onchip_capacity), load it once and compute from the copy:
 * 1 load + 1 store = 2 accesses, the floor. This is not the online
 * recurrence: as on the GPU, each "thread" (a segment of 32 elements, what
 * one GPU thread holds; md_of_onchip in md.h) takes the maximum of its elements, then their sum
 * against it, two short sweeps over data already on chip, and the threads'
 * states are combined by the merge. With the row on chip the max sweep costs
 * no traffic, so rescaling on the fly buys nothing: stage 02's safe-onchip
 * reaches the same 2 accesses without it.
 *
 * -inf: exponents are taken against exp_base(m) (0 while m = -inf), so a
 * -inf prefix adds exactly 0. A row of all -inf ends with d = 0 and gives
 * 0/0 = NaN, like stages 01 and 02; a NaN poisons d and the whole row.
 *
 * Run: build/bin/03_online_softmax --device cpu [--cols 65536] */
#include <math.h>
#include <stdio.h>

#include "online.h"

int softmax_online_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        md_acc_t acc;
        md_acc_init(&acc);
        /* [snippet:online-passes] */
        for (size_t j = 0; j < cols; j++) md_acc_push(&acc, hbm_ld(x, base + j)); /* pass 1: max and sum together */
        const md_t s = md_acc_result(&acc);
        const float ms = exp_base(s.m);
        for (size_t j = 0; j < cols; j++) /* pass 2: normalise */
            hbm_st(y, base + j, expf(hbm_ld(x, base + j) - ms) / s.d);
        /* [/snippet] */
    }
    return 0;
}

int softmax_merge_onchip_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    char why[256];
    const dtype_t dt = x->dt;
    if (!onchip_applies(cols, dt, why, sizeof why)) {
        fprintf(stderr, "merge-onchip: %s\n", why);
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
        for (size_t j = 0; j < cols; j++) dtype_set(row, dt, j, hbm_ld(x, base + j)); /* the only load of x */
        const md_t s = md_of_onchip(row, dt, 0, cols); /* per "thread": max, then sum; then the merge */
        const float ms = exp_base(s.m);
        for (size_t j = 0; j < cols; j++) hbm_st(y, base + j, expf(dtype_get(row, dt, j) - ms) / s.d);
    }
    sram_free(lg, row, cols * dtype_size(dt));
    return 0;
}

static int merge_onchip_impl_applies(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t n)
{
    (void)rows;
    (void)gpu;
    return onchip_applies(cols, dt, why, n);
}

const softmax_impl_t IMPL_ONLINE = {
    .name = "online", .stage = "03", .passes = 2, .loads = 2, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_online_cpu, .gpu = GPU_FN(softmax_online_gpu), .applies = NULL,
};

const softmax_impl_t IMPL_MERGE_ONCHIP = {
    .name = "merge-onchip", .stage = "03", .passes = 1, .loads = 1, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_merge_onchip_cpu, .gpu = GPU_FN(softmax_merge_onchip_gpu), .applies = merge_onchip_impl_applies,
};
