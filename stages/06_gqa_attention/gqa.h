/* Stage 06: grouped K/V heads (Q6, Q7). Hq query heads share Hkv K/V heads,
 * Hq divisible by Hkv; query head h belongs to group h / g, g = Hq / Hkv:
 *   MHA  Hkv = Hq (g = 1)      GQA  1 < Hkv < Hq      MQA  Hkv = 1 (g = Hq)
 * Q, O are [B, Hq, Nq, d]; K, V are [B, Hkv, Nk, d].
 *
 * Three ways to run attention on it, each on the CPU (through the ledger) and
 * the GPU:
 *   replicated  copy every K/V head g times (what a repeat_kv helper does)
 *               into a workspace of B Hq Nk d elements each, then run the MHA
 *               kernel on the copy. The copy's time, traffic and memory count.
 *   indexed     the kernel reads K/V head h / g in place: one division in
 *               the addressing, no copy. A block still serves one query head,
 *               so each K/V tile is loaded once per query head (g times per
 *               group); on the GPU the L2 may absorb the repeats.
 *   packed      the g query heads of a group share one block: their rows are
 *               contiguous in Q's layout (heads h = kvh g ... kvh g + g - 1,
 *               Nq rows each), so a group is one "head" of g Nq query rows,
 *               and each K/V tile is loaded once per block for all of them.
 *               In decode (Nq = 1) the g query rows form one tile.
 *
 * GPU: prefill (Nq > 1) runs stage 05's tensor-core kernel (best version);
 * fp32 prefill runs stage 05's register-tiled FA2 kernel (CUDA cores);
 * decode (Nq = 1) runs this stage's decode kernel (decode_kernel.cuh), which
 * stage 07 instantiates with its own epilogue (key splits). */
#ifndef STF_STAGE06_H
#define STF_STAGE06_H

#include <stddef.h>
#include <stdint.h>

#include "attention_bench.h"
#include "attention_ref.h"
#include "dtype.h"
#include "ledger.h"
#include "../04_one_pass_attention/attention.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Head dims the stage's programs accept (the decode kernel's: GQA_DECODE_DIMS_TEXT);
 * the CPU code takes any d. */
extern const int GQA_DIMS[];

/* The CPU tiling: query rows per block and keys per K/V tile (tune.br and
 * tune.bc override them). The GPU decode kernel uses the same key tile. */
#define GQA_CPU_BR 64
#define GQA_BC 64
#define GQA_CPU_MAX_ROWS 256 /* the largest --br the CPU blocks take */

/* ---- the CPU engine (gqa_cpu.c), shared with stage 07 */

/* Keys visible to query row r when batch element b holds lens[b] keys
 * (lens NULL: attn_visible, which applies the shape's varlen pattern). */
size_t gqa_row_visible(const attn_shape_t *s, const int *lens, uint64_t r);

typedef enum { GQA_REPLICATED = 0, GQA_INDEXED = 1, GQA_PACKED = 2 } gqa_method_t;

/* What the CPU blocks do with a row's state (m, l, o) at the end of a key
 * range: the CPU twin of the decode kernel's epilogue (decode_kernel.cuh).
 * Stage 06's (epi = NULL below): one range of all keys, O = o / l written to
 * o. Stage 07's: its splits as the ranges, partial states written. */
typedef struct gqa_epilogue gqa_epilogue_t;
struct gqa_epilogue {
    size_t ranges;         /* key ranges per block of rows: z = 0 .. ranges - 1 */
    size_t keys_per_range; /* range z: keys [z kpr, (z + 1) kpr) */
    double row_bytes;      /* HBM bytes store() moves per row and range (the traffic model) */
    /* the state of query row `row` over range z (o unnormalised; store may overwrite st->o) */
    void (*store)(const gqa_epilogue_t *e, const attn_shape_t *s, uint64_t row, size_t z, attn_state_t *st);
    void *ctx;
};

/* Where the CPU blocks find K/V rows: NULL, contiguous [B][Hkv][Nk][d];
 * otherwise row(r, b, kvh, pos, lo) gives the element offset of key row pos
 * of slice (b, kvh) in K and in V, for a block that reads its keys [lo, end)
 * in order (stage 07's block table), and lookup_bytes(r, lo, end) the HBM
 * bytes those lookups move (the traffic model). The CPU twin of the decode
 * kernel's row policy (kv_source.cuh). */
