/* Stage 03, online-split: few long rows, each cut into chunks handled by
 * separate blocks. What changes from online (one block per row): a row is no
 * longer one block's work. With one block per row, 1 x 1048576 fp32 ran on a
 * single SM of the H200's 132 (53 GB/s); any row count below what fills the
 * SMs leaves most of the chip idle, however long the rows.
 *
 * Why it is exact: the merge (md.h). Chunk b of a row has the state
 * (m_b, d_b) of its elements; the merge of all chunks' states is the row's
 * state, in any order, because the merge computes the state of a union.
 *
 * The work, as the GPU does it (split_gpu.cu), with the partial states in
 * device memory (here: hbm arrays, so the ledger counts them):
 *   kernel 1, every block:  (m_b, d_b) of its chunk, online (2 loads of x in
 *                           all with kernel 2), stored as a partial state
 *   kernel 1, the last block of a row to finish: merges the row's partial
 *                           states in chunk order and stores the row's (m, d)
 *   kernel 2, every block:  reads the row's (m, d), normalises its chunk
 * Accesses per element: 2 loads + 1 store, plus rows (24 P + 8) bytes of
 * partial states for P chunks a row (softmax_split_extra_bytes).
 *
 * The chunk count P: enough blocks of SPLIT_THREADS for 8 per SM (the GPU's
 * SM count; the CPU plans for the H200's 132), each chunk at least one vector
 * per thread; and only when one block per row would fill less than 1/8 of
 * the SMs' thread slots. Measured on the H200 at 262144 fp32 columns
 * (notes/03_online_softmax.md, "Beyond one SM"): the split beat one block a
 * row up to 16 rows (1141 against 747 GB/s), tied at 32 and lost from 64 on
 * (1642 against 2125 GB/s), where the second launch and the merge cost more
 * than the idle SMs did. softmax_split_set_chunks() forces P for the tests, which run
 * every P from 1 to more chunks than the row has vectors (empty chunks merge
 * as the identity).
 *
 * Run: build/bin/03_online_softmax --device cpu --rows 4 --cols 262144 */
#include <math.h>
#include <stdio.h>

#include "gpu.h"
#include "online.h"

static size_t g_forced;

void softmax_split_set_chunks(size_t chunks) { g_forced = chunks; }
size_t softmax_split_forced(void) { return g_forced; }

size_t softmax_split_extra_bytes(size_t rows, size_t chunks) { return rows * (24 * chunks + 8); }

/* Elements per vector: 16 bytes when the row length allows it (as STF_DISPATCH). */
static size_t vec_of(size_t cols, dtype_t dt)
{
    const size_t v = 16 / dtype_size(dt);
    return cols % v == 0 ? v : 1;
}

/* The online kernel's block size for a row of nvec vectors (multipass_threads). */
static size_t online_threads(size_t nvec)
{
    size_t t = 64;
    while (t < 1024 && t * 4 < nvec) t *= 2;
    return t;
}

size_t softmax_split_chunks(size_t rows, size_t cols, dtype_t dt, int sms, char *why, size_t n)
{
    const size_t nvec = cols / vec_of(cols, dt), slots = 2048 * (size_t)sms, t = online_threads(nvec);
    if (g_forced) {
        snprintf(why, n, "%zu chunks a row, forced (softmax_split_set_chunks)", g_forced);
        return g_forced;
    }
    if (8 * rows * t >= slots) {
        snprintf(why, n,
                 "%zu rows, one online block of %zu threads each, fill %.0f%% of the %d SMs' threads: at 1/8 and more "
                 "the two-sweep online kernel was as fast or faster (H200)",
                 rows, t, 100.0 * (double)(rows * t) / (double)slots, sms);
        return 1;
    }
    const size_t want = (8 * (size_t)sms + rows - 1) / rows, most = nvec / SPLIT_MIN_VEC;
    const size_t p = want < most ? want : most;
    if (p < 2) {
        snprintf(why, n, "a row of %zu elements is too short to split (a chunk holds at least %d vectors)", cols,
                 SPLIT_MIN_VEC);
        return 1;
    }
    snprintf(why, n,
             "%zu rows fill %.0f%% of the %d SMs' threads with one block a row: each row is cut into %zu chunks of "
             "%zu elements, one block of %d threads each; the last block of a row merges the partial (m, d)",
             rows, 100.0 * (double)(rows * t) / (double)slots, sms, p, (nvec + p - 1) / p * vec_of(cols, dt),
             SPLIT_THREADS);
    return p;
}

