/* Stage 08's implementation list: each backward on the CPU (through the
 * ledger) and on the GPU (s08g's kernels, behind backward.h's contract),
 * with what the driver and the tests need to know of it: which shapes it
 * takes, what it rounds (the tolerance), its workspace, and the closed form
 * of its HBM traffic (the CPU ledger must equal it; the GPU counters are
 * compared with it). */
#include <stdio.h>
#include <string.h>

#include "backward.h"

const bwd_impl_t BWD_IMPLS[] = {
    { "bwd-standard", "08", BWD_GPU_STANDARD, bwd_standard_forward_cpu, bwd_standard_cpu, 0 },
    { "bwd-fa2", "08", BWD_GPU_FA2_FP32, bwd_fa2_forward_cpu, bwd_fa2_cpu, 0 },
    { "bwd-tc-atomic", "08", BWD_GPU_TC_ATOMIC, NULL, NULL, 0 },
    { "bwd-tc-det", "08", BWD_GPU_TC_DET, NULL, NULL, 1 },
    { "bwd-tc-k32", "08", BWD_GPU_TC_K32, NULL, NULL, 0 },
};
const int BWD_NIMPLS = (int)(sizeof BWD_IMPLS / sizeof BWD_IMPLS[0]);

const bwd_impl_t *bwd_impl_find(const char *name)
{
    for (int i = 0; i < BWD_NIMPLS; i++)
        if (!strcmp(BWD_IMPLS[i].name, name)) return &BWD_IMPLS[i];
    return NULL;
}

double bwd_flops(const attn_shape_t *s) { return 2.5 * attn_flops(s); }

static int is_standard(const bwd_impl_t *im) { return im->gpu_kernel == BWD_GPU_STANDARD; }

/* The GPU kernels' tiles (bwd_gpu_tiles; im = NULL: the forward's). */
static void gpu_tiles(const bwd_impl_t *im, const attn_shape_t *s, size_t *br, size_t *bc)
{
    int r = 0, c = 0;
    bwd_gpu_tiles(im ? im->gpu_kernel : -1, s, &r, &c);
    *br = r > 0 ? (size_t)r : 0;
    *bc = c > 0 ? (size_t)c : 0;
}

/* The forward of the GPU kernels: tensor cores for 16-bit inputs at the
 * dims they take (P rounded for the PV MMA), CUDA cores in fp32 otherwise. */
static int gpu_fwd_tc(const attn_shape_t *s) { return bwd_gpu_forward_kind(s) == 1; }

int bwd_impl_supports(const bwd_impl_t *im, const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (gpu) {
        if (im->gpu_kernel < 0) {
            snprintf(why, n, "CPU only");
            return 0;
        }
        return bwd_gpu_supports(im->gpu_kernel, s, why, n);
    }
    if (!im->cpu_bwd) {
        snprintf(why, n, "GPU only (a tensor-core kernel)");
        return 0;
    }
    if (s->varlen) {
        snprintf(why, n, "no --varlen in the backward");
        return 0;
    }
    size_t br, bc;
    if (!is_standard(im) && bwd_fa2_tiles(s, &br, &bc, why, n)) return 0;
    return 1;
}

unsigned bwd_impl_rounding(const bwd_impl_t *im, const attn_shape_t *s, int gpu)
{
    if (s->dt == DT_F32 && !gpu) return 0;
    if (!gpu) return is_standard(im) ? BWD_ROUND_P | BWD_ROUND_DS : 0; /* S and dP fp32, as on the GPU */
    switch (im->gpu_kernel) {
    case BWD_GPU_STANDARD: /* S and dP fp32 (cuBLAS's C); fp32: no TF32 */
        return s->dt == DT_F32 ? 0 : BWD_ROUND_P | BWD_ROUND_DS | BWD_MMA_LOWP;
    case BWD_GPU_FA2_FP32: return 0;
    default: return s->dt == DT_F32 ? 0 : BWD_ROUND_P | BWD_ROUND_DS | BWD_MMA_LOWP;
    }
}

unsigned bwd_impl_fwd_rounding(const bwd_impl_t *im, const attn_shape_t *s, int gpu)
{
    if (!gpu) return is_standard(im) && s->dt != DT_F32 ? ATT_ROUND_P : 0;
    return gpu_fwd_tc(s) ? ATT_ROUND_P | ATT_MMA_LOWP : 0;
}

size_t bwd_impl_ws_bytes(const bwd_impl_t *im, const attn_shape_t *s, int gpu)
{
    if (gpu) return im->gpu_kernel >= 0 ? bwd_gpu_ws_bytes(im->gpu_kernel, s) : 0;
    return is_standard(im) ? bwd_standard_ws_bytes(s) : bwd_fa2_ws_bytes(s);
}

