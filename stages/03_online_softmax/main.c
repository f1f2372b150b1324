/* build/bin/03_online_softmax: online softmax (two sweeps), the row-on-chip
 * variants (one load, one store; stage 02's safe-onchip beside stage 03's
 * merge-onchip), and the paths beyond one SM: online-split and merge-wave
 * (its one-wave, one-kernel successor) for few long rows, merge-cluster and
 * merge-persist (its persistent clusters) for rows held across a thread-block
 * cluster; against stage 02's safe softmax on the same input. Answers Q3.
 * Each path says whether it applies to the shape, and why. */
#include "../02_safe_softmax/safe.h"
#include "online.h"

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_SAFE,         &IMPL_SAFE_ONCHIP, &IMPL_ONLINE,
                                                   &IMPL_MERGE_ONCHIP, &IMPL_ONLINE_SPLIT, &IMPL_MERGE_WAVE,
                                                   &IMPL_MERGE_CLUSTER, &IMPL_MERGE_PERSIST };
    const softmax_stage_t st = {
        "03_online_softmax",
        "stage 03, online softmax, the row on chip (one SM, or a cluster), rows split across blocks; "
        "against stage 02's safe softmax",
        impls, 8, 2,
    };
    return softmax_stage_main(&st, argc, argv);
}
