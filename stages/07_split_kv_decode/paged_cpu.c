/* Stage 07's paged K/V cache on the CPU (the layout: split.h, "the paged
 * K/V cache"). What changes from the split decode (split_cpu.c): stage 06's
 * CPU blocks find each key row through the block table instead of at
 * slice Nk d + pos d, the CPU twin of the decode kernel's kv_paged policy
 * (kv_pages.cuh). The arithmetic is the same, key by key in the same order,
 * so the output is bit-identical to the contiguous cache's
 * (tests/test_paged.c checks it); only the addresses and the table reads
 * differ.
 *
 * Extra traffic against the contiguous split decode: one 4-byte table read
 * per page a block's key range enters (a block that reads keys [lo, end)
 * looks up page lo / P, then each page it crosses into):
 *     4 ((end - 1) / P - lo / P + 1) bytes per (block, range),
 * e.g. 32768 keys, P = 16: 2048 reads = 8 KB per (b, K/V head) against 16 MB
 * of bf16 K/V at d = 128: 0.05%. The table costs little in bytes; what it
 * costs on a GPU is latency and locality (the note: notes/07b_paged_kv.md).
 *
 * And the append (paged_append_cpu): one token's K/V row per (b, h) into
 * its page, a page from the free list when the last one is full.
 *
 * Run: build/bin/07_split_kv_decode --device cpu --seq-kv 1000 --heads 8 --kv-heads 2 --page-size 16 --varlen */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "split.h"

int paged_size_ok(size_t P, char *why, size_t n)
{
    if (P >= PAGED_P_MIN && P <= PAGED_P_MAX && (P & (P - 1)) == 0) return 1;
    snprintf(why, n, "--page-size %zu: the page size must be a power of two from %d to %d (tokens per page)", P,
             PAGED_P_MIN, PAGED_P_MAX);
    return 0;
}

static size_t len_of(const attn_shape_t *s, const int *lens, size_t b)
{
    if (!lens) return attn_kv_len(s, b);
    const size_t n = lens[b] < 0 ? 0 : (size_t)lens[b];
    return n < s->seq_kv ? n : s->seq_kv;
}

void paged_geom(const attn_shape_t *s, int P, const int *lens, paged_geom_t *g)
{
    memset(g, 0, sizeof *g);
    g->P = P;
    while ((1 << g->shift) < P) g->shift++;
    g->B = (int)s->batch;
    g->hkv = (int)s->kv_heads;
    g->d = (int)s->dim;
    g->max_pages = (int)((s->seq_kv + 1 + (size_t)P - 1) / (size_t)P);
    size_t used = 0;
    for (size_t b = 0; b < s->batch; b++) used += (len_of(s, lens, b) + (size_t)P - 1) / (size_t)P;
    g->used = (int)used;
    g->num_pages = (int)(used + s->batch);
    g->page_elems = (size_t)g->hkv * (size_t)P * (size_t)g->d;
    g->dt = s->dt;
}

