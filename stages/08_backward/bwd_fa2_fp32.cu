/* Stage 08 on CUDA cores, fp32 arithmetic (any storage type): the forward
 * that keeps L, and FlashAttention-2's backward (Dao 2023, Algorithm 2), the
 * first rung of the GPU ladder. What changes against the standard backward
 * (bwd_standard.cu): P is never stored. Each thread block owns one block of
 * Bc keys of one K/V head; it keeps K_j, V_j and the accumulators dK_j, dV_j
 * on chip, and streams the query blocks that can see its keys:
 *
 *   for each query head h of the K/V head's group (GQA: dK, dV summed here)
 *     for each query block i (causal: from the first row that sees key j Bc)
 *       Q_i, dO_i, L_i, D_i -> shared memory
 *       S  = Q_i K_j^T,  P = exp(scale S - L)    (recomputed: the point)
 *       dP = dO_i V_j^T, dS = P * (dP - D)
 *       dV_j += P^T dO_i,  dK_j += dS^T Q_i      (on chip)
 *       dQ_i += dS K_j                           (fp32 atomics in HBM)
 *   dK_j = scale dK_j, dV_j -> HBM, once
 *
 * dQ_i receives one partial sum from every key block: the blocks run in
 * parallel, so they add into an fp32 accumulator with atomics (cleared by the
 * preprocessing kernel that computes D), converted to the storage type and
 * scaled at the end. The order of those additions varies from run to run:
 * dQ is not bit-reproducible (bwd_tc2_det.cu removes the atomics).
 *
 * Traffic per K/V head (es = storage bytes, G = H / Hkv, Tc = ceil(Nk / Bc)):
 *   es (2 Nk d + 2 Nk d)                 K, V in; dK, dV out
 *   + G Tc (2 es Nq d + 8 Nq)            Q_i, dO_i, L_i, D_i per key block
 *   + G Tc 8 Nq d                        dQ partials (fp32 read-modify-write, in L2)
 * halved for the Q, dO, dQ terms when causal. Plus the preprocessing
 * (2 es Nq d read, 4 Nq d cleared) and the conversion (4 + es) Nq d.
 *
 * Tiles: Br = Bc = 32, 256 threads; thread t works on key (or dim) t % 32 and
 * rows t / 32 + 8 m; shared rows padded to d + 1 floats so that 32 threads
 * reading 32 rows of one column hit 32 banks.
 *
 * Run: build/bin/test_backward_gpu, or the stage program's --kernel bwd-fa2. */
#include "bwd_common.cuh"
#include "bwd_kernels.h"

#define CC_B 32   /* Br = Bc */
#define CC_NT 256 /* threads: 8 warps */

template <int D> struct cc_cfg {
    static constexpr int P = D + 1;      /* padded row, floats */
    static constexpr int SP = CC_B + 1;  /* padded S/P row */
    static constexpr int N = D / 32;     /* dims per thread */
    static constexpr size_t fwd_smem = sizeof(float) * (3 * CC_B * P + CC_B * SP + 3 * CC_B);
    static constexpr size_t bwd_smem = sizeof(float) * (4 * CC_B * P + 2 * CC_B * SP + 2 * CC_B);
};

/* rows x D elements of storage type T into fp32 rows of pitch P; rows past
 * `valid` become zeros (never uninitialised: 0 * NaN would survive a mask). */
template <typename T, int D, int P>
__device__ __forceinline__ void cc_load(float *dst, const T *src, int valid)
{
    for (int x = threadIdx.x; x < CC_B * D; x += CC_NT) {
        const int r = x / D, c = x % D;
        dst[r * P + c] = r < valid ? to_f(src[(size_t)r * D + c]) : 0.0f;
    }
}

__device__ __forceinline__ float cc_warp_max(float x)
{
#pragma unroll
    for (int w = 16; w >= 1; w /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, w));
    return x;
}
__device__ __forceinline__ float cc_warp_sum(float x)
{
#pragma unroll
    for (int w = 16; w >= 1; w /= 2) x += __shfl_xor_sync(0xffffffffu, x, w);
    return x;
}

/* ---------------------------------------------------------------- forward
 * Stage 05's FA2 order (query block outer) with one more output: per row,
 * L = m + ln l, in the kernel's base-2 units L = (m2 + log2 l) ln 2 where m2
 * is the running max of scale * s * log2(e). */
