/* build/bin/02_safe_softmax: safe softmax against stage 01's naive softmax on
 * the same input. Answers Q2: with --dtype fp16 --scale 12 (or fp32 with
 * --scale 100) the naive row shows inf/NaN and the safe row does not. */
#include "../01_naive_softmax/naive.h"
#include "safe.h"

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_NAIVE, &IMPL_SAFE };
    const softmax_stage_t st = {
        "02_safe_softmax", "stage 02, safe softmax (subtract the row max), against stage 01's naive softmax",
        impls, 2, 1,
    };
    return softmax_stage_main(&st, argc, argv);
}
