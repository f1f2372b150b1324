/* Device helpers of stage 05c (h1_wgmma.cu, h2_tma.cu, h3_warpspec.cu): the
 * Hopper-only instructions as inline PTX (wgmma, its shared-memory matrix
 * descriptors, mbarrier, TMA, setmaxnreg), the shared-memory tile layout the
 * descriptors and the tensor maps agree on, and the launch glue. The
 * masking, the tile range of a query block, the dtype/dim dispatch and the
 * softmax arguments come from stage 05b (tc_common.cuh), unchanged.
 *
 * ---- wgmma.mma_async.sync.aligned.m64nNk16 (PTX ISA, "Asynchronous
 * warpgroup-level matrix multiply-accumulate"): one warp group (4 warps, 128
 * threads, the first warp's index a multiple of 4) computes D (64 x N, fp32)
 * += A (64 x 16) B (16 x N). A comes from shared memory (a descriptor) or
 * from registers; B always from shared memory. The instruction only starts
 * the work: wgmma.commit_group closes a group of them and wgmma.wait_group N
 * waits until at most N groups are in flight; wgmma.fence orders earlier
 * register writes (the accumulators, the A registers) before the next one.
 *
 * Register fragments (PTX ISA, "Register fragments and shared memory matrix
 * layouts" for m64nNk16): warp w of the group owns rows 16 w .. 16 w + 15,
 * and inside its 16 rows the layout is mma.m16n8k16's (tc_common.cuh), so for
 * lane t, g = t / 4, c = t % 4:
 *   D, N / 2 fp32 registers d[j][e] (j = 0 .. N/8 - 1, e = 0 .. 3):
 *       row 16 w + g + 8 (e / 2), column 8 j + 2 c + (e % 2)
 *   A from registers, 4 registers of two 16-bit elements:
 *       a0 = A[g][2c, 2c+1]  a1 = A[g+8][2c, 2c+1]  a2 = A[g][2c+8, +9]  a3 = A[g+8][2c+8, +9]
 * So, as in stage 05b, a row of S lives in one quad (max and sum: two
 * shuffles), and the S tiles j = 2 kk, 2 kk + 1 are, register for register,
 * the A fragment of P for keys 16 kk .. 16 kk + 15 (tc_pack_p): P stays in
 * registers between the two GEMMs (FlashAttention-3, Shah et al. 2024, 3.1).
 *
 * ---- Shared-memory tiles: the 128-byte swizzle. A tile of ROWS rows of D
 * 16-bit elements is stored as D / 64 panels of 64 columns; a panel is ROWS
 * rows of 128 bytes, and 16-byte chunk c (0 .. 7) of row r sits at chunk
 * c ^ (r % 8): 8 rows x 128 bytes = one 1024-byte "swizzle atom", the layout
 * TMA writes with CU_TENSOR_MAP_SWIZZLE_128B and wgmma reads with swizzle
 * mode 1 (every panel 1024-byte aligned). The same bytes serve both GEMMs:
 *   S = Q K^T: A = Q and B = K^T are "K-major" (the reduction dim d is the
 *     contiguous one): a k16 step is 32 bytes inside a 128-byte row, so the
 *     descriptor of step kk starts at panel kk / 4 plus 32 (kk % 4) bytes;
 *     SBO (the step between 8-row groups) is 1024; LBO is unused.
 *   O = P V: B = V is "MN-major" (imm-trans-b = 1: the contiguous dim of V
 *     is d, the output column): a k16 step is 16 key rows, 2048 bytes;
 *     SBO = 1024 (8 keys to the next 8), LBO = ROWS x 128 (64 output
 *     columns to the next 64, the next panel).
 * Descriptor bits (PTX ISA, "Matrix Descriptor Format"): 0-13 start address
 * >> 4, 16-29 LBO >> 4, 32-45 SBO >> 4, 62-63 swizzle (1 = 128 bytes). */
#ifndef STF_HOP_COMMON_CUH
#define STF_HOP_COMMON_CUH

#include "../05b_tensor_cores/tc_common.cuh"
#include "hopper.h"

/* The Hopper instructions exist in sm_90a only (the "a" features): the
 * kernels' bodies are compiled where this is set, and are empty elsewhere
 * (the launchers refuse first: hop_built_sm90a, hopper_impls.c). */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HOP_DEVICE 1
#else
#define HOP_DEVICE 0
#endif
#ifndef HOP_SM90A
#define HOP_SM90A 0 /* the Makefile sets 1 when it builds stage 05c for sm_90a */
#endif

#define HOP_WG 128 /* threads of a warp group */
/* The head dims every rung is built for (tc_common.cuh's bit set). */
#define HOP_DIMS (TC_DIM_BIT(64) | TC_DIM_BIT(128))

/* ---------------------------------------------------------------- tile layout */

/* Byte offset of 16-byte chunk ch (0 .. D/8 - 1) of row r in a ROWS-row tile. */
template <int ROWS> __device__ __forceinline__ uint32_t hop_off(int r, int ch)
{
    return (uint32_t)((ch >> 3) * ROWS * 128 + r * 128 + (((ch & 7) ^ (r & 7)) << 4));
}
template <int D> static constexpr __host__ __device__ int hop_tile_bytes(int rows) { return rows * D * 2; }

