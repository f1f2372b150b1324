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

#include <cuda.h> /* CUtensorMap and its enums: types only, libcuda is not linked */

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
#define HOP_DIMS (TC_DIM_BIT(64) | TC_DIM_BIT(128) | TC_DIM_BIT(256))
/* Keys per K/V tile: 128, and 64 at d = 256, where O alone is 128 fp32
 * registers per thread and a 128-key S tile (64 more) would not fit. */
static constexpr __host__ __device__ int hop_bkv(int d) { return d == 256 ? 64 : 128; }

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

/* The same for the A registers of P (written by ordinary instructions just
 * before the wgmma.fence that must follow them). */
template <int M> __device__ __forceinline__ void hop_reg_fence(uint32_t (&r)[M][4])
{
#pragma unroll
    for (int j = 0; j < M; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(r[j][e])::"memory");
}

/* One m64nNk16 step, T the 16-bit input type, N the output width (64, 128). */
template <typename T, int N> struct hop_wgmma;
/* The fp16 and bf16 instructions differ only in the type in the opcode (TY:
 * "f16", "bf16"): one definition per width N, instantiated for both. */
#define HOP_WGMMA_N64(T, TY) \
    template <> struct hop_wgmma<T, 64> { \
        /* d (+)= A B: A 64 x 16 and B 16 x 64 from shared memory, both K-major */ \
        static __device__ __forceinline__ void ss(float (&d)[8][4], uint64_t a, uint64_t b, int acc) \
        { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " \
                         "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, " \
                         "%32, %33, p, 1, 1, 0, 0;\n}\n" \
                         : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]) \
                         : "l"(a), "l"(b), "r"(acc) \
                         : "memory"); \
        } \
        /* d (+)= A B: A 64 x 16 from registers (a[4], mma.m16n8k16's A layout per warp), B 16 x 64 \
         * from shared memory, MN-major (imm-trans-b = 1: V stored [key][dim]) */ \
        static __device__ __forceinline__ void rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b, int acc) \
        { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
                         "wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " " \
                         "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, " \
                         "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n" \
                         : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]) \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc) \
                         : "memory"); \
        } \
    };
#define HOP_WGMMA_N128(T, TY) \
    template <> struct hop_wgmma<T, 128> { \
        /* d (+)= A B: A 64 x 16 and B 16 x 128 from shared memory, both K-major */ \
        static __device__ __forceinline__ void ss(float (&d)[16][4], uint64_t a, uint64_t b, int acc) \
        { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " \
                         "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
                         "%64, %65, p, 1, 1, 0, 0;\n}\n" \
                         : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]) \
                         : "l"(a), "l"(b), "r"(acc) \
                         : "memory"); \
        } \
        /* d (+)= A B: A 64 x 16 from registers (a[4], mma.m16n8k16's A layout per warp), B 16 x 128 \
         * from shared memory, MN-major (imm-trans-b = 1: V stored [key][dim]) */ \
        static __device__ __forceinline__ void rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b, int acc) \
        { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
                         "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " \
                         "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
                         "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n" \
                         : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]) \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc) \
                         : "memory"); \
        } \
    };
