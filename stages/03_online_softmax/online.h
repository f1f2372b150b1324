/* Stage 03: online softmax. The maximum and the denominator in one sweep,
 * rescaling the running sum whenever the maximum grows (Milakov & Gimelshein
 * 2018), then the normalising sweep. Built on the (m, d) state and its merge
 * (md.h), which also lets a row be cut across threads, blocks and clusters:
 *
 *   online         one block per row, 2 sweeps: 2 loads + 1 store
 *   merge-onchip   one block per row held in registers; each thread's (m, d)
 *                  from its registers (max, then sum), one merge across the
 *                  row: 1 load + 1 store
 *   online-split   few long rows: each row cut into chunks on separate
 *                  blocks, their (m, d) merged by the last block to finish,
 *                  the normalising sweep on all blocks: 2 loads + 1 store,
 *                  plus the partial states
 *   merge-wave     online-split's chunks cut to fit one wave: every block of
 *                  the grid resident at once, each holds its chunk in
 *                  registers, waits in the kernel for its row's partial
 *                  states and merges them itself: 1 load + 1 store, one
 *                  kernel
 *   merge-cluster  a row held in the registers of a thread-block cluster
 *                  (sm_90), the blocks' (m, d) exchanged through distributed
 *                  shared memory: 1 load + 1 store for rows far longer than
 *                  one SM holds
 *   merge-persist  merge-cluster with clusters that stay resident and loop
 *                  over rows, the next row's chunk copied into shared memory
 *                  (cp.async) while the current one is reduced and written */
#ifndef STF_STAGE03_H
#define STF_STAGE03_H

#include <stddef.h>

#include "../02_safe_softmax/safe.h"
#include "dtype.h"
#include "ledger.h"
#include "md.h"
#include "softmax_bench.h"

#ifdef __cplusplus
extern "C" {
#endif

int softmax_online_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
int softmax_merge_onchip_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
int softmax_online_split_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
int softmax_merge_cluster_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);

void softmax_online_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
void softmax_merge_onchip_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
void softmax_online_split_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
void softmax_merge_cluster_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
int softmax_merge_wave_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
void softmax_merge_wave_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);
int softmax_merge_persist_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols);
void softmax_merge_persist_gpu(const void *x, void *y, size_t rows, size_t cols, dtype_t dt);

/* ---- online-split (split_cpu.c, split_gpu.cu) */

/* Blocks of SPLIT_THREADS threads; a chunk is at least SPLIT_MIN_VEC vectors
 * (one per thread). SPLIT_CPU_SMS: the SM count the CPU version plans for
 * (the H200's), so that its ledger counts what the GPU does. */
#define SPLIT_THREADS 256
#define SPLIT_MIN_VEC 256
#define SPLIT_CPU_SMS 132
/* Chunks per row for rows x cols of dt on a GPU of `sms` SMs: enough blocks
 * for 8 per SM (2048 threads), at least SPLIT_MIN_VEC vectors each; 1 when
 * one block per row would already fill 1/8 of the SMs' thread slots, where
 * the split stopped paying on the H200 (why says so). A count forced by
 * softmax_split_set_chunks() is returned as is. */
size_t softmax_split_chunks(size_t rows, size_t cols, dtype_t dt, int sms, char *why, size_t why_len);
/* Tests only: force the chunks per row (0: automatic). Both the CPU and the
 * GPU versions obey it, and online-split then applies to every shape. */
void softmax_split_set_chunks(size_t chunks);
size_t softmax_split_forced(void);
/* Bytes of partial states the split moves beyond the model's 2 loads + 1
 * store, for `rows` rows cut into `chunks`: each block writes its (m, d)
 * (8 bytes), the last block of a row reads them all and writes the row's
 * state, and each normalising block reads that: rows (24 chunks + 8). */
size_t softmax_split_extra_bytes(size_t rows, size_t chunks);

/* ---- merge-cluster (cluster_cpu.c, cluster_gpu.cu) */

/* Each thread of a cluster's block holds CLUSTER_PER_THREAD elements of the
 * row in registers (fp32: 8 vectors of 16 bytes; fp16/bf16: 4; rows that are
 * not a multiple of the vector: single elements). A "small" block has
 * CLUSTER_THREADS_S threads (16384 elements, 64 KiB of fp32; two blocks an
 * SM), a "large" one CLUSTER_THREADS_L (32768 elements; one block an SM).
 * 32 elements a thread, not 64, for 16-bit rows too: at 64 the conversions
 * and exponentials of one thread stall its block (stage 02's onchip.cuh),
 * and the registers spill. */
