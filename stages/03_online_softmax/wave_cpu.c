/* Stage 03, merge-wave: online-split with its chunks cut to fit one wave.
 * What changes from online-split: the grid is never larger than what the
 * GPU holds at once (the blocks that fit every SM, "one wave"). On the H200,
 * online-split's 1024 chunks of 1 x 1048576 ran in 1.29 waves, and its
 * second kernel waited for the first; profiled, both were latency, not
 * bandwidth (notes/03_online_softmax.md, "What limits them").
 *
 * With every block of the grid resident, a block may wait inside the kernel
 * for the other blocks of its row: they are running, so they will arrive.
 * That one guarantee changes the rest:
 *   - one kernel: a block publishes its chunk's (m, d), waits until its
 *     row's P states are published, merges all P itself (in chunk order, the
 *     same tree in every block, so every block gets the same (m, d) bit for
 *     bit), and normalises
 *   - its chunk stays in registers across the wait, as in merge-onchip:
 *     1 load + 1 store per element, no second read
 * The price: the whole matrix must fit the registers of one wave (H200:
 * 264 blocks x 16384 elements, 16.5 MiB of fp32, 8.25 MiB of fp16/bf16), and
 * each block reads all P states of its row: rows (8 P + 8 P^2) bytes beyond
 * the matrix (softmax_wave_extra_bytes), which on the GPU are L2 hits.
 *
 * The chunk count P: the wave divided among the rows (slots / rows), so
 * that every SM has work even for one row; at least the count whose chunks
 * fit one block (16384 elements); no chunk under WAVE_MIN_VEC vectors (one a
 * thread) unless the registers need it. 1 x 1048576 fp32: 264 chunks of 3972
 * elements; 16 x 256000: 16 chunks of 16000 a row.
 *
 * This file: the plan and the CPU simulation, through the ledger: the row's
 * P blocks hold its chunks on chip (the ledger's simulated on-chip memory,
 * with P blocks' registers as the budget), each writes its partial state and
 * reads back all P of its row, then writes its chunk.
 *
 * Run: build/bin/03_online_softmax --device cpu --rows 1 --cols 1048576 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "online.h"

static size_t g_forced;

void softmax_wave_set_chunks(size_t chunks) { g_forced = chunks; }
size_t softmax_wave_forced(void) { return g_forced; }

/* STF_WAVE_CHUNKS=P forces P chunks a row (experiments), as the tests'
 * softmax_wave_set_chunks does. */
static size_t forced_chunks(void)
{
    if (g_forced) return g_forced;
    const char *e = getenv("STF_WAVE_CHUNKS");
    return e ? strtoul(e, NULL, 10) : 0;
}

size_t softmax_wave_extra_bytes(size_t rows, size_t chunks) { return rows * (8 * chunks + 8 * chunks * chunks); }

static size_t vec_of(size_t cols, dtype_t dt)
{
    const size_t v = 16 / dtype_size(dt);
    return cols % v == 0 ? v : 1;
}

size_t softmax_wave_chunks(size_t rows, size_t cols, dtype_t dt, size_t slots, char *why, size_t n)
{
    const size_t vec = vec_of(cols, dt), nvec = cols / vec, cap = (size_t)WAVE_THREADS * WAVE_PER_THREAD / vec;
    const size_t need = (nvec + cap - 1) / cap; /* chunks that fit one block's registers */
    const size_t forced = forced_chunks();
    if (forced) {
        const size_t chunk = (nvec + forced - 1) / forced;
        if (rows * forced > slots || chunk > cap) {
            snprintf(why, n, "%zu rows x %zu forced chunks (of %zu vectors): more blocks than the %zu that fit at once, "
                     "or a chunk beyond one block's %zu vectors", rows, forced, chunk, slots, cap);
            return 0;
        }
        snprintf(why, n, "%zu chunks a row, forced", forced);
        return forced;
    }
    if (rows * (need ? need : 1) > slots) {
        snprintf(why, n,
                 "%zu rows need %zu blocks of %d elements in registers, more than the %zu that fit at once: the matrix "
                 "exceeds one wave",
                 rows, rows * need, WAVE_THREADS * WAVE_PER_THREAD, slots);
        return 0;
    }
    size_t p = slots / rows;
    if (p > nvec / WAVE_MIN_VEC) p = nvec / WAVE_MIN_VEC;
    if (p < need) p = need;
    if (p < 2) {
        snprintf(why, n, "a row of %zu elements fits one block: merge-onchip is the path (no split needed)", cols);
        return 0;
    }
    snprintf(why, n,
             "%zu rows x %zu chunks of %zu elements, %zu blocks of %d threads, all resident at once (%zu fit): each "
             "holds its chunk in registers and merges its row's %zu states",
             rows, p, (nvec + p - 1) / p * vec, rows * p, WAVE_THREADS, slots, p);
    return p;
}

