/* build/bin/03_online_softmax: online softmax (two sweeps), the row-on-chip
 * variants (one load, one store; stage 02's safe-onchip beside stage 03's
 * merge-onchip), and the paths beyond one SM: online-split for few long rows,
 * merge-cluster for rows held across a thread-block cluster; against stage
 * 02's safe softmax on the same input. Answers Q3. Each path says whether it
 * applies to the shape, and why. */
#include "../02_safe_softmax/safe.h"
#include "online.h"

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_SAFE,          &IMPL_SAFE_ONCHIP,  &IMPL_ONLINE,
                                                   &IMPL_MERGE_ONCHIP,  &IMPL_ONLINE_SPLIT, &IMPL_MERGE_WAVE,
                                                   &IMPL_MERGE_CLUSTER, &IMPL_MERGE_PERSIST };
    /* No options beyond the softmax family's (cli.h). */
    const softmax_stage_t st = {
        .prog = "03_online_softmax",
        .summary = "stage 03, online softmax, the row on chip (one SM, or a cluster), rows split across blocks; "
                   "against stage 02's safe softmax",
        .impls = impls, .nimpls = STF_LEN(impls), .own = 2,
    };
    return softmax_stage_main(&st, argc, argv);
}