int softmax_online_split_cpu(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    char why[256];
    const dtype_t dt = x->dt;
    const size_t P = softmax_split_chunks(rows, cols, dt, SPLIT_CPU_SMS, why, sizeof why);
    if (P < 2 && !g_forced) {
        fprintf(stderr, "online-split: %s\n", why);
        return -1;
    }
    const size_t vec = vec_of(cols, dt), nvec = cols / vec, chunk = (nvec + P - 1) / P * vec;
    hbm_t part = hbm_alloc(x->lg, "partial states", rows * P * 2, DT_F32);
    hbm_t rowst = hbm_alloc(x->lg, "row states", rows * 2, DT_F32);
    if (!part.data || !rowst.data) {
        fprintf(stderr, "online-split: out of host memory for %zu x %zu partial states\n", rows, P);
        hbm_free(&part);
        hbm_free(&rowst);
        return -1;
    }
    for (size_t r = 0; r < rows; r++) {
        const size_t base = r * cols;
        /* kernel 1: each block's state, stored */
        for (size_t b = 0; b < P; b++) {
            const size_t j0 = b * chunk < cols ? b * chunk : cols, j1 = j0 + chunk < cols ? j0 + chunk : cols;
            md_acc_t acc;
            md_acc_init(&acc);
            for (size_t j = j0; j < j1; j++) md_acc_push(&acc, hbm_ld(x, base + j));
            const md_t s = md_acc_result(&acc);
            hbm_st(&part, 2 * (r * P + b), s.m);
            hbm_st(&part, 2 * (r * P + b) + 1, s.d);
        }
        /* kernel 1, the row's last block: the merge of all partial states */
        md_tree_t tree;
        md_tree_init(&tree);
        for (size_t b = 0; b < P; b++) {
            const md_t s = { hbm_ld(&part, 2 * (r * P + b)), hbm_ld(&part, 2 * (r * P + b) + 1) };
            md_tree_push(&tree, s);
        }
        const md_t row = md_tree_result(&tree);
        hbm_st(&rowst, 2 * r, row.m);
        hbm_st(&rowst, 2 * r + 1, row.d);
        /* kernel 2: every block reads the row's state and normalises its chunk */
        for (size_t b = 0; b < P; b++) {
            const size_t j0 = b * chunk < cols ? b * chunk : cols, j1 = j0 + chunk < cols ? j0 + chunk : cols;
            const float ms = exp_base(hbm_ld(&rowst, 2 * r)), d = hbm_ld(&rowst, 2 * r + 1);
            for (size_t j = j0; j < j1; j++) hbm_st(y, base + j, expf(hbm_ld(x, base + j) - ms) / d);
        }
    }
    hbm_free(&part);
    hbm_free(&rowst);
    return 0;
}

static int split_applies(size_t rows, size_t cols, dtype_t dt, int gpu, char *why, size_t n)
{
    static int sms;
    if (gpu && !sms) {
        gpu_info_t g;
        gpu_info(&g);
        sms = g.sm_count;
    }
    return softmax_split_chunks(rows, cols, dt, gpu ? sms : SPLIT_CPU_SMS, why, n) >= 2 || g_forced;
}

const softmax_impl_t IMPL_ONLINE_SPLIT = {
    .name = "online-split", .stage = "03", .passes = 2, .loads = 2, .stores = 1, .round_k = 1, .is_copy = 0,
    .cpu = softmax_online_split_cpu, .gpu = GPU_FN(softmax_online_split_gpu), .applies = split_applies,
};
