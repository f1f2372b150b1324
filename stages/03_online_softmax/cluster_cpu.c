/* Stage 03, merge-cluster: a row held on chip across a thread-block cluster.
 * What changes from merge-onchip: the row no longer has to fit one SM. On
 * sm_90 (Hopper) up to 8 thread blocks (16 with the non-portable opt-in) form
 * a cluster that is scheduled at once on one GPC; each block can read the
 * others' shared memory (distributed shared memory) and the cluster has a
 * hardware barrier. Each block of the cluster loads its chunk of the row into
 * registers, computes the chunk's (m, d) from them (as merge-onchip: each
 * thread's max, then its sum; one merge across the block), puts it in its
 * shared memory, and after a cluster barrier every block reads the C states
 * of its row from the others' shared memory and merges them (md.h). Each
 * block then writes its chunk from its registers.
 * Accesses per element: 1 load + 1 store, for rows up to C x 32768 elements
 * (C = 16: 2 MiB of fp32, 1 MiB of fp16/bf16).
 *
 * This file: the plan (which cluster for which row) and the CPU simulation.
 * The simulation holds the row in the ledger's simulated on-chip memory with
 * the cluster's budget (C blocks' registers), computes each block's state
 * from its chunk, merges the C states (an exchange that costs no device
 * memory traffic) and writes the row: the ledger counts exactly 2 accesses.
 * On the CPU the plan assumes what an H200 grants: clusters of up to 16.
 *
 * Which path for which row (merge_cluster_plan, and the applies() rules of
 * the others):
 *   cols fits one block's registers (onchip_capacity)  merge-onchip
 *   up to 16 small blocks (512 threads, 16384 elements) merge-cluster, C = cols / 16384
 *   up to 16 large blocks (1024 threads, 32768 elements) merge-cluster, C = cols / 32768
 *   longer                                             online (and online-split for few rows)
 * Small blocks first: two fit on an SM, so one cluster's loads overlap
 * another's exchange and stores. STF_CLUSTER_THREADS=512 or 1024 forces one
 * block size (experiments).
 *
 * Run: build/bin/03_online_softmax --device cpu --rows 8 --cols 131072 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "online.h"

static int g_forced;

void softmax_cluster_set_size(int blocks) { g_forced = blocks; }
int softmax_cluster_forced(void) { return g_forced; }

int merge_cluster_plan(size_t cols, dtype_t dt, int max_s, int max_l, cluster_plan_t *p, char *why, size_t n)
{
    const size_t es = dtype_size(dt), per_thread = CLUSTER_PER_THREAD;
    const char *e = getenv("STF_CLUSTER_THREADS");
    const int only = e ? atoi(e) : 0; /* 512 or 1024: one block size only (experiments) */
    const int sizes[2] = { CLUSTER_THREADS_S, CLUSTER_THREADS_L }, maxc[2] = { max_s, max_l };
    const double kib = (double)(cols * es) / 1024.0;
    if (!g_forced && cols <= onchip_capacity(cols, dt)) {
        snprintf(why, n, "a row of %.1f KiB fits one block's registers: merge-onchip is the path", kib);
        return 0;
    }
    for (int k = 0; k < 2; k++) {
        const size_t elems = (size_t)sizes[k] * per_thread;
        const size_t c = g_forced ? (size_t)g_forced : (cols + elems - 1) / elems;
        if (only && only != sizes[k]) continue;
        if (c * elems < cols || c > (size_t)maxc[k]) continue;
        p->blocks = (int)c;
        p->threads = sizes[k];
        p->block_elems = elems;
        p->block_bytes = elems * es;
        snprintf(why, n,
                 "a row of %.1f KiB is held by a cluster of %d blocks of %d threads (%zu KiB of registers each%s): "
                 "1 load + 1 store",
                 kib, p->blocks, p->threads, p->block_bytes / 1024, k ? ", one block an SM" : ", two an SM");
        return 1;
    }
    const int most = max_l > max_s ? max_l : max_s;
    if (g_forced)
        snprintf(why, n, "a forced cluster of %d blocks cannot hold a row of %.1f KiB (or exceeds the device's %d)",
                 g_forced, kib, most);
    else
        snprintf(why, n, "a row of %.1f KiB exceeds the largest cluster, %d blocks x %zu KiB of registers", kib,
                 max_l, (size_t)CLUSTER_THREADS_L * per_thread * es / 1024);
    return 0;
}

int softmax_merge_cluster_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    char why[256];
    const dtype_t dt = x->dt;
    const size_t es = dtype_size(dt);
    cluster_plan_t p;
    if (!merge_cluster_plan(cols, dt, CLUSTER_NONPORTABLE_MAX, CLUSTER_NONPORTABLE_MAX, &p, why, sizeof why)) {
        fprintf(stderr, "merge-cluster: %s\n", why);
        return -1;
    }
    const size_t vec = cols % (16 / es) == 0 ? 16 / es : 1, nvec = cols / vec;
    const size_t chunk = (nvec + (size_t)p.blocks - 1) / (size_t)p.blocks * vec; /* elements per block */
    ledger_t *lg = x->lg;
    const uint64_t saved = lg->sram_budget;
    lg->sram_budget = (uint64_t)p.blocks * p.block_bytes; /* the cluster's registers */
    void *row = sram_alloc(lg, cols * es);
    lg->sram_budget = saved;
    if (!row) return -1;
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        for (size_t j = 0; j < cols; j++) dtype_set(row, dt, j, hbm_ld(x, base + j)); /* each block loads its chunk */
        md_tree_t exchange; /* every block reads the C block states through distributed shared memory */
        md_tree_init(&exchange);
        for (int k = 0; k < p.blocks; k++) {
            const size_t j0 = (size_t)k * chunk < cols ? (size_t)k * chunk : cols;
            const size_t j1 = j0 + chunk < cols ? j0 + chunk : cols;
            md_tree_push(&exchange, md_of_onchip(row, dt, j0, j1));
        }
        const md_t s = md_tree_result(&exchange);
        const float ms = exp_base(s.m);
        for (size_t j = 0; j < cols; j++) hbm_st(y, base + j, expf(dtype_get(row, dt, j) - ms) / s.d);
    }
    sram_free(lg, row, cols * es);
    return 0;
}

static int cluster_applies(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t n)
{
    (void)rows;
    int max_s = CLUSTER_NONPORTABLE_MAX, max_l = CLUSTER_NONPORTABLE_MAX;
    if (gpu) {
#if HAVE_CUDA
        if (!merge_cluster_gpu_limits(dt, cols, &max_s, &max_l, why, n)) return 0;
#else
        snprintf(why, n, "this build has no CUDA");
        return 0;
#endif
    }
    cluster_plan_t p;
    const int ok = merge_cluster_plan(cols, dt, max_s, max_l, &p, why, n);
    const size_t len = strlen(why);
    if (len + 1 < n) /* what cudaOccupancyMaxPotentialClusterSize granted (the CPU assumes an H200's 16) */
        snprintf(why + len, n - len, " [largest cluster%s: %d small, %d large blocks]", gpu ? " on this GPU" : " assumed",
                 max_s, max_l);
    return ok;
}

const softmax_impl_t IMPL_MERGE_CLUSTER = {
    .name = "merge-cluster", .stage = "03", .passes = 1, .loads = 1, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_merge_cluster_cpu, .gpu = GPU_FN(softmax_merge_cluster_gpu), .applies = cluster_applies,
};