int softmax_merge_wave_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    char why[256];
    const dtype_t dt = x->dt;
    const size_t es = dtype_size(dt);
    const size_t P = softmax_wave_chunks(rows, cols, dt, WAVE_CPU_SLOTS, why, sizeof why);
    if (!P) {
        fprintf(stderr, "merge-wave: %s\n", why);
        return -1;
    }
    const size_t vec = vec_of(cols, dt), nvec = cols / vec, chunk = (nvec + P - 1) / P * vec;
    ledger_t *lg = x->lg;
    const uint64_t saved = lg->sram_budget;
    lg->sram_budget = (uint64_t)P * WAVE_THREADS * WAVE_PER_THREAD * es; /* the row's P blocks' registers */
    void *row = sram_alloc(lg, cols * es);
    lg->sram_budget = saved;
    hbm_t part = hbm_alloc(lg, "partial states", rows * P * 2, DT_F32);
    if (!row || !part.data) {
        fprintf(stderr, "merge-wave: out of host memory for %zu x %zu partial states\n", rows, P);
        if (row) sram_free(lg, row, cols * es);
        hbm_free(&part);
        return -1;
    }
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        for (size_t j = 0; j < cols; j++) dtype_set(row, dt, j, hbm_ld(x, base + j)); /* each block its chunk */
        for (size_t b = 0; b < P; b++) { /* each block's state, published */
            const size_t j0 = b * chunk < cols ? b * chunk : cols, j1 = j0 + chunk < cols ? j0 + chunk : cols;
            const md_t s = md_of_onchip(row, dt, j0, j1);
            hbm_st(&part, 2 * (r * P + b), s.m);
            hbm_st(&part, 2 * (r * P + b) + 1, s.d);
        }
        for (size_t b = 0; b < P; b++) { /* after the wait: every block merges all P, normalises its chunk */
            md_tree_t tree;
            md_tree_init(&tree);
            for (size_t i = 0; i < P; i++) {
                const md_t s = { hbm_ld(&part, 2 * (r * P + i)), hbm_ld(&part, 2 * (r * P + i) + 1) };
                md_tree_push(&tree, s);
            }
            const md_t s = md_tree_result(&tree);
            const float ms = exp_base(s.m);
            const size_t j0 = b * chunk < cols ? b * chunk : cols, j1 = j0 + chunk < cols ? j0 + chunk : cols;
            for (size_t j = j0; j < j1; j++) hbm_st(y, base + j, expf(dtype_get(row, dt, j) - ms) / s.d);
        }
    }
    sram_free(lg, row, cols * es);
    hbm_free(&part);
    return 0;
}

static int wave_applies(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t n)
{
    size_t slots = WAVE_CPU_SLOTS;
    if (gpu) {
#if HAVE_CUDA
        slots = merge_wave_gpu_slots(dt, cols);
        if (!slots) {
            snprintf(why, n, "no block of the merge-wave kernel fits this device");
            return 0;
        }
#else
        snprintf(why, n, "this build has no CUDA");
        return 0;
#endif
    }
    return softmax_wave_chunks(rows, cols, dt, slots, why, n) > 0;
}

const softmax_impl_t IMPL_MERGE_WAVE = {
    .name = "merge-wave", .stage = "03", .passes = 1, .loads = 1, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_merge_wave_cpu, .gpu = GPU_FN(softmax_merge_wave_gpu), .applies = wave_applies,
};
