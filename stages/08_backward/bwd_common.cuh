/* Device helpers shared by stage 08's kernels (bwd_*.cu): the arguments every
 * backward kernel receives, the preprocessing kernel D = rowsum(dO * O) that
 * FlashAttention runs before its backward (it also clears the fp32 dQ
 * accumulator), the conversion of that accumulator to the storage type, the
 * visibility rule, and the dtype dispatch.
 *
 * Why D: dS = P * (dP - D) needs, per query row, D = sum_j P_j dP_j. With
 * dP = dO V^T that is sum_j P_j (dO . v_j) = dO . (sum_j P_j v_j) = dO . O:
 * one dot product of length d per row instead of a sum over all N keys, and
 * it is known before any K/V block is visited. */
#ifndef STF_BWD_COMMON_CUH
#define STF_BWD_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "backward.h"
#include "exp_base.h"
#include "gpu_check.h"
#include "softmax_device.cuh"

/* What every backward kernel receives (by value). Pointers are the whole
 * arrays; a kernel offsets them by (batch, head). */
struct bwd_args_t {
    const void *q, *k, *v, *o, *dout;
    const float *lse; /* L, natural log, [B, H, Nq] */
    float *dsum;      /* D = rowsum(dO * O), [B, H, Nq], fp32 (workspace) */
    float *dqacc;     /* fp32 dQ accumulator [B, H, Nq, d] (workspace; atomic kernels) */
    void *dq, *dk, *dv;
    int batch, heads, kv_heads, group; /* group = heads / kv_heads */
    int seq_q, seq_kv, dim, causal;
    float scale;      /* softmax scale, fp32 as the reference uses it */
    float scale_log2; /* scale * log2(e): exp(x scale) = 2^(x scale_log2) */
};

static inline bwd_args_t bwd_make_args(const attn_shape_t *s, const void *q, const void *k, const void *v,
                                       const void *o, const void *dout, const float *lse, void *dq, void *dk,
                                       void *dv)
{
    bwd_args_t a;
    a.q = q;
    a.k = k;
    a.v = v;
    a.o = o;
    a.dout = dout;
    a.lse = lse;
    a.dsum = NULL;
    a.dqacc = NULL;
    a.dq = dq;
    a.dk = dk;
    a.dv = dv;
    a.batch = (int)s->batch;
    a.heads = (int)s->heads;
    a.kv_heads = (int)s->kv_heads;
    a.group = (int)(s->heads / s->kv_heads);
    a.seq_q = (int)s->seq_q;
    a.seq_kv = (int)s->seq_kv;
    a.dim = (int)s->dim;
    a.causal = s->causal;
    a.scale = s->scale;
    a.scale_log2 = (float)((double)s->scale * STF_LOG2E);
    return a;
}

/* Workspace layout, shared by every launcher: D first, then (atomic kernels)
 * the fp32 dQ accumulator, each at a 256-byte boundary. */
static inline size_t bwd_align(size_t x) { return (x + 255) & ~(size_t)255; }
static inline size_t bwd_dsum_bytes(const attn_shape_t *s) { return bwd_align(attn_rows(s) * sizeof(float)); }
static inline size_t bwd_dqacc_bytes(const attn_shape_t *s) { return bwd_align(attn_q_elems(s) * sizeof(float)); }

/* The launchers' arguments with the workspace split as above: D, then with
 * DQACC (the atomic kernels) the fp32 dQ accumulator. */
static inline bwd_args_t bwd_ws_args(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                                     const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws,
                                     bool dqacc)
{
    bwd_args_t a = bwd_make_args(s, q, k, v, o, dout, lse, dq, dk, dv);
    a.dsum = (float *)ws;
    if (dqacc) a.dqacc = (float *)((char *)ws + bwd_dsum_bytes(s));
    return a;
}

/* Bottom-right causal visibility (attention_ref.h): key j is visible to
 * query i iff j <= i + Nk - Nq; and both must exist. */
__device__ __forceinline__ bool bwd_visible(const bwd_args_t &a, int i, int j)
{
    return i < a.seq_q && j < a.seq_kv && (!a.causal || j <= i + (a.seq_kv - a.seq_q));
}

