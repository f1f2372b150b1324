/* Stages 01-03: every softmax implementation, CPU and GPU, against the fp64
 * reference; the ledger's counts against the access model; overflow; -inf,
 * all -inf and NaN rows; long rows of wide logits; the paths beyond one SM
 * (online-split and merge-wave at every chunk count, merge-cluster and
 * merge-persist at every cluster size);
 * and, so that none of these checks is vacuous, deliberately broken
 * implementations that the same checks must reject.
 * GPU cases skip (cmocka skip) where no GPU can be used. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/01_naive_softmax/naive.h"
#include "../stages/02_safe_softmax/safe.h"
#include "../stages/03_online_softmax/online.h"
#include "gpu.h"
#include "reference.h"
#include "rng.h"
#include "harness.h"
#include "test_main.h"

static const softmax_impl_t *const SOFTMAXES[] = { &IMPL_NAIVE,         &IMPL_SAFE,         &IMPL_SAFE_ONCHIP,
                                                    &IMPL_ONLINE,        &IMPL_MERGE_ONCHIP, &IMPL_ONLINE_SPLIT,
                                                    &IMPL_MERGE_WAVE,    &IMPL_MERGE_CLUSTER, &IMPL_MERGE_PERSIST };
#define NSOFT (sizeof SOFTMAXES / sizeof SOFTMAXES[0])
static const size_t ODD_COLS[] = { 1, 17, 1000, 65537 };
static const dtype_t DTYPES[] = { DT_F32, DT_F16, DT_BF16 };

static void *random_matrix(dtype_t dt, size_t rows, size_t cols, uint32_t stream, float scale)
{
    void *x = malloc(rows * cols * dtype_size(dt));
    for (size_t i = 0; i < rows * cols; i++) dtype_set(x, dt, i, rng_logit(test_seed(), stream, i, scale));
    return x;
}

/* Random inputs, odd sizes, every dtype: each implementation within its
 * stated tolerance of fp64 (the on-chip variant must refuse rows it cannot
 * hold, and only those). */
static void accuracy(int gpu)
{
    for (size_t k = 0; k < NSOFT; k++)
        for (size_t d = 0; d < 3; d++)
            for (size_t c = 0; c < 4; c++) {
                const softmax_impl_t *im = SOFTMAXES[k];
                const size_t cols = ODD_COLS[c], rows = cols > 5000 ? 3 : 7;
                const dtype_t dt = DTYPES[d];
                void *x = random_matrix(dt, rows, cols, (uint32_t)(10 * c + d), 8.0f);
                void *y = malloc(rows * cols * dtype_size(dt));
                int rc = test_run_softmax(im, gpu, dt, rows, cols, x, y, NULL);
                char why[256];
                if (im->applies && !im->applies(rows, cols, dt, gpu, why, sizeof why)) {
                    assert_int_equal(rc, -1);
                } else {
                    assert_int_equal(rc, 0);
                    double ratio = test_check_softmax(im, dt, rows, cols, x, y);
                    if (ratio > 1.0)
                        print_message("%s %s cols=%zu %s: error/tolerance = %.3g\n", gpu ? "gpu" : "cpu", im->name,
                                      cols, dtype_name(dt), ratio);
                    assert_true(ratio <= 1.0);
                }
                free(x);
                free(y);
            }
}

static void test_accuracy_cpu(void **state) { (void)state; accuracy(0); }
static void test_accuracy_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); accuracy(1); }

/* The GPU kernels take other paths for rows that are a multiple of the
 * 16-byte vector, for long rows (several vectors per thread) and for every
 * on-chip configuration: sweep those lengths too. */
static void test_vector_paths_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    static const size_t cols_list[] = { 8, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 262144 };
    for (size_t k = 0; k < NSOFT; k++)
        for (size_t d = 0; d < 2; d++)
            for (size_t c = 0; c < sizeof cols_list / sizeof *cols_list; c++) {
                const softmax_impl_t *im = SOFTMAXES[k];
                const size_t cols = cols_list[c], rows = cols >= 65536 ? 3 : 9;
                if (getenv("STF_TEST_SMALL") && cols > 16384) continue; /* under a sanitizer */
                const dtype_t dt = DTYPES[d];
                char why[256];
                if (im->applies && !im->applies(rows, cols, dt, 1, why, sizeof why)) continue;
                void *x = random_matrix(dt, rows, cols, (uint32_t)(100 + c), 6.0f);
                void *y = malloc(rows * cols * dtype_size(dt));
                assert_int_equal(test_run_softmax(im, 1, dt, rows, cols, x, y, NULL), 0);
                double ratio = test_check_softmax(im, dt, rows, cols, x, y);
                if (ratio > 1.0) print_message("gpu %s cols=%zu %s: error/tol = %.3g\n", im->name, cols, dtype_name(dt), ratio);
                assert_true(ratio <= 1.0);
                free(x);
                free(y);
            }
}