template <typename T, int D>
__global__ void __launch_bounds__(CC_NT) bwd_cc_fwd_kernel(bwd_args_t a, T *__restrict__ o, float *__restrict__ lse)
{
    using C = cc_cfg<D>;
    extern __shared__ float cc_sm[];
    float *Qs = cc_sm, *Ks = Qs + CC_B * C::P, *Vs = Ks + CC_B * C::P, *Ss = Vs + CC_B * C::P;
    float *ms = Ss + CC_B * C::SP, *ls = ms + CC_B, *al = ls + CC_B;
    const int t = threadIdx.x, tk = t % 32, tr = t / 32;
    const int nqb = (int)gridDim.x;
    const int qb = a.causal ? nqb - 1 - (int)blockIdx.x : (int)blockIdx.x;
    const int q0 = qb * CC_B, h = blockIdx.y, b = blockIdx.z;
    const size_t qh = (size_t)b * a.heads + h, kvh = (size_t)b * a.kv_heads + h / a.group;
    const T *Q = reinterpret_cast<const T *>(a.q) + qh * a.seq_q * D;
    const T *K = reinterpret_cast<const T *>(a.k) + kvh * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvh * a.seq_kv * D;
    const int off = a.seq_kv - a.seq_q;
    const int last = min(q0 + CC_B, a.seq_q) - 1;
    const int kv_end = a.causal ? max(0, min(a.seq_kv, last + 1 + off)) : a.seq_kv;

    cc_load<T, D, C::P>(Qs, Q + (size_t)q0 * D, a.seq_q - q0);
    if (t < CC_B) {
        ms[t] = -INFINITY;
        ls[t] = 0.0f;
    }
    float acc[4][C::N];
#pragma unroll
    for (int m = 0; m < 4; m++)
#pragma unroll
        for (int n = 0; n < C::N; n++) acc[m][n] = 0.0f;

    for (int kv0 = 0; kv0 < kv_end; kv0 += CC_B) {
        __syncthreads();
        cc_load<T, D, C::P>(Ks, K + (size_t)kv0 * D, a.seq_kv - kv0);
        cc_load<T, D, C::P>(Vs, V + (size_t)kv0 * D, a.seq_kv - kv0);
        __syncthreads();
#pragma unroll
        for (int m = 0; m < 4; m++) {
            const int r = tr + 8 * m;
            float s = 0.0f;
            for (int k = 0; k < D; k++) s = fmaf(Qs[r * C::P + k], Ks[tk * C::P + k], s);
            Ss[r * C::SP + tk] = bwd_visible(a, q0 + r, kv0 + tk) ? s * a.scale_log2 : -INFINITY;
        }
        __syncthreads();
        /* warp tr: rows 4 tr .. 4 tr + 3, lane = key */
        for (int i = 0; i < 4; i++) {
            const int r = 4 * tr + i;
            const float x = Ss[r * C::SP + tk];
            const float mold = ms[r], mnew = fmaxf(mold, cc_warp_max(x));
            const float mu = mnew == -INFINITY ? 0.0f : mnew; /* no key yet: every p is 0 */
            const float p = exp2f(x - mu);
            const float sum = cc_warp_sum(p);
            Ss[r * C::SP + tk] = p;
            __syncwarp();
            if (tk == 0) {
                const float alpha = exp2f(mold - mu);
                ms[r] = mnew;
                ls[r] = ls[r] * alpha + sum;
                al[r] = alpha;
            }
        }
        __syncthreads();
#pragma unroll
        for (int m = 0; m < 4; m++) {
            const int r = tr + 8 * m;
            const float alpha = al[r];
#pragma unroll
            for (int n = 0; n < C::N; n++) acc[m][n] *= alpha;
            for (int key = 0; key < CC_B; key++) {
                const float p = Ss[r * C::SP + key];
#pragma unroll
                for (int n = 0; n < C::N; n++) acc[m][n] = fmaf(p, Vs[key * C::P + tk + 32 * n], acc[m][n]);
            }
        }
    }
    __syncthreads();
    T *O = o + qh * a.seq_q * D;
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int r = tr + 8 * m;
        if (q0 + r >= a.seq_q) continue;
        const float l = ls[r], inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
        for (int n = 0; n < C::N; n++) O[(size_t)(q0 + r) * D + tk + 32 * n] = from_f<T>(acc[m][n] * inv);
        if (tk == 0)
            lse[qh * a.seq_q + q0 + r] = l > 0.0f ? (ms[r] + log2f(l)) * 0.69314718055994531f : -INFINITY;
    }
}

