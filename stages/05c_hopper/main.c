/* build/bin/05c_hopper: FlashAttention's forward pass on Hopper's own
 * instructions (wgmma, TMA, mbarrier, warp specialization), as a ladder of
 * kernels h1_wgmma ... (hopper.h), each one change from the previous,
 * against stage 05b's best mma.sync rung (tc6_m32; tc5_tuned where tc6
 * declines the shape) on the same input. bf16/fp16, GPU only (sm_90a). */
#include <string.h>

#include "hopper.h"

int main(int argc, char **argv)
{
    const attn_impl_t *impls[16];
    int n = 0, ntc = 0, nhop = 0;
    /* the previous stage: 05b's last two rungs, tc6_m32 and tc5_tuned (which
     * takes the head dims tc6 declines); the driver runs the ones that fit */
    const attn_impl_t *const *tc = attn_tc_impls(&ntc);
    for (int v = 0; v < ntc; v++)
        if (!strcmp(tc[v]->name, "tc6_m32") || !strcmp(tc[v]->name, "tc5_tuned")) impls[n++] = tc[v];
    const int prev = n;
    const attn_impl_t *const *hop = attn_hop_impls(&nhop);
    for (int v = 0; v < nhop && n < 16; v++) impls[n++] = hop[v];
    static const cli_opt_t opts[] = {
        { "kv-heads", "G", 65536, "key/value heads (default --heads; must divide it)" },
    };
    const attn_stage_t st = {
        .prog = "05c_hopper",
        .summary = "stage 05c, FlashAttention on Hopper (wgmma, TMA, mbarrier, warp specialization): a ladder of "
                   "kernels, one change apart, against stage 05b's best mma.sync rung",
        .impls = impls, .nimpls = n, .own = prev, .opts = opts, .nopts = STF_LEN(opts),
        .dtype_default = DT_BF16, /* wgmma takes fp16 and bf16 */
    };
    return attention_stage_main(&st, argc, argv);
}
