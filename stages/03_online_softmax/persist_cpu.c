/* Stage 03, merge-persist: merge-cluster with persistent clusters. What
 * changes from merge-cluster: a grid of as many clusters as fit at once, each
 * looping over rows (cluster c takes rows c, c + G, c + 2G, ...), and each
 * block copies its chunk of the next row into shared memory while it reduces,
 * exchanges and writes the current one. Profiled on the H200
 * (notes/03_online_softmax.md), merge-cluster lost its bandwidth to the
 * launch of clusters, not to the exchange: a finished cluster's block slots
 * stayed empty until a whole cluster's worth was free in a GPC, and the
 * blocks of a cluster loaded, waited and stored in lockstep.
 *
 * The plan (cluster size, block size) is merge_cluster_plan's, with clusters
 * of small blocks capped at 8 (PERSIST_SMALL_MAX; longer rows take large
 * blocks): persistent clusters of 16 small blocks left 40 of the H200's 264
 * block slots empty for the whole kernel, not just between rows. The CPU simulation: rows in the
 * persistent order, the next row's chunk staged on chip (the ledger's on-chip
 * memory holds two rows: the cluster's registers and its shared memory) while
 * the current one is reduced; exactly 1 load + 1 store per element.
 *
 * Run: build/bin/03_online_softmax --device cpu --rows 8 --cols 131072 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "online.h"

int merge_persist_small_max(void)
{
    const char *e = getenv("STF_PERSIST_SMALL_MAX");
    const int v = e ? atoi(e) : 0;
    return v >= 1 && v <= CLUSTER_NONPORTABLE_MAX ? v : PERSIST_SMALL_MAX;
}

size_t merge_persist_cpu_clusters(const cluster_plan_t *p)
{
    const size_t slots = p->threads == CLUSTER_THREADS_S ? 2 * 132 : 132, g = slots / (size_t)p->blocks;
    return g ? g : 1;
}

int softmax_merge_persist_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    char why[256];
    const dtype_t dt = x->dt;
    const size_t es = dtype_size(dt);
    cluster_plan_t p;
    if (!merge_cluster_plan(cols, dt, merge_persist_small_max(), CLUSTER_NONPORTABLE_MAX, &p, why, sizeof why)) {
        fprintf(stderr, "merge-persist: %s\n", why);
        return -1;
    }
    const size_t vec = cols % (16 / es) == 0 ? 16 / es : 1, nvec = cols / vec;
    const size_t chunk = (nvec + (size_t)p.blocks - 1) / (size_t)p.blocks * vec; /* elements per block */
    const size_t G = merge_persist_cpu_clusters(&p);
    ledger_t *lg = x->lg;
    const uint64_t saved = lg->sram_budget;
    lg->sram_budget = 2 * (uint64_t)p.blocks * p.block_bytes; /* registers and staging buffer */
    void *regs = sram_alloc(lg, cols * es), *stage = sram_alloc(lg, cols * es);
    lg->sram_budget = saved;
    if (!regs || !stage) {
        if (regs) sram_free(lg, regs, cols * es);
        return -1;
    }
    for (size_t c = 0; c < G && c < rows; c++) {
        for (size_t j = 0; j < cols; j++) dtype_set(stage, dt, j, hbm_ld(x, c * cols + j));
        for (size_t r = c; r < rows; r += G) {
            memcpy(regs, stage, cols * es); /* shared memory to registers, on chip */
            if (r + G < rows) /* the next row, staged while this one is finished */
                for (size_t j = 0; j < cols; j++) dtype_set(stage, dt, j, hbm_ld(x, (r + G) * cols + j));
            md_tree_t exchange;
            md_tree_init(&exchange);
            for (int k = 0; k < p.blocks; k++) {
                const size_t j0 = (size_t)k * chunk < cols ? (size_t)k * chunk : cols;
                const size_t j1 = j0 + chunk < cols ? j0 + chunk : cols;
                md_tree_push(&exchange, md_of_onchip(regs, dt, j0, j1));
            }
            const md_t s = md_tree_result(&exchange);
            const float ms = exp_base(s.m);
            for (size_t j = 0; j < cols; j++) hbm_st(y, r * cols + j, expf(dtype_get(regs, dt, j) - ms) / s.d);
        }
    }
    sram_free(lg, stage, cols * es);
    sram_free(lg, regs, cols * es);
    return 0;
}

static int persist_applies(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t n)
{
    (void)rows;
    int max_s = merge_persist_small_max(), max_l = CLUSTER_NONPORTABLE_MAX;
    if (gpu) {
#if HAVE_CUDA
        if (!merge_persist_gpu_limits(dt, cols, &max_s, &max_l, why, n)) return 0;
#else
        snprintf(why, n, "this build has no CUDA");
        return 0;
#endif
    }
    cluster_plan_t p;
    const int ok = merge_cluster_plan(cols, dt, max_s, max_l, &p, why, n);
    const size_t len = strlen(why);
    if (ok && len + 1 < n)
        snprintf(why + len, n - len, "; persistent clusters loop over the rows, the next row staged by cp.async");
    return ok;
}

const softmax_impl_t IMPL_MERGE_PERSIST = {
    .name = "merge-persist", .stage = "03", .passes = 1, .loads = 1, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_merge_persist_cpu, .gpu = GPU_FN(softmax_merge_persist_gpu), .applies = persist_applies,
};
