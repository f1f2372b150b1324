/* build/bin/07_split_kv_decode: split-KV decoding against stage 06's packed
 * decode on the same input. A decode stage: --decode (one query token per
 * sequence) is implied unless --seq, --seq-q, --load-npy or --sweep says
 * otherwise (then the split declines prefill shapes, with its reason).
 * Prints the split choice, K/V GB/s and its share of a measured read-only
 * ceiling. --splits N overrides the choice; --varlen gives the batch elements
 * different lengths. */
#include <stdlib.h>
#include <string.h>

#include "split.h"

/* 1 when an argument sets the query length (or the input) itself. */
static int sets_query_length(int argc, char **argv)
{
    static const char *const opts[] = { "--seq", "--decode", "--load-npy", "--sweep", "--help", "-h" };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strncmp(argv[i], "--seq-kv", 8)) continue; /* the keys only */
        for (size_t j = 0; j < sizeof opts / sizeof *opts; j++)
            if (!strncmp(argv[i], opts[j], strlen(opts[j]))) return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const attn_impl_t *const impls[] = { &IMPL_GQA_PACKED, &IMPL_SPLIT_KV };
    const attn_stage_t st = {
        "07_split_kv_decode",
        "stage 07, split-KV decoding (partial states merged with stage 04's merge) vs stage 06's packed decode "
        "(--decode is implied)",
        impls, 2, 1, GQA_DIMS, 1,
    };
    const attn_stage_ext_t ext = { 1, gqa_read_ceiling_gbps };
    if (sets_query_length(argc, argv)) return attention_stage_main_ext(&st, &ext, argc, argv);
    /* argv with --decode after the program name */
    char **av = malloc(((size_t)argc + 2) * sizeof *av);
    if (!av) return 1;
    av[0] = argv[0];
    av[1] = (char *)"--decode";
    for (int i = 1; i <= argc; i++) av[i + 1] = argv[i]; /* argv[argc] is NULL */
    const int rc = attention_stage_main_ext(&st, &ext, argc + 1, av);
    free(av);
    return rc;
}
