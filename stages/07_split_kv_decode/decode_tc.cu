/* Stage 07, the tensor-core decode kernel's launchers: decode_tc.cuh (the
 * kernel, read that first) on the contiguous cache (stage 06's kv_contig),
 * ending in this stage's partial-state epilogue (split_epi.cuh; the combine
 * is split_gpu.cu's) or, with one split, in an epilogue that writes O.
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

/* One split: every block takes all the keys of its sequence and writes O = o / l (0 for a row that saw no key). */
struct dtc_write_o {
    void *o; /* [B, Hq, 1, d] in the storage type */
    __device__ void keys(int n, int &lo, int &end) const
    {
        lo = 0;
        end = n;
    }
    template <typename T> __device__ void store(size_t row, int d, int c, float M, float L, float O) const
    {
        (void)M;
        static_cast<T *>(o)[row * d + c] = from_f<T>(L == 0.0f ? 0.0f : O / L);
    }
};

/* The contiguous cache [B][Hkv][Nk][d] for storage type T. */
struct dtc_contig {
    const void *k, *v;
    int hkv, nk, d;
    template <typename Tag> __host__ __device__ auto operator()(Tag) const
    {
        using T = typename Tag::type;
        return kv_contig<T>{ (const T *)k, (const T *)v, hkv, nk, d };
    }
};

static dtc_contig contig_of(const attn_shape_t *s, const void *k, const void *v)
{
    return dtc_contig{ k, v, (int)s->kv_heads, (int)s->seq_kv, (int)s->dim };
}

extern "C" int split_tc_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v,
                                     const int *dev_lens, int splits, float *pm, float *pl, float *po)
{
    split_partial_epi epi;
    epi.pm = pm;
    epi.pl = pl;
    epi.po = po;
    epi.rows = (size_t)attn_rows(s);
    epi.kps = (int)split_keys_per_split(s->seq_kv, (size_t)splits);
    return dtc_run(s, q, dev_lens, contig_of(s, k, v), epi, splits);
}

extern "C" void split_tc_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                    const int *dev_lens, int splits, void *ws)
{
    if (splits <= 1) {
        const dtc_write_o epi = { o };
        (void)dtc_run(s, q, dev_lens, contig_of(s, k, v), epi, 1); /* a refusal leaves O poisoned: the check fails */
        return;
    }
    const size_t n = (size_t)splits * (size_t)attn_rows(s);
    float *po = (float *)ws, *pm = po + n * s->dim, *pl = pm + n;
    if (split_tc_partials_gpu(s, q, k, v, dev_lens, splits, pm, pl, po) == 0) split_combine_gpu(s, splits, pm, pl, po, o);
}

extern "C" int split_tc_blocks_per_sm(const attn_shape_t *s)
{
    return gpu_available() ? dtc_blocks_per_sm<dtc_contig, split_partial_epi>(s, dtc_contig{}) : 0;
}
