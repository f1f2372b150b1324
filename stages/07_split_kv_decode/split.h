/* Stage 07: split-KV decoding ("flash-decoding"). In decode a launch of
 * stage 06's packed kernel has only B x Hkv blocks (64 at B = 8, Hkv = 8,
 * on an H200's 132 SMs, which hold 264 of them): most of the chip idles
 * while a few blocks stream the whole cache. Split the keys of every (batch,
 * K/V head) into S ranges, give each range its own block, and let each block
 * produce the partial state (m, l, o) of its keys (stage 04's attn_state_t,
 * o unnormalised); a second kernel merges the S partial states of every row
 * with stage 04's merge (attn_merge_ml, merge.h), which is exact because the merge is
 * associative (tests/test_attention.c, test_merge_associative).
 *
 * The decode kernel is stage 06's (decode_kernel.cuh), instantiated here
 * with this stage's epilogue (split_gpu.cu: block z takes the keys of split z
 * and writes its partial state); the CPU blocks are stage 06's (gqa_cpu.c)
 * with the same epilogue (split_cpu.c). This stage adds the split grid, the
 * partial states, the combine and the choice of S. */
#ifndef STF_STAGE07_H
#define STF_STAGE07_H

#include <stddef.h>

#include "../06_gqa_attention/gqa.h"

#ifdef __cplusplus
extern "C" {
#endif

/* FlashAttention-2's num_splits_heuristic (flash_api.cpp): blocks = the
 * blocks of the unsplit launch, slots = SMs x resident blocks per SM, tiles
 * = K/V tiles of the longest sequence. One split when blocks >= 0.8 slots;
 * otherwise, among split counts up to min(max_splits, slots, tiles) that
 * change the tiles per split, the smallest whose wave efficiency
 * (waves / ceil(waves), waves = blocks S / slots) is within 85% of the best. */
int split_heuristic(long blocks, long slots, long tiles, int max_splits);

/* Keys per split: ceil(Nk / splits) rounded up to whole GQA_BC tiles (the
 * last splits may be short or empty). */
size_t split_keys_per_split(size_t nk, size_t splits);

/* The partial states of a split run: splits x rows of (m, l) and of o (d
 * floats, unnormalised), fp32, split-major, in simulated HBM. */
typedef struct {
    hbm_t m, l, o;
} split_partials_t;

typedef struct {
    int splits;            /* the number used */
    int chosen_by;         /* 0: the heuristic, 1: --splits */
    long blocks, slots;    /* unsplit blocks, SMs x resident blocks per SM */
    int sms, per_sm;       /* the device's (or, without a GPU, an H200's: 132 x 2 for 16-bit types) */
    long tiles;            /* K/V tiles of 64 keys in the longest sequence */
    int hpb;               /* query heads per block (stage 06's packed layout) */
    size_t clamped_from;   /* --splits as given when it was clamped, else 0 */
    int model_splits;      /* split_tc_plan: the bandwidth model's choice (also when --splits overrides it) */
    double cost1, costS;   /* split_tc_plan: the bandwidth model's cost at 1 and S splits, over the K/V bytes */
} split_plan_t;

/* The split count for s: tune.splits when given (clamped to the K/V tiles of
 * the cache: more splits would only add empty ranges; and to 65535, the
 * grid's z limit; clamped_from says so), else the heuristic with the GPU's SM
 * count and the split kernel's occupancy (the same count on the CPU, so that
 * its ledger counts the traffic the GPU run moves). */
void split_plan(const attn_shape_t *s, split_plan_t *p);

/* Bytes of the partial states: splits x B Hq rows x (d + 2) fp32 (0 when one split). */
size_t split_partial_bytes(const attn_shape_t *s, int splits);

/* The CPU run with an explicit split count and, optionally, per-batch
 * lengths (NULL: the shape's, attn_visible). ws: split_partial_bytes(s,
 * splits) bytes of host memory (unused when splits = 1). The partial states go
 * through the ledger (written by the blocks, read by the combine). */
int split_decode_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, const int *lens, int splits,
                     void *ws);
/* The combine alone: reads the partial states and writes O (CPU). */
void split_combine_cpu(const attn_shape_t *s, int splits, split_partials_t *part, hbm_t *o);
/* The blocks alone: stage 06's CPU blocks (packed) with this stage's
 * epilogue, partial states to part. */
int split_partials_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, const int *lens, int splits,
                       split_partials_t *part);
/* Bytes the blocks of a split run move (the partial states' writes included). */
double split_blocks_bytes(const attn_shape_t *s, const int *lens, int splits);
/* The same two with K/V rows found through `rows` (NULL: contiguous; stage
 * 07's paged cache, below). */
int split_decode_cpu_kv(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, const int *lens, int splits,
                        void *ws, const gqa_kv_rows_t *rows);
double split_blocks_bytes_kv(const attn_shape_t *s, const int *lens, int splits, const gqa_kv_rows_t *rows);

/* The GPU run (asynchronous): stage 06's decode kernel with `splits`
 * ranges, then the combine kernel. dev_lens: device array of B lengths or
 * NULL. ws: split_partial_bytes(s, splits) bytes of device memory. */