#define CLUSTER_PER_THREAD 32
#define CLUSTER_THREADS_S 512
#define CLUSTER_THREADS_L 1024
#define CLUSTER_PORTABLE_MAX 8
#define CLUSTER_NONPORTABLE_MAX 16
typedef struct {
    int blocks;          /* cluster size: blocks per row */
    int threads;         /* per block */
    size_t block_elems;  /* elements one block holds */
    size_t block_bytes;  /* their size */
} cluster_plan_t;
/* The plan for rows of `cols` elements of dt, given the largest cluster the
 * device allows for small and for large blocks (max_s, max_l; the CPU passes
 * CLUSTER_NONPORTABLE_MAX). Smallest cluster of small blocks that holds the
 * row, else of large blocks; 0 (and why) when no cluster holds it, or when
 * the row fits one block's registers (merge-onchip is then the path). A size
 * forced by softmax_cluster_set_size() is used whenever the row fits it. */
int merge_cluster_plan(size_t cols, dtype_t dt, int max_s, int max_l, cluster_plan_t *plan, char *why, size_t why_len);
/* Tests only: force the cluster size (0: automatic); with it, rows that fit
 * one block are clustered too, so that short rows exercise the exchange. */
void softmax_cluster_set_size(int blocks);
int softmax_cluster_forced(void);
/* GPU side (cluster_gpu.cu): 1 when this device and build can launch the
 * cluster kernels, with the largest cluster sizes for small and large blocks
 * (cudaOccupancyMaxPotentialClusterSize); else 0 and why. */
int merge_cluster_gpu_limits(dtype_t dt, size_t cols, int *max_s, int *max_l, char *why, size_t why_len);

/* ---- merge-wave (wave_cpu.c, wave_gpu.cu) */

/* Blocks of WAVE_THREADS threads, WAVE_PER_THREAD elements a thread in
 * registers (16384 a block: 64 KiB of fp32), WAVE_BLOCKS_PER_SM blocks an SM
 * (the kernel is compiled for it: at most 64 registers a thread). The CPU
 * plans for an H200: WAVE_CPU_SLOTS = 2 x 132 resident blocks. */
#define WAVE_THREADS 512
#define WAVE_PER_THREAD 32
#define WAVE_BLOCKS_PER_SM 2
#define WAVE_MIN_VEC 512
#define WAVE_CPU_SLOTS (2 * 132)
/* Chunks per row for rows x cols of dt when `slots` blocks can be resident
 * at once: as many as the wave holds (slots / rows), at least enough that a
 * chunk fits one block's registers, and no chunk under WAVE_MIN_VEC vectors
 * unless the registers need it. 0 (and why) when the matrix does not fit one
 * wave's registers, or when one block a row holds the row (merge-onchip's
 * case). A count forced by softmax_wave_set_chunks() is returned when it fits
 * (rows x P <= slots, a chunk <= one block's registers), else 0. */
size_t softmax_wave_chunks(size_t rows, size_t cols, dtype_t dt, size_t slots, char *why, size_t why_len);
/* Tests only: force the chunks per row (0: automatic). */
void softmax_wave_set_chunks(size_t chunks);
size_t softmax_wave_forced(void);
/* Bytes of partial states beyond 1 load + 1 store: each block writes its
 * (m, d) (8 bytes) and reads all P of its row: rows (8 P + 8 P^2). */
size_t softmax_wave_extra_bytes(size_t rows, size_t chunks);
/* GPU side (wave_gpu.cu): blocks of the merge-wave kernel that fit the
 * device at once (occupancy x SMs), for dt and cols' vector width. */
size_t merge_wave_gpu_slots(dtype_t dt, size_t cols);

/* ---- merge-persist (persist_cpu.c, persist_gpu.cu): merge_cluster_plan's
 * clusters, a grid of as many as fit at once, each looping over rows;
 * clusters of small blocks at most PERSIST_SMALL_MAX (larger rows take
 * large blocks). */
#define PERSIST_SMALL_MAX 8
/* PERSIST_SMALL_MAX, or STF_PERSIST_SMALL_MAX from the environment
 * (experiments: 16 gives merge-cluster's plan back). */
int merge_persist_small_max(void);
/* GPU side: as merge_cluster_gpu_limits, for the persistent kernel (its
 * staging buffer in shared memory included). */
int merge_persist_gpu_limits(dtype_t dt, size_t cols, int *max_s, int *max_l, char *why, size_t why_len);
/* Clusters the CPU simulation assumes resident (an H200's 264 block slots of
 * small blocks, 132 of large ones, divided by the cluster size). */
size_t merge_persist_cpu_clusters(const cluster_plan_t *p);

extern const softmax_impl_t IMPL_ONLINE;        /* 2 loads + 1 store */
extern const softmax_impl_t IMPL_MERGE_ONCHIP;  /* 1 load + 1 store */
extern const softmax_impl_t IMPL_ONLINE_SPLIT;  /* 2 loads + 1 store (+ partial states) */
extern const softmax_impl_t IMPL_MERGE_CLUSTER; /* 1 load + 1 store */
extern const softmax_impl_t IMPL_MERGE_WAVE;    /* 1 load + 1 store (+ partial states) */
extern const softmax_impl_t IMPL_MERGE_PERSIST; /* 1 load + 1 store */

#ifdef __cplusplus
}
#endif

#endif
