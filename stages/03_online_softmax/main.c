/* build/bin/03_online_softmax: online softmax (two sweeps) and the row-on-chip
 * variant (one load, one store), against stage 02's safe softmax on the same
 * input. Answers Q3. */
#include "../02_safe_softmax/safe.h"
#include "online.h"

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_SAFE, &IMPL_ONLINE, &IMPL_ONLINE_ONCHIP };
    const softmax_stage_t st = {
        "03_online_softmax", "stage 03, online softmax and the row-on-chip variant, against stage 02's safe softmax",
        impls, 3, 1,
    };
    return softmax_stage_main(&st, argc, argv);
}
