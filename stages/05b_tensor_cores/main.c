/* build/bin/05b_tensor_cores: FlashAttention-2's forward pass on tensor cores
 * (mma.sync), as a ladder of kernels tc1_mma ... tc6_m32 (tc.h), each one
 * change from the previous, against stage 05's best fp32 kernel and stage
 * 04's standard attention on the same input. bf16/fp16, GPU only. */
#include "tc.h"
#include "../05_tiled_attention/tiled.h"

int main(int argc, char **argv)
{
    const attn_impl_t *impls[32] = { &IMPL_ATTN_STANDARD, &IMPL_ATTN_FA2_REGTILE };
    int n = 2, ntc = 0;
    const attn_impl_t *const *tc = attn_tc_impls(&ntc);
    for (int v = 0; v < ntc && n < 32; v++) impls[n++] = tc[v];
    /* The stage's own options (cli.h, cli_opt_t): the kernels index the K/V head. */
    static const cli_opt_t opts[] = {
        { "kv-heads", "G", 65536, "key/value heads (default --heads; must divide it)" },
    };
    const attn_stage_t st = {
        .prog = "05b_tensor_cores",
        .summary = "stage 05b, FlashAttention-2 on tensor cores (mma.sync): a ladder of kernels, "
                   "one change apart, against stage 05's fp32 kernel and standard attention",
        .impls = impls, .nimpls = n, .own = 2, .opts = opts, .nopts = STF_LEN(opts),
        .dtype_default = DT_BF16, /* the tensor cores take fp16 and bf16 */
    };
    return attention_stage_main(&st, argc, argv);
}