#define HOP_WGMMA_N256(T, TY) \
    template <> struct hop_wgmma<T, 256> { \
        /* d (+)= A B: A 64 x 16 from registers, B 16 x 256 from shared memory, MN-major (the PV of d = 256) */ \
        static __device__ __forceinline__ void rs(float (&d)[32][4], const uint32_t (&a)[4], uint64_t b, int acc) \
        { \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n" \
                         "wgmma.mma_async.sync.aligned.m64n256k16.f32." TY "." TY " " \
                         "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, " \
                         "{%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n" \
                         : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]), "+f"(d[16][0]), "+f"(d[16][1]), "+f"(d[16][2]), "+f"(d[16][3]), "+f"(d[17][0]), "+f"(d[17][1]), "+f"(d[17][2]), "+f"(d[17][3]), "+f"(d[18][0]), "+f"(d[18][1]), "+f"(d[18][2]), "+f"(d[18][3]), "+f"(d[19][0]), "+f"(d[19][1]), "+f"(d[19][2]), "+f"(d[19][3]), "+f"(d[20][0]), "+f"(d[20][1]), "+f"(d[20][2]), "+f"(d[20][3]), "+f"(d[21][0]), "+f"(d[21][1]), "+f"(d[21][2]), "+f"(d[21][3]), "+f"(d[22][0]), "+f"(d[22][1]), "+f"(d[22][2]), "+f"(d[22][3]), "+f"(d[23][0]), "+f"(d[23][1]), "+f"(d[23][2]), "+f"(d[23][3]), "+f"(d[24][0]), "+f"(d[24][1]), "+f"(d[24][2]), "+f"(d[24][3]), "+f"(d[25][0]), "+f"(d[25][1]), "+f"(d[25][2]), "+f"(d[25][3]), "+f"(d[26][0]), "+f"(d[26][1]), "+f"(d[26][2]), "+f"(d[26][3]), "+f"(d[27][0]), "+f"(d[27][1]), "+f"(d[27][2]), "+f"(d[27][3]), "+f"(d[28][0]), "+f"(d[28][1]), "+f"(d[28][2]), "+f"(d[28][3]), "+f"(d[29][0]), "+f"(d[29][1]), "+f"(d[29][2]), "+f"(d[29][3]), "+f"(d[30][0]), "+f"(d[30][1]), "+f"(d[30][2]), "+f"(d[30][3]), "+f"(d[31][0]), "+f"(d[31][1]), "+f"(d[31][2]), "+f"(d[31][3]) \
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(acc) \
                         : "memory"); \
        } \
    };
HOP_WGMMA_N64(__half, "f16")
HOP_WGMMA_N64(__nv_bfloat16, "bf16")
HOP_WGMMA_N128(__half, "f16")
HOP_WGMMA_N128(__nv_bfloat16, "bf16")
HOP_WGMMA_N256(__half, "f16")
HOP_WGMMA_N256(__nv_bfloat16, "bf16")

/* ---------------------------------------------------------------- fences */

/* Writes to shared memory by the generic proxy (st.shared, cp.async) made
 * visible to the async proxy (wgmma's operand reads, TMA). */
__device__ __forceinline__ void hop_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }


/* ---------------------------------------------------------------- mbarrier */

/* A shared-memory barrier object (8 bytes) that counts arrivals and, with
 * expect_tx, bytes still to land from TMA; a phase completes when both reach
 * zero, and waiters poll the phase's parity (PTX ISA, "mbarrier"). */
__device__ __forceinline__ void hop_mbar_init(uint32_t bar, int count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* Makes the initializations visible to the async proxy (TMA) and the other threads' mbarrier ops. */
__device__ __forceinline__ void hop_mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
/* One arrival that also announces `bytes` of TMA transactions to wait for. */
__device__ __forceinline__ void hop_mbar_expect_tx(uint32_t bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void hop_mbar_arrive(uint32_t bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* Waits until the phase of parity `parity` has completed. */
__device__ __forceinline__ void hop_mbar_wait(uint32_t bar, uint32_t parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}

/* ---------------------------------------------------------------- TMA */

/* One box of a 3-D tensor map (tm, a __grid_constant__ kernel parameter)
 * at coordinates (c0, c1, c2), innermost first, into shared memory at dst;
 * its bytes count against barrier bar. Elements outside the tensor land as
 * zeros (and still count). */
__device__ __forceinline__ void hop_tma_load_3d(uint32_t dst, const CUtensorMap *tm, int c0, int c1, int c2, uint32_t bar)
{
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
                 "%4}], [%5];\n" ::"r"(dst),
                 "l"(reinterpret_cast<uint64_t>(tm)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
                 : "memory");
}

/* The K or V tensor [batch * kv_heads][seq_kv][d] as a 3-D tensor map with
 * boxes of 64 columns x rows keys x 1 head, written in the 128-byte swizzle
 * (hop_off's layout: one box is one panel of a tile). A K/V tile of d = 128
 * is two boxes. Rows past seq_kv are outside dim 1 and arrive as zeros, so a
 * partial last tile never reads the next head. cuTensorMapEncodeTiled is a
 * driver function: it is looked up through the runtime
 * (cudaGetDriverEntryPointByVersion), so nothing links libcuda. */
static inline CUtensorMap hop_kv_tensor_map(const void *base, const tc_shape_t *s, int rows)
{
    typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                  const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                  CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
    static encode_fn encode;
    if (!encode) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult q;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q));
        if (q != cudaDriverEntryPointSuccess || !fn) {
            fprintf(stderr, "stage 05c: the driver has no cuTensorMapEncodeTiled (CUDA 12.0+ driver needed)\n");
            exit(1);
        }
        encode = (encode_fn)fn;
    }
    CUtensorMap tm;
    const cuuint64_t dims[3] = { (cuuint64_t)s->dim, (cuuint64_t)s->seq_kv, (cuuint64_t)s->batch * s->kv_heads };
    const cuuint64_t strides[2] = { (cuuint64_t)s->dim * 2, (cuuint64_t)s->seq_kv * s->dim * 2 }; /* bytes, dims 1, 2 */
    const cuuint32_t box[3] = { 64, (cuuint32_t)rows, 1 };
    const cuuint32_t estr[3] = { 1, 1, 1 };
    const CUresult r = encode(&tm, s->dt == DT_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                              3, const_cast<void *>(base), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                              CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "stage 05c: cuTensorMapEncodeTiled failed (CUresult %d) for d %d, seq_kv %d\n", (int)r, s->dim,
                s->seq_kv);
        exit(1);
    }
    return tm;
}

/* ---------------------------------------------------------------- warp specialization */

/* Register reallocation between warp groups (PTX ISA, "setmaxnreg"): every
 * warp of the group executes it; dec gives registers back to the block's
 * pool, inc waits until the pool has them. N a multiple of 8 in 24 .. 256. */
template <int N> __device__ __forceinline__ void hop_setmaxnreg_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N> __device__ __forceinline__ void hop_setmaxnreg_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
/* A named barrier (ids 1 .. 15; 0 is __syncthreads) over n threads: sync
 * arrives and waits, arrive only arrives (the other side of a hand-over). */
__device__ __forceinline__ void hop_bar_sync(int id, int n)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void hop_bar_arrive(int id, int n)
{
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/* ---------------------------------------------------------------- the epilogue */

/* The online softmax of one S tile on wgmma's accumulator layout, as the
 * serial rungs run it (h1, h2, h3): the thread's rows g and g + 8 (e / 2 of
 * s[j][e]) each live in one quad (max and sum: two shuffles); m, l and O
 * rescaled by alpha = exp2((m_old - m_new) scale_log2), then s turned into
 * P = exp2(s scale_log2 - m scale_log2) in place (FlashAttention-2's update). */
template <int D, int BKV>
__device__ __forceinline__ void hop_softmax_rescale(float (&s)[BKV / 8][4], float (&o)[D / 8][4], float (&m)[2],
                                                    float (&l)[2], float scale_log2)
{
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < BKV / 8; j++) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
        const float mnew = fmaxf(m[r], tc_quad_max(mx));
        const float ms = mnew == -INFINITY ? 0.0f : mnew;
        const float msc = ms * scale_log2;
        const float alpha = tc_exp2((m[r] - ms) * scale_log2);
        m[r] = mnew;
        l[r] *= alpha;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            o[n][2 * r] *= alpha;
            o[n][2 * r + 1] *= alpha;
        }
#pragma unroll
        for (int j = 0; j < BKV / 8; j++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                s[j][e] = tc_exp2(fmaf(s[j][e], scale_log2, -msc));
                l[r] += s[j][e];
            }
    }
}

