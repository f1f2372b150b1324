/* Stage 05, tiled attention in FlashAttention-1's loop order (Dao et al.
 * 2022, Algorithm 1), on the CPU. The same blocks as fa2_cpu.c, the loops the
 * other way round: K/V blocks outer, Q blocks inner.
 *
 *   O = 0, l = 0, m = -inf                       (in HBM: the workspace)
 *   for each key block j:                        outer loop
 *       load K_j, V_j                            (once: they stay on chip)
 *       for each query block i that can see block j:   inner loop
 *           load Q_i, O_i, l_i, m_i              (from HBM, every time)
 *           S  = scale Q_i K_j^T                 (masked: -inf)
 *           m~ = rowmax S,  P~ = e^{S - m~},  l~ = rowsum P~   (the block's own softmax)
 *           m' = max(m_i, m~),  l' = e^{m_i - m'} l_i + e^{m~ - m'} l~
 *           O_i = (l_i e^{m_i - m'} O_i + e^{m~ - m'} P~ V_j) / l'
 *           write O_i, l', m' back to HBM        (or, on block i's last visit, O_i to the output)
 *
 * Why this order: K and V are read from HBM exactly once; what moves instead
 * is the running state of the queries, O, l and m, read and written back for
 * every pair of blocks. With Bc large (Bc = M / 4d, the paper's choice) that
 * is N / Bc passes over O: the paper's Theta(N^2 d^2 / M). It divides by l'
 * at every step (O_i is always the normalised output so far), which FA2 moved
 * to the end; and its parallelism on the GPU is one thread block per head,
 * because every query block of a head updates O in turn for each key block.
 *
 * The workspace: O (fp32, Nq d per head), l and m (fp32, Nq each) are HBM
 * arrays the implementation allocates (ws_bytes), so the ledger counts their
 * traffic: fp32 because O is accumulated there across blocks, and rounding it
 * to fp16 at every step would add an error per block.
 *
 * Memory traffic (ledger = tiled_fa1_bytes in tiles.c, exactly), per head,
 * not causal, Tc = ceil(Nk / Bc):
 *     4 Nq (d + 2)                       initialise O, l, m
 *   + es 2 Nk d                          K, V once
 *   + (es d + 4 (d + 2)) Nq Tc           Q_i, O_i, l_i, m_i read per visit
 *   + 4 (d + 2) Nq (Tc - 1)              O_i, l_i, m_i written back (not after the last visit)
 *   + es Nq d                            O written once
 *
 * Run: build/bin/05_tiled_attention --device cpu --kernel fa1 [--sram BYTES | --br R --bc C] [--causal] */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tiled.h"