/* L in base 2 for P = 2^(s scale_log2 - L2), as the kernels keep it on chip.
 * A row with no visible key has L = -inf; it must give P = 0 for every key
 * (FlashAttention's convention: it contributes nothing), so its L2 becomes
 * +inf, and so does a row past the end of the sequence. */
__device__ __forceinline__ float bwd_lse2(const bwd_args_t &a, const float *lse_head, int i)
{
    if (i >= a.seq_q) return INFINITY;
    const float l = lse_head[i];
    return l == -INFINITY ? INFINITY : l * STF_LOG2E_F;
}

/* ---------------------------------------------------------------- preprocessing */

/* D_i = sum_k dO_ik O_ik in fp32, one warp per query row; with ZERO, the
 * row's d fp32 dQ accumulators are cleared too (the atomic kernels add into
 * them). */
template <typename T, bool ZERO>
__global__ void bwd_dsum_kernel(const T *__restrict__ o, const T *__restrict__ dout, float *__restrict__ dsum,
                                float *__restrict__ dqacc, long long rows, int d)
{
    const long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *orow = o + row * d, *drow = dout + row * d;
    float acc = 0.0f;
    for (int k = lane; k < d; k += 32) acc = fmaf(to_f(drow[k]), to_f(orow[k]), acc);
#pragma unroll
    for (int w = 16; w >= 1; w /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, w);
    if (lane == 0) dsum[row] = acc;
    if (ZERO)
        for (int k = lane; k < d; k += 32) dqacc[row * d + k] = 0.0f;
}

/* dQ = scale * accumulator, rounded once to the storage type. */
template <typename T>
__global__ void bwd_dq_convert_kernel(const float *__restrict__ acc, T *__restrict__ dq, long long n, float scale)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dq[i] = from_f<T>(acc[i] * scale);
}

template <typename T> static void bwd_dsum_launch(const bwd_args_t &a, bool zero)
{
    const long long rows = (long long)a.batch * a.heads * a.seq_q;
    if (rows == 0) return;
    const unsigned blocks = (unsigned)((rows + 7) / 8);
    if (zero)
        bwd_dsum_kernel<T, true><<<blocks, 256>>>((const T *)a.o, (const T *)a.dout, a.dsum, a.dqacc, rows, a.dim);
    else
        bwd_dsum_kernel<T, false><<<blocks, 256>>>((const T *)a.o, (const T *)a.dout, a.dsum, a.dqacc, rows, a.dim);
    LAUNCH_CHECK();
}

template <typename T> static void bwd_dq_convert_launch(const bwd_args_t &a)
{
    const long long n = (long long)a.batch * a.heads * a.seq_q * a.dim;
    if (n == 0) return;
    const long long want = (n + 255) / 256;
    bwd_dq_convert_kernel<T><<<(unsigned)(want < 65536 ? want : 65536), 256>>>(a.dqacc, (T *)a.dq, n, a.scale);
    LAUNCH_CHECK();
}

/* Raises a kernel's dynamic shared-memory limit once (one static per
 * instance) and reports whether the launch may go ahead. */
template <auto kernel> static void bwd_raise_smem(size_t smem)
{
    static size_t raised;
    if (smem > 48 * 1024 && raised < smem) {
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        raised = smem;
    }
}

/* A tuning knob from the environment (measurement runs only; def when
 * unset or not a number). */
static inline int bwd_env_int(const char *name, int def)
{
    const char *e = getenv(name);
    if (!e || !*e) return def;
    char *end;
    const long v = strtol(e, &end, 10);
    return *end ? def : (int)v;
}

/* Calls f.template run<T>() for the storage type. */
template <typename F> static int bwd_dispatch_dt(dtype_t dt, F &f)
{
    switch (dt) {
    case DT_F32: return f.template run<float>();
    case DT_F16: return f.template run<__half>();
    case DT_BF16: return f.template run<__nv_bfloat16>();
    }
    return -1;
}

#endif
