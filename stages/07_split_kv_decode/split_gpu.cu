/* Stage 07 on the GPU: stage 06's decode kernel over S key ranges (each
 * block writes its partial state (m, l, o), fp32), then this combine kernel:
 * one warp per query row merges the S states with stage 04's merge
 * (merge.c):
 *     M = max_z m_z,   L = sum_z l_z e^{m_z - M},   O = sum_z o_z e^{m_z - M},
 *     out = O / L  (0 when L = 0: a row that saw no key; all m_z = -inf is
 *                   taken against 0, so no e^{-inf + inf} = NaN appears)
 * Lanes take 4 columns each (16-byte loads of o_z); m_z and l_z are
 * broadcast loads. Traffic: reads S R (d + 2) 4 bytes, writes R d es.
 *
 * Run: build/bin/07_split_kv_decode --decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 */
#include "exp_base.h"
#include "gpu_check.h"
#include "softmax_device.cuh"
#include "split.h"

template <typename T>
__global__ void __launch_bounds__(128) combine_kernel(const float *__restrict__ pm, const float *__restrict__ pl,
                                                      const float *__restrict__ po, T *__restrict__ o, int rows,
                                                      int splits, int d)
{
    const int row = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    float M = -INFINITY;
    for (int z = 0; z < splits; z++) M = fmaxf(M, pm[(size_t)z * rows + row]);
    const float base = exp_base(M);
    const int c = lane * 4;
    float L = 0.0f, acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
    for (int z = 0; z < splits; z++) {
        const size_t at = (size_t)z * rows + row;
        const float f = fexp(pm[at] - base); /* 0 for an empty split (m = -inf) */
        L += pl[at] * f;
        if (c < d) {
            const float4 x = *reinterpret_cast<const float4 *>(po + at * d + c);
            acc[0] += x.x * f;
            acc[1] += x.y * f;
            acc[2] += x.z * f;
            acc[3] += x.w * f;
        }
    }
    if (c < d)
        for (int e = 0; e < 4; e++) o[(size_t)row * d + c + e] = from_f<T>(L == 0.0f ? 0.0f : acc[e] / L);
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

extern "C" void split_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                 const int *dev_lens, int splits, void *ws)
{
    gqa_decode_args_t a;
    memset(&a, 0, sizeof a);
    a.hpb = gqa_packed_hpb(s);
    a.splits = splits < 1 ? 1 : splits;
    a.kv_len = dev_lens;
    if (a.splits > 1) {
        const size_t n = (size_t)a.splits * (size_t)attn_rows(s);
        a.part_o = (float *)ws;
        a.part_m = a.part_o + n * s->dim;
        a.part_l = a.part_m + n;
    }
    gqa_decode_gpu(s, q, k, v, o, &a);
    if (a.splits > 1) split_combine_gpu(s, a.splits, a.part_m, a.part_l, a.part_o, o);
}