/* ---------------------------------------------------------------- backward */
// [snippet:bwd-fa2-loop]
template <typename T, int D>
__global__ void __launch_bounds__(CC_NT) bwd_fa2_kernel(bwd_args_t a)
{
    using C = cc_cfg<D>;
    extern __shared__ float cc_sm[];
    float *Ks = cc_sm, *Vs = Ks + CC_B * C::P, *Qs = Vs + CC_B * C::P, *dOs = Qs + CC_B * C::P;
    float *Ps = dOs + CC_B * C::P, *dSs = Ps + CC_B * C::SP, *L2s = dSs + CC_B * C::SP, *Ds = L2s + CC_B;
    const int t = threadIdx.x, tk = t % 32, tr = t / 32;
    const int kv0 = blockIdx.x * CC_B, kh = blockIdx.y, b = blockIdx.z;
    const size_t kvh = (size_t)b * a.kv_heads + kh;
    const T *K = reinterpret_cast<const T *>(a.k) + kvh * a.seq_kv * D;
    const T *V = reinterpret_cast<const T *>(a.v) + kvh * a.seq_kv * D;
    cc_load<T, D, C::P>(Ks, K + (size_t)kv0 * D, a.seq_kv - kv0);
    cc_load<T, D, C::P>(Vs, V + (size_t)kv0 * D, a.seq_kv - kv0);

    /* this thread's part of dK_j and dV_j: keys tr + 8 m, dims tk + 32 n */
    float dk[4][C::N], dv[4][C::N];
#pragma unroll
    for (int m = 0; m < 4; m++)
#pragma unroll
        for (int n = 0; n < C::N; n++) dk[m][n] = dv[m][n] = 0.0f;

    /* causal: row i sees key kv0 iff i >= kv0 - (Nk - Nq); earlier query
     * blocks see none of this block's keys and are skipped */
    const int qfirst = a.causal ? max(0, kv0 - (a.seq_kv - a.seq_q)) : 0;
    const int qb0 = qfirst / CC_B, qb1 = (a.seq_q + CC_B - 1) / CC_B;
    for (int gg = 0; gg < a.group; gg++) {
        const size_t qh = kvh * a.group + gg; /* = b H + h: the group's heads are consecutive */
        const T *Q = reinterpret_cast<const T *>(a.q) + qh * a.seq_q * D;
        const T *dO = reinterpret_cast<const T *>(a.dout) + qh * a.seq_q * D;
        float *dQ = a.dqacc + qh * a.seq_q * D;
        for (int qb = qb0; qb < qb1; qb++) {
            const int q0 = qb * CC_B;
            __syncthreads();
            cc_load<T, D, C::P>(Qs, Q + (size_t)q0 * D, a.seq_q - q0);
            cc_load<T, D, C::P>(dOs, dO + (size_t)q0 * D, a.seq_q - q0);
            if (t < CC_B) {
                L2s[t] = bwd_lse2(a, a.lse + qh * a.seq_q, q0 + t);
                Ds[t] = q0 + t < a.seq_q ? a.dsum[qh * a.seq_q + q0 + t] : 0.0f;
            }
            __syncthreads();
            /* P and dS for (row tr + 8 m, key tk) */
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const int r = tr + 8 * m;
                float s = 0.0f, dp = 0.0f;
                for (int k = 0; k < D; k++) {
                    s = fmaf(Qs[r * C::P + k], Ks[tk * C::P + k], s);
                    dp = fmaf(dOs[r * C::P + k], Vs[tk * C::P + k], dp);
                }
                const float p = bwd_visible(a, q0 + r, kv0 + tk) ? exp2f(fmaf(s, a.scale_log2, -L2s[r])) : 0.0f;
                Ps[r * C::SP + tk] = p;
                dSs[r * C::SP + tk] = p * (dp - Ds[r]);
            }
            __syncthreads();
            /* dV_j += P^T dO_i, dK_j += dS^T Q_i (keys tr + 8 m, dims tk + 32 n) */
            for (int r = 0; r < CC_B; r++) {
#pragma unroll
                for (int m = 0; m < 4; m++) {
                    const float p = Ps[r * C::SP + tr + 8 * m], ds = dSs[r * C::SP + tr + 8 * m];
#pragma unroll
                    for (int n = 0; n < C::N; n++) {
                        dv[m][n] = fmaf(p, dOs[r * C::P + tk + 32 * n], dv[m][n]);
                        dk[m][n] = fmaf(ds, Qs[r * C::P + tk + 32 * n], dk[m][n]);
                    }
                }
            }
            /* dQ_i += dS K_j (rows tr + 8 m, dims tk + 32 n): one partial of many */
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const int r = tr + 8 * m;
                float dq[C::N];
#pragma unroll
                for (int n = 0; n < C::N; n++) dq[n] = 0.0f;
                for (int key = 0; key < CC_B; key++) {
                    const float ds = dSs[r * C::SP + key];
#pragma unroll
                    for (int n = 0; n < C::N; n++) dq[n] = fmaf(ds, Ks[key * C::P + tk + 32 * n], dq[n]);
                }
                if (q0 + r < a.seq_q)
#pragma unroll
                    for (int n = 0; n < C::N; n++) atomicAdd(dQ + (size_t)(q0 + r) * D + tk + 32 * n, dq[n]);
            }
        }
    }
    T *dK = reinterpret_cast<T *>(a.dk) + kvh * a.seq_kv * D;
    T *dV = reinterpret_cast<T *>(a.dv) + kvh * a.seq_kv * D;
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int key = kv0 + tr + 8 * m;
        if (key >= a.seq_kv) continue;
