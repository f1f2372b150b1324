/* The paged decode's host side for both loaders of stage 07's paged K/V
 * cache (paged_gpu.cu: split-paged; paged_lanes.cu: split-paged-lanes):
 * stage 06's decode kernel on the pools with this stage's split epilogue and
 * combine. Of picks the row policy (kv_pages.cuh). */
#ifndef STF_STAGE07_PAGED_RUN_CUH
#define STF_STAGE07_PAGED_RUN_CUH

#include "../06_gqa_attention/decode_kernel.cuh"
#include "kv_pages.cuh"
#include "split_epi.cuh"

/* Of = paged_of (a lookup per page a thread's rows enter) or paged_lanes_of
 * (a lookup per lane, shared by shuffle). */
template <typename Of>
static void paged_run(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                      const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits, void *ws)
{
    const Of kv{ paged_of{ kpool, vpool, table, g->hkv, g->d, g->max_pages, g->shift } }; /* paged_lanes_of: its base */
    const int hpb = gqa_packed_hpb(s);
    if (splits <= 1) { /* one split: stage 06's epilogue writes O */
        const dec_write_o epi = { o };
        (void)dec_run_kv(s, q, kv, hpb, dev_lens, epi, 1); /* a refusal leaves O poisoned: the check fails */
        return;
    }
    split_two_pass(s, splits, ws, o, [&](float *pm, float *pl, float *po) {
        return dec_run_kv(s, q, kv, hpb, dev_lens, split_partial_epi_of(s, splits, pm, pl, po), splits);
    }, split_combine_gpu);
}

#endif
