/* Stage 06, the decode kernel's launcher: decode_kernel.cuh (the kernel,
 * read that first) ending in the epilogue that writes O = o / l per query
 * row, every block over all of its sequence's keys. Stage 07 instantiates
 * the same kernel with its own epilogue (partial states of a key split).
 *
 * Memory traffic (bytes), one decode step: K/V 2 es d n per block (n keys,
 * the block's sequence), Q es d per row, O es d per row.
 *
 * Run: build/bin/06_gqa_attention --decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include "decode_kernel.cuh"

/* The epilogue: dec_write_o (decode_kernel.cuh), O = o / l per row. */
extern "C" void gqa_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                               const gqa_decode_args_t *a)
{
    const dec_write_o epi = { o };
    (void)dec_run(s, q, k, v, a->hpb < 1 ? 1 : a->hpb, a->kv_len, epi, 1); /* a refusal leaves O poisoned: the check fails */
}
