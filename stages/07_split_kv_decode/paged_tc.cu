/* Stage 07's paged K/V cache on the tensor-core decode kernel (decode_tc.cuh,
 * split-tc): the same kernel and split count as split-tc, its rows read
 * through the block table (kv_pages.cuh) instead of kv_contig. What changes
 * from decode_tc.cu: the policy. The combine is split-tc's too (one block
 * per row): split_gpu.cu's (one warp per row) puts a B = 1 step's 32 rows on
 * 8 blocks with S dependent rounds of loads each, which is where the paged
 * step lost time in note 07b's profile (the paged reads themselves did not).
 *
 * Memory traffic (bytes): split-tc's + the table reads (paged_gpu.cu says
 * how many; served by L1/L2).
 *
 * Run: build/bin/07_split_kv_decode --kernel split-tc,split-tc-paged --page-size 64 --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include "gpu.h"
#include "split.h"
#include "split_epi.cuh"
#include "decode_tc.cuh"
#include "kv_pages.cuh"

extern "C" void paged_tc_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                                    const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits,
                                    void *ws)
{
    const paged_of kv = { kpool, vpool, table, g->hkv, g->d, g->max_pages, g->shift };
    if (splits <= 1) { /* one split: O written by the blocks (stage 06's epilogue) */
        const dec_write_o epi = { o };
        (void)dtc_run(s, q, dev_lens, kv, epi, 1); /* a refusal leaves O poisoned: the check fails */
        return;
    }
    split_two_pass(s, splits, ws, o, [&](float *pm, float *pl, float *po) {
        return dtc_run(s, q, dev_lens, kv, split_partial_epi_of(s, splits, pm, pl, po), splits);
    }, split_tc_combine_gpu);
}
