/* Stage 08: the backward pass of attention, by recomputation (Q: how does
 * FlashAttention's backward avoid storing P?).
 *
 * Forward:  S = scale Q K^T,  P = softmax(S) (row-wise, masked keys excluded),
 *           O = P V,  and per query row the log-sum-exp L = m + ln l, the only
 *           thing FlashAttention's forward keeps beside O.
 * Backward, given dO:
 *           dV = P^T dO,  dP = dO V^T,  D = rowsum(dO * O)  (= rowsum(P * dP)),
 *           dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
 * Standard backward keeps P (N x N per head) from the forward; FlashAttention's
 * recomputes P = exp(S - L) tile by tile from Q, K and L.
 *
 * Layout as the other attention stages (attention_ref.h): Q, O, dO, dQ are
 * [B, H, Nq, d]; K, V, dK, dV are [B, Hkv, Nk, d]; L and D are fp32
 * [B, H, Nq]. Query head h reads K/V head h / (H / Hkv); dK and dV of a K/V
 * head are summed over the H / Hkv query heads of its group. Causal masks
 * align bottom-right. A query row that sees no key has O = 0, L = -inf and
 * contributes nothing to any gradient (dQ of that row is 0). */
#ifndef STF_STAGE08_H
#define STF_STAGE08_H

#include <stddef.h>

#include "../05_tiled_attention/tiled.h"
#include "attention_ref.h"
#include "ledger.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- the GPU
 * Kernels (bwd_*.cu), C linkage. A build without CUDA declines them all. */
typedef enum {
    BWD_GPU_STANDARD = 0, /* P stored by the forward (N x N); cuBLAS GEMMs */
    BWD_GPU_FA2_FP32,     /* FlashAttention-2 order on CUDA cores, fp32 */
    BWD_GPU_TC_ATOMIC,    /* tensor cores (bf16/fp16, fp32 accumulation); dQ by fp32 atomics */
    BWD_GPU_TC_DET,       /* the same, dQ without atomics: deterministic, bit-identical across runs */
    BWD_GPU_TC_K32,       /* bwd-tc-atomic with 32 keys per warp, 32 queries per block (d <= 64) */
    BWD_GPU_NKERNELS
} bwd_gpu_kernel_t;

/* The kernel's --kernel name ("bwd-standard", "bwd-fa2", "bwd-tc-atomic",
 * "bwd-tc-det", "bwd-tc-k32"). */
const char *bwd_gpu_name(int kern);
/* 1 when kern can run s on this build and GPU, else 0 with the reason. */
int bwd_gpu_supports(int kern, const attn_shape_t *s, char *why, size_t n);
/* Device workspace bytes kern needs on s (P and dP for the standard one, fp32
 * dQ accumulators, D, ...), allocated by the caller. */
size_t bwd_gpu_ws_bytes(int kern, const attn_shape_t *s);
/* Tiles of kern's backward on s (Br x Bc); kern < 0: of the forward
 * (tensor cores: 64 x 64, CUDA cores: 32 x 32); 0 x 0 when untiled
 * (BWD_GPU_STANDARD). */
void bwd_gpu_tiles(int kern, const attn_shape_t *s, int *br, int *bc);
/* The forward that also writes L (fp32, natural log, -inf for a row with no
 * visible key): O in s->dt. Asynchronous on stream 0; 0, or -1 with a message
 * when the shape is not supported. */
int bwd_gpu_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse);
/* Which forward bwd_gpu_forward runs for s: 1 tensor cores (P rounded for the
 * PV product), 0 CUDA cores in fp32, -1 none (the checks' rounding follows it). */
int bwd_gpu_forward_kind(const attn_shape_t *s);
/* The backward: q, k, v, o, dout in s->dt, lse from bwd_gpu_forward; writes
 * dq, dk, dv in s->dt (every element). Asynchronous on stream 0; 0, or -1
 * with a message when the shape is not supported. */
int bwd_gpu_launch(int kern, const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws);

/* ---------------------------------------------------------------- the CPU
 * and the checks (s08c): the fp64 reference of O, L, dQ, dK, dV from the
 * stored inputs (bwd_ref.c), the tolerance derived for each gradient row
 * (notes/08_backward.md, "How the gradients are checked"), the ledger
 * implementations (standard_bwd_cpu.c, fa2_bwd_cpu.c), and the stage's
 * implementation list (backward_impls.c). */

/* What an implementation rounds to the storage type on the way to the
 * gradients (16-bit intermediates, or operands of a 16-bit MMA). */
enum {
    BWD_ROUND_P = 1u,    /* P stored in dt (standard) or fed to the dV MMA in dt */
    BWD_ROUND_DP = 2u,   /* dP stored in dt (standard) */
    BWD_ROUND_DS = 4u,   /* dS stored in dt or fed to the dQ / dK MMAs in dt */
    BWD_MMA_LOWP = 8u,   /* 16-bit GEMMs on tensor cores (fp32 accumulation) */
    BWD_ROUND_S = 16u,   /* the logits S stored in dt before P is formed from them (standard, CPU) */
};

