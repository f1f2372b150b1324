/* Where a decode kernel finds row `pos` of K and V for (batch b, K/V head h):
 * a policy passed to the kernel by value, so that the same kernel reads a
 * contiguous cache (here) or, in stage 07, a paged one through a block table
 * (stages/07_split_kv_decode/kv_pages.cuh, the same three members).
 *
 * Contiguous layout, the one every stage up to 06 uses: [B][Hkv][Nk][d], so
 * the keys of one (b, h) are one run of Nk d elements and any tile of keys is
 * one contiguous block.
 *
 *   k_row(b, h, pos), v_row(b, h, pos): the first element of the row;
 *   run(pos): how many rows from pos on are contiguous in memory (a kernel
 *             that loads a tile of rows may treat them as one block up to
 *             there; here: all of them);
 *   CONTIGUOUS: true when run(pos) always reaches the end of the sequence
 *             (the kernel then compiles no per-row path).
 *
 * A policy never checks pos against the sequence length: the kernel does. */
#ifndef STF_STAGE06_KV_SOURCE_CUH
#define STF_STAGE06_KV_SOURCE_CUH

#include <stdint.h>

template <typename T> struct kv_contig {
    static constexpr bool CONTIGUOUS = true;
    static constexpr bool LANE_PAGES = false; /* a paged policy's choice of loader (stage 07's kv_pages.cuh) */
    const T *k, *v;
    int hkv, nk, d; /* K/V heads, keys per (b, h) as allocated, head dim */

    __host__ __device__ __forceinline__ size_t offset(int b, int h, int pos) const
    {
        return (((size_t)b * (size_t)hkv + (size_t)h) * (size_t)nk + (size_t)pos) * (size_t)d;
    }
    __device__ __forceinline__ const T *k_row(int b, int h, int pos) const { return k + offset(b, h, pos); }
    __device__ __forceinline__ const T *v_row(int b, int h, int pos) const { return v + offset(b, h, pos); }
    __device__ __forceinline__ int run(int pos) const { return nk - pos; }
};

#endif
