/* What every stage driver does with one implementation on one shape, written
 * once (softmax_bench.c and attention_bench.c both use it):
 *   1. the checked run: the output poisoned (all bytes 0xff, NaN in every
 *      type), then one run, so an element the implementation failed to write
 *      shows up as NaN when the caller checks it;
 *   2. the measured run: one more run between the hardware DRAM counters
 *      (GPU, where CUPTI allows it; common/device/hwcounters.h);
 *   3. the timed runs: warm-up, then the median of iters (CUDA events with
 *      the L2 flushed before each run on the GPU; a monotonic clock on the CPU);
 *   4. the verdict: what the "ok" cell says and whether the program fails.
 * The caller keeps what differs: how inputs are made, how rows are checked. */
#ifndef STF_BENCH_RUN_H
#define STF_BENCH_RUN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int gpu;
    void (*run)(void *arg); /* one run; GPU: asynchronous launches on stream 0 */
    void *arg;
    void *out;              /* the output: device memory when gpu, else host */
    size_t out_bytes;
    int warmup, iters;
} bench_job_t;

typedef struct {
    double ms;
    char measured[32];     /* "HBM meas MB" cell: MB, "n/a" (no counters) or "-" (CPU) */
    char measured_raw[32]; /* bytes, or empty */
} bench_meas_t;

void bench_checked_run(const bench_job_t *j);
void bench_measure(const bench_job_t *j, bench_meas_t *m);

/* The "ok" cell: "yes"; "yes (N excused)" when rows were excused as the
 * stage's overflow lesson; "NO"; "NO: unresolved" when a tolerance was beyond
 * what the check can resolve (reference.h, CHECK_TOL_CAP). */
const char *bench_ok_cell(int ok, size_t excused, size_t unresolved);

#ifdef __cplusplus
}
#endif

#endif
