/* The paged K/V cache's row policy for stage 06's decode kernel: the same
 * members as kv_contig (stages/06_gqa_attention/kv_source.cuh), reading
 * through a block table (vLLM's PagedAttention, Kwon et al., 2023). The
 * layout (split.h, paged_geom_t, says it once for the C side too):
 *
 *   K pool, V pool  [num_pages][Hkv][P][d]: a page holds P consecutive
 *                   tokens of every K/V head of ONE sequence; the P rows of
 *                   one head in a page are contiguous (P d elements);
 *   table           int32 [B][max_pages]: the physical page of logical page
 *                   t of sequence b (t = pos / P); pages lie in any order.
 *
 *   row(b, h, pos) = pool + ((table[b][pos / P] Hkv + h) P + pos % P) d
 *   run(pos)       = P - pos % P   (the rows left in pos's page)
 *
 * P is a power of two (16 ... 256), so / and % are a shift and a mask. The
 * kernel asks run(j0) for a tile's first key: a 64-key tile inside a page
 * (P >= 64: always, tiles start at multiples of 64) is one block of rows, one
 * table read per thread per tile; in a tile that crosses pages (P < 64) a thread reads
 * the table once per page its rows enter (64 / P times); kv_paged_lanes: once a warp. */
#ifndef STF_STAGE07_KV_PAGES_CUH
#define STF_STAGE07_KV_PAGES_CUH

#include <stdint.h>

template <typename T> struct kv_paged {
    static constexpr bool CONTIGUOUS = false;
    static constexpr bool LANE_PAGES = false; /* the loader looks up each page a thread's rows enter */
    const T *k, *v;      /* the pools */
    const int32_t *table; /* [B][max_pages] */
    int hkv, d, max_pages;
    int shift;           /* P = 1 << shift */

    /* [snippet:paged-row] */
    __device__ __forceinline__ size_t offset(int b, int h, int pos) const
    {
        const int page = __ldg(table + (size_t)b * max_pages + (pos >> shift)); /* the block table */
        const int in_page = pos & ((1 << shift) - 1);
        return ((((size_t)page * (size_t)hkv + (size_t)h) << shift) + (size_t)in_page) * (size_t)d;
    }
    /* [/snippet] */
    __device__ __forceinline__ const T *k_row(int b, int h, int pos) const { return k + offset(b, h, pos); }
    __device__ __forceinline__ const T *v_row(int b, int h, int pos) const { return v + offset(b, h, pos); }
    __device__ __forceinline__ int run(int pos) const { return (1 << shift) - (pos & ((1 << shift) - 1)); }
    /* element offset of row 0 of head h in logical page t of sequence b (0 past the table) */
    __device__ __forceinline__ size_t page_base(int b, int h, int t) const
    {
        return t < max_pages ? offset(b, h, t << shift) : 0;
    }
};

/* The same rows, a different loader for tiles that cross pages (split-paged-lanes): lane i of a
 * warp reads the table entry of the tile's page i, and rows take their page's base by shuffle
 * (decode_kernel.cuh). What it removes from kv_paged's loader: a test and a select per row, and
 * the chain of dependent lookups (one per page, each behind the previous row's test). */
template <typename T> struct kv_paged_lanes : kv_paged<T> {
    static constexpr bool LANE_PAGES = true;
};

/* The pools through the table, for storage type T: the make_kv of stage
 * 06's dec_run_kv and of this stage's dtc_run. */
struct paged_of {
    const void *k, *v;
    const int32_t *table;
    int hkv, d, max_pages, shift;
    template <typename T> kv_paged<T> get() const
    {
        return kv_paged<T>{ (const T *)k, (const T *)v, table, hkv, d, max_pages, shift };
    }
};
/* ... with the lane loader */
struct paged_lanes_of : paged_of {
    template <typename T> kv_paged_lanes<T> get() const { return kv_paged_lanes<T>{ paged_of::get<T>() }; }
};

#endif