/* The ledger counts exactly the model: loads and stores per element. */
static void test_ledger_counts(void **state)
{
    (void)state;
    const softmax_impl_t *all[] = { &IMPL_COPY, &IMPL_NAIVE, &IMPL_SAFE, &IMPL_SAFE_ONCHIP, &IMPL_ONLINE, &IMPL_MERGE_ONCHIP };
    for (size_t k = 0; k < 6; k++)
        for (size_t d = 0; d < 2; d++) {
            const dtype_t dt = DTYPES[d];
            const size_t rows = 5, cols = 1000, n = rows * cols, es = dtype_size(dt);
            void *x = random_matrix(dt, rows, cols, 7, 4.0f), *y = malloc(n * es);
            ledger_t lg;
            assert_int_equal(test_run_softmax(all[k], 0, dt, rows, cols, x, y, &lg), 0);
            assert_int_equal(lg.bytes_read, (uint64_t)all[k]->loads * n * es);
            assert_int_equal(lg.bytes_written, (uint64_t)all[k]->stores * n * es);
            free(x);
            free(y);
        }
    /* Milakov & Gimelshein's counts, and the row-on-chip floor, measured by
     * the ledger (accesses per element = bytes / (n es)), not read off the
     * tables the implementations declare */
    const softmax_impl_t *mg[] = { &IMPL_NAIVE, &IMPL_SAFE, &IMPL_ONLINE, &IMPL_SAFE_ONCHIP, &IMPL_MERGE_ONCHIP };
    const uint64_t published[] = { 3, 4, 3, 2, 2 };
    for (size_t k = 0; k < 5; k++) {
        const size_t rows = 3, cols = 777, n = rows * cols;
        void *x = random_matrix(DT_F32, rows, cols, 8, 3.0f), *y = malloc(n * 4);
        ledger_t lg;
        assert_int_equal(test_run_softmax(mg[k], 0, DT_F32, rows, cols, x, y, &lg), 0);
        assert_int_equal(ledger_total(&lg), published[k] * n * 4);
        free(x);
        free(y);
    }
}

/* The paths beyond one SM: the cluster moves exactly 2 accesses (its
 * exchange is on chip), the split 3 plus its partial states, which the
 * ledger counts: rows (24 P + 8) bytes for P chunks a row. */
static void test_ledger_counts_beyond_one_sm(void **state)
{
    (void)state;
    for (size_t d = 0; d < 2; d++) {
        const dtype_t dt = DTYPES[d];
        const size_t rows = 2, cols = 131072, n = rows * cols, es = dtype_size(dt);
        void *x = random_matrix(dt, rows, cols, 8, 4.0f), *y = malloc(n * es);
        char why[256];
        ledger_t lg;
        assert_int_equal(test_run_softmax(&IMPL_MERGE_CLUSTER, 0, dt, rows, cols, x, y, &lg), 0);
        assert_int_equal(lg.bytes_read, n * es);
        assert_int_equal(lg.bytes_written, n * es);
        assert_true(lg.sram_peak == cols * es);
        const size_t P = softmax_split_chunks(rows, cols, dt, SPLIT_CPU_SMS, why, sizeof why);
        print_message("online-split, %zu x %zu %s: %s\n", rows, cols, dtype_name(dt), why);
        assert_true(P >= 2);
        assert_int_equal(test_run_softmax(&IMPL_ONLINE_SPLIT, 0, dt, rows, cols, x, y, &lg), 0);
        assert_int_equal(lg.bytes_read, 2 * n * es + rows * 16 * P);
        assert_int_equal(lg.bytes_written, n * es + rows * (8 * P + 8));
        assert_int_equal(ledger_total(&lg), 3 * n * es + softmax_split_extra_bytes(rows, P));
        assert_true(test_check_softmax(&IMPL_ONLINE_SPLIT, dt, rows, cols, x, y) <= 1.0);
        /* merge-wave: 1 load + 1 store, each block's state written once and
         * every state of the row read by each of its P blocks */
        const size_t W = softmax_wave_chunks(rows, cols, dt, WAVE_CPU_SLOTS, why, sizeof why);
        print_message("merge-wave, %zu x %zu %s: %s\n", rows, cols, dtype_name(dt), why);
        assert_true(W >= 2);
        assert_int_equal(test_run_softmax(&IMPL_MERGE_WAVE, 0, dt, rows, cols, x, y, &lg), 0);
        assert_int_equal(lg.bytes_read, n * es + rows * 8 * W * W);
        assert_int_equal(lg.bytes_written, n * es + rows * 8 * W);
        assert_int_equal(ledger_total(&lg), 2 * n * es + softmax_wave_extra_bytes(rows, W));
        assert_true(test_check_softmax(&IMPL_MERGE_WAVE, dt, rows, cols, x, y) <= 1.0);
        /* merge-persist: exactly 2 accesses; on chip, the row and the next */
        assert_int_equal(test_run_softmax(&IMPL_MERGE_PERSIST, 0, dt, rows, cols, x, y, &lg), 0);
        assert_int_equal(lg.bytes_read, n * es);
        assert_int_equal(lg.bytes_written, n * es);
        assert_true(lg.sram_peak == 2 * cols * es);
        assert_true(test_check_softmax(&IMPL_MERGE_PERSIST, dt, rows, cols, x, y) <= 1.0);
        free(x);
        free(y);
    }
}

/* Which path applies to which shape: the rules of the applies() callbacks
 * (CPU side, which plans for an H200: 132 SMs, clusters of up to 16). */
