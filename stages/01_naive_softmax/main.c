/* build/bin/01_naive_softmax: naive softmax against the floor (a copy), on
 * the same input. Interview question Q2 starts here: run it with
 * --dtype fp16 --scale 12 to watch e^x overflow. */
#include "naive.h"

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_COPY, &IMPL_NAIVE };
    /* No options beyond the softmax family's (cli.h). */
    const softmax_stage_t st = {
        .prog = "01_naive_softmax",
        .summary = "stage 01, naive softmax y = e^x / sum e^x, against a copy (the floor)",
        .impls = impls, .nimpls = STF_LEN(impls), .own = 1,
    };
    return softmax_stage_main(&st, argc, argv);
}
