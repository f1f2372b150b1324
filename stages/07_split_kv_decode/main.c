/* build/bin/07_split_kv_decode: split-KV decoding against stage 06's packed
 * decode on the same input. A decode stage: --decode (one query token per
 * sequence) is the default. Prints the split choice, K/V GB/s and its share
 * of a measured read-only ceiling. --splits N overrides the choice (clamped
 * to the cache's tiles); --varlen gives the batch elements different lengths;
 * --page-size P adds the paged cache (split-paged, split-tc-paged) and the
 * append's row. */
#include "split.h"

int main(int argc, char **argv)
{
    static const attn_impl_t *const impls[] = { &IMPL_GQA_PACKED, &IMPL_SPLIT_KV, &IMPL_SPLIT_TC, &IMPL_SPLIT_PAGED,
                                                  &IMPL_SPLIT_PAGED_LANES, &IMPL_SPLIT_TC_PAGED };
    /* The stage's own options (cli.h, cli_opt_t). */
    static const cli_opt_t opts[] = {
        { "kv-heads", "G", 65536, "key/value heads (default --heads; must divide it)" },
        { "br", "N", 4096, "query rows per block of stage 06's CPU tiling" },
        { "bc", "N", 4096, "keys per tile" },
        { "splits", "N", 65536, "K/V splits (default: chosen per shape)" },
        { "varlen", NULL, 0, "batch element b holds Nk - b Nk / 2B keys (variable lengths, a serving batch)" },
        { "page-size", "P", PAGED_P_MAX, "paged K/V cache of P tokens per page (16 ... 256, a power of two): runs split-paged and the append" },
    };
    const attn_stage_t st = {
        .prog = "07_split_kv_decode",
        .summary = "stage 07, split-KV decoding (partial states merged with stage 04's merge) vs stage 06's packed decode",
        .impls = impls, .nimpls = STF_LEN(impls), .own = 1, .opts = opts, .nopts = STF_LEN(opts),
        .decode_default = 1, /* split-KV is a decode method: Nq = 1 unless told otherwise */
    };
    const attn_stage_ext_t ext = { gqa_read_ceiling_gbps, split_validate, paged_append_report };
    return attention_stage_main_ext(&st, &ext, argc, argv);
}
