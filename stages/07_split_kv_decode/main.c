/* build/bin/07_split_kv_decode: split-KV decoding against stage 06's packed
 * decode on the same input (decode: --decode / --seq-q 1). Prints the split
 * choice, K/V GB/s and its share of a measured read-only ceiling. --splits N
 * overrides the choice; --varlen gives the batch elements different lengths. */
#include "split.h"

int main(int argc, char **argv)
{
    static const attn_impl_t *const impls[] = { &IMPL_GQA_PACKED, &IMPL_SPLIT_KV };
    const attn_stage_t st = {
        "07_split_kv_decode",
        "stage 07, split-KV decoding (partial states merged with stage 04's merge) vs stage 06's packed decode",
        impls, 2, 1, GQA_DIMS, 1,
    };
    const attn_stage_ext_t ext = { 1, gqa_read_ceiling_gbps };
    return attention_stage_main_ext(&st, &ext, argc, argv);
}
