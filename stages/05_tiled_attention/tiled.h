/* Stage 05: tiled attention (Q5), FlashAttention's two loop orders.
 *
 * Stage 04's one-pass kernel re-reads all of K and V for every query row:
 * 2 N^2 d elements per head. Tiling cuts Q into row blocks of Br queries and
 * K, V into blocks of Bc keys that fit on chip, so that each K/V block, once
 * loaded, serves Br query rows: the K/V term drops to 2 N^2 d / Br.
 *
 *  FA1 order  (Dao et al. 2022, Algorithm 1): K/V blocks outer, Q blocks
 *             inner. O, l and m live in HBM and are read and written back for
 *             every (K/V block, Q block) pair; O is divided by l at every step.
 *  FA2 order  (Dao 2023): Q block outer, K/V blocks inner. O, l, m stay on
 *             chip, O is written once, divided by l once at the end; every Q
 *             block is independent work (a thread block on the GPU).
 *
 * The CPU versions (fa1_cpu.c, fa2_cpu.c) hold every tile in a simulated
 * on-chip memory of M bytes (the ledger's sram_alloc: a tile that does not
 * fit is an error) and count every HBM byte. tiles.c chooses the tiles and
 * holds the closed-form byte counts that the tests compare the ledger with.
 * The GPU kernels: fa1_gpu.cu (Algorithm 1, one thread block per head),
 * fa2_gpu.cu (FA2 order, one thread per query row), fa2_regtile_gpu.cu (FA2
 * order, register micro-tiles, the fast one). */
#ifndef STF_STAGE05_H
#define STF_STAGE05_H

#include <stddef.h>
#include <stdint.h>

#include "../04_one_pass_attention/attention.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TILED_FA1 = 1, TILED_FA2 = 2 } tiled_order_t;

/* Tiles when neither --br/--bc nor --sram is given: those of the GPU kernels
 * of the same name, so that a CPU ledger and a GPU model count one tiling. */
#define TILED_DEFAULT_BR 64
#define TILED_DEFAULT_BC 64

/* Bytes the CPU tiling holds on chip at once, everything in fp32:
 *   Q_i and O_i (Br x d each), K_j and V_j (Bc x d each), S_ij = P_ij
 *   (Br x Bc), and m, l (Br each):  4 (2 Br d + 2 Bc d + Br Bc + 2 Br). */
size_t tiled_onchip_bytes(size_t br, size_t bc, size_t d);

/* The tiles of the given order on shape s:
 *  - --br/--bc given: those (a missing one is 64); the budget is --sram if
 *    given, else unlimited;
 *  - only --sram M given: the paper's rule for the order's outer tile,
 *    big = M / (4 d) fp32 words, small = min(big, d), then big cut down (and
 *    small with it if needed) until the whole working set above fits in M:
 *    the paper's rule ignores S_ij, m and l. FA1: Bc = big, Br = small
 *    (the paper's Algorithm 1); FA2: Br = big, Bc = small (the loop that
 *    is outer streams the other operand, so its tile is the one to grow);
 *  - nothing given: 64 x 64.
 * Returns 0, or -1 with the reason in why (the tiles do not fit in M). */
int tiled_choose(tiled_order_t ord, const attn_shape_t *s, size_t *br, size_t *bc, char *why, size_t n);
/* tiled_choose for the table: 0 x 0 when no tiles fit (the row then says why
 * through supports()); and the same as text for the "tiles" column. */
void tiled_tiles(tiled_order_t ord, const attn_shape_t *s, size_t *br, size_t *bc);
const char *tiled_tiles_text(tiled_order_t ord, const attn_shape_t *s);

/* The same check for a program's options, before any shape exists: 0 when
 * (d, br, bc, sram) can be tiled in both orders, else 2 with a message on
 * stderr (the stage program exits 2: bad input). */
int tiled_check_options(const char *prog, size_t d, size_t br, size_t bc, size_t sram);

/* ---- the tile grid of one head: query block i holds rows [i Br, i Br + r_i);
 * key block j holds keys [j Bc, j Bc + c_j). Causal masks align bottom-right
 * (attention_ref.h): query row q sees keys k < attn_visible_keys(q).
 *   n_i   = keys visible to the LAST row of block i (the most of its rows)
 *   ct_i  = ceil(n_i / Bc): key blocks block i needs; blocks j >= ct_i are
 *           fully masked and skipped (never loaded, never computed)
 *   a block (i, j < ct_i) is "masked" (a diagonal block) when some of its
 *   (row, key) pairs are invisible: j Bc + c_j > keys visible to row i Br. */
size_t tiled_keys_needed(const attn_shape_t *s, size_t br, size_t bc, size_t i); /* ct_i */