static void test_path_rules(void **state)
{
    (void)state;
    char why[256];
    cluster_plan_t p;
    /* the row fits one SM: merge-onchip, not a cluster */
    assert_false(merge_cluster_plan(32768, DT_F32, 16, 16, &p, why, sizeof why));
    assert_false(merge_cluster_plan(65536, DT_F16, 16, 16, &p, why, sizeof why));
    /* the smallest cluster of small blocks (64 KiB), else of large ones (128 KiB) */
    assert_true(merge_cluster_plan(65536, DT_F32, 16, 16, &p, why, sizeof why));
    assert_int_equal(p.blocks, 4);
    assert_int_equal(p.threads, CLUSTER_THREADS_S);
    assert_true(merge_cluster_plan(262144, DT_F32, 16, 16, &p, why, sizeof why));
    assert_int_equal(p.blocks, 16);
    assert_true(merge_cluster_plan(262144, DT_F32, 8, 8, &p, why, sizeof why)); /* portable clusters only */
    assert_int_equal(p.blocks, 8);
    assert_int_equal(p.threads, CLUSTER_THREADS_L);
    assert_true(merge_cluster_plan(524288, DT_F32, 16, 16, &p, why, sizeof why)); /* 2 MiB: the largest */
    assert_int_equal(p.blocks, 16);
    assert_int_equal(p.block_bytes, 128 * 1024);
    assert_false(merge_cluster_plan(524292, DT_F32, 16, 16, &p, why, sizeof why));
    assert_true(merge_cluster_plan(524288, DT_BF16, 16, 16, &p, why, sizeof why)); /* 32 elements a thread, */
    assert_int_equal(p.block_bytes, 64 * 1024);                                       /* whatever the type */
    assert_false(merge_cluster_plan(524296, DT_BF16, 16, 16, &p, why, sizeof why));
    assert_true(merge_cluster_plan(65537, DT_F32, 16, 16, &p, why, sizeof why));
    assert_int_equal(p.blocks, 5);
    /* the split: only while one block a row leaves SMs short of threads */
    assert_true(softmax_split_chunks(1, 1048576, DT_F32, 132, why, sizeof why) >= 2);
    assert_true(softmax_split_chunks(16, 256000, DT_F32, 132, why, sizeof why) >= 2);
    assert_true(softmax_split_chunks(32, 262144, DT_F32, 132, why, sizeof why) >= 2);
    assert_int_equal(softmax_split_chunks(33, 262144, DT_F32, 132, why, sizeof why), 1); /* 33 x 1024: 1/8 of the threads */
    assert_int_equal(softmax_split_chunks(256, 1048576, DT_F32, 132, why, sizeof why), 1);
    assert_int_equal(softmax_split_chunks(3, 1000, DT_F32, 132, why, sizeof why), 1);      /* too short to cut */
    assert_true(IMPL_ONLINE_SPLIT.applies(16, 256000, DT_BF16, 0, why, sizeof why));
    assert_false(IMPL_ONLINE_SPLIT.applies(4096, 262144, DT_F32, 0, why, sizeof why));
    assert_false(IMPL_MERGE_CLUSTER.applies(4096, 8192, DT_F32, 0, why, sizeof why));
    assert_true(IMPL_MERGE_CLUSTER.applies(4096, 131072, DT_F32, 0, why, sizeof why));
    assert_true(IMPL_MERGE_PERSIST.applies(4096, 131072, DT_F32, 0, why, sizeof why));
    assert_false(IMPL_MERGE_PERSIST.applies(4096, 8192, DT_F32, 0, why, sizeof why));
    /* merge-wave: the wave (264 blocks of 16384 elements) divided among the rows */
    assert_int_equal(softmax_wave_chunks(1, 1048576, DT_F32, 264, why, sizeof why), 264);
    assert_int_equal(softmax_wave_chunks(16, 256000, DT_F32, 264, why, sizeof why), 16);
    assert_int_equal(softmax_wave_chunks(16, 256000, DT_BF16, 264, why, sizeof why), 16);
    assert_int_equal(softmax_wave_chunks(17, 256000, DT_F32, 264, why, sizeof why), 0); /* 272 blocks: two waves */
    assert_int_equal(softmax_wave_chunks(1, 4325376, DT_F32, 264, why, sizeof why), 264); /* 264 x 16384: full */
    assert_int_equal(softmax_wave_chunks(1, 4325380, DT_F32, 264, why, sizeof why), 0);
    assert_int_equal(softmax_wave_chunks(64, 16384, DT_F32, 264, why, sizeof why), 4); /* short rows, spread */
    assert_int_equal(softmax_wave_chunks(200, 16384, DT_F32, 264, why, sizeof why), 0); /* one block a row holds it */
    assert_int_equal(softmax_wave_chunks(4, 65536, DT_F32, 264, why, sizeof why), 32); /* chunks of >= 512 vectors */
    softmax_wave_set_chunks(100);
    assert_int_equal(softmax_wave_chunks(2, 4096, DT_F32, 264, why, sizeof why), 100);
    assert_int_equal(softmax_wave_chunks(3, 4096, DT_F32, 264, why, sizeof why), 0); /* 300 blocks > 264 */
    softmax_wave_set_chunks(0);
}

/* The on-chip variant keeps its row inside the simulated on-chip budget. */
static void test_onchip_budget(void **state)
{
    (void)state;
    const size_t cols = 32768, rows = 2;
    void *x = random_matrix(DT_F32, rows, cols, 9, 2.0f), *y = malloc(rows * cols * 4);
    ledger_t lg;
    assert_int_equal(test_run_softmax(&IMPL_MERGE_ONCHIP, 0, DT_F32, rows, cols, x, y, &lg), 0);
    assert_int_equal(lg.sram_peak, cols * 4);
    assert_true(lg.sram_peak <= ONCHIP_MAX_BYTES);
    assert_int_equal(test_run_softmax(&IMPL_SAFE_ONCHIP, 0, DT_F32, rows, cols, x, y, &lg), 0);
    assert_int_equal(lg.sram_peak, cols * 4);
    free(x);
    free(y);
    char why[256];
    assert_false(onchip_applies(32769, DT_F32, why, sizeof why));
    assert_true(onchip_applies(65536, DT_F16, why, sizeof why));
    assert_false(onchip_applies(65537, DT_F16, why, sizeof why));
    /* a row past the budget is refused, by the CPU version too */
    void *big = random_matrix(DT_F32, 1, 32772, 9, 2.0f), *out = malloc(32772 * 4);
    assert_int_equal(test_run_softmax(&IMPL_SAFE_ONCHIP, 0, DT_F32, 1, 32772, big, out, NULL), -1);
    assert_int_equal(test_run_softmax(&IMPL_MERGE_ONCHIP, 0, DT_F32, 1, 32772, big, out, NULL), -1);
    free(big);
    free(out);
}

