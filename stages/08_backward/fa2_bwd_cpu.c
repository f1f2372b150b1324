/* Stage 08, FlashAttention-2's backward pass on the CPU (Dao 2023,
 * Algorithm 2), and the forward it needs: stage 05's FA2 forward
 * (fa2_cpu.c's tiled_fa2_forward_cpu), also writing the log-sum-exp
 * L = m + ln l of each query row, the one number per row that lets the
 * backward rebuild P exactly.
 *
 * What changes from the standard backward (standard_bwd_cpu.c): nothing of
 * size N x N is stored. P_ij is recomputed tile by tile as e^{S_ij - L_i}
 * from Q_i, K_j and L_i, used at once for dV_j, dP_ij, dS_ij, dQ_i, dK_j,
 * and dropped.
 *
 *   D = rowsum(dO * O)                               (one pass, fp32, B H Nq)
 *   for each K/V block j (Bc keys):                     outer loop
 *       load K_j, V_j;  dK_j = dV_j = 0                  (on chip)
 *       for each query head of the K/V head's group,
 *       for each query block i that sees block j:       inner loop
 *           load Q_i, dO_i, L_i, D_i
 *           P   = e^{scale Q_i K_j^T - L_i}      (masked pairs: 0)
 *           dV_j += P^T dO_i
 *           dP  = dO_i V_j^T;  dS = P * (dP - D_i)
 *           dQ_i += scale dS K_j                 (read, add, write: HBM, fp32)
 *           dK_j += dS^T Q_i
 *       write dK_j scale, dV_j                   (once)
 *   dQ = the fp32 accumulator, stored in dt
 *
 * Why K/V outer: dK_j and dV_j are sums over every query row, dQ_i a sum
 * over every key. One of the two sums must leave the chip between visits;
 * with K/V outer it is dQ (Br x d per visit), and dK, dV (2 Bc x d) are
 * written once. With Q outer it would be dK and dV, twice the bytes per
 * visit. On a GPU the K/V blocks are the independent work (one thread block
 * each) and dQ is the sum they share (atomics, or a separate pass).
 *
 * Memory traffic (the ledger counts it; bwd_fa2_bwd_bytes is the closed
 * form, equal to it), per K/V group, Tr = ceil(Nq / Br), not causal:
 *   es (2 Nq d G) + 4 Nq G + 4 Nq d G         D: read O, dO; write D; zero dQ
 *   + es 2 Nk d                                  K, V once
 *   + Tc G Nq (2 es d + 8 + 8 d)                 Q_i, dO_i, L_i, D_i, dQ_i read + written, per K/V block
 *   + es 2 Nk d                                  dK, dV once
 *   + G Nq d (4 + es)                            dQ converted
 * The N^2 term of the standard backward is gone; what is left grows as
 * N^2 d / Bc (the Q-side re-reads), like the forward's K/V re-reads.
 * On chip (sram_alloc, checked against --sram): bwd_fa2_onchip_bytes.
 *
 * Run: build/bin/08_backward --device cpu --kernel bwd-fa2 [--br R --bc C | --sram BYTES] [--causal] */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backward.h"

size_t bwd_fa2_onchip_bytes(size_t br, size_t bc, size_t d)
{
    return 4 * (4 * bc * d + 2 * br * d + 2 * br + 2 * br * bc);
}

int bwd_fa2_tiles(const attn_shape_t *s, size_t *br, size_t *bc, char *why, size_t n)
{
    const attn_tune_t *t = &s->tune;
    size_t r = 64, c = 64;
    if (t->br || t->bc) {
        r = t->br ? t->br : 64;
        c = t->bc ? t->bc : 64;
    } else if (t->sram) {
        size_t b = 0;
        while (bwd_fa2_onchip_bytes(b + 1, b + 1, s->dim) <= t->sram) b++;
        if (!b) {
            snprintf(why, n, "--sram %zu holds not even 1 x 1 tiles at d = %zu (%zu bytes)", t->sram, s->dim,
                     bwd_fa2_onchip_bytes(1, 1, s->dim));
            return -1;
        }
        r = c = b;
    }
    if (t->sram && bwd_fa2_onchip_bytes(r, c, s->dim) > t->sram) {
        snprintf(why, n, "%zu x %zu tiles need %zu bytes on chip at d = %zu; --sram is %zu", r, c,
                 bwd_fa2_onchip_bytes(r, c, s->dim), s->dim, t->sram);
        return -1;
    }
    /* a tile longer than the sequence holds the sequence: the same blocks, less memory */
    *br = r < s->seq_q ? r : (s->seq_q ? s->seq_q : 1);
    *bc = c < s->seq_kv ? c : (s->seq_kv ? s->seq_kv : 1);
    return 0;
}

size_t bwd_first_qblock(const attn_shape_t *s, size_t br, size_t key0)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv;
    if (!s->causal) return 0;
    /* query i sees key0 iff key0 <= i + Nk - Nq: the first such i */
    const size_t f = key0 + Nq > Nk ? key0 + Nq - Nk : 0;
    return f >= Nq ? (Nq + br - 1) / br : f / br;
}