/* ROWS x D elements from global rows g[0 .. valid-1] (row pitch D) into the
 * tile at shared address s by cp.async, NT threads, 16 bytes each; rows >=
 * valid are zero-filled (their scores are masked, and 0 x V stays finite). */
template <typename T, int D, int ROWS, int NT>
__device__ __forceinline__ void hop_tile_async(uint32_t s, const T *g, int valid, int tid)
{
    constexpr int CH = D / 8, TOTAL = ROWS * CH;
    static_assert(TOTAL % NT == 0, "whole rounds of 16-byte chunks");
#pragma unroll
    for (int it = 0; it < TOTAL / NT; it++) {
        const int i = it * NT + tid, r = i / CH, c = i % CH;
        const bool ok = r < valid;
        tc_cp_async16(s + hop_off<ROWS>(r, c), g + (size_t)(ok ? r : 0) * D + c * 8, ok ? 16 : 0);
    }
}

/* ---------------------------------------------------------------- wgmma */

__device__ __forceinline__ uint64_t hop_desc(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (uint64_t)((lbo >> 4) & 0x3FFF) << 16 |
           (uint64_t)((sbo >> 4) & 0x3FFF) << 32 | (uint64_t)1 << 62;
}
/* K-major operand (Q, K) of step kk (16 columns of d) in a ROWS-row tile at s. */
template <int ROWS> __device__ __forceinline__ uint64_t hop_desc_k(uint32_t s, int kk)
{
    return hop_desc(s + (uint32_t)((kk >> 2) * ROWS * 128 + (kk & 3) * 32), 16, 1024);
}
/* MN-major operand (V) of step kk (16 keys) in a ROWS-row tile at s. */
template <int ROWS> __device__ __forceinline__ uint64_t hop_desc_mn(uint32_t s, int kk)
{
    return hop_desc(s + (uint32_t)(kk * 16 * 128), ROWS * 128, 1024);
}

__device__ __forceinline__ void hop_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void hop_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void hop_wgmma_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving reads or writes of accumulator registers
 * across a wgmma.wait_group (the asm above does not name them). */
template <int M> __device__ __forceinline__ void hop_reg_fence(float (&d)[M][4])
{
#pragma unroll
    for (int j = 0; j < M; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[j][e])::"memory");
}

/* One m64nNk16 step, T the 16-bit input type, N the output width (64, 128). */
template <typename T, int N> struct hop_wgmma;
template <> struct hop_wgmma<__half, 64> {
    /* d (+)= A B: A 64 x 16 and B 16 x 64 from shared memory, both K-major */
    static __device__ __forceinline__ void ss(float (&d)[8][4], uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                     "%32, %33, p, 1, 1, 0, 0;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                     : "l"(a), "l"(b), "r"(acc)
                     : "memory");
    }
    /* d (+)= A B: A 64 x 16 from registers (a[4], mma.m16n8k16's A layout per warp), B 16 x 64
     * from shared memory, MN-major (imm-trans-b = 1: V stored [key][dim]) */
    static __device__ __forceinline__ void rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                     "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc)
                     : "memory");
    }
};
template <> struct hop_wgmma<__nv_bfloat16, 64> {
    /* d (+)= A B: A 64 x 16 and B 16 x 64 from shared memory, both K-major */
    static __device__ __forceinline__ void ss(float (&d)[8][4], uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                     "%32, %33, p, 1, 1, 0, 0;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                     : "l"(a), "l"(b), "r"(acc)
                     : "memory");
    }
    /* d (+)= A B: A 64 x 16 from registers (a[4], mma.m16n8k16's A layout per warp), B 16 x 64
     * from shared memory, MN-major (imm-trans-b = 1: V stored [key][dim]) */
    static __device__ __forceinline__ void rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                     "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc)
                     : "memory");
    }
};
template <> struct hop_wgmma<__half, 128> {
    /* d (+)= A B: A 64 x 16 and B 16 x 128 from shared memory, both K-major */
    static __device__ __forceinline__ void ss(float (&d)[16][4], uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
                     "%64, %65, p, 1, 1, 0, 0;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                     : "l"(a), "l"(b), "r"(acc)
                     : "memory");
    }
    /* d (+)= A B: A 64 x 16 from registers (a[4], mma.m16n8k16's A layout per warp), B 16 x 128
     * from shared memory, MN-major (imm-trans-b = 1: V stored [key][dim]) */
    static __device__ __forceinline__ void rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
                     "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc)
                     : "memory");
    }
};
template <> struct hop_wgmma<__nv_bfloat16, 128> {
    /* d (+)= A B: A 64 x 16 and B 16 x 128 from shared memory, both K-major */
    static __device__ __forceinline__ void ss(float (&d)[16][4], uint64_t a, uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
                     "%64, %65, p, 1, 1, 0, 0;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                     : "l"(a), "l"(b), "r"(acc)
                     : "memory");
    }
    /* d (+)= A B: A 64 x 16 from registers (a[4], mma.m16n8k16's A layout per warp), B 16 x 128
     * from shared memory, MN-major (imm-trans-b = 1: V stored [key][dim]) */
    static __device__ __forceinline__ void rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b, int acc)
    {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
                     "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                     : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc)
                     : "memory");
    }
};

/* ---------------------------------------------------------------- fences */

/* Writes to shared memory by the generic proxy (st.shared, cp.async) made
 * visible to the async proxy (wgmma's operand reads, TMA). */
__device__ __forceinline__ void hop_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

#endif