/* Q2: e^x overflows the storage type in stage 01 only.
 * fp16: e^11 = 59874 fits (max 65504), e^12 = 162755 does not.
 * fp32: e^88 fits, e^89 = 4.5e38 does not (max 3.4e38). */
static void overflow_case(int gpu, dtype_t dt, float big, int naive_overflows)
{
    const size_t cols = 17;
    float v[17];
    for (size_t j = 0; j < cols; j++) v[j] = (float)j * 0.5f - 4.0f;
    v[5] = big;
    uint16_t buf16[17], out16[17];
    float buf32[17], out32[17];
    void *x = dt == DT_F32 ? (void *)buf32 : (void *)buf16, *y = dt == DT_F32 ? (void *)out32 : (void *)out16;
    for (size_t j = 0; j < cols; j++) dtype_set(x, dt, j, v[j]);
    for (size_t k = 0; k < NSOFT; k++) {
        assert_int_equal(test_run_softmax(SOFTMAXES[k], gpu, dt, 1, cols, x, y, NULL), 0);
        size_t bad = 0;
        for (size_t j = 0; j < cols; j++) bad += !isfinite(dtype_get(y, dt, j));
        if (SOFTMAXES[k] == &IMPL_NAIVE && naive_overflows) {
            assert_true(bad > 0);
        } else {
            assert_int_equal(bad, 0);
            assert_true(test_check_softmax(SOFTMAXES[k], dt, 1, cols, x, y) <= 1.0);
        }
    }
}

/* Short rows go through online-split and merge-cluster only when forced:
 * 3 chunks a row, clusters of 2 blocks (the exchange across blocks is what
 * the -inf and NaN rows must survive). */
static void force_beyond_one_sm(int on)
{
    softmax_split_set_chunks(on ? 3 : 0);
    softmax_wave_set_chunks(on ? 3 : 0);
    softmax_cluster_set_size(on ? 2 : 0);
}

static void overflow_all(int gpu)
{
    force_beyond_one_sm(1);
    overflow_case(gpu, DT_F16, 11.0f, 0);
    overflow_case(gpu, DT_F16, 12.0f, 1);
    overflow_case(gpu, DT_F32, 88.0f, 0);
    overflow_case(gpu, DT_F32, 89.0f, 1);
    overflow_case(gpu, DT_BF16, 89.0f, 1); /* bf16 has fp32's range */
    force_beyond_one_sm(0);
}
static void test_overflow_cpu(void **state) { (void)state; overflow_all(0); }
static void test_overflow_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); overflow_all(1); }

/* -inf entries give exactly 0 and leave the rest a softmax of the finite
 * entries, also when they come first (the online running max starts at
 * -inf); an all -inf row is NaN (0/0) and a NaN makes the whole row NaN, in
 * every stage. */
static void special_rows_of(int gpu, size_t cols, size_t prefix)
{
    const size_t rows = 4;
    for (size_t d = 0; d < 3; d++) {
        const dtype_t dt = DTYPES[d];
        void *x = random_matrix(dt, rows, cols, 33, 5.0f), *y = malloc(rows * cols * dtype_size(dt));
        for (size_t j = 0; j < prefix; j++) dtype_set(x, dt, j, -INFINITY);      /* row 0: a -inf prefix */
        for (size_t j = 0; j < cols; j += 3) dtype_set(x, dt, cols + j, -INFINITY); /* row 1: scattered */
        for (size_t j = 0; j < cols; j++) dtype_set(x, dt, 2 * cols + j, -INFINITY); /* row 2: all -inf */
        dtype_set(x, dt, 3 * cols + cols / 2 + cols / 3, NAN);                     /* row 3: one NaN */
        for (size_t k = 0; k < NSOFT; k++) {
            const softmax_impl_t *im = SOFTMAXES[k];
            char why[256];
            if (im->applies && !im->applies(rows, cols, dt, gpu, why, sizeof why)) continue;
            assert_int_equal(test_run_softmax(im, gpu, dt, rows, cols, x, y, NULL), 0);
            for (size_t j = 0; j < prefix; j++) assert_true(dtype_get(y, dt, j) == 0.0f);
            for (size_t j = 0; j < cols; j += 3) assert_true(dtype_get(y, dt, cols + j) == 0.0f);
            for (size_t j = 0; j < cols; j++) assert_true(isnan(dtype_get(y, dt, 2 * cols + j)));
            for (size_t j = 0; j < cols; j++) assert_true(isnan(dtype_get(y, dt, 3 * cols + j)));
            /* rows 0 and 1 match the reference; rows 2 and 3 match its NaN */
            double ratio = test_check_softmax(im, dt, rows, cols, x, y);
            if (ratio > 1.0) print_message("%s %s %s: ratio %.3g\n", gpu ? "gpu" : "cpu", im->name, dtype_name(dt), ratio);
            assert_true(ratio <= 1.0);
        }
        free(x);
        free(y);
    }
}
/* Short rows with the split and the cluster forced; then long rows, where
 * they apply by themselves and a -inf prefix covers whole chunks (blocks
 * whose partial state is empty: m = -inf, d = 0). */
static void special_rows(int gpu)
{
    force_beyond_one_sm(1);
    special_rows_of(gpu, 1000, 40);
    force_beyond_one_sm(0);
    special_rows_of(gpu, 100000, 70000);
}
static void test_special_rows_cpu(void **state) { (void)state; special_rows(0); }
static void test_special_rows_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); special_rows(1); }