int attention_fa1_cpu(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, void *ws)
{
    const size_t d = s->dim, Nq = s->seq_q, Nk = s->seq_kv, bhs = s->batch * s->heads;
    size_t BR, BC;
    char why[384];
    memset(&tiled_cpu_counts, 0, sizeof tiled_cpu_counts);
    if (!ws) {
        fprintf(stderr, "fa1: no workspace for O, l, m\n");
        return -1;
    }
    if (tiled_choose(TILED_FA1, s, &BR, &BC, why, sizeof why)) {
        fprintf(stderr, "fa1: %s\n", why);
        return -1;
    }
    const size_t br = BR < Nq ? BR : Nq, bc = BC < Nk ? BC : Nk;
    ledger_t *lg = q->lg;
    const uint64_t budget = lg->sram_budget;
    if (s->tune.sram) lg->sram_budget = s->tune.sram;
    tiled_chip_t c;
    if (tiled_chip_alloc(lg, &c, br, bc, d)) {
        fprintf(stderr, "fa1: the %zu x %zu tiles do not fit on chip\n", br, bc);
        lg->sram_budget = budget;
        return -1;
    }
    /* The workspace in HBM, fp32: O (rows x d), then l, then m. */
    const size_t rows_all = (size_t)attn_rows(s);
    hbm_t Ow = hbm_wrap(lg, "O (fa1 workspace)", ws, rows_all * d, DT_F32);
    hbm_t Lw = hbm_wrap(lg, "l", (float *)ws + rows_all * d, rows_all, DT_F32);
    hbm_t Mw = hbm_wrap(lg, "m", (float *)ws + rows_all * (d + 1), rows_all, DT_F32);

    const size_t Tr = (Nq + br - 1) / br, Tc = (Nk + bc - 1) / bc;
    for (size_t bh = 0; bh < bhs; bh++) {
        const size_t r0 = bh * Nq, qbase = r0 * d, kvbase = (size_t)attn_kv_slice(s, (uint64_t)r0) * Nk * d;
        tiled_cpu_counts.total += Tr * Tc;
        /* Algorithm 1, line 2: O = 0, l = 0, m = -inf in HBM */
        for (size_t x = 0; x < Nq * d; x++) hbm_st(&Ow, qbase + x, 0.0f);
        for (size_t r = 0; r < Nq; r++) {
            hbm_st(&Lw, r0 + r, 0.0f);
            hbm_st(&Mw, r0 + r, -INFINITY);
        }
        /* the last query block sees the most keys (bottom-right): every key
         * block below its limit is needed by some query block */
        const size_t ctmax = tiled_keys_needed(s, br, bc, Tr - 1);
        for (size_t j = 0; j < ctmax; j++) {
            const size_t key0 = j * bc, cols = key0 + bc <= Nk ? bc : Nk - key0;
            for (size_t x = 0; x < cols * d; x++) c.k[x] = hbm_ld(k, kvbase + key0 * d + x);
            for (size_t x = 0; x < cols * d; x++) c.v[x] = hbm_ld(v, kvbase + key0 * d + x);
            for (size_t i = 0; i < Tr; i++) {
                const size_t ct = tiled_keys_needed(s, br, bc, i);
                if (j >= ct) continue; /* fully masked: skipped */
                const size_t row0 = i * br, rows = row0 + br <= Nq ? br : Nq - row0;
                const int last = j == ct - 1;
                tiled_cpu_counts.computed++;
                for (size_t x = 0; x < rows * d; x++) c.q[x] = hbm_ld(q, qbase + row0 * d + x);
                for (size_t x = 0; x < rows * d; x++) c.o[x] = hbm_ld(&Ow, qbase + row0 * d + x);
                for (size_t r = 0; r < rows; r++) {
                    c.l[r] = hbm_ld(&Lw, r0 + row0 + r);
                    c.m[r] = hbm_ld(&Mw, r0 + row0 + r);
                }
                int masked = 0;
                for (size_t r = 0; r < rows; r++) {
                    const size_t vis = attn_visible_keys(s, row0 + r);
                    float *sr = c.s + r * bc, mt = -INFINITY, *orow = c.o + r * d;
                    for (size_t t = 0; t < cols; t++) {
                        if (key0 + t >= vis) {
                            sr[t] = -INFINITY;
                            masked = 1;
                            continue;
                        }
                        float dot = 0.0f;
                        for (size_t x = 0; x < d; x++) dot += c.q[r * d + x] * c.k[t * d + x];
                        sr[t] = s->scale * dot;
                        mt = fmaxf(mt, sr[t]);
                    }
                    /* the block's own softmax, against its own maximum m~ */
                    const float bt = mt == -INFINITY ? 0.0f : mt;
                    float lt = 0.0f;
                    for (size_t t = 0; t < cols; t++) {
                        sr[t] = expf(sr[t] - bt);
                        lt += sr[t];
                    }
                    /* merged with the state so far; exponents against 0 while nothing is visible */
                    const float mn = fmaxf(c.m[r], mt), bn = mn == -INFINITY ? 0.0f : mn;
                    const float a_old = expf(c.m[r] - bn), a_new = expf(mt - bn);
                    const float ln = a_old * c.l[r] + a_new * lt;
                    for (size_t x = 0; x < d; x++) {
                        float pv = 0.0f;
                        for (size_t t = 0; t < cols; t++) pv += sr[t] * c.v[t * d + x];
                        /* l' = 0: no key visible yet, the output so far is 0 */
                        orow[x] = ln == 0.0f ? 0.0f : (c.l[r] * a_old * orow[x] + a_new * pv) / ln;
                    }
                    c.l[r] = ln;
                    c.m[r] = mn;
                }
                tiled_cpu_counts.masked += masked;
                if (last) { /* block i is done: its O is the output */
                    for (size_t x = 0; x < rows * d; x++) hbm_st(o, qbase + row0 * d + x, c.o[x]);
                } else {
                    for (size_t x = 0; x < rows * d; x++) hbm_st(&Ow, qbase + row0 * d + x, c.o[x]);
                    for (size_t r = 0; r < rows; r++) {
                        hbm_st(&Lw, r0 + row0 + r, c.l[r]);
                        hbm_st(&Mw, r0 + row0 + r, c.m[r]);
                    }
                }
            }
        }
        /* query blocks that see no key at all (causal, Nq > Nk): output 0 */
        for (size_t i = 0; i < Tr; i++)
            if (tiled_keys_needed(s, br, bc, i) == 0) {
                const size_t row0 = i * br, rows = row0 + br <= Nq ? br : Nq - row0;
                for (size_t x = 0; x < rows * d; x++) hbm_st(o, qbase + row0 * d + x, 0.0f);
            }
    }
    tiled_cpu_counts.skipped = tiled_cpu_counts.total - tiled_cpu_counts.computed;
    tiled_chip_free(lg, &c, br, bc, d);
    lg->sram_budget = budget;
    return 0;
}
