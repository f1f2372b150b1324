/* Stage 07's epilogue for stage 06's decode kernel (decode_kernel.cuh):
 * block z takes the keys [z kps, (z + 1) kps) of its sequence and writes
 * the block's merged state (m, l, o), o unnormalised, fp32, to the partial
 * arrays (split_gpu.cu says why; the combine merges them). Shared by the
 * contiguous split (split_gpu.cu) and the paged cache (paged_gpu.cu). */
#ifndef STF_STAGE07_SPLIT_EPI_CUH
#define STF_STAGE07_SPLIT_EPI_CUH

#include "split.h"

/* [snippet:partial-epilogue] */
struct split_partial_epi {
    float *pm, *pl, *po; /* S x rows [x d], split-major */
    size_t rows;         /* B Hq */
    int kps;             /* keys per split: whole 64-key tiles */
    __device__ void keys(int n, int &lo, int &end) const
    {
        lo = (int)blockIdx.z * kps;
        end = min(n, lo + kps); /* end <= lo: an empty split */
    }
    template <typename T> __device__ void store(size_t row, int d, int c, float M, float L, float O) const
    {
        const size_t at = (size_t)blockIdx.z * rows + row;
        po[at * d + c] = O;
        if (c == 0) {
            pm[at] = M;
            pl[at] = L;
        }
    }
};
/* [/snippet] */

static inline split_partial_epi split_partial_epi_of(const attn_shape_t *s, int splits, float *pm, float *pl, float *po)
{
    split_partial_epi epi;
    epi.pm = pm;
    epi.pl = pl;
    epi.po = po;
    epi.rows = (size_t)attn_rows(s);
    epi.kps = (int)split_keys_per_split(s->seq_kv, (size_t)splits);
    return epi;
}

#endif