/* ---- Long rows of wide logits (x = 4 N(0, 1)): the sum runs over 262147
 * terms spread over e^{-30} .. 1. A sequential fp32 sum drifted to 1.56
 * times the tolerance on this input; every implementation now sums in blocks
 * joined pairwise (CPU) or per thread and by tree (GPU). The sequential sum is
 * kept below as a broken implementation that the check must reject. */
static void *wide_logits(size_t rows, size_t cols)
{
    float *x = malloc(rows * cols * sizeof *x);
    for (size_t i = 0; i < rows * cols; i++) { /* Box-Muller on two counter-based uniforms */
        const double u1 = 1.0 - 0.5 * (1.0 + rng_sym(test_seed(), 71, i)); /* (0, 1] */
        const double u2 = 0.5 * (1.0 + rng_sym(test_seed(), 72, i));
        x[i] = (float)(4.0 * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    return x;
}

static int broken_sequential_sum(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        float m = -INFINITY, d = 0;
        for (size_t j = 0; j < cols; j++) m = fmaxf(m, hbm_ld(x, r * cols + j));
        for (size_t j = 0; j < cols; j++) d += expf(hbm_ld(x, r * cols + j) - m);
        for (size_t j = 0; j < cols; j++) hbm_st(y, r * cols + j, expf(hbm_ld(x, r * cols + j) - m) / d);
    }
    return 0;
}

static void wide_long_rows(int gpu)
{
    const size_t rows = 3, cols = 262147;
    float *x = wide_logits(rows, cols), *y = malloc(rows * cols * sizeof *y);
    for (size_t k = 0; k < NSOFT; k++) {
        const softmax_impl_t *im = SOFTMAXES[k];
        char why[256];
        if (im->applies && !im->applies(rows, cols, DT_F32, gpu, why, sizeof why)) continue;
        assert_int_equal(test_run_softmax(im, gpu, DT_F32, rows, cols, x, y, NULL), 0);
        const double ratio = test_check_softmax(im, DT_F32, rows, cols, x, y);
        print_message("%s %s, 3 x 262147 of 4 N(0,1): error/tolerance = %.3g\n", gpu ? "gpu" : "cpu", im->name, ratio);
        assert_true(ratio <= 1.0);
    }
    if (!gpu) {
        softmax_impl_t seq = IMPL_SAFE;
        seq.cpu = broken_sequential_sum;
        assert_int_equal(test_run_softmax(&seq, 0, DT_F32, rows, cols, x, y, NULL), 0);
        const double ratio = test_check_softmax(&seq, DT_F32, rows, cols, x, y);
        print_message("sequential fp32 sum: error/tolerance = %.3g (must exceed 1)\n", ratio);
        assert_true(ratio > 1.0);
    }
    free(x);
    free(y);
}
static void test_wide_long_rows_cpu(void **state) { (void)state; wide_long_rows(0); }
static void test_wide_long_rows_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); wide_long_rows(1); }

/* ---- The paths beyond one SM against fp64, rows = 1, 3, 131 and
 * cols = 1, 17, 65537, 1048577: automatic plans where they apply, and forced
 * ones (3 chunks, 9 for 131 rows; clusters of 2 and 3 blocks) on every shape
 * they fit.
 * 131 x 1048577 (137 M elements) runs on the GPU in fp32 only (on the CPU it
 * would take half a minute: 3 x 1048577 and 131 x 65537 stand in for it),
 * the forced clusters up to 2^24 elements (CPU: 2^22, and 16-bit types too);
 * under a sanitizer
 * (STF_TEST_SMALL) the rows stop at 65537. */
static void check_one(const softmax_impl_t *im, int gpu, dtype_t dt, size_t rows, size_t cols, const void *x, void *y,
                      const char *how)
{
    char why[256];
    if (im->applies && !im->applies(rows, cols, dt, gpu, why, sizeof why)) return;
    assert_int_equal(test_run_softmax(im, gpu, dt, rows, cols, x, y, NULL), 0);
    const double ratio = test_check_softmax(im, dt, rows, cols, x, y);
    if (ratio > 1.0)
        print_message("%s %s (%s) %zu x %zu %s: error/tolerance = %.3g\n", gpu ? "gpu" : "cpu", im->name, how, rows, cols,
                      dtype_name(dt), ratio);
    assert_true(ratio <= 1.0);
}

static void beyond_one_sm_shapes(int gpu)
{
    static const size_t rows_list[] = { 1, 3, 131 }, cols_list[] = { 1, 17, 65537, 1048577 };
    for (size_t d = 0; d < 3; d++)
        for (size_t r = 0; r < 3; r++)
            for (size_t c = 0; c < 4; c++) {
                const dtype_t dt = DTYPES[d];
                const size_t rows = rows_list[r], cols = cols_list[c];
                if (rows * cols > ((size_t)1 << 27) && (dt != DT_F32 || !gpu)) continue; /* 131 x 1048577 */
                if (rows * cols > ((size_t)1 << 22) && dt != DT_F32 && !gpu) continue;
                if (getenv("STF_TEST_SMALL") && cols > 65537) continue;
                void *x = random_matrix(dt, rows, cols, (uint32_t)(200 + 4 * r + c), 8.0f);
                void *y = malloc(rows * cols * dtype_size(dt));
                check_one(&IMPL_ONLINE_SPLIT, gpu, dt, rows, cols, x, y, "auto");
                check_one(&IMPL_MERGE_CLUSTER, gpu, dt, rows, cols, x, y, "auto");
                check_one(&IMPL_MERGE_WAVE, gpu, dt, rows, cols, x, y, "auto");
                check_one(&IMPL_MERGE_PERSIST, gpu, dt, rows, cols, x, y, "auto");
                softmax_split_set_chunks(rows > 3 ? 9 : 3); /* 131 rows are not few enough to split by themselves */
                check_one(&IMPL_ONLINE_SPLIT, gpu, dt, rows, cols, x, y, rows > 3 ? "9 chunks" : "3 chunks");
                softmax_split_set_chunks(0);
                softmax_wave_set_chunks(rows > 3 ? 2 : 3); /* 131 x 2 blocks: nearly the whole wave */
                check_one(&IMPL_MERGE_WAVE, gpu, dt, rows, cols, x, y, rows > 3 ? "2 chunks" : "3 chunks");
                softmax_wave_set_chunks(0);
                if (rows * cols <= ((size_t)1 << (gpu ? 24 : 22))) {
                    for (int k = 2; k <= 3; k++) {
                        softmax_cluster_set_size(k);
                        check_one(&IMPL_MERGE_CLUSTER, gpu, dt, rows, cols, x, y, k == 2 ? "2 blocks" : "3 blocks");
                        check_one(&IMPL_MERGE_PERSIST, gpu, dt, rows, cols, x, y, k == 2 ? "2 blocks" : "3 blocks");
                    }
                    softmax_cluster_set_size(0);
                }
                free(x);
                free(y);
            }
}
static void test_beyond_one_sm_shapes_cpu(void **state) { (void)state; beyond_one_sm_shapes(0); }
static void test_beyond_one_sm_shapes_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); beyond_one_sm_shapes(1); }