void paged_build_table(const paged_geom_t *g, const int *lens, uint64_t seed, int32_t *table, int32_t *free_list)
{
    const int np = g->num_pages;
    int32_t *perm = malloc((size_t)np * sizeof *perm);
    if (!perm) {
        fprintf(stderr, "paged: out of host memory for the page permutation\n");
        exit(1);
    }
    for (int i = 0; i < np; i++) perm[i] = i;
    for (int i = np - 1; i > 0; i--) { /* Fisher-Yates with the counter-based generator */
        const int j = (int)(rng_u64(seed, 9, (uint64_t)i) % (uint64_t)(i + 1));
        const int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int next = 0;
    for (int b = 0; b < g->B; b++) {
        const int n = lens[b] < 0 ? 0 : lens[b], pages = (n + g->P - 1) / g->P;
        for (int t = 0; t < g->max_pages; t++) table[(size_t)b * g->max_pages + t] = t < pages ? perm[next++] : -1;
    }
    for (int i = next; i < np; i++) free_list[i - next] = perm[i];
    free(perm);
}

void paged_scatter_host(const paged_geom_t *g, size_t nk, const int *lens, const int32_t *table, const void *src,
                        void *pool)
{
    const size_t es = dtype_size(g->dt), row = (size_t)g->d * es;
    memset(pool, 0xff, paged_pool_bytes(g)); /* NaN in every type: a row read that should not be */
    for (int b = 0; b < g->B; b++)
        for (int h = 0; h < g->hkv; h++)
            for (int pos = 0; pos < lens[b]; pos++) {
                const size_t page = (size_t)table[(size_t)b * g->max_pages + (pos >> g->shift)];
                const size_t to = (page * (size_t)g->hkv + (size_t)h) * (size_t)g->P + (size_t)(pos & (g->P - 1));
                const size_t from = ((size_t)b * (size_t)g->hkv + (size_t)h) * nk + (size_t)pos;
                memcpy((char *)pool + to * row, (const char *)src + from * row, row);
            }
}

size_t paged_pool_bytes(const paged_geom_t *g)
{
    return (size_t)g->num_pages * g->page_elems * dtype_size(g->dt);
}

static size_t up256(size_t x) { return (x + 255) / 256 * 256; }

void paged_ws_layout(const attn_shape_t *s, const paged_geom_t *g, int splits, paged_ws_t *w)
{
    w->kpool = up256(split_partial_bytes(s, splits));
    w->vpool = w->kpool + up256(paged_pool_bytes(g));
    w->table = w->vpool + up256(paged_pool_bytes(g));
    w->free_list = w->table + up256((size_t)g->B * (size_t)g->max_pages * 4);
    w->total = w->free_list + up256((size_t)(g->num_pages - g->used + 1) * 4);
}

/* ---- the CPU blocks' row lookup through the table */

/* [snippet:cpu-paged-row] */
static size_t paged_row(const gqa_kv_rows_t *r, size_t b, size_t kvh, size_t pos, size_t lo)
{
    paged_rows_ctx_t *c = r->ctx;
    const paged_geom_t *g = &c->g;
    const size_t in_page = pos & (size_t)(g->P - 1);
    if (pos == lo || in_page == 0) /* a block's first key, or a page boundary: read the table once */
        c->page = hbm_ld_i32(c->table, b * (size_t)g->max_pages + (pos >> g->shift));
    return (((size_t)c->page * (size_t)g->hkv + kvh) * (size_t)g->P + in_page) * (size_t)g->d;
}
/* [/snippet] */

static double paged_lookup_bytes(const gqa_kv_rows_t *r, size_t lo, size_t end)
{
    const paged_rows_ctx_t *c = r->ctx;
    return end > lo ? 4.0 * (double)((end - 1) / (size_t)c->g.P - lo / (size_t)c->g.P + 1) : 0.0;
}

gqa_kv_rows_t paged_rows(paged_rows_ctx_t *c, const paged_geom_t *g, hbm_t *table)
{
    memset(c, 0, sizeof *c);
    c->g = *g;
    c->table = table;
    gqa_kv_rows_t r = { paged_row, paged_lookup_bytes, c };
    return r;
}

int paged_decode_cpu(const attn_shape_t *s, const paged_geom_t *g, hbm_t *q, hbm_t *kpool, hbm_t *vpool,
                     hbm_t *table, hbm_t *o, const int *lens, int splits, void *ws)
{
    paged_rows_ctx_t c;
    const gqa_kv_rows_t rows = paged_rows(&c, g, table);
    return split_decode_cpu_kv(s, q, kpool, vpool, o, lens, splits, ws, &rows);
}

double paged_decode_bytes(const attn_shape_t *s, const paged_geom_t *g, const int *lens, int splits)
{
    paged_rows_ctx_t c;
    const gqa_kv_rows_t rows = paged_rows(&c, g, NULL);
    double b = split_blocks_bytes_kv(s, lens, splits, &rows);
    if (splits > 1) /* the combine: reads the partial states, writes O */
        b += (double)split_partial_bytes(s, splits) + (double)attn_q_elems(s) * (double)dtype_size(s->dt);
    return b;
}

/* ---- appending one token */

/* [snippet:cpu-append] */
int paged_append_cpu(const paged_geom_t *g, hbm_t *table, hbm_t *lens_in, hbm_t *lens_out, hbm_t *free_list,
                     int nfree, hbm_t *top, hbm_t *knew, hbm_t *vnew, hbm_t *kpool, hbm_t *vpool)
{
    const size_t hd = (size_t)g->hkv * (size_t)g->d;
    int *n = malloc((size_t)g->B * sizeof *n); /* a GPU block keeps its length in a register */
    if (!n) return -1;
    const int t0 = hbm_ld_i32(top, 0);
    int need = 0, bad = t0 < 0;
    for (int b = 0; b < g->B; b++) {
        n[b] = hbm_ld_i32(lens_in, (size_t)b);
        need += n[b] % g->P == 0;                     /* its last page is full (or it has none) */
        bad |= n[b] < 0 || n[b] / g->P >= g->max_pages;
    }
    if (bad || t0 + need > nfree) { /* out of table or free pages: nothing written */
        free(n);
        return -1;
    }
    int taken = 0;
    for (int b = 0; b < g->B; b++) {
        const size_t slot = (size_t)b * (size_t)g->max_pages + (size_t)(n[b] >> g->shift);
        int32_t page;
        if (n[b] % g->P == 0) { /* a new page from the free list, into the table */
            page = hbm_ld_i32(free_list, (size_t)(t0 + taken++));
            hbm_st_i32(table, slot, page);
        } else {
            page = hbm_ld_i32(table, slot);
        }
        for (size_t h = 0; h < (size_t)g->hkv; h++) {
            const size_t to = (((size_t)page * (size_t)g->hkv + h) * (size_t)g->P + (size_t)(n[b] & (g->P - 1))) * (size_t)g->d;
            for (size_t e = 0; e < (size_t)g->d; e++) {
                hbm_st(kpool, to + e, hbm_ld(knew, (size_t)b * hd + h * (size_t)g->d + e));
                hbm_st(vpool, to + e, hbm_ld(vnew, (size_t)b * hd + h * (size_t)g->d + e));
            }
        }
        hbm_st_i32(lens_out, (size_t)b, n[b] + 1);
    }
    hbm_st_i32(top, 1, t0 + taken);
    free(n);
    return 0;
}
/* [/snippet] */

double paged_append_bytes(const paged_geom_t *g, const int *lens_in)
{
    double pages = 0;
    for (int b = 0; b < g->B; b++) pages += lens_in[b] % g->P == 0;
    const double rows = 4.0 * (double)g->hkv * (double)g->d * (double)dtype_size(g->dt); /* K, V read and written */
    return 8.0 + (double)g->B * (12.0 + rows) + 4.0 * pages;
}
