/* Stage 07 on the GPU: split-KV decoding in two launches.
 *
 * 1. Stage 06's decode kernel (stages/06_gqa_attention/decode_kernel.cuh),
 *    packed layout, on a grid with a third dimension z = the split: this
 *    file's epilogue gives block z the keys [z kps, (z + 1) kps) of its
 *    sequence and writes the block's merged state (m, l, o), o unnormalised,
 *    fp32, to the partial arrays instead of O / l.
 * 2. The combine: one warp per query row merges the S states of the row with
 *    stage 04's merge (attn_merge_ml, merge.h), split after split:
 *        M = max_z m_z,   L = sum_z l_z e^{m_z - M},   O = sum_z o_z e^{m_z - M},
 *        out = O / L  (0 when L = 0: a row that saw no key; an empty split,
 *                      m_z = -inf, merges as the identity)
 *    Lanes take 4 columns each (16-byte loads of o_z, 2 rounds at d = 256);
 *    m_z and l_z are broadcast loads.
 *
 * Memory traffic (bytes), beyond the unsplit decode: the blocks write
 * S R (d + 2) 4 and read Q S times; the combine reads S R (d + 2) 4 and
 * writes O (R d es), R = B Hq rows.
 *
 * Run: build/bin/07_split_kv_decode --decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include "gpu.h"
#include "split.h"
#include "../06_gqa_attention/decode_kernel.cuh"

#include "split_epi.cuh" /* split_partial_epi: the partial-state epilogue */

template <typename T>
__global__ void __launch_bounds__(128) combine_kernel(const float *__restrict__ pm, const float *__restrict__ pl,
                                                      const float *__restrict__ po, T *__restrict__ o, int rows,
                                                      int splits, int d)
{
    const int row = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    for (int c = lane * 4; c < d; c += 128) {
        /* [snippet:combine] */
        float M = -INFINITY, L = 0.0f, acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f }; /* the empty state */
        for (int z = 0; z < splits; z++) {
            const size_t at = (size_t)z * rows + row;
            float fa, fb;
            attn_merge_ml(&M, &L, pm[at], pl[at], &fa, &fb); /* stage 04's merge */
            const float4 x = *reinterpret_cast<const float4 *>(po + at * d + c);
            acc[0] = acc[0] * fa + x.x * fb;
            acc[1] = acc[1] * fa + x.y * fb;
            acc[2] = acc[2] * fa + x.z * fb;
            acc[3] = acc[3] * fa + x.w * fb;
        }
        for (int e = 0; e < 4; e++) o[(size_t)row * d + c + e] = from_f<T>(L == 0.0f ? 0.0f : acc[e] / L);
        /* [/snippet] */
    }
}

extern "C" void split_combine_gpu(const attn_shape_t *s, int splits, const float *pm, const float *pl, const float *po,
                                  void *o)
{
    const int rows = (int)attn_rows(s), d = (int)s->dim, blocks = (rows + 3) / 4;
    if (s->dt == DT_F16) combine_kernel<__half><<<blocks, 128>>>(pm, pl, po, (__half *)o, rows, splits, d);
    else if (s->dt == DT_BF16) combine_kernel<__nv_bfloat16><<<blocks, 128>>>(pm, pl, po, (__nv_bfloat16 *)o, rows, splits, d);
    else combine_kernel<float><<<blocks, 128>>>(pm, pl, po, (float *)o, rows, splits, d);
    LAUNCH_CHECK();
}

extern "C" int split_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v,
                                  const int *dev_lens, int splits, float *pm, float *pl, float *po)
{
    return dec_run(s, q, k, v, gqa_packed_hpb(s), dev_lens, split_partial_epi_of(s, splits, pm, pl, po), splits);
}

extern "C" void split_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                 const int *dev_lens, int splits, void *ws)
{
    if (splits <= 1) { /* one split: stage 06's packed decode, O written by the blocks */
        gqa_decode_args_t a = { gqa_packed_hpb(s), dev_lens };
        gqa_decode_gpu(s, q, k, v, o, &a);
        return;
    }
    split_two_pass(s, splits, ws, o, [&](float *pm, float *pl, float *po) {
        return split_partials_gpu(s, q, k, v, dev_lens, splits, pm, pl, po);
    }, split_combine_gpu);
}

extern "C" int split_blocks_per_sm(const attn_shape_t *s)
{
    return gpu_available() ? dec_blocks_per_sm<split_partial_epi>(s, gqa_packed_hpb(s)) : 0;
}