/* Every chunk count from 1 to more chunks than the row has vectors (the
 * last blocks then get empty chunks, whose state merges as the identity):
 * the same result within tolerance, and the results of different counts
 * agree with each other to the same tolerance. Rows of 1003 (single
 * elements) and 4096 elements (16-byte vectors). Under a sanitizer, and on
 * the CPU for fp16, a sample of the counts (1-8, every 97th, the last). */
static void split_counts(int gpu)
{
    static const size_t cols_list[] = { 1003, 4096 };
    for (size_t d = 0; d < 2; d++)
        for (size_t c = 0; c < 2; c++) {
            const dtype_t dt = DTYPES[d];
            const size_t rows = 3, cols = cols_list[c], es = dtype_size(dt);
            const size_t vec = cols % (16 / es) == 0 ? 16 / es : 1, nvec = cols / vec;
            void *x = random_matrix(dt, rows, cols, (uint32_t)(300 + c), 10.0f);
            void *y = malloc(rows * cols * es), *y1 = malloc(rows * cols * es);
            double worst = 0;
            const int sample = getenv("STF_TEST_SMALL") || (!gpu && dt != DT_F32);
            for (size_t P = 1; P <= nvec + 3; P++) {
                if (sample && P > 8 && P != nvec + 3 && P % 97) continue;
                softmax_split_set_chunks(P);
                assert_int_equal(test_run_softmax(&IMPL_ONLINE_SPLIT, gpu, dt, rows, cols, x, P == 1 ? y1 : y, NULL), 0);
                const double ratio = test_check_softmax(&IMPL_ONLINE_SPLIT, dt, rows, cols, x, P == 1 ? y1 : y);
                if (ratio > worst) worst = ratio;
                if (ratio > 1.0) print_message("%s online-split, %zu chunks, cols %zu %s: %.3g\n", gpu ? "gpu" : "cpu", P,
                                               cols, dtype_name(dt), ratio);
                assert_true(ratio <= 1.0);
                if (P == 1) continue;
                double most = 0; /* against the one-chunk result, relative to its size */
                for (size_t i = 0; i < rows * cols; i++) {
                    const double a = dtype_get(y, dt, i), b = dtype_get(y1, dt, i);
                    const double e = fabs(a - b) / fmax(fabs(b), dtype_min_normal(dt));
                    if (!(e <= most)) most = e; /* NaN becomes the maximum */
                }
                assert_true(most <= 2.0 * softmax_tolerance(dt, cols, 20.0, IMPL_ONLINE_SPLIT.round_k));
            }
            softmax_split_set_chunks(0);
            print_message("%s online-split, cols %zu %s, 1 .. %zu chunks: worst error/tolerance %.3g\n",
                          gpu ? "gpu" : "cpu", cols, dtype_name(dt), nvec + 3, worst);
            free(x);
            free(y);
            free(y1);
        }
}
static void test_split_counts_cpu(void **state) { (void)state; split_counts(0); }
static void test_split_counts_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); split_counts(1); }

/* merge-wave at every chunk count the wave holds (1 to slots / rows; more
 * than the row has vectors, so trailing blocks hold nothing, on rows of 17
 * and of 1024 vectors), each within tolerance; one more chunk must be
 * refused. Under a sanitizer, and on the CPU for 16-bit types, a sample. */