/* bwd_standard.cu's traffic, per K/V head, M = G Nq rows (its header):
 * D pass 2 es M d + 4 M; S = scale K Q^T written fp32 (es (M + Nk) d in,
 * 4 M Nk out); P = e^{S - L} (4 M Nk + 4 M in, es M Nk out); dV GEMM
 * (es (M d + M Nk) in, es Nk d out); dP GEMM (es (Nk + M) d in, 4 M Nk out);
 * dS pass (es M Nk + 4 M Nk + 4 M in, es M Nk out); dQ GEMM (es (Nk d + M Nk)
 * in, es M d out); dK GEMM (es (M d + M Nk) in, es Nk d out). */
static double gpu_standard_bytes(const attn_shape_t *s)
{
    const double es = (double)dtype_size(s->dt), d = (double)s->dim, Nk = (double)s->seq_kv;
    const double M = (double)(s->heads / s->kv_heads) * (double)s->seq_q, heads = (double)(s->batch * s->kv_heads);
    return heads * ((16.0 + 6.0 * es) * M * Nk + 7.0 * es * M * d + 5.0 * es * Nk * d + 12.0 * M);
}

/* bwd_tc2_det.cu: the dK/dV kernel of the atomic one without its dQ term
 * (no clear, no read-modify-write, no conversion), then a dQ kernel in the
 * forward's order (query block outer): per query head Q_i, dO_i, L_i, D_i
 * once, K and V once per query block it needs, dQ written once. */
static double gpu_det_bytes(const attn_shape_t *s, size_t br, size_t bc)
{
    const double es = (double)dtype_size(s->dt), d = (double)s->dim, E = (double)attn_q_elems(s);
    const double R = (double)attn_rows(s), G = (double)(s->heads / s->kv_heads), groups = (double)(s->batch * s->kv_heads);
    const size_t Nq = s->seq_q, Nk = s->seq_kv, Tr = (Nq + br - 1) / br, Tc = (Nk + bc - 1) / bc;
    double kv = 0, dq = 0;
    for (size_t j = 0; j < Tc; j++) {
        const size_t key0 = j * bc, cols = key0 + bc <= Nk ? bc : Nk - key0;
        kv += 2.0 * es * (double)cols * d;
        const size_t fi = bwd_first_qblock(s, br, key0);
        if (fi < Tr) kv += 2.0 * es * (double)cols * d + G * (double)(Nq - fi * br) * (2.0 * es * d + 8.0);
    }
    for (size_t i = 0; i < Tr; i++) {
        const size_t rows = i * br + br <= Nq ? br : Nq - i * br, ct = tiled_keys_needed(s, br, bc, i);
        if (!ct) continue;
        const size_t keys = ct * bc < Nk ? ct * bc : Nk;
        dq += (double)rows * (2.0 * es * d + 8.0) + 2.0 * es * d * (double)keys;
    }
    return es * 2.0 * E + 4.0 * R /* D */ + groups * kv + (double)(s->batch * s->heads) * dq + es * E;
}

double bwd_impl_fwd_bytes(const bwd_impl_t *im, const attn_shape_t *s, int gpu)
{
    size_t br, bc;
    if (gpu) {
        gpu_tiles(NULL, s, &br, &bc);
        if (!br || !s->seq_q || !s->seq_kv) return 0;
        return tiled_fa2_bytes(s, br, bc) + 4.0 * (double)attn_rows(s);
    }
    if (is_standard(im)) return bwd_standard_fwd_bytes(s);
    char why[256];
    if (bwd_fa2_tiles(s, &br, &bc, why, sizeof why)) return 0;
    return bwd_fa2_fwd_bytes(s, br, bc);
}

double bwd_impl_bwd_bytes(const bwd_impl_t *im, const attn_shape_t *s, int gpu)
{
    size_t br, bc;
    if (gpu) {
        if (is_standard(im)) return gpu_standard_bytes(s);
        gpu_tiles(im, s, &br, &bc);
        if (!br || !s->seq_q || !s->seq_kv) return 0;
        if (im->gpu_kernel == BWD_GPU_TC_DET) return gpu_det_bytes(s, br, bc);
        return bwd_fa2_bwd_bytes(s, br, bc);
    }
    if (is_standard(im)) return bwd_standard_bwd_bytes(s);
    char why[256];
    if (bwd_fa2_tiles(s, &br, &bc, why, sizeof why)) return 0;
    return bwd_fa2_bwd_bytes(s, br, bc);
}

const char *bwd_impl_tiles(const bwd_impl_t *im, const attn_shape_t *s, int gpu)
{
    static char buf[8][32];
    static int slot;
    char *b = buf[slot++ % 8];
    size_t br = 0, bc = 0;
    char why[256];
    if (is_standard(im)) return "-";
    if (gpu) gpu_tiles(im, s, &br, &bc);
    else if (bwd_fa2_tiles(s, &br, &bc, why, sizeof why)) return "-";
    snprintf(b, 32, "%zux%zu", br, bc);
    return b;
}
