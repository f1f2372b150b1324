/* Device helpers shared by every tensor-core ladder file (tc1_mma.cu,
 * tc2_swizzle.cu, tc3_pipeline.cu, tc4_exp2.cu, tc5_steps.cuh with its
 * instances tc5_steps.cu and tc5_tuned.cu, tc6_m32.cu, and the
 * demonstration tcx_f16acc.cu): the mma.sync, ldmatrix and cp.async wrappers (inline PTX),
 * the fragment layouts they imply, the shared-memory tile layout, the tile
 * range of a query block under bottom-right causal masking, and the launch
 * glue (dtype and head-dim dispatch, checked launches).
 *
 * ---- The fragments of mma.sync.aligned.m16n8k16 (PTX ISA, "Matrix
 * fragments for mma.m16n8k16"), for a warp's lane t: g = t / 4 (the group,
 * 0..7) and c = t % 4 (the thread in the group, 0..3).
 *
 *   A (16 x 16, row-major), 4 registers of 2 elements (the lower column in
 *   the low 16 bits):
 *      a0 = A[g    ][2c, 2c+1]      a2 = A[g    ][2c+8, 2c+9]
 *      a1 = A[g + 8][2c, 2c+1]      a3 = A[g + 8][2c+8, 2c+9]
 *   B (16 x 8, "col": element (k, n) with consecutive k side by side), 2 registers:
 *      b0 = B[2c, 2c+1][g]          b1 = B[2c+8, 2c+9][g]
 *   C, D (16 x 8, fp32), 4 registers:
 *      d0, d1 = C[g][2c, 2c+1]      d2, d3 = C[g + 8][2c, 2c+1]
 *
 * Consequences the kernels are built on:
 *  - S = Q K^T: B[k][n] = K[key n][dim k], and K is stored [key][dim], so a
 *    B register is two neighbouring dims of one key row: K is read as stored.
 *  - Two neighbouring C tiles of S (keys 16kk .. 16kk+15) hold, register for
 *    register, what the A fragment of P for k-step kk needs (tc_pack_p):
 *    P never leaves registers between the two GEMMs.
 *  - Row g of the warp's 16 rows lives in d0, d1 of the 4 threads of one
 *    quad (c = 0..3), row g + 8 in d2, d3: a row's max and sum need two
 *    __shfl_xor_sync (offsets 1, 2) and nothing else.
 *  - O += P V: B[k][n] = V[key k][dim n], two neighbouring keys of one dim:
 *    V is stored [key][dim], so its B registers come from ldmatrix.trans
 *    (or, in tc1, two 16-bit loads).
 *
 * ---- ldmatrix.x4: lane l gives the address of row l % 8 of 8x8 matrix
 * l / 8 (16 bytes: 8 elements); register i of every lane receives matrix i,
 * lane t holding its row t / 4, elements 2 (t % 4), +1: exactly an A or B
 * register above. With .trans, lane t holds column t / 4, rows 2 (t%4), +1.
 *
 * ---- Shared-memory tiles (tc2 on): rows of D elements = D / 8 chunks of 16
 * bytes. ldmatrix reads one chunk column of 8 consecutive rows; with a row
 * pitch of 128 or 256 bytes those 8 chunks sit in the same 4 banks (8-way
 * conflict). Swizzle: chunk c of row r is stored at chunk c ^ (r % 8), which
 * puts the 8 rows in 8 different 16-byte bank groups, for ldmatrix reads and
 * for the 16-byte writes that fill the tile alike. It needs D / 8 to be a
 * multiple of 8 (d = 64, 128, 192, 256); d = 32 and 96 (4 and 12 chunks) pad
 * each row by one chunk instead (pitch 5 or 13 chunks, odd: 8 consecutive
 * rows again fall in 8 different groups). */
#ifndef STF_TC_COMMON_CUH
#define STF_TC_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "exp_base.h"
#include "gpu_check.h"
#include "tc.h"

/* ---------------------------------------------------------------- names */

/* The shape of one mma.sync.m16n8k16: A is MMA_M x MMA_K, B MMA_K x MMA_N.
 * A warp's slice of query rows is MMA_M (or 2 MMA_M in tc6), S tiles are
 * MMA_N keys wide, and both GEMMs step over MMA_K (d for S, keys for P V). */
#define MMA_M 16
#define MMA_N 8
#define MMA_K 16

/* log2(e) (common/numerics/exp_base.h): the kernels compute e^x as
 * 2^(x log2 e), one MUFU.EX2. */
#define LOG2E STF_LOG2E
#define LOG2E_F STF_LOG2E_F

/* ---------------------------------------------------------------- arguments */