static void wave_counts(int gpu)
{
    static const size_t shapes[][2] = { { 3, 1003 }, { 3, 4096 }, { 1, 17 }, { 1, 4096 } };
    for (size_t d = 0; d < 2; d++)
        for (size_t c = 0; c < 4; c++) {
            const dtype_t dt = DTYPES[d];
            const size_t rows = shapes[c][0], cols = shapes[c][1], es = dtype_size(dt);
#if HAVE_CUDA
            const size_t slots = gpu ? merge_wave_gpu_slots(dt, cols) : WAVE_CPU_SLOTS;
#else
            const size_t slots = WAVE_CPU_SLOTS;
#endif
            assert_true(slots >= 2);
            void *x = random_matrix(dt, rows, cols, (uint32_t)(500 + c), 10.0f);
            void *y = malloc(rows * cols * es);
            for (size_t j = 0; j < cols / 3; j++) dtype_set(x, dt, j, -INFINITY); /* row 0: whole chunks of -inf */
            double worst = 0;
            const int sample = getenv("STF_TEST_SMALL") || (!gpu && dt != DT_F32);
            char why[256];
            for (size_t P = 1; P <= slots / rows; P++) {
                if (sample && P > 8 && P != slots / rows && P % 37) continue;
                softmax_wave_set_chunks(P);
                assert_true(IMPL_MERGE_WAVE.applies(rows, cols, dt, gpu, why, sizeof why));
                assert_int_equal(test_run_softmax(&IMPL_MERGE_WAVE, gpu, dt, rows, cols, x, y, NULL), 0);
                const double ratio = test_check_softmax(&IMPL_MERGE_WAVE, dt, rows, cols, x, y);
                if (ratio > worst) worst = ratio;
                if (ratio > 1.0) print_message("%s merge-wave, %zu chunks, %zu x %zu %s: %.3g\n", gpu ? "gpu" : "cpu", P,
                                               rows, cols, dtype_name(dt), ratio);
                assert_true(ratio <= 1.0);
                for (size_t j = 0; j < cols / 3; j++) assert_true(dtype_get(y, dt, j) == 0.0f);
            }
            softmax_wave_set_chunks(slots / rows + 1);
            assert_false(IMPL_MERGE_WAVE.applies(rows, cols, dt, gpu, why, sizeof why));
            softmax_wave_set_chunks(0);
            print_message("%s merge-wave, %zu x %zu %s, 1 .. %zu chunks: worst error/tolerance %.3g\n",
                          gpu ? "gpu" : "cpu", rows, cols, dtype_name(dt), slots / rows, worst);
            free(x);
            free(y);
        }
}
static void test_wave_counts_cpu(void **state) { (void)state; wave_counts(0); }
static void test_wave_counts_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); wave_counts(1); }

/* Every cluster size from 1 to 16 (on the GPU: to the device's largest), on
 * rows of 8 elements (two vectors: most blocks hold nothing), 17 and 1003
 * single elements and 4096 vectors, -inf prefixes included. */
static void cluster_sizes(int gpu)
{
    static const size_t cols_list[] = { 8, 17, 1003, 4096 };
    for (size_t d = 0; d < 3; d++)
        for (size_t c = 0; c < 4; c++) {
            const dtype_t dt = DTYPES[d];
            const size_t rows = 5, cols = cols_list[c];
            void *x = random_matrix(dt, rows, cols, (uint32_t)(400 + c), 10.0f);
            void *y = malloc(rows * cols * dtype_size(dt));
            for (size_t j = 0; j < cols / 2 + 1; j++) dtype_set(x, dt, j, -INFINITY); /* row 0: half -inf */
            for (int k = 1; k <= CLUSTER_NONPORTABLE_MAX; k++)
                for (int q = 0; q < 2; q++) {
                    /* under a sanitizer a sample of sizes: each cluster launch is slow there */
                    if (getenv("STF_TEST_SMALL") && k > 2 && k != 5 && k != 8 && k != CLUSTER_NONPORTABLE_MAX) continue;
                    const softmax_impl_t *im = q ? &IMPL_MERGE_PERSIST : &IMPL_MERGE_CLUSTER;
                    softmax_cluster_set_size(k);
                    char why[256];
                    if (!im->applies(rows, cols, dt, gpu, why, sizeof why)) {
                        print_message("%s %s, %d blocks: %s\n", gpu ? "gpu" : "cpu", im->name, k, why);
                        assert_true(gpu); /* the CPU plans for clusters of up to 16 */
                        continue;
                    }
                    assert_int_equal(test_run_softmax(im, gpu, dt, rows, cols, x, y, NULL), 0);
                    const double ratio = test_check_softmax(im, dt, rows, cols, x, y);
                    if (ratio > 1.0) print_message("%s %s, %d blocks, cols %zu %s: %.3g\n", gpu ? "gpu" : "cpu", im->name,
                                                   k, cols, dtype_name(dt), ratio);
                    assert_true(ratio <= 1.0);
                    for (size_t j = 0; j < cols / 2 + 1; j++) assert_true(dtype_get(y, dt, j) == 0.0f);
                }
            softmax_cluster_set_size(0);
            free(x);
            free(y);
        }
}
static void test_cluster_sizes_cpu(void **state) { (void)state; cluster_sizes(0); }
static void test_cluster_sizes_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); cluster_sizes(1); }

/* merge-persist's clusters loop over rows only when there are more rows than
 * resident clusters: 600 rows with clusters of 16 forced (8 to 16 resident
 * clusters on the H200, 8 assumed on the CPU), 16-byte copies (4096 fp32,
 * 4096 bf16) and single elements (1003 fp16), with a -inf half row, a NaN
 * row and an all -inf row among them. Under a sanitizer (STF_TEST_SMALL) 40
 * rows: every cluster still loops, at least twice. */
