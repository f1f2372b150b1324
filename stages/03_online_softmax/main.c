/* build/bin/03_online_softmax: online softmax (two sweeps) and the row-on-chip
 * variants (one load, one store; stage 02's safe-onchip beside stage 03's
 * merge-onchip), against stage 02's safe softmax on the same input. Answers
 * Q3. Each path says whether it applies to the shape, and why. */
#include "../02_safe_softmax/safe.h"
#include "online.h"

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_SAFE, &IMPL_SAFE_ONCHIP, &IMPL_ONLINE, &IMPL_MERGE_ONCHIP };
    const softmax_stage_t st = {
        "03_online_softmax",
        "stage 03, online softmax and the row on chip, against stage 02's safe softmax",
        impls, 4, 2,
    };
    return softmax_stage_main(&st, argc, argv);
}
