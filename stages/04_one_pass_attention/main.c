/* build/bin/04_one_pass_attention: standard attention (S and P materialised,
 * built on stage 03's softmax) and one-pass attention (one loop over the keys
 * carrying (m, l, o)) on the same input. Answers Q1 and Q4. */
#include "attention.h"

int main(int argc, char **argv)
{
    static const attn_impl_t *const impls[] = { &IMPL_ATTN_STANDARD, &IMPL_ATTN_ONE_PASS };
    const attn_stage_t st = {
        "04_one_pass_attention", "stage 04, one-pass attention against standard attention (S and P in memory)",
        impls, 2, 1, ATTN04_DIMS, 0,
    };
    return attention_stage_main(&st, argc, argv);
}
