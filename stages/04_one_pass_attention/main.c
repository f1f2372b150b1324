/* build/bin/04_one_pass_attention: standard attention (S in fp32 and P in
 * the storage type materialised, softmax with stage 03's state) and
 * one-pass attention (one loop over the keys carrying (m, l, o)) on the same
 * input; standard-s16 (S in 16 bits) as the demonstration of why it matters,
 * reported, not counted. Answers Q1 and Q4. */
#include "attention.h"

int main(int argc, char **argv)
{
    static const attn_impl_t *const impls[] = { &IMPL_ATTN_STANDARD, &IMPL_ATTN_STANDARD_S16, &IMPL_ATTN_ONE_PASS };
    /* No options beyond the attention family's (cli.h): one K/V head per
     * query head, no tiles. */
    const attn_stage_t st = {
        .prog = "04_one_pass_attention",
        .summary = "stage 04, one-pass attention against standard attention (S and P in memory)",
        .impls = impls, .nimpls = STF_LEN(impls), .own = 2, .dims = ATTN04_DIMS,
    };
    return attention_stage_main(&st, argc, argv);
}
