/* build/bin/02_safe_softmax: safe softmax against stage 01's naive softmax on
 * the same input, and safe softmax with the row held on chip (1 load + 1
 * store). Answers Q2: with --dtype fp16 --scale 12 (or fp32 with --scale 100)
 * the naive row shows inf/NaN and the safe rows do not. */
#include "../01_naive_softmax/naive.h"
#include "safe.h"

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_NAIVE, &IMPL_SAFE, &IMPL_SAFE_ONCHIP };
    /* No options beyond the softmax family's (cli.h). */
    const softmax_stage_t st = {
        .prog = "02_safe_softmax",
        .summary = "stage 02, safe softmax (subtract the row max), and with the row on chip, against stage 01's naive softmax",
        .impls = impls, .nimpls = STF_LEN(impls), .own = 1,
    };
    return softmax_stage_main(&st, argc, argv);
}
