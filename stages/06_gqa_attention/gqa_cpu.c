/* Stage 06 on the CPU: the three ways of serving grouped K/V heads, through
 * the traffic ledger, so that the bytes each one moves are counted.
 *
 * What changes from stage 04's one-pass CPU code: rows are processed in
 * blocks that load each K/V tile once (as a GPU thread block does through
 * shared memory, stage 05), and which rows form a block is what separates
 * the methods:
 *   replicated, indexed  a block is up to BR rows of ONE query head, so a
 *                        K/V tile is loaded once per block of that head: per
 *                        group, g times per block position;
 *   packed               a block is up to BR rows of the group's g Nq rows
 *                        (contiguous in Q): in decode (Nq = 1, g <= BR) one
 *                        block per group, and each K/V tile is loaded once.
 * Each row's recurrence over the keys of a loaded tile is stage 04's
 * attention_one_pass_range, key by key in the same order for every method,
 * so all three give bit-identical outputs (tests/test_gqa.c checks it).
 *
 * Traffic (elements of the storage type; gqa_blocks_bytes is the same count
 * in closed loops, and the ledger must agree with it exactly):
 *   Q read once per (block, key range), O written once (or what another
 *   epilogue stores: stage 07's partial states),
 *   K/V: 2 d per key loaded, keys loaded = for every block, the keys up to
 *   the last one any of its rows sees.
 *   decode (Nq = 1), n keys:  indexed 2 d n B Hq,  packed 2 d n B Hkv
 *   replicated adds the copy: read 2 B Hkv Nk d, write 2 B Hq Nk d
 * In prefill (Nq = N >> BR) packing changes little: a block of BR rows reads
 * all of K/V either way, and the number of blocks is the same.
 *
 * Run: build/bin/06_gqa_attention --device cpu --heads 8 --kv-heads 2 [--decode --seq-kv 4096] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gqa.h"

const int GQA_DIMS[] = { 32, 64, 96, 128, 192, 256, 0 }; /* the decode kernel's (gqa.h) */

size_t gqa_row_visible(const attn_shape_t *s, const int *lens, uint64_t r)
{
    if (!lens) return attn_visible(s, r);
    const size_t b = (size_t)(r / ((uint64_t)s->seq_q * s->heads));
    size_t n = lens[b] < 0 ? 0 : (size_t)lens[b];
    if (n > s->seq_kv) n = s->seq_kv;
    return attn_visible_of(s, (size_t)(r % s->seq_q), n);
}

/* Rows of one "unit" (rows sharing one K/V slice, contiguous in Q): one head
 * (Nq rows), or one group (g Nq rows) when packed. */
static size_t unit_rows(const attn_shape_t *s, gqa_method_t m)
{
    return m == GQA_PACKED ? s->heads / s->kv_heads * s->seq_q : s->seq_q;
}

static size_t tile_rows(const attn_shape_t *s) { return s->tune.br ? s->tune.br : GQA_CPU_BR; }
static size_t tile_keys(const attn_shape_t *s) { return s->tune.bc ? s->tune.bc : GQA_BC; }

/* Stage 06's epilogue: every block takes all the keys and writes O = o / l
 * (zeros for a row that sees no key). */
static void store_o(const gqa_epilogue_t *e, const attn_shape_t *s, uint64_t row, size_t z, attn_state_t *st)
{
    (void)z;
    hbm_t *o = e->ctx;
    attn_state_finish(st, s->dim, st->o);
    for (size_t c = 0; c < s->dim; c++) hbm_st(o, (size_t)row * s->dim + c, st->o[c]);
}

static gqa_epilogue_t epilogue_o(const attn_shape_t *s, hbm_t *o)
{
    gqa_epilogue_t e = { 1, s->seq_kv, (double)dtype_size(s->dt) * (double)s->dim, store_o, o };
    return e;
}

/* The loop structure, shared by the run and the byte count: calls f for
 * every (block, key range) with its rows [r0, r0 + nr) and its keys [lo, end),
 * end = min(range end, the last key any of its rows sees). */
typedef int (*block_fn)(void *ctx, uint64_t r0, size_t nr, size_t z, size_t lo, size_t end);

