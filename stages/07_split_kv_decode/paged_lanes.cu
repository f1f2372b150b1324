/* Stage 07's paged K/V cache, the next step: split-paged-lanes. What changes
 * from paged_gpu.cu: the row policy kv_paged_lanes (kv_pages.cuh) instead of
 * kv_paged, which makes stage 06's decode kernel load a tile that crosses
 * pages (P < 64) differently. Nsight Compute found split-paged at P = 16
 * latency-bound with 20% more instructions than contiguous, and its SASS
 * puts them in that loader (notes/07b_paged_kv.md): a test, a select and a
 * chain of dependent lookups per row. Here lane i of each warp reads the
 * table entry of the tile's page i, and every row takes its page's base by
 * shuffle. The bytes and the arithmetic are unchanged, and so is the output,
 * bit for bit. Its own file so that nvcc builds its instances beside
 * paged_gpu.cu's.
 *
 * Memory traffic (bytes): split-paged's, but the table reads: in a tile that
 * crosses pages, one 4-byte entry per lane of each warp (one request),
 * instead of 64 / P per thread; served by L1/L2 either way.
 *
 * Run: build/bin/07_split_kv_decode --kernel split-paged,split-paged-lanes --page-size 16 --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include "gpu.h"
#include "split.h"
#include "paged_run.cuh"

extern "C" void paged_lanes_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q,
                                       const void *kpool, const void *vpool, const int32_t *table, void *o,
                                       const int *dev_lens, int splits, void *ws)
{
    paged_run<paged_lanes_of>(s, g, q, kpool, vpool, table, o, dev_lens, splits, ws);
}
