/* Stage 07, the tensor-core decode kernel's launchers: decode_tc.cuh (the
 * kernel, read that first) on the contiguous cache (stage 06's kv_contig),
 * ending in this stage's partial-state epilogue (split_epi.cuh) and a
 * combine for many splits (below), or, with one split, in stage 06's
 * epilogue that writes O (dec_write_o).
 *
 * Memory traffic (bytes), one decode step: K/V 2 es d n per block, Q es d
 * per row; with S > 1 splits the partial states S R (d + 2) 4 written and
 * read back by the combine, O es d per row.
 *
 * Run: build/bin/07_split_kv_decode --kernel split-tc --seq-kv 131072 --batch 1 --heads 32 --kv-heads 1 --dim 128 --dtype bf16 */
#include "gpu.h"
#include "split.h"
#include "split_epi.cuh"
#include "decode_tc.cuh"

/* The contiguous cache [B][Hkv][Nk][d]: stage 06's dec_contig_of. */
static dec_contig_of contig_of(const attn_shape_t *s, const void *k, const void *v)
{
    return dec_contig_of{ k, v, (int)s->kv_heads, (int)s->seq_kv, (int)s->dim };
}

/* [snippet:combine-wide] */
/* The combine for many splits (split-tc's heuristic asks for up to ~260 at B
 * = 1): one block of DTC_CW warps per query row. The per-row warp of
 * split_gpu.cu's combine walks the S states one after another, S dependent
 * rounds of loads; here the maximum M = max_z m_z comes first (a block
 * reduction), after which every state's weight e^{m_z - M} is known and the
 * warps take the splits z = w, w + DTC_CW, ... with independent loads (4 in
 * flight per lane), then add their sums in shared memory:
 *     L = sum_z l_z e^{m_z - M},   O = sum_z o_z e^{m_z - M},   out = O / L
 * (0 when L = 0: no key; an empty split, m_z = -inf, weighs e^{-inf} = 0). */
#define DTC_CW 16
template <typename T>
__global__ void __launch_bounds__(DTC_CW * 32) combine_wide_kernel(const float *__restrict__ pm, const float *__restrict__ pl,
                                                                const float *__restrict__ po, T *__restrict__ o,
                                                                int rows, int splits, int d)
{
    __shared__ float red[DTC_CW], acc_s[DTC_CW][128];
    __shared__ float Ms, Ls;
    const int row = blockIdx.x, tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    float mx = -INFINITY;
    for (int z = tid; z < splits; z += DTC_CW * 32) mx = fmaxf(mx, pm[(size_t)z * rows + row]);
    for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if (lane == 0) red[w] = mx;
    __syncthreads();
    if (tid == 0) {
        float M = -INFINITY;
        for (int i = 0; i < DTC_CW; i++) M = fmaxf(M, red[i]);
        Ms = exp_base(M); /* 0 while every split is empty: the weights are then e^{-inf} = 0 */
    }
    __syncthreads();
    const float base = Ms;
    float ls = 0.0f;
    for (int z = tid; z < splits; z += DTC_CW * 32) {
        const size_t at = (size_t)z * rows + row;
        ls += pl[at] * fexp(pm[at] - base);
    }
    for (int off = 16; off; off >>= 1) ls += __shfl_xor_sync(0xffffffffu, ls, off);
    __syncthreads();
    if (lane == 0) red[w] = ls;
    __syncthreads();
    if (tid == 0) {
        float L = 0.0f;
        for (int i = 0; i < DTC_CW; i++) L += red[i];
        Ls = L;
    }
    for (int c0 = 0; c0 < d; c0 += 128) {
        const int c = c0 + 4 * lane;
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (c < d) {
#pragma unroll 4
            for (int z = w; z < splits; z += DTC_CW) {
                const size_t at = (size_t)z * rows + row;
                const float f = fexp(pm[at] - base);
                const float4 x = *reinterpret_cast<const float4 *>(po + at * d + c);
                acc.x = fmaf(f, x.x, acc.x);
                acc.y = fmaf(f, x.y, acc.y);
                acc.z = fmaf(f, x.z, acc.z);
                acc.w = fmaf(f, x.w, acc.w);
            }
            *reinterpret_cast<float4 *>(&acc_s[w][4 * lane]) = acc;
        }
        __syncthreads();
        if (tid < 128 && c0 + tid < d) {
            float O = 0.0f;
            for (int i = 0; i < DTC_CW; i++) O += acc_s[i][tid];
            const float L = Ls;
            o[(size_t)row * d + c0 + tid] = from_f<T>(L == 0.0f ? 0.0f : O / L);
        }
        __syncthreads();
    }
}
/* [/snippet] */

extern "C" void split_tc_combine_gpu(const attn_shape_t *s, int splits, const float *pm, const float *pl,
                                     const float *po, void *o)
{
    const int rows = (int)attn_rows(s), d = (int)s->dim;
    if (s->dt == DT_F16) combine_wide_kernel<__half><<<rows, DTC_CW * 32>>>(pm, pl, po, (__half *)o, rows, splits, d);
    else combine_wide_kernel<__nv_bfloat16><<<rows, DTC_CW * 32>>>(pm, pl, po, (__nv_bfloat16 *)o, rows, splits, d);
    LAUNCH_CHECK();
}

extern "C" int split_tc_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v,
                                     const int *dev_lens, int splits, float *pm, float *pl, float *po)
{
    return dtc_run(s, q, dev_lens, contig_of(s, k, v), split_partial_epi_of(s, splits, pm, pl, po), splits);
}

extern "C" void split_tc_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                    const int *dev_lens, int splits, void *ws)
{
    if (splits <= 1) { /* one split: O written by the blocks (stage 06's epilogue) */
        const dec_write_o epi = { o };
        (void)dtc_run(s, q, dev_lens, contig_of(s, k, v), epi, 1); /* a refusal leaves O poisoned: the check fails */
        return;
    }
    split_two_pass(s, splits, ws, o, [&](float *pm, float *pl, float *po) {
        return split_tc_partials_gpu(s, q, k, v, dev_lens, splits, pm, pl, po);
    }, split_tc_combine_gpu);
}

extern "C" int split_tc_blocks_per_sm(const attn_shape_t *s)
{
    return gpu_available() ? dtc_blocks_per_sm<split_partial_epi>(s) : 0;
}