void split_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                      const int *dev_lens, int splits, void *ws);
void split_combine_gpu(const attn_shape_t *s, int splits, const float *pm, const float *pl, const float *po, void *o);
/* The blocks alone on the GPU: stage 06's decode kernel with the partial
 * epilogue, grid z = splits. Returns 0, or -1 when the kernel declines. */
int split_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, const int *dev_lens,
                       int splits, float *pm, float *pl, float *po);
/* Resident blocks per SM of the split kernel at s (packed hpb); 0 without a GPU. */
int split_blocks_per_sm(const attn_shape_t *s);

/* ---- the paged K/V cache (--page-size P; paged_cpu.c, paged_gpu.cu, kv_pages.cuh)
 *
 * What a serving system holds instead of [B][Hkv][Nk][d] (vLLM's
 * PagedAttention, Kwon et al., 2023): K and V each in a pool of pages of P
 * tokens, [num_pages][Hkv][P][d] (a page holds P consecutive tokens of every
 * K/V head of one sequence; one head's P rows are contiguous), and a block
 * table int32 [B][max_pages]: table[b][t] is the physical page of logical
 * page t of sequence b, so token pos of sequence b, head h, is row
 *     ((table[b][pos / P] Hkv + h) P + pos % P) d   of the pool.
 * Pages are handed out in the order of a seeded permutation (any physical
 * order must give the same answer); the pages nobody holds form a free list,
 * from which an append takes the next page when a sequence's last page is
 * full. Unused table entries are -1; unused rows hold NaN (never read). */
#define PAGED_P_MIN 16
#define PAGED_P_MAX 256

/* 1 when P is a power of two from PAGED_P_MIN to PAGED_P_MAX; else 0 and why. */
int paged_size_ok(size_t P, char *why, size_t n);

typedef struct {
    int P, shift;      /* tokens per page, log2 P */
    int B, hkv, d;
    int max_pages;     /* table columns: ceil((Nk + 1) / P), room for one appended token */
    int used;          /* pages the sequences hold: sum_b ceil(n_b / P) */
    int num_pages;     /* pages in a pool: used + B (a spare page per sequence for appends) */
    size_t page_elems; /* Hkv P d */
    dtype_t dt;
} paged_geom_t;

/* The geometry of shape s in pages of P tokens, sequence b holding lens[b]
 * keys (lens NULL: attn_kv_len). */
void paged_geom(const attn_shape_t *s, int P, const int *lens, paged_geom_t *g);
/* Fills table (B max_pages entries) and free_list (num_pages - used): the
 * pages of a seeded permutation, sequence by sequence, the rest free. */
void paged_build_table(const paged_geom_t *g, const int *lens, uint64_t seed, int32_t *table, int32_t *free_list);
/* Copies contiguous K (or V), [B][Hkv][nk][d], into a pool (host memory,
 * no ledger: the cache exists before the decode step); the rest of the pool
 * is NaN. */
void paged_scatter_host(const paged_geom_t *g, size_t nk, const int *lens, const int32_t *table, const void *src,
                        void *pool);
/* Bytes of a pool, and the workspace of the split-paged implementation:
 * partial states, then the K pool, the V pool, the table and the free list
 * at offsets aligned to 256 bytes. */
size_t paged_pool_bytes(const paged_geom_t *g);
typedef struct { size_t kpool, vpool, table, free_list, total; } paged_ws_t;
void paged_ws_layout(const attn_shape_t *s, const paged_geom_t *g, int splits, paged_ws_t *w);

/* Stage 06's CPU blocks read K/V rows through the block table: the table is
 * read (through the ledger) once per page a block's key range enters. */
typedef struct {
    paged_geom_t g;
    hbm_t *table;
    size_t key;  /* the (b, logical page, range start) of the last lookup, + 1 */
    int32_t page;
} paged_rows_ctx_t;
gqa_kv_rows_t paged_rows(paged_rows_ctx_t *c, const paged_geom_t *g, hbm_t *table);

/* The CPU split decode on the paged cache (kpool, vpool: the pools; table:
 * the block table, all through the ledger); ws as split_decode_cpu's. */
int paged_decode_cpu(const attn_shape_t *s, const paged_geom_t *g, hbm_t *q, hbm_t *kpool, hbm_t *vpool,
                     hbm_t *table, hbm_t *o, const int *lens, int splits, void *ws);
/* Bytes it moves (what the ledger counts): split_blocks_bytes + the combine
 * + 4 per table lookup. */
double paged_decode_bytes(const attn_shape_t *s, const paged_geom_t *g, const int *lens, int splits);

/* The GPU run (asynchronous): stage 06's decode kernel with kv_paged and
 * this stage's epilogue (or stage 06's, one split), then the combine. ws:
 * split_partial_bytes(s, splits) bytes of device memory. */
void paged_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                      const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits, void *ws);
/* The same with the lane loader for tiles that cross pages (split-paged-lanes:
 * paged_lanes.cu, kv_pages.cuh's kv_paged_lanes): the same arithmetic, so the
 * same output, bit for bit. */
void paged_lanes_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                            const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits,
                            void *ws);