static void persist_loops(int gpu)
{
    static const size_t cols_list[] = { 4096, 4096, 1003 };
    static const dtype_t dts[] = { DT_F32, DT_BF16, DT_F16 };
    for (size_t c = 0; c < 3; c++) {
        const dtype_t dt = dts[c];
        const size_t rows = getenv("STF_TEST_SMALL") ? 40 : 600, cols = cols_list[c];
        const size_t nan_row = rows / 2 + 1, last = rows - 1;
        void *x = random_matrix(dt, rows, cols, (uint32_t)(600 + c), 4.0f); /* the loop is the point, not the range */
        void *y = malloc(rows * cols * dtype_size(dt));
        for (size_t j = 0; j < cols / 2; j++) dtype_set(x, dt, 17 * cols + j, -INFINITY);
        dtype_set(x, dt, nan_row * cols + cols / 3, NAN);
        for (size_t j = 0; j < cols; j++) dtype_set(x, dt, last * cols + j, -INFINITY);
        softmax_cluster_set_size(16);
        char why[256];
        if (!IMPL_MERGE_PERSIST.applies(rows, cols, dt, gpu, why, sizeof why)) {
            print_message("%s merge-persist, 16 blocks: %s\n", gpu ? "gpu" : "cpu", why);
            assert_true(gpu);
        } else {
            assert_int_equal(test_run_softmax(&IMPL_MERGE_PERSIST, gpu, dt, rows, cols, x, y, NULL), 0);
            const double ratio = test_check_softmax(&IMPL_MERGE_PERSIST, dt, rows, cols, x, y);
            print_message("%s merge-persist, %zu x %zu %s, clusters of 16 looping: error/tolerance %.3g\n",
                          gpu ? "gpu" : "cpu", rows, cols, dtype_name(dt), ratio);
            assert_true(ratio <= 1.0);
            for (size_t j = 0; j < cols / 2; j++) assert_true(dtype_get(y, dt, 17 * cols + j) == 0.0f);
            assert_true(isnan(dtype_get(y, dt, nan_row * cols)));
            assert_true(isnan(dtype_get(y, dt, last * cols + cols - 1)));
        }
        softmax_cluster_set_size(0);
        free(x);
        free(y);
    }
}
static void test_persist_loops_cpu(void **state) { (void)state; persist_loops(0); }
static void test_persist_loops_gpu(void **state) { (void)state; SKIP_WITHOUT_GPU(); persist_loops(1); }

/* ---- Broken implementations: the checks above must catch each of them. */

/* Online softmax that forgets to rescale d when the maximum grows. */
static int broken_no_rescale(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        float m = -INFINITY, d = 0;
        for (size_t j = 0; j < cols; j++) {
            float v = hbm_ld(x, r * cols + j);
            m = fmaxf(m, v);
            d += expf(v - m);
        }
        for (size_t j = 0; j < cols; j++) hbm_st(y, r * cols + j, expf(hbm_ld(x, r * cols + j) - m) / d);
    }
    return 0;
}

/* Safe softmax whose sum misses the last element of the row. */
static int broken_off_by_one(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        float m = -INFINITY, d = 0;
        for (size_t j = 0; j < cols; j++) m = fmaxf(m, hbm_ld(x, r * cols + j));
        for (size_t j = 0; j + 1 < cols; j++) d += expf(hbm_ld(x, r * cols + j) - m);
        for (size_t j = 0; j < cols; j++) hbm_st(y, r * cols + j, expf(hbm_ld(x, r * cols + j) - m) / d);
    }
    return 0;
}

/* Leaves the last element of every row unwritten (still poisoned). */
static int broken_unwritten(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    softmax_safe_cpu(x, y, rows, cols);
    for (size_t r = 0; r < rows; r++) dtype_set(y->data, y->dt, r * cols + cols - 1, NAN);
    return 0;
}

/* Sums in fp16 instead of fp32: loses precision far beyond the tolerance. */
static int broken_half_sum(hbm_t *x, hbm_t *y, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        float m = -INFINITY, d = 0;
        for (size_t j = 0; j < cols; j++) m = fmaxf(m, hbm_ld(x, r * cols + j));
        for (size_t j = 0; j < cols; j++) d = dtype_round(DT_F16, d + expf(hbm_ld(x, r * cols + j) - m));
        for (size_t j = 0; j < cols; j++) hbm_st(y, r * cols + j, expf(hbm_ld(x, r * cols + j) - m) / d);
    }
    return 0;
}

static void test_checks_reject_broken(void **state)
{
    (void)state;
    softmax_impl_t broken[4];
    int (*fns[4])(hbm_t *, hbm_t *, size_t, size_t) = { broken_no_rescale, broken_off_by_one, broken_unwritten, broken_half_sum };
    for (int b = 0; b < 4; b++) {
        broken[b] = IMPL_SAFE;
        broken[b].cpu = fns[b];
        const size_t rows = 7, cols = 1000;
        void *x = random_matrix(DT_F32, rows, cols, 55, 8.0f), *y = malloc(rows * cols * 4);
        assert_int_equal(test_run_softmax(&broken[b], 0, DT_F32, rows, cols, x, y, NULL), 0);
        double ratio = test_check_softmax(&broken[b], DT_F32, rows, cols, x, y);
        print_message("broken implementation %d: error/tolerance = %.3g (must exceed 1)\n", b, ratio);
        assert_true(ratio > 1.0);
        free(x);
        free(y);
    }
}

/* A failed assertion leaves a test early: put the forced plans back. */
static int reset_forced(void **state)
{
    (void)state;
    softmax_split_set_chunks(0);
    softmax_wave_set_chunks(0);
    softmax_cluster_set_size(0);
    return 0;
}
#define T(f) cmocka_unit_test_teardown(f, reset_forced)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_accuracy_cpu),
        T(test_ledger_counts),
        T(test_ledger_counts_beyond_one_sm),
        T(test_path_rules),
        T(test_onchip_budget),
        T(test_overflow_cpu),
        T(test_special_rows_cpu),
        T(test_wide_long_rows_cpu),
        T(test_beyond_one_sm_shapes_cpu),
        T(test_split_counts_cpu),
        T(test_wave_counts_cpu),
        T(test_cluster_sizes_cpu),
        T(test_persist_loops_cpu),
        T(test_checks_reject_broken),
        T(test_accuracy_gpu),
        T(test_vector_paths_gpu),
        T(test_overflow_gpu),
        T(test_special_rows_gpu),
        T(test_wide_long_rows_gpu),
        T(test_split_counts_gpu),
        T(test_wave_counts_gpu),
        T(test_beyond_one_sm_shapes_gpu),
        T(test_cluster_sizes_gpu),
        T(test_persist_loops_gpu),
    };
    return test_main("softmax stages 01-03", tests, NULL);
}