static int for_blocks(const attn_shape_t *s, gqa_method_t m, const int *lens, const gqa_epilogue_t *e, block_fn f,
                      void *ctx)
{
    const size_t U = unit_rows(s, m), br = tile_rows(s), ranges = e->ranges, kpr = e->keys_per_range;
    const uint64_t units = attn_rows(s) / U;
    for (uint64_t u = 0; u < units; u++)
        for (size_t t0 = 0; t0 < U; t0 += br) {
            const uint64_t r0 = u * U + t0;
            const size_t nr = U - t0 < br ? U - t0 : br;
            size_t maxvis = 0;
            for (size_t i = 0; i < nr; i++) {
                const size_t n = gqa_row_visible(s, lens, r0 + i);
                if (n > maxvis) maxvis = n;
            }
            for (size_t z = 0; z < ranges; z++) {
                const size_t lo = z * kpr < s->seq_kv ? z * kpr : s->seq_kv;
                const size_t hi = kpr < s->seq_kv - lo ? lo + kpr : s->seq_kv;
                const size_t end = hi < maxvis ? hi : maxvis;
                if (f(ctx, r0, nr, z, lo, end > lo ? end : lo)) return -1;
            }
        }
    return 0;
}

/* ---- the byte count */

typedef struct {
    const attn_shape_t *s;
    const gqa_epilogue_t *e;
    const gqa_kv_rows_t *rows;
    double bytes, kv;
} count_ctx_t;

static int count_block(void *p, uint64_t r0, size_t nr, size_t z, size_t lo, size_t end)
{
    (void)r0;
    (void)z;
    count_ctx_t *c = p;
    const double es = (double)dtype_size(c->s->dt), d = (double)c->s->dim;
    if (end > lo) c->bytes += es * d * (double)nr;       /* Q rows (only when there are keys to see) */
    c->bytes += 2.0 * es * d * (double)(end - lo);        /* K and V, each key once per block */
    c->kv += 2.0 * es * d * (double)(end - lo);
    if (c->rows && end > lo) c->bytes += c->rows->lookup_bytes(c->rows, lo, end); /* a block table's reads */
    c->bytes += c->e->row_bytes * (double)nr;              /* what the epilogue stores (O: es d per row) */
    return 0;
}

static count_ctx_t count_all(const attn_shape_t *s, gqa_method_t method, const int *lens, const gqa_epilogue_t *e,
                             const gqa_kv_rows_t *rows)
{
    const gqa_epilogue_t eo = epilogue_o(s, NULL);
    count_ctx_t c = { s, e ? e : &eo, rows, 0.0, 0.0 };
    for_blocks(s, method, lens, c.e, count_block, &c);
    return c;
}

double gqa_blocks_bytes(const attn_shape_t *s, gqa_method_t method, const int *lens, const gqa_epilogue_t *e)
{
    return count_all(s, method, lens, e, NULL).bytes;
}

double gqa_blocks_bytes_kv(const attn_shape_t *s, gqa_method_t method, const int *lens, const gqa_epilogue_t *e,
                           const gqa_kv_rows_t *rows)
{
    return count_all(s, method, lens, e, rows).bytes;
}

double gqa_blocks_kv_bytes(const attn_shape_t *s, gqa_method_t method, const int *lens, const gqa_epilogue_t *e)
{
    return count_all(s, method, lens, e, NULL).kv;
}

/* ---- the run */

typedef struct {
    const attn_shape_t *s;
    hbm_t *q, *k, *v;
    const int *lens;
    const gqa_epilogue_t *e;
    const gqa_kv_rows_t *rows;     /* NULL: contiguous K/V */
    float *qb, *ob, *ml, *kt, *vt; /* on-chip: q rows, o states, (m, l) per row, the K and V tile */
    ledger_t scratch;              /* counts reads of the on-chip tile: not HBM, discarded */
} run_ctx_t;