typedef struct gqa_kv_rows gqa_kv_rows_t;
struct gqa_kv_rows {
    size_t (*row)(const gqa_kv_rows_t *r, size_t b, size_t kvh, size_t pos, size_t lo);
    double (*lookup_bytes)(const gqa_kv_rows_t *r, size_t lo, size_t end);
    void *ctx;
};

/* Runs the blocks of one method, each over every key range of the epilogue,
 * and hands each row's state to it (epi NULL: O written to o). The K/V
 * arrays are read as the shape says (for replicated: pass the copy and a
 * shape with kv_heads = heads). Returns 0, or -1 when on-chip buffers cannot
 * be had. */
int gqa_run_blocks(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, gqa_method_t method,
                   const int *lens, const gqa_epilogue_t *epi);
/* Bytes gqa_run_blocks moves (what the ledger must count), the epilogue's
 * stores included; and the K/V part of them alone. */
double gqa_blocks_bytes(const attn_shape_t *s, gqa_method_t method, const int *lens, const gqa_epilogue_t *epi);
double gqa_blocks_kv_bytes(const attn_shape_t *s, gqa_method_t method, const int *lens, const gqa_epilogue_t *epi);
/* The same with K/V rows found through `rows` (NULL: contiguous). */
int gqa_run_blocks_kv(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, gqa_method_t method,
                      const int *lens, const gqa_epilogue_t *epi, const gqa_kv_rows_t *rows);
double gqa_blocks_bytes_kv(const attn_shape_t *s, gqa_method_t method, const int *lens, const gqa_epilogue_t *epi,
                           const gqa_kv_rows_t *rows);

/* repeat_kv on the CPU: K/V [B, Hkv, Nk, d] -> [B, Hq, Nk, d] (each source
 * element read once, written g times). */
void gqa_repeat_kv_cpu(const attn_shape_t *s, hbm_t *src, hbm_t *dst);

/* ---- GPU (gqa_gpu.cu, decode_gpu.cu); the launchers are asynchronous on stream 0 */

/* repeat_kv on the GPU: 16-byte copies where rows allow. */
void gqa_repeat_kv_gpu(const attn_shape_t *s, const void *src, void *dst);

/* The decode kernel (decode_kernel.cuh; this stage's launcher decode_gpu.cu):
 * one block per (batch, block of hpb query heads); the hpb heads share one
 * K/V head (hpb = 1: indexed, or replicated on the copy; hpb = g or a
 * divisor of it: packed). Every block takes all the keys of its sequence and
 * writes O; stage 07 launches the same kernel with its own epilogue. */
typedef struct {
    int hpb;           /* query heads per block (divides g, at most gqa_decode_max_hpb) */
    const int *kv_len; /* device array of B lengths, or NULL: every element holds seq_kv keys */
} gqa_decode_args_t;

/* Head dims the decode kernel is compiled for (any storage type). */
#define GQA_DECODE_DIMS_TEXT "32, 64, 96, 128, 192, 256"
/* 1 when the decode kernel takes s (seq_q = 1, d one of GQA_DECODE_DIMS,
 * batch and head counts within the grid); else 0 with the reason. */
int gqa_decode_supports(const attn_shape_t *s, char *why, size_t n);
void gqa_decode_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                    const gqa_decode_args_t *a);
/* Query heads per block of the decode kernel: at most 16 (registers), at
 * most 8 above d = GQA_DECODE_MAX_HPB_D16 (16 rows of o spill there). */
#define GQA_DECODE_MAX_HPB_D16 128
int gqa_decode_max_hpb(const attn_shape_t *s);
/* Query heads per block of the packed kernel: the largest divisor of g up to
 * gqa_decode_max_hpb. */
int gqa_packed_hpb(const attn_shape_t *s);
/* The device's lengths array for s->varlen (built once per shape and kept),
 * or NULL when the shape has no varlen. */
const int *gqa_device_lengths(const attn_shape_t *s);

/* The measured read-only bandwidth (GB/s) over the K/V bytes of s, timed as
 * the driver times the implementations; cached per size. 0 without a GPU. */
double gqa_read_ceiling_gbps(const attn_shape_t *s);

extern const attn_impl_t IMPL_GQA_REPLICATED;
extern const attn_impl_t IMPL_GQA_INDEXED;
extern const attn_impl_t IMPL_GQA_PACKED;

#ifdef __cplusplus
}
#endif

#endif