/* What every ladder kernel receives (by value). */
struct tc_args_t {
    const void *q, *k, *v;
    void *o;
    int heads, kv_heads, group; /* group = heads / kv_heads */
    int seq_q, seq_kv, causal;
    float scale;      /* softmax scale */
    float scale_log2; /* scale * log2(e), for the exp2 versions */
};

static inline tc_args_t tc_make_args(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    tc_args_t a;
    a.q = q;
    a.k = k;
    a.v = v;
    a.o = o;
    a.heads = s->heads;
    a.kv_heads = s->kv_heads;
    a.group = s->heads / s->kv_heads;
    a.seq_q = s->seq_q;
    a.seq_kv = s->seq_kv;
    a.causal = s->causal;
    a.scale = s->scale;
    a.scale_log2 = (float)((double)s->scale * LOG2E);
    return a;
}

/* ---------------------------------------------------------------- element types */

/* Two fp32 values rounded (to nearest even) into one 32-bit register of two
 * 16-bit elements, lo in the low half: the A/B register format above. */
template <typename T> __device__ __forceinline__ uint32_t tc_pack(float lo, float hi);
template <> __device__ __forceinline__ uint32_t tc_pack<__half>(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}
template <> __device__ __forceinline__ uint32_t tc_pack<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* ---------------------------------------------------------------- mma.sync */

/* d += a b, one 16x8x16 tensor-core step, fp32 accumulators. */
template <typename T> __device__ __forceinline__ void tc_mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void tc_mma<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// [snippet:mma-bf16]
template <>
__device__ __forceinline__ void tc_mma<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// [/snippet]

// [snippet:pack-p]
/* The A fragment of P for keys 16 kk .. 16 kk + 15, from the two C tiles of
 * S that hold those keys (s0: keys 16kk .. +7, s1: keys 16kk+8 .. +15). */
template <typename T>
__device__ __forceinline__ void tc_pack_p(uint32_t (&a)[4], const float (&s0)[4], const float (&s1)[4])
{
    a[0] = tc_pack<T>(s0[0], s0[1]);
    a[1] = tc_pack<T>(s0[2], s0[3]);
    a[2] = tc_pack<T>(s1[0], s1[1]);
    a[3] = tc_pack<T>(s1[2], s1[3]);
}
// [/snippet]

/* ---------------------------------------------------------------- quad reductions */

// [snippet:quad-reduce]
__device__ __forceinline__ float tc_quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float tc_quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
// [/snippet]

/* 2^x in one MUFU.EX2 (ex2.approx.ftz: relative error about 2^-22; results
 * below 2^-126 flush to 0, an absolute error far under the tolerance's
 * min-normal terms). */
__device__ __forceinline__ float tc_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* ---------------------------------------------------------------- shared memory */