#pragma unroll
        for (int n = 0; n < C::N; n++) {
            dK[(size_t)key * D + tk + 32 * n] = from_f<T>(dk[m][n] * a.scale);
            dV[(size_t)key * D + tk + 32 * n] = from_f<T>(dv[m][n]);
        }
    }
}
// [/snippet]

/* ---------------------------------------------------------------- launchers */

extern "C" int bwd_gpu_cc_dim_ok(int d) { return d == 32 || d == 64 || d == 96 || d == 128 || d == 256; }

/* Calls f.template go<T, D>() for the head dim d of the CUDA-core kernels
 * (bwd_gpu_cc_dim_ok). */
template <typename T, typename F> static int cc_dims(F &f, int d)
{
    switch (d) {
    case 32: return f.template go<T, 32>();
    case 64: return f.template go<T, 64>();
    case 96: return f.template go<T, 96>();
    case 128: return f.template go<T, 128>();
    case 256: return f.template go<T, 256>();
    }
    return -1;
}

struct cc_fwd_run {
    bwd_args_t a; /* Q, K, V and the shape; O and L go by their own */
    void *o;
    float *lse;
    template <typename T, int D> int go()
    {
        const size_t smem = cc_cfg<D>::fwd_smem;
        bwd_raise_smem<bwd_cc_fwd_kernel<T, D>>(smem);
        dim3 grid((unsigned)((a.seq_q + CC_B - 1) / CC_B), (unsigned)a.heads, (unsigned)a.batch);
        bwd_cc_fwd_kernel<T, D><<<grid, CC_NT, smem>>>(a, (T *)o, lse);
        LAUNCH_CHECK();
        return 0;
    }
    template <typename T> int run() { return cc_dims<T>(*this, a.dim); }
};

extern "C" int bwd_gpu_cc_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse)
{
    if (!bwd_gpu_cc_dim_ok((int)s->dim)) return -1;
    if (s->seq_q == 0 || s->batch * s->heads == 0) return 0;
    cc_fwd_run f = { bwd_make_args(s, q, k, v, NULL, NULL, NULL, NULL, NULL, NULL), o, lse };
    return bwd_dispatch_dt(s->dt, f);
}

struct fa2_run {
    bwd_args_t a;
    template <typename T, int D> int go()
    {
        bwd_dsum_launch<T>(a, true);
        if (a.seq_kv > 0) {
            const size_t smem = cc_cfg<D>::bwd_smem;
            bwd_raise_smem<bwd_fa2_kernel<T, D>>(smem);
            dim3 grid((unsigned)((a.seq_kv + CC_B - 1) / CC_B), (unsigned)a.kv_heads, (unsigned)a.batch);
            bwd_fa2_kernel<T, D><<<grid, CC_NT, smem>>>(a);
            LAUNCH_CHECK();
        }
        bwd_dq_convert_launch<T>(a);
        return 0;
    }
    template <typename T> int run() { return cc_dims<T>(*this, a.dim); }
};

extern "C" int bwd_gpu_fa2_launch(const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                              const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws)
{
    if (!bwd_gpu_cc_dim_ok((int)s->dim)) return -1;
    if (s->batch * s->heads == 0) return 0;
    fa2_run f = { bwd_ws_args(s, q, k, v, o, dout, lse, dq, dk, dv, ws, true) };
    return bwd_dispatch_dt(s->dt, f);
}
