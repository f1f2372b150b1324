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

#include "split.h" /* for the launch helpers: attn_shape_t, split_keys_per_split */

/* The epilogue of a run of `splits` splits of s into pm, pl, po. */
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

/* The two launches of a split decode (splits > 1): partials(pm, pl, po), the
 * blocks writing their states into the workspace ws (split_partial_bytes:
 * o, then m, then l), returns 0 when it ran; then combine(s, splits, pm, pl,
 * po, o) merges them into O. A refusal leaves O poisoned: the check fails. */
template <typename Partials, typename Combine>
static void split_two_pass(const attn_shape_t *s, int splits, void *ws, void *o, Partials &&partials, Combine &&combine)
{
    const size_t n = (size_t)splits * (size_t)attn_rows(s);
    float *po = (float *)ws, *pm = po + n * s->dim, *pl = pm + n;
    if (partials(pm, pl, po) == 0) combine(s, splits, pm, pl, po, o);
}

#endif
