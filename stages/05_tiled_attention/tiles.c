/* Stage 05: choosing the tiles, and counting what a tiling moves.
 *
 * Everything here is arithmetic on the shape: which tiles fit in M bytes of
 * on-chip memory, which blocks of the causal triangle are skipped, and the
 * closed-form HBM byte counts of the two loop orders. The CPU implementations
 * (fa1_cpu.c, fa2_cpu.c) count the same things while they run, through the
 * ledger; tests/test_tiled.c checks that both agree exactly, and checks these
 * sums against hand-written formulas for the simple cases.
 *
 * Run: build/bin/05_tiled_attention --device cpu --sram 102400   (tiles from M)
 *      build/bin/05_tiled_attention --device cpu --br 32 --bc 128  (tiles given) */
#include <stdio.h>
#include <string.h>

#include "tiled.h"

tiled_counts_t tiled_cpu_counts;

size_t tiled_onchip_bytes(size_t br, size_t bc, size_t d) { return 4 * (2 * br * d + 2 * bc * d + br * bc + 2 * br); }

/* The largest outer ("big") tile that fits beside an inner ("small") one. */
static size_t fit_big(tiled_order_t ord, size_t words, size_t small, size_t d)
{
    /* FA1: big = Bc, small = Br: 2 Br d + 2 Br + Bc (2 d + Br) <= words
     * FA2: big = Br, small = Bc: 2 Bc d + Br (2 d + Bc + 2) <= words */
    const size_t fixed = ord == TILED_FA1 ? 2 * small * d + 2 * small : 2 * small * d;
    const size_t per = ord == TILED_FA1 ? 2 * d + small : 2 * d + small + 2;
    return words > fixed ? (words - fixed) / per : 0;
}

int tiled_choose(tiled_order_t ord, const attn_shape_t *s, size_t *br, size_t *bc, char *why, size_t n)
{
    const size_t d = s->dim, M = s->tune.sram;
    if (s->tune.br || s->tune.bc) {
        *br = s->tune.br ? s->tune.br : TILED_DEFAULT_BR;
        *bc = s->tune.bc ? s->tune.bc : TILED_DEFAULT_BC;
        if (M && tiled_onchip_bytes(*br, *bc, d) > M) {
            snprintf(why, n,
                     "Br x Bc = %zu x %zu tiles need %zu bytes on chip at d = %zu (Q_i, O_i: %zu x %zu; K_j, V_j: "
                     "%zu x %zu; S_ij: %zu x %zu; m, l: %zu each; all fp32), more than --sram %zu",
                     *br, *bc, tiled_onchip_bytes(*br, *bc, d), d, *br, d, *bc, d, *br, *bc, *br, M);
            return -1;
        }
        return 0;
    }
    if (!M) {
        *br = TILED_DEFAULT_BR;
        *bc = TILED_DEFAULT_BC;
        return 0;
    }
    /* The paper's rule: the outer tile gets M / 4d words (four blocks of d
     * columns: Q_i, O_i, K_j, V_j), the inner one min(that, d) ... */
    const size_t words = M / 4, paper = words / (4 * d) ? words / (4 * d) : 1;
    size_t small = paper < d ? paper : d, big = 0;
    for (;;) {
        /* ... cut down to what the working set, S_ij and m, l included, allows */
        big = fit_big(ord, words, small, d);
        if (big > paper) big = paper;
        if (big >= small) break;
        if (big == 0 && small == 1) {
            snprintf(why, n,
                     "--sram %zu bytes cannot hold even 1 x 1 tiles at d = %zu: they need %zu bytes on chip "
                     "(a row of Q, O, K and V, one logit, m and l, in fp32)",
                     M, d, tiled_onchip_bytes(1, 1, d));
            return -1;
        }
        small = big ? big : small - 1;
    }
    if (ord == TILED_FA1) {
        *br = small;
        *bc = big;
    } else {
        *br = big;
        *bc = small;
    }
    return 0;
}

int tiled_check_options(const char *prog, size_t d, size_t br, size_t bc, size_t sram)
{
    attn_shape_t s;
    attn_shape_init(&s, 1, 1, 1, 1, 1, d, 0, DT_F32);
    s.tune.br = br;
    s.tune.bc = bc;
    s.tune.sram = sram;
    char why[384];
    size_t r, c;
    if (tiled_choose(TILED_FA1, &s, &r, &c, why, sizeof why) || tiled_choose(TILED_FA2, &s, &r, &c, why, sizeof why)) {
        fprintf(stderr, "%s: %s\n", prog, why);
        return 2;
    }
    return 0;
}

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

size_t tiled_keys_needed(const attn_shape_t *s, size_t br, size_t bc, size_t i)
{
    const size_t first = i * br, last = (first + br < s->seq_q ? first + br : s->seq_q) - 1;
    return ceil_div(attn_visible_keys(s, last), bc);
}