/* The reference of one gradient row (a row of dQ, dK or dV: d values) with
 * what its tolerance is built from. */
typedef struct {
    double amax; /* A = max_k sum |terms| of the row's sum (the scale of its terms) */
    double rmax; /* max_k |r_k| of the reference row */
    double tol;  /* the row's tolerance, in units of A' = max(A, min_normal(dt)) */
    size_t n;    /* terms summed (visible keys for dQ; visible (head, query) pairs for dK, dV) */
} bwd_row_t;

/* The fp64 reference of the whole problem: O, L per query row, dQ per query
 * row, dK and dV per K/V row (summed over the group's query heads), each row
 * with its tolerance for an implementation that rounds as `rounding` says and
 * whose forward rounded as `fwd_rounding` (ATT_ROUND_* of attention_ref.h;
 * the backward reads the forward's stored O through D = rowsum(dO * O)). */
typedef struct {
    attn_shape_t s;
    double *o, *lse, *dq, *dk, *dv;     /* [B H Nq d], [B H Nq], [B H Nq d], [B Hkv Nk d] x 2 */
    double *lse_tol;                    /* absolute tolerance of each L */
    attn_row_stats_t *ost;              /* the forward's row statistics (attention_ref.h) */
    bwd_row_t *rq, *rk, *rv;            /* per gradient row */
} bwd_ref_t;

/* Computes the reference of every row. q, k, v, dout in s->dt. Returns 0, or
 * -1 when out of host memory. */
int bwd_ref_compute(bwd_ref_t *r, const attn_shape_t *s, const void *q, const void *k, const void *v, const void *dout,
                    unsigned rounding, unsigned fwd_rounding);
/* The same restricted to the K/V groups g with want[g] != 0 (g = b Hkv + hkv,
 * NULL: all): the rows of other groups are left 0 with tol = -1 (not
 * computed, never checked). Cost: about 5 Nq Nk d multiply-adds per query
 * head computed. */
int bwd_ref_compute_groups(bwd_ref_t *r, const attn_shape_t *s, const void *q, const void *k, const void *v,
                           const void *dout, unsigned rounding, unsigned fwd_rounding, const unsigned char *want);
/* Sampled rows only, for shapes whose groups are too costly: in each wanted
 * group the query rows (h - first head of the group) Nq + i that are
 * multiples of stride, and the group's last row: their O, L and dQ (each
 * needs only its own row: about 3 Nk d multiply-adds); no dK, dV rows. */
int bwd_ref_compute_rows(bwd_ref_t *r, const attn_shape_t *s, const void *q, const void *k, const void *v,
                         const void *dout, unsigned rounding, unsigned fwd_rounding, const unsigned char *want,
                         size_t stride);
void bwd_ref_free(bwd_ref_t *r);
/* The loss the gradients are of, in fp64 from the stored inputs:
 * f = sum over all elements of dO * O (so dF/dO = dO: the backward of O). The
 * tests take central differences of it. */
double bwd_ref_loss(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *dout);

/* One gradient's check over many rows (the rules of attention_ref.h's
 * attn_check_t: NaN or inf fails; a tolerance not below half the error of
 * an all-zero row is unresolved, which fails; a tolerance above
 * CHECK_TOL_CAP excuses the row; too many excused rows fail). */
typedef struct {
    double max_err, worst_ratio, max_tol;
    size_t rows, nonfinite, unresolved;
    /* rows not judged because their bound exceeds CHECK_TOL_CAP: where a
     * 16-bit O makes D, and with it dS = P (dP - D), mostly rounding noise
     * (dP - D cancels). The check fails when more than one row and more than
     * one row in 8 are, or every row is. */
    size_t excused;
} bwd_check_t;
void bwd_check_init(bwd_check_t *c);
/* g: the d stored values (type dt) of the row; ref: its d reference values. */
double bwd_check_row(bwd_check_t *c, const void *g, dtype_t dt, const double *ref, const bwd_row_t *rw, size_t d);
int bwd_check_ok(const bwd_check_t *c);
/* Checks whole arrays (dq [B H Nq d], dk and dv [B Hkv Nk d], stored type dt)
 * against r, every row whose tol >= 0; c[0..2]: dQ, dK, dV. Returns 1 when
 * all three pass. */
int bwd_check_all(const bwd_ref_t *r, const void *dq, const void *dk, const void *dv, dtype_t dt, bwd_check_t c[3]);

/* ---- CPU implementations, every HBM byte through the ledger. The forward
 * writes O and L (and, for the standard one, S and P in ws); the backward
 * reads q, k, v, o, dout (and lse, ws) and writes dq, dk, dv. */
typedef struct {
    hbm_t q, k, v, o, lse, dout, dq, dk, dv;
} bwd_io_t;

/* The tiles of the CPU FA2 backward (K/V block of Bc rows outer, Q block of
 * Br rows inner): --br/--bc if given (the other 64), else, with --sram M only,
 * the largest square tile whose working set fits in M, else 64 x 64.
 * On chip, fp32: K_j, V_j, dK_j, dV_j (Bc x d each), Q_i, dO_i (Br x d), L_i,
 * D_i (Br), S_ij = P_ij and dP_ij = dS_ij (Br x Bc):
 *   4 (4 Bc d + 2 Br d + 2 Br + 2 Br Bc) bytes. */
