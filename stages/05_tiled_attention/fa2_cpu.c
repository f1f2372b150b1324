/* Stage 05, tiled attention in FlashAttention-2's loop order, on the CPU.
 * What changes from stage 04's one-pass (one_pass_cpu.c): the recurrence runs
 * on blocks instead of single rows and keys. A block of Br query rows is
 * loaded once and stays on chip with its running state (m, l, O); the keys
 * arrive Bc at a time, and each K/V block, loaded once, serves all Br rows.
 *
 *   for each query block Q_i (Br rows):                   outer loop
 *       load Q_i;  m = -inf, l = 0, O = 0                 (on chip)
 *       for each key block j that block i can see:       inner loop
 *           load K_j, V_j
 *           S  = scale Q_i K_j^T          (Br x Bc, masked: -inf)
 *           m' = max(m, rowmax S)
 *           P  = e^{S - m'}               (the block's local softmax numerators)
 *           l  = l e^{m - m'} + rowsum P
 *           O  = O e^{m - m'} + P V_j     (the rescale of Q4, once per block)
 *           m  = m'
 *       write O / l                        (the only division, at the end)
 *
 * This is the merge of stage 04 (merge.c) applied to whole blocks: the state
 * (m, l, O) of the keys so far, merged with the block's. Dividing by l only at
 * the end (FlashAttention-2's change) saves Br d divisions per block and lets
 * O stay unnormalised, like stage 04's one-pass.
 *
 * Causal: key block j is skipped entirely (not loaded, not computed) when even
 * the last row of block i cannot see its first key: j >= ct_i = ceil(n_i / Bc)
 * (tiled.h). Only blocks that straddle the diagonal need the mask.
 *
 * Memory traffic (the ledger counts it; tiled_fa2_bytes in tiles.c is the
 * closed form, equal to it): Q once, O once, and K, V once per query block:
 *     es (2 Nq d + 2 d Nk Tr)  per head, Tr = ceil(Nq / Br)     (not causal)
 * the one-pass's 2 Nq Nk d of K/V divided by Br.
 * On chip (sram_alloc, checked against --sram): Q_i, O_i, K_j, V_j, S_ij, m, l
 * in fp32, tiled_onchip_bytes(Br, Bc, d).
 *
 * With lse given (stage 08's forward), each row's log-sum-exp L = m + ln l
 * is written too (fp32, [B H Nq]): the one number per row the backward needs
 * to rebuild P = e^{S - L}.
 *
 * Run: build/bin/05_tiled_attention --device cpu --kernel fa2 [--sram BYTES | --br R --bc C] [--causal] */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tiled.h"