typedef struct {
    uint64_t total;    /* Tr Tc per head, times B H */
    uint64_t computed; /* sum_i ct_i, times B H */
    uint64_t skipped;  /* total - computed: fully masked, never touched */
    uint64_t masked;   /* computed blocks that needed the mask (diagonal blocks) */
} tiled_counts_t;

/* The closed form (a sum over the query blocks) of the counts above. */
void tiled_count_blocks(const attn_shape_t *s, size_t br, size_t bc, tiled_counts_t *c);

/* What the last CPU run of fa1 or fa2 actually did, counted block by block
 * while it ran (the tests compare it with tiled_count_blocks). */
extern tiled_counts_t tiled_cpu_counts;

/* ---- HBM bytes, closed forms (tiles.c; derivation in notes/05_tiled_attention.md).
 * es = storage bytes; the FA1 workspace (O, l, m) is fp32.
 *  FA2: B H [ es d sum_{i: ct_i > 0} r_i   (Q, once)
 *           + 2 es d sum_i min(ct_i Bc, Nk) (K and V, once per query block)
 *           + es Nq d ]                     (O, once)
 *  FA1: B H [ 4 Nq (d + 2)                  (O, l, m initialised in HBM)
 *           + 2 es d min(ct_max Bc, Nk)     (K and V, once)
 *           + (es d + 4 (d + 2)) R          (Q_i, O_i, l_i, m_i read per visit)
 *           + 4 (d + 2) (R - R_last)        (O_i, l_i, m_i written back)
 *           + es Nq d ]                     (O, once: the last visit, or zeros)
 *  with R = sum_i ct_i r_i (row visits) and R_last = sum_{i: ct_i > 0} r_i. */
double tiled_fa1_bytes(const attn_shape_t *s, size_t br, size_t bc);
double tiled_fa2_bytes(const attn_shape_t *s, size_t br, size_t bc);
/* FA1's workspace: O (fp32, B H Nq d) then l and m (fp32, B H Nq each). */
size_t tiled_fa1_ws_bytes(const attn_shape_t *s);

/* ---- CPU implementations (through the ledger) */
int attention_fa1_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws);
int attention_fa2_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws);
/* attention_fa2_cpu's loop with the tiles given (br <= Nq, bc <= Nk, both
 * >= 1); lse NULL, or fp32 [B H Nq]: each row's log-sum-exp m + ln l (-inf
 * for a row that sees no key). -1 when the tiles do not fit on chip (--sram). */
int tiled_fa2_forward_cpu(const attn_shape_t *s, size_t br, size_t bc, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o,
                          hbm_t *lse);

/* ---- GPU kernels: launchers (asynchronous, stream 0) and what they run */
typedef struct {
    int br, bc, threads;
    size_t smem;       /* dynamic shared memory per block, bytes */
    int blocks_per_sm; /* cudaOccupancyMaxActiveBlocksPerMultiprocessor; 0 when unknown */
    int regs;          /* registers per thread (cudaFuncGetAttributes) */
} tiled_gpu_info_t;

/* Each returns 1 when a kernel instance exists for s (head dim, dtype, the
 * tiles asked for with --br/--bc) and fills info (occupancy only when a
 * device answers); else 0 with the reason in why. */
int attention_fa1_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n);
int attention_fa2_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n);
int attention_fa2_regtile_gpu_info(const attn_shape_t *s, int br, tiled_gpu_info_t *info, char *why, size_t n);
void attention_fa1_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);
void attention_fa2_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);
void attention_fa2_regtile64_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);
void attention_fa2_regtile128_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, void *ws);

/* Shared by the impls' describe(): "GPU: 64x64 tiles, 256 threads, 72 KiB
 * shared memory per block, 3 blocks per SM (occupancy 24 warps)". */
const char *tiled_gpu_text(int ok, const tiled_gpu_info_t *g, const char *why);

extern const attn_impl_t IMPL_ATTN_FA1;
extern const attn_impl_t IMPL_ATTN_FA2;
extern const attn_impl_t IMPL_ATTN_FA2_REGTILE;
extern const attn_impl_t IMPL_ATTN_FA2_REGTILE128;

/* The CPU versions' on-chip working set (fa1_cpu.c, fa2_cpu.c): Q_i, O_i,
 * K_j, V_j, S_ij (fp32) and each query row's m and l, every array through
 * sram_alloc, so a working set beyond --sram fails here. */
typedef struct {
    float *q, *o, *k, *v, *s, *m, *l;
} tiled_chip_t;
int tiled_chip_alloc(ledger_t *lg, tiled_chip_t *c, size_t br, size_t bc, size_t d);
void tiled_chip_free(ledger_t *lg, tiled_chip_t *c, size_t br, size_t bc, size_t d);

#ifdef __cplusplus
}
#endif

#endif