__device__ __forceinline__ uint32_t tc_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void tc_ldsm_x4(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void tc_ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* 16 bytes global -> shared without passing through registers (sm_80+);
 * src_bytes = 0 writes 16 zero bytes and reads nothing (rows past the end). */
__device__ __forceinline__ void tc_cp_async16(uint32_t saddr, const void *g, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr),
                 "l"(__cvta_generic_to_global(g)), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void tc_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void tc_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* The tile layout of tc2 on (see the top of this file): byte offset of
 * 16-byte chunk c of row r. */
// [snippet:swizzle]
template <int D> struct tc_layout {
    static constexpr int CH = D / 8; /* 16-byte chunks per row */
    static constexpr bool SWIZZLE = CH % 8 == 0;
    static constexpr int PITCH = SWIZZLE ? CH : CH + 1; /* chunks */
    static __device__ __forceinline__ uint32_t off(int r, int c)
    {
        return (uint32_t)(r * PITCH + (SWIZZLE ? (c ^ (r & 7)) : c)) * 16u;
    }
    static constexpr __host__ __device__ int bytes(int rows) { return rows * PITCH * 16; }
};
// [/snippet]

/* From tc5c (IMMOFF) on, ldmatrix addresses are a per-lane register plus an
 * immediate: the byte offset, inside a row, of 16-byte chunk 8 k + 2 i + lc
 * for a lane reading row lr (mod 8) of a tile is tc_chunk_off<D>(i, lc, lr)
 * + k * 128. The swizzle XORs the chunk with row % 8, which only touches the
 * chunk's low 3 bits, so ((2 i) ^ lc ^ (lr % 8)) * 16 for the swizzled
 * layout; (2 i + lc) * 16 for the padded one (d = 32, 96). */
template <int D> __device__ __forceinline__ uint32_t tc_chunk_off(int i, int lc, int lr)
{
    return tc_layout<D>::SWIZZLE ? (uint32_t)(((2 * i) ^ lc ^ (lr & 7)) * 16) : (uint32_t)((2 * i + lc) * 16);
}

/* ROWS x D elements from global rows g[0 .. valid-1] (row pitch D) into the
 * tile at shared address s, by NT threads, 16 bytes each; rows >= valid are
 * zero-filled (their scores are masked, and 0 * V stays finite). */
template <typename T, int D, int ROWS, int NT>
__device__ __forceinline__ void tc_tile_async(uint32_t s, const T *g, int valid)
{
    constexpr int CH = D / 8, TOTAL = ROWS * CH;
#pragma unroll
    for (int it = 0; it < (TOTAL + NT - 1) / NT; it++) {
        const int i = it * NT + (int)threadIdx.x, r = i / CH, c = i % CH;
        if (TOTAL % NT != 0 && i >= TOTAL) break;
        const bool ok = r < valid;
        tc_cp_async16(s + tc_layout<D>::off(r, c), g + (size_t)(ok ? r : 0) * D + c * 8, ok ? 16 : 0);
    }
}

/* The same through registers (16-byte loads and stores): tc2's loader. */
template <typename T, int D, int ROWS, int NT>
__device__ __forceinline__ void tc_tile_sync(char *s, const T *g, int valid)
{
    constexpr int CH = D / 8, TOTAL = ROWS * CH;
#pragma unroll
    for (int it = 0; it < (TOTAL + NT - 1) / NT; it++) {
        const int i = it * NT + (int)threadIdx.x, r = i / CH, c = i % CH;
        if (TOTAL % NT != 0 && i >= TOTAL) break;
        uint4 x = make_uint4(0, 0, 0, 0);
        if (r < valid) x = *reinterpret_cast<const uint4 *>(g + (size_t)r * D + c * 8);
        *reinterpret_cast<uint4 *>(s + tc_layout<D>::off(r, c)) = x;
    }
}

/* ---------------------------------------------------------------- masking */

/* The tiles a query block [q0, q0 + BQ) must visit. Bottom-right causal: row i
 * sees keys j <= i + off, off = seq_kv - seq_q; the block's last valid row
 * sees the most, so keys from kv_end on are invisible to all its rows and
 * their tiles are never loaded. */
__device__ __forceinline__ int tc_kv_end(const tc_args_t &a, int q0, int bq)
{
    if (!a.causal) return a.seq_kv;
    const int last = min(q0 + bq, a.seq_q) - 1;
    return max(0, min(a.seq_kv, last + 1 + (a.seq_kv - a.seq_q)));
}

/* 1 when the keys [kv0, kv0 + bkv) of a tile need a mask for the 16 rows of
 * a warp starting at row wq0: the tile runs past seq_kv, or (causal) past
 * the first row's last visible key. Only diagonal and tail tiles do. */
__device__ __forceinline__ bool tc_tile_needs_mask(const tc_args_t &a, int wq0, int kv0, int bkv)
{
    return kv0 + bkv > a.seq_kv || (a.causal && kv0 + bkv - 1 > wq0 + (a.seq_kv - a.seq_q));
}

/* 1 when no key of the tile is visible to any of the warp's 16 rows (or the
 * warp has no valid row): the warp skips its arithmetic for this tile. */
__device__ __forceinline__ bool tc_warp_skips(const tc_args_t &a, int wq0, int kv0)
{
    if (wq0 >= a.seq_q) return true;
    return a.causal && kv0 > min(wq0 + MMA_M - 1, a.seq_q - 1) + (a.seq_kv - a.seq_q);
}

/* Sets the score of an invisible (query, key) pair to -inf, for the C tiles
 * s[0 .. NT-1] of keys kv0 + 8 j .. (raw or scaled scores alike). */
template <int NT>
__device__ __forceinline__ void tc_apply_mask(float (&s)[NT][4], const tc_args_t &a, int wq0, int kv0)
{
    const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    const int off = a.seq_kv - a.seq_q;
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int key = kv0 + MMA_N * j + 2 * c + (e & 1);
            const int row = wq0 + g + (MMA_M / 2) * (e >> 1);
            if (key >= a.seq_kv || (a.causal && key > row + off)) s[j][e] = -INFINITY;
        }
}

/* ---------------------------------------------------------------- launch glue */

/* Head dims as a bit set (bit D / 32): what a version's launcher F is built
 * for (F::DIMS). The first four rungs take TC_DIMS_BASE; tc5_tuned all. */
#define TC_DIM_BIT(D) (1u << ((D) / 32))
#define TC_DIMS_BASE (TC_DIM_BIT(64) | TC_DIM_BIT(96) | TC_DIM_BIT(128))
#define TC_DIMS_ALL (TC_DIMS_BASE | TC_DIM_BIT(32) | TC_DIM_BIT(192) | TC_DIM_BIT(256))