size_t bwd_fa2_ws_bytes(const attn_shape_t *s)
{
    return 4 * ((size_t)attn_rows(s) + (size_t)attn_q_elems(s)); /* D, then the fp32 dQ accumulator */
}

double bwd_fa2_fwd_bytes(const attn_shape_t *s, size_t br, size_t bc)
{
    return tiled_fa2_bytes(s, br, bc) + 4.0 * (double)attn_rows(s); /* stage 05's FA2, and L */
}

double bwd_fa2_bwd_bytes(const attn_shape_t *s, size_t br, size_t bc)
{
    const double es = (double)dtype_size(s->dt), d = (double)s->dim, E = (double)attn_q_elems(s);
    const double R = (double)attn_rows(s), G = (double)(s->heads / s->kv_heads), groups = (double)(s->batch * s->kv_heads);
    const size_t Nq = s->seq_q, Nk = s->seq_kv, Tr = (Nq + br - 1) / br, Tc = (Nk + bc - 1) / bc;
    double per_group = 0; /* bytes of the main loop for one K/V group */
    for (size_t j = 0; j < Tc; j++) {
        const size_t key0 = j * bc, cols = key0 + bc <= Nk ? bc : Nk - key0;
        per_group += 2.0 * es * (double)cols * d; /* dK_j, dV_j written */
        const size_t fi = bwd_first_qblock(s, br, key0);
        if (fi >= Tr) continue;
        const double rows = (double)(Nq - fi * br); /* rows of the blocks fi .. Tr-1 */
        per_group += 2.0 * es * (double)cols * d + G * rows * (2.0 * es * d + 8.0 + 8.0 * d);
    }
    return es * 2.0 * E + 4.0 * R + 4.0 * E /* D; dQ zeroed */ + groups * per_group + (4.0 + es) * E;
}

/* ---- the forward: stage 05's fa2_cpu.c, writing L too */

int bwd_fa2_forward_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws)
{
    (void)ws;
    size_t br, bc;
    char why[256];
    if (bwd_fa2_tiles(s, &br, &bc, why, sizeof why)) {
        fprintf(stderr, "bwd-fa2: %s\n", why);
        return -1;
    }
    return tiled_fa2_forward_cpu(s, br, bc, &a->q, &a->k, &a->v, &a->o, &a->lse);
}

/* ---- the backward */

typedef struct {
    float *k, *v, *dk, *dv, *q, *dout, *l, *dd, *p, *ds;
} bwd_chip_t;

static void chip_free(ledger_t *lg, bwd_chip_t *c, size_t br, size_t bc, size_t d)
{
    sram_free(lg, c->k, 4 * bc * d); sram_free(lg, c->v, 4 * bc * d);
    sram_free(lg, c->dk, 4 * bc * d); sram_free(lg, c->dv, 4 * bc * d);
    sram_free(lg, c->q, 4 * br * d); sram_free(lg, c->dout, 4 * br * d);
    sram_free(lg, c->l, 4 * br); sram_free(lg, c->dd, 4 * br);
    sram_free(lg, c->p, 4 * br * bc); sram_free(lg, c->ds, 4 * br * bc);
}

static int chip_alloc(ledger_t *lg, bwd_chip_t *c, size_t br, size_t bc, size_t d)
{
    memset(c, 0, sizeof *c);
    if (!(c->k = sram_alloc(lg, 4 * bc * d)) || !(c->v = sram_alloc(lg, 4 * bc * d)) ||
        !(c->dk = sram_alloc(lg, 4 * bc * d)) || !(c->dv = sram_alloc(lg, 4 * bc * d)) ||
        !(c->q = sram_alloc(lg, 4 * br * d)) || !(c->dout = sram_alloc(lg, 4 * br * d)) ||
        !(c->l = sram_alloc(lg, 4 * br)) || !(c->dd = sram_alloc(lg, 4 * br)) ||
        !(c->p = sram_alloc(lg, 4 * br * bc)) || !(c->ds = sram_alloc(lg, 4 * br * bc))) {
        chip_free(lg, c, br, bc, d); /* sram_free ignores NULL */
        return -1;
    }
    return 0;
}