static int run_block(void *p, uint64_t r0, size_t nr, size_t z, size_t lo, size_t end)
{
    run_ctx_t *c = p;
    const attn_shape_t *s = c->s;
    const size_t d = s->dim, bc = tile_keys(s), Nk = s->seq_kv;
    const size_t sl = (size_t)attn_kv_slice(s, r0), slice = sl * Nk * d;
    attn_state_t st[GQA_CPU_MAX_ROWS];
    size_t vis[GQA_CPU_MAX_ROWS];
    for (size_t i = 0; i < nr; i++) {
        attn_state_init(&st[i], c->ob + i * d, d);
        vis[i] = gqa_row_visible(s, c->lens, r0 + i);
        if (end > lo)
            for (size_t e = 0; e < d; e++) c->qb[i * d + e] = hbm_ld(c->q, (size_t)(r0 + i) * d + e);
    }
    hbm_t kt = hbm_wrap(&c->scratch, "K tile", c->kt, bc * d, DT_F32);
    hbm_t vt = hbm_wrap(&c->scratch, "V tile", c->vt, bc * d, DT_F32);
    for (size_t j0 = lo; j0 < end; j0 += bc) {
        const size_t j1 = j0 + bc < end ? j0 + bc : end;
        for (size_t j = j0; j < j1; j++) {
            /* [snippet:cpu-kv-row] */
            const size_t at = c->rows ? c->rows->row(c->rows, sl / s->kv_heads, sl % s->kv_heads, j, lo) /* a table */
                                      : slice + j * d;                                                   /* contiguous */
            /* [/snippet] */
            for (size_t e = 0; e < d; e++) {
                c->kt[(j - j0) * d + e] = hbm_ld(c->k, at + e);
                c->vt[(j - j0) * d + e] = hbm_ld(c->v, at + e);
            }
        }
        for (size_t i = 0; i < nr; i++) {
            const size_t top = vis[i] < j1 ? vis[i] : j1; /* this row's keys in the tile: [j0, top) */
            if (top > j0) attention_one_pass_range(&kt, &vt, 0, d, s->scale, c->qb + i * d, 0, top - j0, &st[i]);
        }
    }
    for (size_t i = 0; i < nr; i++) c->e->store(c->e, s, r0 + i, z, &st[i]); /* the epilogue */
    return 0;
}

int gqa_run_blocks(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, gqa_method_t method,
                   const int *lens, const gqa_epilogue_t *epi)
{
    return gqa_run_blocks_kv(s, q, k, v, o, method, lens, epi, NULL);
}

int gqa_run_blocks_kv(const attn_shape_t *s, hbm_t *q, hbm_t *k, hbm_t *v, hbm_t *o, gqa_method_t method,
                      const int *lens, const gqa_epilogue_t *epi, const gqa_kv_rows_t *rows)
{
    const size_t d = s->dim, br = tile_rows(s), bc = tile_keys(s);
    if (br > GQA_CPU_MAX_ROWS) {
        fprintf(stderr, "gqa: --br %zu: the CPU blocks hold at most %d rows\n", br, GQA_CPU_MAX_ROWS);
        return -1;
    }
    const gqa_epilogue_t eo = epilogue_o(s, o);
    if (!epi) epi = &eo;
    if (epi->ranges < 1 || epi->keys_per_range < 1) {
        fprintf(stderr, "gqa: an epilogue needs at least one key range of at least one key\n");
        return -1;
    }
    ledger_t *lg = q->lg;
    const size_t qb = br * d * sizeof(float), ob = qb, ml = 2 * br * sizeof(float), tb = bc * d * sizeof(float);
    run_ctx_t c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.q = q; c.k = k; c.v = v;
    c.lens = lens;
    c.e = epi;
    c.rows = rows;
    c.qb = sram_alloc(lg, qb);
    c.ob = sram_alloc(lg, ob);
    c.ml = sram_alloc(lg, ml);
    c.kt = sram_alloc(lg, tb);
    c.vt = sram_alloc(lg, tb);
    int rc = -1;
    if (c.qb && c.ob && c.ml && c.kt && c.vt) rc = for_blocks(s, method, lens, epi, run_block, &c);
    sram_free(lg, c.qb, qb);
    sram_free(lg, c.ob, ob);
    sram_free(lg, c.ml, ml);
    sram_free(lg, c.kt, tb);
    sram_free(lg, c.vt, tb);
    return rc;
}

void gqa_repeat_kv_cpu(const attn_shape_t *s, hbm_t *src, hbm_t *dst)
{
    const size_t S = s->seq_kv * s->dim, g = s->heads / s->kv_heads;
    for (size_t b = 0; b < s->batch; b++)
        for (size_t kh = 0; kh < s->kv_heads; kh++)
            for (size_t x = 0; x < S; x++) {
                const float val = hbm_ld(src, (b * s->kv_heads + kh) * S + x); /* exact: same storage type */
                for (size_t t = 0; t < g; t++) hbm_st(dst, (b * s->heads + kh * g + t) * S + x, val);
            }
}