template <typename T, int D, typename F> static int tc_run_dim(F &f)
{
    if constexpr ((F::DIMS & TC_DIM_BIT(D)) != 0) return f.template run<T, D>();
    else return -1;
}

/* Calls F::template run<T, D>() for the shape's storage type and head dim;
 * -1 for a combination the kernels are not built for (attn_tc_supports has
 * refused it before this is reached). Only the dims in F::DIMS are
 * instantiated. */
template <typename F> static int tc_dispatch(const tc_shape_t *s, F &f)
{
#define TC_DIMS(T)                                                                                 \
    switch (s->dim) {                                                                              \
    case 32: return tc_run_dim<T, 32>(f);                                                          \
    case 64: return tc_run_dim<T, 64>(f);                                                          \
    case 96: return tc_run_dim<T, 96>(f);                                                          \
    case 128: return tc_run_dim<T, 128>(f);                                                        \
    case 192: return tc_run_dim<T, 192>(f);                                                        \
    case 256: return tc_run_dim<T, 256>(f);                                                        \
    default: return -1;                                                                            \
    }
    if (s->dt == DT_F16) TC_DIMS(__half)
    if (s->dt == DT_BF16) TC_DIMS(__nv_bfloat16)
#undef TC_DIMS
    return -1;
}

/* The grid of every version: x = query block (reversed when causal, so the
 * blocks with the most tiles start first), y = head, z = batch. Consecutive
 * blocks share one head's K/V, which stays in L2 while they stream it. */
static inline dim3 tc_grid(const tc_shape_t *s, int bq)
{
    return dim3((unsigned)((s->seq_q + bq - 1) / bq), (unsigned)s->heads, (unsigned)s->batch);
}
__device__ __forceinline__ int tc_qblock(const tc_args_t &a)
{
    return a.causal ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
}

/* Raises the kernel's dynamic shared-memory limit (once per kernel: one
 * static per instance of this template) and launches it. */
template <auto kernel> static void tc_launch_kernel(dim3 grid, int threads, int smem, const tc_args_t &a)
{
    static int raised;
    if (!raised) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        raised = 1;
    }
    kernel<<<grid, threads, smem>>>(a);
    LAUNCH_CHECK();
}

/* "BQxBKV tiles, W warps, S KB smem, R regs, B blocks/SM" */
template <typename K>
static void tc_describe_kernel(char *buf, size_t n, K kernel, int bq, int bkv, int threads, int smem, const char *extra)
{
    cudaFuncAttributes fa;
    CUDA_CHECK(cudaFuncGetAttributes(&fa, kernel));
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int blocks = 0;
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, smem));
    snprintf(buf, n, "Q tile %d x K/V tile %d, %d warps (%d threads), %.1f KB smem/block, %d regs, %d blocks/SM%s%s",
             bq, bkv, threads / 32, threads, smem / 1024.0, fa.numRegs, blocks, extra ? ", " : "", extra ? extra : "");
}

/* One rung's entry points (tc.h's table, tc_impls.c): I<T, D> describes an
 * instance (kernel, BQ, BKV, THREADS, SMEM: dynamic shared memory in bytes,
 * what(): the end of its describe line); TC_RUNG(p, I, DIMS) defines
 * p_launch and p_describe for the head dims in DIMS. */
template <template <typename, int> class I, unsigned DIMS_> struct tc_rung_run {
    static constexpr unsigned DIMS = DIMS_;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        using J = I<T, D>;
        tc_launch_kernel<J::kernel>(tc_grid(s, J::BQ), J::THREADS, J::SMEM, tc_make_args(s, q, k, v, o));
        return 0;
    }
};
template <template <typename, int> class I, unsigned DIMS_> struct tc_rung_desc {
    static constexpr unsigned DIMS = DIMS_;
    char *buf;
    size_t n;
    template <typename T, int D> int run()
    {
        using J = I<T, D>;
        tc_describe_kernel(buf, n, J::kernel, J::BQ, J::BKV, J::THREADS, J::SMEM, J::what());
        return 0;
    }
};
#define TC_RUNG(p, I, DIMS)                                                                           \
    extern "C" int p##_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o) \
    {                                                                                                 \
        tc_rung_run<I, DIMS> f = { s, q, k, v, o };                                                   \
        return tc_dispatch(s, f);                                                                     \
    }                                                                                                 \
    extern "C" int p##_describe(const tc_shape_t *s, char *buf, size_t n)                             \
    {                                                                                                 \
        tc_rung_desc<I, DIMS> f = { buf, n };                                                         \
        return tc_dispatch(s, f);                                                                     \
    }

#endif
