/* Stage 07's paged K/V cache on the GPU. What changes from split_gpu.cu: the
 * same decode kernel (stage 06's decode_kernel.cuh) and the same epilogues,
 * instantiated with the row policy kv_paged (kv_pages.cuh) instead of
 * kv_contig: a tile's rows come from table[b][pos / P], row pos % P, of the
 * page pools. Nothing else moves: same tiles, same order of the arithmetic,
 * so the output equals the contiguous cache's bit for bit.
 *
 * Memory traffic (bytes): the split decode's (split_gpu.cu) + the table
 * reads: one 4-byte entry per thread per tile inside a page (cached: the
 * threads of a block read the same entry), 64 / P per thread in a tile
 * that crosses pages (P < 64), all served by L1/L2; HBM sees the table once,
 * 4 B max_pages bytes.
 *
 * The next step, split-paged-lanes, is paged_lanes.cu.
 *
 * Also here: the scatter that builds the pools from a contiguous cache (the
 * benchmark's setup, untimed) and the append kernel (one token per
 * sequence, one block per sequence; see split.h for its contract).
 *
 * Run: build/bin/07_split_kv_decode --seq-kv 32768 --batch 8 --heads 32 --kv-heads 8 --dim 128 --dtype bf16 --page-size 16 */
#include "gpu.h"
#include "split.h"
#include "paged_run.cuh"

extern "C" void paged_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                                 const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits,
                                 void *ws)
{
    paged_run<paged_of>(s, g, q, kpool, vpool, table, o, dev_lens, splits, ws);
}

/* ---- building the pools (setup) */

/* Block (page slot t, b, h) copies the rows of logical page t of (b, h). */
__global__ void __launch_bounds__(256) scatter_kernel(const uint16_t *__restrict__ src, uint16_t *__restrict__ pool,
                                                      const int32_t *__restrict__ table, const int *__restrict__ lens,
                                                      int hkv, int P, int max_pages, int nk, int row_u16)
{
    const int t = blockIdx.x, b = blockIdx.y, h = blockIdx.z;
    const int n = lens ? min(lens[b], nk) : nk, lo = t * P;
    if (lo >= n) return;
    const int rows = min(P, n - lo);
    const size_t page = (size_t)table[(size_t)b * max_pages + t];
    const uint16_t *from = src + (((size_t)b * hkv + h) * (size_t)nk + (size_t)lo) * (size_t)row_u16;
    uint16_t *to = pool + ((page * (size_t)hkv + (size_t)h) * (size_t)P) * (size_t)row_u16;
    for (size_t i = threadIdx.x; i < (size_t)rows * (size_t)row_u16; i += blockDim.x) to[i] = from[i];
}

extern "C" void paged_scatter_gpu(const paged_geom_t *g, size_t nk, const int *dev_lens, const int32_t *dev_table,
                                  const void *src, void *pool)
{
    gpu_poison(pool, paged_pool_bytes(g)); /* NaN: a row read that should not be */
    const int row_u16 = (int)((size_t)g->d * dtype_size(g->dt) / 2);
    const dim3 grid((unsigned)((nk + (size_t)g->P - 1) / (size_t)g->P), (unsigned)g->B, (unsigned)g->hkv);
    scatter_kernel<<<grid, 256>>>((const uint16_t *)src, (uint16_t *)pool, dev_table, dev_lens, g->hkv, g->P,
                                  g->max_pages, (int)nk, row_u16);
    LAUNCH_CHECK();
}

/* ---- appending one token per sequence */

/* [snippet:append-kernel] */
template <typename T>
__global__ void __launch_bounds__(128) append_kernel(int32_t *__restrict__ table, const int32_t *__restrict__ lens_in,
                                                     int32_t *__restrict__ lens_out, const int32_t *__restrict__ free_list,
                                                     int nfree, int32_t *__restrict__ top, const T *__restrict__ knew,
                                                     const T *__restrict__ vnew, T *__restrict__ kpool,
                                                     T *__restrict__ vpool, int B, int hkv, int d, int shift, int max_pages)
{
    const int b = blockIdx.x, P = 1 << shift;
    const int t0 = top[0];
    /* every block counts, over all sequences, the new pages and its rank among them (B is small) */
    int need = 0, rank = 0, bad = t0 < 0;
    for (int x = threadIdx.x; x < B; x += blockDim.x) {
        const int nx = lens_in[x];
        need += nx % P == 0;
        rank += x < b && nx % P == 0;
        bad |= nx < 0 || (nx >> shift) >= max_pages;
    }
    __shared__ int red[3];
    if (threadIdx.x < 3) red[threadIdx.x] = 0;
    __syncthreads();
    atomicAdd(&red[0], need);
    atomicAdd(&red[1], rank);
    atomicOr(&red[2], bad);
    __syncthreads();
    need = red[0];
    rank = red[1];
    if (red[2] || t0 + need > nfree) { /* out of table or free pages: nothing written */
        if (b == 0 && threadIdx.x == 0) top[1] = -1;
        return;
    }
    const int n = lens_in[b];
    const size_t slot = (size_t)b * max_pages + (size_t)(n >> shift);
    const int page = n % P == 0 ? free_list[t0 + rank] : table[slot];
    const size_t hd = (size_t)hkv * d;
    for (size_t i = threadIdx.x; i < hd; i += blockDim.x) {
        const size_t h = i / d, e = i % d;
        const size_t to = (((size_t)page * hkv + h) * (size_t)P + (size_t)(n & (P - 1))) * (size_t)d + e;
        kpool[to] = knew[(size_t)b * hd + i];
        vpool[to] = vnew[(size_t)b * hd + i];
    }
    if (threadIdx.x == 0) {
        if (n % P == 0) table[slot] = page;
        lens_out[b] = n + 1;
        if (b == 0) top[1] = t0 + need;
    }
}
/* [/snippet] */

extern "C" void paged_append_gpu(const paged_geom_t *g, int32_t *table, const int32_t *lens_in, int32_t *lens_out,
                                 const int32_t *free_list, int nfree, int32_t *top, const void *knew, const void *vnew,
                                 void *kpool, void *vpool)
{
    const dim3 grid((unsigned)g->B);
#define APPEND(T)                                                                                                   \
    append_kernel<T><<<grid, 128>>>(table, lens_in, lens_out, free_list, nfree, top, (const T *)knew, (const T *)vnew, \
                                    (T *)kpool, (T *)vpool, g->B, g->hkv, g->d, g->shift, g->max_pages)
    if (g->dt == DT_F32) APPEND(float);
    else APPEND(uint16_t); /* fp16, bf16: copies of 16-bit values */
#undef APPEND
    LAUNCH_CHECK();
}