/* The epilogue of every rung: O = o / l for the thread's two rows (row0 =
 * the warp's first row + g, and row0 + 8), 16-bit, rows past seq_q left
 * out; a row that saw no key (l = 0) is written as zeros. */
template <typename T, int D>
__device__ __forceinline__ void hop_store_o(const tc_args_t &a, const float (&o)[D / 8][4], const float (&l)[2],
                                            size_t qhead, int row0, int c)
{
    T *O = reinterpret_cast<T *>(a.o) + qhead * a.seq_q * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float lsum = tc_quad_sum(l[r]);
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
        const int row = row0 + 8 * r;
        if (row >= a.seq_q) continue;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *reinterpret_cast<uint32_t *>(O + (size_t)row * D + 8 * n + 2 * c) =
                tc_pack<T>(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
    }
}

/* Launch and describe a rung whose kernel takes K and V tensor maps (h2 ...
 * h6): PICK::kernel<T, D>() is its kernel; G gives its geometry: BQ query
 * rows and THREADS threads a block, G::bkv<D>() keys a K/V tile,
 * G::smem<D>() bytes of dynamic shared memory. */
template <class PICK, class G> struct hop_tma_run {
    static constexpr unsigned DIMS = HOP_DIMS;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        const CUtensorMap tk = hop_kv_tensor_map(k, s, G::template bkv<D>()),
                          tv = hop_kv_tensor_map(v, s, G::template bkv<D>());
        auto kern = PICK::template kernel<T, D>();
        static int raised;
        if (!raised) {
            CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, G::template smem<D>()));
            raised = 1;
        }
        kern<<<tc_grid(s, G::BQ), G::THREADS, G::template smem<D>()>>>(tc_make_args(s, q, k, v, o), tk, tv);
        LAUNCH_CHECK();
        return 0;
    }
};
template <class PICK, class G> struct hop_tma_desc {
    static constexpr unsigned DIMS = HOP_DIMS;
    char *buf;
    size_t n;
    const char *what;
    template <typename T, int D> int run()
    {
        tc_describe_kernel(buf, n, PICK::template kernel<T, D>(), G::BQ, G::template bkv<D>(), G::THREADS,
                           G::template smem<D>(), what);
        return 0;
    }
};
template <class PICK, class G>
static int hop_tma_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    hop_tma_run<PICK, G> f = { s, q, k, v, o };
    return tc_dispatch(s, f);
}
template <class PICK, class G> static int hop_tma_describe(const tc_shape_t *s, char *buf, size_t n, const char *what)
{
    hop_tma_desc<PICK, G> f = { buf, n, what };
    return tc_dispatch(s, f);
}

#endif