int bwd_fa2_cpu(const attn_shape_t *s, bwd_io_t *a, void *ws)
{
    const size_t d = s->dim, Nq = s->seq_q, Nk = s->seq_kv, H = s->heads, Hkv = s->kv_heads, G = H / Hkv;
    const size_t E = (size_t)attn_q_elems(s), R = (size_t)attn_rows(s);
    size_t br, bc;
    char why[256];
    if (!ws) {
        fprintf(stderr, "bwd-fa2: no workspace for D and the dQ accumulator\n");
        return -1;
    }
    if (bwd_fa2_tiles(s, &br, &bc, why, sizeof why)) {
        fprintf(stderr, "bwd-fa2: %s\n", why);
        return -1;
    }
    ledger_t *lg = a->q.lg;
    hbm_t D = hbm_wrap(lg, "D", ws, R, DT_F32);
    hbm_t dQ = hbm_wrap(lg, "dQ fp32", (float *)ws + R, E, DT_F32);
    const uint64_t budget = lg->sram_budget;
    if (s->tune.sram) lg->sram_budget = s->tune.sram;
    bwd_chip_t c;
    if (chip_alloc(lg, &c, br, bc, d)) {
        lg->sram_budget = budget;
        return -1;
    }

    /* D_i = dO_i . O_i (= sum_j P_ij dP_ij, without P), and dQ = 0 */
    for (size_t r = 0; r < R; r++) {
        float acc = 0.0f;
        for (size_t x = 0; x < d; x++) acc += hbm_ld(&a->dout, r * d + x) * hbm_ld(&a->o, r * d + x);
        hbm_st(&D, r, acc);
    }
    for (size_t x = 0; x < E; x++) hbm_st(&dQ, x, 0.0f);

    const size_t Tr = (Nq + br - 1) / br, Tc = (Nk + bc - 1) / bc;
    for (size_t g = 0; g < s->batch * Hkv; g++) {
        const size_t b = g / Hkv, hkv = g % Hkv, kvbase = g * Nk * d;
        for (size_t j = 0; j < Tc; j++) {
            const size_t key0 = j * bc, cols = key0 + bc <= Nk ? bc : Nk - key0;
            const size_t fi = bwd_first_qblock(s, br, key0);
            memset(c.dk, 0, cols * d * sizeof(float));
            memset(c.dv, 0, cols * d * sizeof(float));
            if (fi < Tr) { /* else no query sees these keys: dK_j = dV_j = 0, K_j and V_j never read */
                for (size_t x = 0; x < cols * d; x++) c.k[x] = hbm_ld(&a->k, kvbase + key0 * d + x);
                for (size_t x = 0; x < cols * d; x++) c.v[x] = hbm_ld(&a->v, kvbase + key0 * d + x);
            }
            for (size_t h = hkv * G; h < (hkv + 1) * G && fi < Tr; h++) {
                const size_t bh = b * H + h;
                for (size_t i = fi; i < Tr; i++) {
                    const size_t row0 = i * br, rows = row0 + br <= Nq ? br : Nq - row0, r0 = bh * Nq + row0;
                    for (size_t x = 0; x < rows * d; x++) c.q[x] = hbm_ld(&a->q, r0 * d + x);
                    for (size_t x = 0; x < rows * d; x++) c.dout[x] = hbm_ld(&a->dout, r0 * d + x);
                    for (size_t r = 0; r < rows; r++) c.l[r] = hbm_ld(&a->lse, r0 + r), c.dd[r] = hbm_ld(&D, r0 + r);
                    /* [snippet:fa2-backward-tile] */
                    for (size_t r = 0; r < rows; r++) {
                        const size_t vis = attn_visible_keys(s, row0 + r); /* keys < vis are visible */
                        for (size_t t = 0; t < cols; t++) {
                            float *p = c.p + r * bc + t, *ds = c.ds + r * bc + t;
                            if (key0 + t >= vis) { /* masked (and every key of a row with L = -inf) */
                                *p = *ds = 0.0f;
                                continue;
                            }
                            float dot = 0.0f, dp = 0.0f;
                            for (size_t x = 0; x < d; x++) dot += c.q[r * d + x] * c.k[t * d + x];
                            for (size_t x = 0; x < d; x++) dp += c.dout[r * d + x] * c.v[t * d + x];
                            *p = expf(s->scale * dot - c.l[r]); /* P recomputed from Q, K and L */
                            *ds = *p * (dp - c.dd[r]);          /* dS = P * (dP - D) */
                        }
                    }
                    for (size_t t = 0; t < cols; t++) /* dV_j += P^T dO_i,  dK_j += dS^T Q_i */
                        for (size_t r = 0; r < rows; r++)
                            for (size_t x = 0; x < d; x++) {
                                c.dv[t * d + x] += c.p[r * bc + t] * c.dout[r * d + x];
                                c.dk[t * d + x] += c.ds[r * bc + t] * c.q[r * d + x];
                            }
                    for (size_t r = 0; r < rows; r++) /* dQ_i += scale dS K_j: read, add, write in HBM */
                        for (size_t x = 0; x < d; x++) {
                            float acc = 0.0f;
                            for (size_t t = 0; t < cols; t++) acc += c.ds[r * bc + t] * c.k[t * d + x];
                            hbm_st(&dQ, (r0 + r) * d + x, hbm_ld(&dQ, (r0 + r) * d + x) + s->scale * acc);
                        }
                    /* [/snippet] */
                }
            }
            for (size_t x = 0; x < cols * d; x++) hbm_st(&a->dk, kvbase + key0 * d + x, s->scale * c.dk[x]);
            for (size_t x = 0; x < cols * d; x++) hbm_st(&a->dv, kvbase + key0 * d + x, c.dv[x]);
        }
    }
    for (size_t x = 0; x < E; x++) hbm_st(&a->dq, x, hbm_ld(&dQ, x));
    chip_free(lg, &c, br, bc, d);
    lg->sram_budget = budget;
    return 0;
}