/* paged_scatter_host on the GPU (device pointers). */
void paged_scatter_gpu(const paged_geom_t *g, size_t nk, const int *dev_lens, const int32_t *dev_table,
                       const void *src, void *pool);

/* Appending one token to every sequence, the step a serving loop runs before
 * each decode: sequence b (lens_in[b] tokens) gets row lens_in[b] of every
 * K/V head, knew/vnew [B][Hkv][d], in its page; when that page is new
 * (lens_in[b] % P == 0), it is free_list[top[0] + the number of sequences
 * before b that also need one], written into the table. lens_out[b] =
 * lens_in[b] + 1, top[1] = top[0] + the pages taken. Reads state t, writes
 * state t + 1 (lens_out, top[1]) beside it, so running it twice gives the
 * same cache. Returns 0, or -1 when the free list or the table runs out
 * (nothing is written then). nfree: entries of the free list. */
int paged_append_cpu(const paged_geom_t *g, hbm_t *table, hbm_t *lens_in, hbm_t *lens_out, hbm_t *free_list,
                     int nfree, hbm_t *top, hbm_t *knew, hbm_t *vnew, hbm_t *kpool, hbm_t *vpool);
/* The same on the GPU (one block per sequence); on overflow top[1] = -1 and
 * nothing is written. */
void paged_append_gpu(const paged_geom_t *g, int32_t *table, const int32_t *lens_in, int32_t *lens_out,
                      const int32_t *free_list, int nfree, int32_t *top, const void *knew, const void *vnew,
                      void *kpool, void *vpool);
/* Bytes an append moves (the ledger's count): K/V rows read and written,
 * lengths, top, and per new page its free-list read and table write, per
 * sequence its table read. */
double paged_append_bytes(const paged_geom_t *g, const int *lens_in);

/* The same on split-tc's tensor-core kernel (paged_tc.cu). */
void paged_tc_decode_gpu(const attn_shape_t *s, const paged_geom_t *g, const void *q, const void *kpool,
                         const void *vpool, const int32_t *table, void *o, const int *dev_lens, int splits, void *ws);

extern const attn_impl_t IMPL_SPLIT_PAGED, IMPL_SPLIT_PAGED_LANES, IMPL_SPLIT_TC_PAGED;
/* The stage's option checks and the append's row after each table (main.c). */
int split_validate(const attn_shape_t *s, char *why, size_t n);
int paged_append_report(const attn_shape_t *s, int gpu);

extern const attn_impl_t IMPL_SPLIT_KV;

/* ---- split-tc: the decode kernel on tensor cores (decode_tc.cuh) */

/* 1 when the tensor-core decode kernel takes s (seq_q = 1, fp16/bf16, d =
 * 64 or 128, grid limits), else 0 with the reason. Host logic, CPU builds too. */
int split_tc_supports(const attn_shape_t *s, char *why, size_t n);
/* Query rows per block of the tensor-core kernel: 16 (one m16 tile) up to g
 * = 16, else 32 (two tiles); a group of g rows takes ceil(g / rows) blocks.
 * --br 16 or 32 (tune.br) chooses instead (other --br values are the CPU
 * tiling's and leave it alone). */
int split_tc_rows(const attn_shape_t *s);

/* The split count by a bandwidth model, for the tensor-core kernel: a decode
 * block streams K/V at its share of the chip's rate, so S splits of `blocks`
 * blocks on `slots` resident slots reach eff(S) = waves / ceil(waves) of it
 * (waves = blocks S / slots; below one wave, the fraction of slots filled),
 * and pay extra bytes for the partial states (written and read back, Q read
 * again) plus the combine's launch (as bytes at the chip's rate):
 *     cost(S) = (kv + S part + (S > 1) fixed) / eff(S).
 * Returns the fewest splits within 3% of the cheapest (up to max_splits and
 * the tiles; split counts that leave the tiles per split unchanged skipped);
 * *cost1 and *costS (may be NULL) get cost(1) / kv and cost(S) / kv. */
int split_heuristic_bw(long blocks, long slots, long tiles, double kv, double part, double fixed, int max_splits,
                       double *cost1, double *costS);
/* The split count of the tensor-core kernel for s (--splits overrides, as in
 * split_plan); p->hpb holds the rows per block, p->cost1 and p->costS the
 * model's figures. */
void split_tc_plan(const attn_shape_t *s, split_plan_t *p);

/* The GPU run of the tensor-core kernel (asynchronous): `splits` ranges, then
 * the combine for many splits (split_tc_combine_gpu: one block per row);
 * one split: O written by the blocks. */
void split_tc_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                         const int *dev_lens, int splits, void *ws);
void split_tc_combine_gpu(const attn_shape_t *s, int splits, const float *pm, const float *pl, const float *po,
                          void *o);
int split_tc_partials_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, const int *dev_lens,
                          int splits, float *pm, float *pl, float *po);
/* Resident blocks per SM of the tensor-core kernel at s; 0 without a GPU or when it declines s. */
int split_tc_blocks_per_sm(const attn_shape_t *s);

extern const attn_impl_t IMPL_SPLIT_TC;

#ifdef __cplusplus
}
#endif

#endif
