/* Stage 07's epilogue for a decode kernel (stage 06's decode_kernel.cuh and
 * this stage's decode_tc.cuh): block z takes the keys of split z and writes
 * its merged state (m, l, o), o unnormalised, fp32, to the partial arrays.
 * The members every decode epilogue has: keys(n, lo, end), store<T>(row, d,
 * c, M, L, O). */
#ifndef STF_STAGE07_SPLIT_EPI_CUH
#define STF_STAGE07_SPLIT_EPI_CUH

#include <stddef.h>

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

#endif