void tiled_count_blocks(const attn_shape_t *s, size_t br, size_t bc, tiled_counts_t *c)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, Tr = ceil_div(Nq, br), Tc = ceil_div(Nk, bc);
    const uint64_t bh = (uint64_t)s->batch * s->heads;
    uint64_t computed = 0, masked = 0;
    for (size_t i = 0; i < Tr; i++) {
        const size_t ct = tiled_keys_needed(s, br, bc, i), nfirst = attn_visible_keys(s, i * br);
        /* leading blocks every row of block i sees in full */
        const size_t full = nfirst == Nk ? Tc : nfirst / bc;
        computed += ct;
        masked += ct > full ? ct - full : 0;
    }
    c->total = bh * Tr * Tc;
    c->computed = bh * computed;
    c->skipped = c->total - c->computed;
    c->masked = bh * masked;
}

/* The per-head sums both byte counts are built from. */
typedef struct {
    uint64_t rows_live;  /* sum of r_i over blocks with ct_i > 0 */
    uint64_t kv_rows;    /* sum_i min(ct_i Bc, Nk): K (and V) rows loaded in FA2 order */
    uint64_t visits;     /* R = sum_i ct_i r_i: row visits in FA1 order */
    uint64_t kv_rows_fa1; /* min(ct_max Bc, Nk): K (and V) rows loaded in FA1 order */
} sums_t;

static void head_sums(const attn_shape_t *s, size_t br, size_t bc, sums_t *x)
{
    const size_t Nq = s->seq_q, Nk = s->seq_kv, Tr = ceil_div(Nq, br);
    size_t ctmax = 0;
    memset(x, 0, sizeof *x);
    for (size_t i = 0; i < Tr; i++) {
        const size_t ct = tiled_keys_needed(s, br, bc, i), r = (i + 1) * br <= Nq ? br : Nq - i * br;
        const size_t keys = ct * bc < Nk ? ct * bc : Nk;
        if (ct) x->rows_live += r;
        x->kv_rows += keys;
        x->visits += (uint64_t)ct * r;
        if (ct > ctmax) ctmax = ct;
    }
    x->kv_rows_fa1 = ctmax * bc < Nk ? ctmax * bc : Nk;
}

double tiled_fa2_bytes(const attn_shape_t *s, size_t br, size_t bc)
{
    const uint64_t es = dtype_size(s->dt), d = s->dim, bh = (uint64_t)s->batch * s->heads;
    sums_t x;
    head_sums(s, br, bc, &x);
    return (double)(bh * (es * d * x.rows_live + 2 * es * d * x.kv_rows + es * s->seq_q * d));
}

double tiled_fa1_bytes(const attn_shape_t *s, size_t br, size_t bc)
{
    const uint64_t es = dtype_size(s->dt), d = s->dim, bh = (uint64_t)s->batch * s->heads, Nq = s->seq_q;
    sums_t x;
    head_sums(s, br, bc, &x);
    const uint64_t init = 4 * Nq * (d + 2), kv = 2 * es * d * x.kv_rows_fa1;
    const uint64_t reads = (es * d + 4 * (d + 2)) * x.visits, writes = 4 * (d + 2) * (x.visits - x.rows_live);
    return (double)(bh * (init + kv + reads + writes + es * Nq * d));
}

size_t tiled_fa1_ws_bytes(const attn_shape_t *s)
{
    return (size_t)attn_rows(s) * (s->dim + 2) * sizeof(float);
}

void tiled_chip_free(ledger_t *lg, tiled_chip_t *c, size_t br, size_t bc, size_t d)
{
    sram_free(lg, c->q, br * d * 4);
    sram_free(lg, c->o, br * d * 4);
    sram_free(lg, c->k, bc * d * 4);
    sram_free(lg, c->v, bc * d * 4);
    sram_free(lg, c->s, br * bc * 4);
    sram_free(lg, c->m, br * 4);
    sram_free(lg, c->l, br * 4);
}

int tiled_chip_alloc(ledger_t *lg, tiled_chip_t *c, size_t br, size_t bc, size_t d)
{
    memset(c, 0, sizeof *c);
    if (!(c->q = sram_alloc(lg, br * d * 4)) || !(c->o = sram_alloc(lg, br * d * 4)) ||
        !(c->k = sram_alloc(lg, bc * d * 4)) || !(c->v = sram_alloc(lg, bc * d * 4)) ||
        !(c->s = sram_alloc(lg, br * bc * 4)) || !(c->m = sram_alloc(lg, br * 4)) || !(c->l = sram_alloc(lg, br * 4))) {
        tiled_chip_free(lg, c, br, bc, d);
        return -1;
    }
    return 0;
}
