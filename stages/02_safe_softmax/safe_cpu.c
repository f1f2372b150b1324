/* Stage 02, safe softmax. What changes from stage 01: subtract the row
 * maximum m before exponentiating. Since x_j - m <= 0, every e^{x_j - m} lies
 * in (0, 1] and nothing overflows, whatever the logits; the result is the
 * same function, because e^{-m} cancels between numerator and denominator.
 * The price is one more sweep, to find m first:
 *     pass 1: m = max_j x_j
 *     pass 2: d = sum_j e^{x_j - m}
 *     pass 3: y_j = e^{x_j - m} / d
 * Accesses per element: 3 loads + 1 store = 4 (Milakov & Gimelshein 2018).
 *
 * Special rows: fmaxf ignores NaN, so m is the largest number in the row, but
 * the NaN itself then poisons d and the whole row is NaN. A row of all -inf
 * has m = -inf and e^{-inf - (-inf)} = e^{NaN}: NaN everywhere, as 0/0 should.
 *
 * The sum is accumulated in blocks of 256 terms joined pairwise
 * (common/numerics/blocked_sum.h), as the GPU's threads and shuffle trees do: a
 * sequential fp32 sum over a row of 262147 wide logits drifted past the
 * tolerance.
 *
 * Run: build/bin/02_safe_softmax --device cpu [--dtype fp16 --scale 12] */
#include <math.h>

#include "blocked_sum.h"
#include "safe.h"

int softmax_safe_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        /* [snippet:safe-passes] */
        float m = -INFINITY;
        for (size_t j = 0; j < cols; j++) m = fmaxf(m, hbm_ld(x, base + j));
        fsum_t acc;
        fsum_init(&acc);
        for (size_t j = 0; j < cols; j++) fsum_add(&acc, expf(hbm_ld(x, base + j) - m));
        const float d = fsum_total(&acc);
        for (size_t j = 0; j < cols; j++) hbm_st(y, base + j, expf(hbm_ld(x, base + j) - m) / d);
        /* [/snippet] */
    }
    return 0;
}

const softmax_impl_t IMPL_SAFE = {
    .name = "safe", .stage = "02", .passes = 3, .loads = 3, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_safe_cpu, .gpu = GPU_FN(softmax_safe_gpu), .applies = NULL,
};