size_t bwd_fa2_onchip_bytes(size_t br, size_t bc, size_t d);
int bwd_fa2_tiles(const attn_shape_t *s, size_t *br, size_t *bc, char *why, size_t n);

/* The forwards. fa2: stage 05's FA2 order, also writing L (fp32, natural log,
 * -inf for a row that sees no key). standard: S and P (N x N each, dt) in ws,
 * then O = P V; also writes L. */
int bwd_fa2_forward_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws);
int bwd_standard_forward_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws);
/* The backwards. standard: D = rowsum(dO * O) (fp32, ws), dV = P^T dO,
 * dP = dO V^T (N x N, written over S), dS = P * (dP - D) (in place of dP),
 * dQ = scale dS K, dK = scale dS^T Q. fa2: D, then K/V blocks outer, Q blocks
 * inner, P recomputed as e^{S - L}, dK_j and dV_j on chip, dQ accumulated in
 * an fp32 array in HBM (ws), converted to dt at the end. */
int bwd_standard_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws);
int bwd_fa2_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws);

/* ---- closed forms (bytes; es = dt bytes; R = B H Nq query rows, nn = B H Nq Nk).
 * standard forward: es (2E + G' 2 Ekv... see backward_impls.c) */
double bwd_standard_fwd_bytes(const attn_shape_t *s);
double bwd_standard_bwd_bytes(const attn_shape_t *s);
double bwd_fa2_fwd_bytes(const attn_shape_t *s, size_t br, size_t bc);
double bwd_fa2_bwd_bytes(const attn_shape_t *s, size_t br, size_t bc);
size_t bwd_standard_ws_bytes(const attn_shape_t *s);
size_t bwd_fa2_ws_bytes(const attn_shape_t *s);
/* Query blocks of Br rows that see at least one key of the key block
 * [key0, key0 + c): the first such block (Tr when none). */
size_t bwd_first_qblock(const attn_shape_t *s, size_t br, size_t key0);

/* The K/V slice (b Hkv + h / G) that query head bh = b H + h reads (also
 * when Nq = 0, where attention_ref.h's attn_kv_slice cannot be asked). */
static inline size_t bwd_kv_head(const attn_shape_t *s, size_t bh)
{
    return (bh / s->heads) * s->kv_heads + (bh % s->heads) / (s->heads / s->kv_heads);
}

/* ---- the stage's implementation list (backward_impls.c) */
typedef struct {
    const char *name;   /* --kernel name: "bwd-standard", "bwd-fa2", "bwd-tc-atomic", "bwd-tc-det", "bwd-tc-k32" */
    const char *stage;  /* "08" */
    int gpu_kernel;     /* bwd_gpu_kernel_t, or -1: CPU only */
    int (*cpu_fwd)(const attn_shape_t *s, bwd_io_t *a, void *ws); /* NULL: GPU only */
    int (*cpu_bwd)(const attn_shape_t *s, bwd_io_t *a, void *ws);
    int deterministic;  /* 1: bit-identical across runs (checked by the driver on the GPU) */
} bwd_impl_t;

extern const bwd_impl_t BWD_IMPLS[];
extern const int BWD_NIMPLS;
/* 1 when im can run s on the device (gpu = 1) or the CPU, else 0 with why. */
int bwd_impl_supports(const bwd_impl_t *im, const attn_shape_t *s, int gpu, char *why, size_t n);
/* The rounding of its backward and of the forward it reads, for the tolerance. */
unsigned bwd_impl_rounding(const bwd_impl_t *im, const attn_shape_t *s, int gpu);
unsigned bwd_impl_fwd_rounding(const bwd_impl_t *im, const attn_shape_t *s, int gpu);
/* Workspace bytes (host for the CPU, device for the GPU). */
size_t bwd_impl_ws_bytes(const bwd_impl_t *im, const attn_shape_t *s, int gpu);
/* Closed-form HBM bytes of its forward and of its backward (what the CPU
 * ledger counts exactly; the GPU kernels' model). */
double bwd_impl_fwd_bytes(const bwd_impl_t *im, const attn_shape_t *s, int gpu);
double bwd_impl_bwd_bytes(const bwd_impl_t *im, const attn_shape_t *s, int gpu);
/* Its tiles as text ("64x64"), "-" when untiled. */
const char *bwd_impl_tiles(const bwd_impl_t *im, const attn_shape_t *s, int gpu);
const bwd_impl_t *bwd_impl_find(const char *name);

/* The program (bwd_driver.c): options as the attention stages (cli.h) plus
 * the four arrays of the backward. */
int backward_stage_main(int argc, char **argv);

/* FLOPs of the backward as FlashAttention's benchmarks count them: 2.5 times
 * the forward's (attn_flops): five GEMMs of 2 d per visible pair against two. */
double bwd_flops(const attn_shape_t *s);

#ifdef __cplusplus
}
#endif

#endif