int tiled_fa2_forward_cpu(const attn_shape_t *s, size_t br, size_t bc, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o,
                          hbm_t *lse)
{
    const size_t d = s->dim, Nq = s->seq_q, Nk = s->seq_kv, bhs = s->batch * s->heads;
    memset(&tiled_cpu_counts, 0, sizeof tiled_cpu_counts);
    ledger_t *lg = q->lg;
    const uint64_t budget = lg->sram_budget;
    if (s->tune.sram) lg->sram_budget = s->tune.sram;
    tiled_chip_t c;
    if (tiled_chip_alloc(lg, &c, br, bc, d)) {
        lg->sram_budget = budget;
        return -1;
    }
    const size_t Tr = (Nq + br - 1) / br, Tc = (Nk + bc - 1) / bc;
    for (size_t bh = 0; bh < bhs && Nq; bh++) {
        const size_t qbase = bh * Nq * d, kvbase = (size_t)attn_kv_slice(s, (uint64_t)bh * Nq) * Nk * d;
        tiled_cpu_counts.total += Tr * Tc;
        for (size_t i = 0; i < Tr; i++) {
            const size_t row0 = i * br, rows = row0 + br <= Nq ? br : Nq - row0;
            const size_t ct = tiled_keys_needed(s, br, bc, i);
            if (ct == 0) { /* no row of this block sees any key: FlashAttention's O = 0 (L = -inf), Q never read */
                for (size_t x = 0; x < rows * d; x++) hbm_st(o, qbase + row0 * d + x, 0.0f);
                for (size_t r = 0; lse && r < rows; r++) hbm_st(lse, bh * Nq + row0 + r, -INFINITY);
                continue;
            }
            for (size_t x = 0; x < rows * d; x++) c.q[x] = hbm_ld(q, qbase + row0 * d + x);
            for (size_t r = 0; r < rows; r++) c.m[r] = -INFINITY, c.l[r] = 0.0f;
            memset(c.o, 0, rows * d * sizeof(float));
            /* [snippet:fa2-key-blocks] */
            for (size_t j = 0; j < ct; j++) {
                const size_t key0 = j * bc, cols = key0 + bc <= Nk ? bc : Nk - key0;
                for (size_t x = 0; x < cols * d; x++) c.k[x] = hbm_ld(k, kvbase + key0 * d + x);
                for (size_t x = 0; x < cols * d; x++) c.v[x] = hbm_ld(v, kvbase + key0 * d + x);
                tiled_cpu_counts.computed++;
                int masked = 0;
                for (size_t r = 0; r < rows; r++) {
                    const size_t vis = attn_visible_keys(s, row0 + r); /* keys < vis are visible */
                    float *sr = c.s + r * bc, mx = c.m[r];
                    for (size_t t = 0; t < cols; t++) {
                        if (key0 + t >= vis) { /* only blocks on the diagonal get here */
                            sr[t] = -INFINITY;
                            masked = 1;
                            continue;
                        }
                        float dot = 0.0f;
                        for (size_t x = 0; x < d; x++) dot += c.q[r * d + x] * c.k[t * d + x];
                        sr[t] = s->scale * dot;
                        mx = fmaxf(mx, sr[t]);
                    }
                    /* while no key is visible m = -inf: exponents against 0, never -inf - (-inf) */
                    const float base = mx == -INFINITY ? 0.0f : mx, alpha = expf(c.m[r] - base);
                    float rowsum = 0.0f, *orow = c.o + r * d;
                    for (size_t t = 0; t < cols; t++) {
                        sr[t] = expf(sr[t] - base);
                        rowsum += sr[t];
                    }
                    c.l[r] = c.l[r] * alpha + rowsum;
                    for (size_t x = 0; x < d; x++) orow[x] *= alpha;
                    for (size_t t = 0; t < cols; t++)
                        for (size_t x = 0; x < d; x++) orow[x] += sr[t] * c.v[t * d + x];
                    c.m[r] = mx;
                }
                tiled_cpu_counts.masked += masked;
            }
            /* [/snippet] */
            /* [snippet:fa2-forward-lse] */
            for (size_t r = 0; r < rows; r++) { /* the one division, O / l, and L = m + ln l when asked for */
                const float l = c.l[r];         /* l = 0: no visible key, O = 0 and L = -inf */
                for (size_t x = 0; x < d; x++) hbm_st(o, qbase + (row0 + r) * d + x, l == 0.0f ? 0.0f : c.o[r * d + x] / l);
                if (lse) hbm_st(lse, bh * Nq + row0 + r, l == 0.0f ? -INFINITY : c.m[r] + logf(l));
            }
            /* [/snippet] */
        }
    }
    tiled_cpu_counts.skipped = tiled_cpu_counts.total - tiled_cpu_counts.computed;
    tiled_chip_free(lg, &c, br, bc, d);
    lg->sram_budget = budget;
    return 0;
}

int attention_fa2_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    (void)ws;
    size_t BR, BC;
    char why[384];
    memset(&tiled_cpu_counts, 0, sizeof tiled_cpu_counts);
    if (tiled_choose(TILED_FA2, s, &BR, &BC, why, sizeof why)) {
        fprintf(stderr, "fa2: %s\n", why);
        return -1;
    }
    /* a tile longer than the sequence holds the sequence: same blocks, less memory */
    const size_t br = BR < s->seq_q ? BR : s->seq_q, bc = BC < s->seq_kv ? BC : s->seq_kv;
    if (tiled_fa2_forward_cpu(s, br, bc, q, k, v, o, NULL)) {
        fprintf(stderr, "fa2: the %zu x %zu tiles do not fit on chip\n", br, bc);
        return -1;
    }
    return 0;
}
