/* Stage 01, naive softmax, as the formula reads:
 *     y_i = e^{x_i} / d,   d = sum_j e^{x_j}
 * Compared with the floor (a copy), it needs the denominator before it can
 * write anything, so it sweeps the row twice.
 *
 * Accesses per element: pass 1 loads x (for d), pass 2 loads x again and
 * stores y: 2 loads + 1 store = 3 (Milakov & Gimelshein 2018, Algorithm 1).
 *
 * Types: e^{x} is a value of the storage type, as it would be if the formula
 * were evaluated tensor by tensor (torch.exp on an fp16 tensor returns fp16):
 * in fp16 it overflows to inf once x > ln(65504) = 11.09; in fp32 (and bf16,
 * which has fp32's exponent range) once x > 88.72. The sum is accumulated in
 * fp32. Overflow then gives inf/inf = NaN for that element and 0 for the
 * others: stage 02 exists to fix exactly this.
 * Special rows: all -inf gives 0/0 = NaN everywhere; a NaN gives a NaN row.
 *
 * The sum is accumulated in blocks joined pairwise (common/numerics/blocked_sum.h),
 * the order the GPU's threads and shuffle trees give it.
 *
 * Run: build/bin/01_naive_softmax --device cpu [--dtype fp16 --scale 12] */
#include <math.h>

#include "blocked_sum.h"
#include "naive.h"

int softmax_naive_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    const dtype_t dt = x->dt;
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        fsum_t acc;
        fsum_init(&acc);
        /* [snippet:naive-passes] */
        for (size_t j = 0; j < cols; j++) /* pass 1: the denominator */
            fsum_add(&acc, dtype_round(dt, expf(hbm_ld(x, base + j))));
        const float d = fsum_total(&acc);
        for (size_t j = 0; j < cols; j++) /* pass 2: every output */
            hbm_st(y, base + j, dtype_round(dt, expf(hbm_ld(x, base + j))) / d);
        /* [/snippet] */
    }
    return 0;
}

const softmax_impl_t IMPL_NAIVE = {
    .name = "naive", .stage = "01", .passes = 2, .loads = 2, .stores = 1, .round_k = 3, .is_copy = 0, .overflow_lesson = 1,
    .cpu = softmax_naive_cpu, .gpu = GPU_FN(softmax_naive_gpu), .applies = NULL,
};
