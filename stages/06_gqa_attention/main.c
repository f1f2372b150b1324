/* build/bin/06_gqa_attention: grouped K/V heads (Q6, Q7) three ways on the
 * same input: replicated (repeat_kv, then the MHA kernel: stage 05's
 * tensor-core kernel in prefill), indexed (K/V head h / g read in place) and
 * packed (the query heads of a group share each K/V tile). Decode
 * (--decode / --seq-q 1) runs this stage's decode kernel and reports K/V
 * GB/s against a measured read-only ceiling. */
#include "gqa.h"

int main(int argc, char **argv)
{
    static const attn_impl_t *const impls[] = { &IMPL_GQA_REPLICATED, &IMPL_GQA_INDEXED, &IMPL_GQA_PACKED };
    /* The stage's own options (cli.h, cli_opt_t). */
    static const cli_opt_t opts[] = {
        { "kv-heads", "G", 65536, "key/value heads (default --heads; must divide it)" },
        { "br", "N", 4096, "query rows per block of the CPU tiling" },
        { "bc", "N", 4096, "keys per tile" },
    };
    const attn_stage_t st = {
        .prog = "06_gqa_attention",
        .summary = "stage 06, MQA/GQA: replicated K/V (repeat_kv + stage 05's kernel) vs indexing the K/V head vs "
                   "packing a group",
        .impls = impls, .nimpls = STF_LEN(impls), .own = 1, .opts = opts, .nopts = STF_LEN(opts),
    };
    const attn_stage_ext_t ext = { .read_ceiling_gbps = gqa_read_ceiling_gbps };
    return attention_stage_main_ext(&st, &ext, argc, argv);
}
