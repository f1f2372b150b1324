/* See softmax_bench.h. The checked run and the timed runs are separate: the
 * output is poisoned (all bytes 0xff, NaN in every type) before the checked
 * run, so an element an implementation failed to write shows up as NaN. On
 * the GPU the input is generated in place by the counter-based generator and
 * the CPU regenerates nothing: it copies back only the checked rows. */
#include "softmax_bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_run.h"
#include "cli.h"
#include "gpu.h"
#include "hwcounters.h"
#include "npy.h"
#include "reference.h"
#include "report.h"
#include "rng.h"
#include "timing.h"

#define CHECK_ROWS_MAX 64

static const report_col_t COLS[] = {
    { "run_by", "program", 0 }, { "stage", "stage", 5 },      { "impl", "impl", 13 },        { "device", "dev", 3 },
    { "dtype", "dtype", 5 },      { "rows", "rows", 7 },         { "cols", "cols", 7 },
    { "passes", "passes", 6 },    { "acc_per_elem", "acc/el", 6 }, { "model_mb", "model MB", 9 },
    { "counted_mb", "ledger MB", 9 }, { "measured_mb", "HBM meas MB", 11 },
    { "time_ms", "time ms", 9 },  { "gbps", "GB/s", 7 },        { "pct_copy", "%copy", 6 },
    { "copy_gbps", "copy GB/s", 0 }, { "speedup", "vs prev", 7 }, { "max_rel_err", "max rel err", 11 },
    { "tolerance", "tol", 8 },    { "nonfinite", "inf/nan", 8 }, { "ok", "ok", 4 },
    { "seed", "seed", 0 },        { "scale", "scale", 0 },
};
#define NCOLS ((int)(sizeof COLS / sizeof COLS[0]))

typedef struct {
    const softmax_impl_t *impl;
    const void *dx;
    void *dy;
    size_t rows, cols;
    dtype_t dt;
    hbm_t *x, *y; /* CPU */
    int rc;       /* CPU: the last run's return code */
} run_arg_t;

static void run_gpu(void *p)
{
    run_arg_t *a = p;
    a->impl->gpu(a->dx, a->dy, a->rows, a->cols, a->dt);
}

static void run_cpu(void *p)
{
    run_arg_t *a = p;
    a->rc = a->impl->cpu(a->x, a->y, a->rows, a->cols);
}

/* Rows that get checked against fp64: all of them when few, else 64 spread
 * evenly from the first to the last. */
static size_t pick_rows(size_t rows, size_t *idx)
{
    size_t n = rows < CHECK_ROWS_MAX ? rows : CHECK_ROWS_MAX;
    for (size_t i = 0; i < n; i++) idx[i] = n == 1 ? 0 : i * (rows - 1) / (n - 1);
    return n;
}

static int fits_host(size_t bytes, const char *prog, const char *what)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    double phys = pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
    if (phys > 0 && (double)bytes > 0.75 * phys) {
        fprintf(stderr, "%s: %s needs %.2f GiB of host memory; this machine has %.2f GiB. Choose a smaller shape.\n",
                prog, what, bytes / 1073741824.0, phys / 1073741824.0);
        return 0;
    }
    return 1;
}

static const char *mb(double bytes) { return fmt("%.2f", bytes / 1e6); }

/* Returns 0 on success, 2 on bad input, 1 on a failed check. */
/* The two fastest implementations of the current shape that passed their
 * check (the copy excluded: it is the floor, not a softmax), printed under
 * the table: several paths of stage 03 apply to the same shape, and which one
 * wins depends on it. */
static struct {
    char name[2][64];
    double gbps[2];
} fastest;

static void fastest_note(const char *name, double gbps)
{
    if (gbps > fastest.gbps[0]) {
        fastest.gbps[1] = fastest.gbps[0];
        memcpy(fastest.name[1], fastest.name[0], sizeof fastest.name[1]);
        fastest.gbps[0] = gbps;
        snprintf(fastest.name[0], sizeof fastest.name[0], "%s", name);
    } else if (gbps > fastest.gbps[1]) {
        fastest.gbps[1] = gbps;
        snprintf(fastest.name[1], sizeof fastest.name[1], "%s", name);
    }
}

static int run_shape(const softmax_stage_t *st, const opts_t *o, size_t rows, size_t cols,
                     const float *loaded, report_t *rep, npy_batch_t *nb, int *ran, char *why_not, size_t why_len,
                     char *failed_names, size_t failed_len)
{
    memset(&fastest, 0, sizeof fastest);
    const int gpu = o->device == DEV_GPU;
    const dtype_t dt = o->dtype;
    const size_t es = dtype_size(dt), n = rows * cols, bytes = n * es;
    const float scale = (float)o->scale;
    int failed = 0;

    if (!fits_host(gpu ? 0 : 2 * bytes + cols * 8, st->prog, "the input and output")) return 2;

    size_t check_idx[CHECK_ROWS_MAX];
    size_t nchk = pick_rows(rows, check_idx);
    /* The checked rows of the input, their references and tolerances. */
    void *xr = malloc(nchk * cols * es), *yr = malloc(nchk * cols * es);
    double *ref = malloc(nchk * cols * sizeof(double)), *tol = malloc(nchk * sizeof(double));
    void *hx = NULL, *hy = NULL, *dx = NULL, *dy = NULL;
    if (!xr || !yr || !ref || !tol) {
        fprintf(stderr, "%s: out of host memory for the check buffers\n", st->prog);
        free(xr); free(yr); free(ref); free(tol);
        return 2;
    }
    double copy_gbps;
    if (gpu) {
        size_t fr = 0, tot = 0;
        gpu_mem_info(&fr, &tot);
        double need = 2.0 * (double)bytes + (double)(256u << 20);
        if (need > (double)fr) {
            fprintf(stderr, "%s: rows x cols = %zu x %zu in %s needs %.2f GiB of device memory (input and output); "
                            "%.2f GiB of %.2f GiB are free. Choose a smaller shape.\n",
                    st->prog, rows, cols, dtype_name(dt), need / 1073741824.0, fr / 1073741824.0, tot / 1073741824.0);
            free(xr); free(yr); free(ref); free(tol);
            return 2;
        }
        copy_gbps = gpu_copy_gbps();
        dx = gpu_malloc(bytes, "the input");
        dy = gpu_malloc(bytes, "the output");
        if (loaded) {
            void *tmp = malloc(bytes);
            if (!tmp) { fprintf(stderr, "%s: out of host memory\n", st->prog); exit(2); }
            for (size_t i = 0; i < n; i++) dtype_set(tmp, dt, i, loaded[i]);
            gpu_h2d(dx, tmp, bytes);
            free(tmp);
        } else {
            gpu_fill_logits(dx, dt, n, o->seed, 0, scale);
        }
        for (size_t r = 0; r < nchk; r++) gpu_d2h_rows((char *)xr + r * cols * es, dx, check_idx[r], 1, cols * es);
    } else {
        copy_gbps = cpu_copy_gbps(bytes);
        hx = malloc(bytes);
        hy = malloc(bytes);
        if (!hx || !hy) {
            fprintf(stderr, "%s: out of host memory for %zu x %zu\n", st->prog, rows, cols);
            exit(2);
        }
        for (size_t i = 0; i < n; i++)
            dtype_set(hx, dt, i, loaded ? loaded[i] : rng_logit(o->seed, 0, i, scale));
        for (size_t r = 0; r < nchk; r++) memcpy((char *)xr + r * cols * es, (char *)hx + check_idx[r] * cols * es, cols * es);
    }
    printf("rows x cols = %zu x %zu (%.1f MB), %zu rows checked against fp64; copy ceiling %.0f GB/s\n", rows, cols,
           bytes / 1e6, nchk, copy_gbps);
    for (size_t r = 0; r < nchk; r++) {
        const void *row = (char *)xr + r * cols * es;
        softmax_ref_row(row, dt, cols, ref + r * cols);
        tol[r] = row_range(row, dt, cols); /* the tolerance itself depends on the implementation */
    }

    if (o->save_npy) {
        float *f = malloc(n * sizeof(float));
        void *tmp = gpu ? malloc(bytes) : hx;
        if (!f || !tmp) { fprintf(stderr, "%s: out of host memory for --save-npy\n", st->prog); exit(2); }
        if (gpu) gpu_d2h(tmp, dx, bytes);
        for (size_t i = 0; i < n; i++) f[i] = dtype_get(tmp, dt, i);
        char path[4096];
        size_t shape[2] = { rows, cols };
        snprintf(path, sizeof path, "%s/x.npy", o->save_npy);
        if (ensure_dir(o->save_npy) || npy_batch_write_f32(nb, path, f, shape, 2)) exit(2);
        if (gpu) free(tmp);
        free(f);
    }

    /* Which checked rows may be excused for the implementation whose overflow
     * is the lesson (naive softmax): those whose input does overflow it. */
    unsigned char *overflows = calloc(nchk ? nchk : 1, 1);
    if (!overflows) { fprintf(stderr, "%s: out of host memory\n", st->prog); exit(2); }
    for (size_t r = 0; r < nchk; r++) overflows[r] = (unsigned char)softmax_row_breaks_naive((char *)xr + r * cols * es, dt, cols);

    double base_ms = 0;
    for (int k = 0; k < st->nimpls; k++) {
        const softmax_impl_t *im = st->impls[k];
        char why[256] = "";
        const int wanted = k >= st->own;
        if (gpu && !im->gpu) {
            if (wanted) {
                const size_t l = strlen(why_not);
                snprintf(why_not + l, why_len - l, "%s%s: no GPU kernel in this build", l ? "; " : "", im->name);
            }
            continue;
        }
        const int row = report_add_row(rep);
        report_set(rep, row, "run_by", "%s", st->prog);
        report_set(rep, row, "stage", "%s", im->stage);
        report_set(rep, row, "impl", "%s", im->name);
        report_set(rep, row, "device", "%s", gpu ? "gpu" : "cpu");
        report_set(rep, row, "dtype", "%s", dtype_name(dt));
        report_set(rep, row, "rows", "%zu", rows);
        report_set(rep, row, "cols", "%zu", cols);
        report_set(rep, row, "passes", "%d", im->passes);
        report_set(rep, row, "acc_per_elem", "%d", im->loads + im->stores);
        report_set(rep, row, "copy_gbps", "%.0f", copy_gbps);
        /* with --load-npy neither describes the input: the file does */
        report_set(rep, row, "seed", "%s", o->load_npy ? "file" : fmt("%llu", (unsigned long long)o->seed));
        report_set(rep, row, "scale", "%s", o->load_npy ? "file" : fmt("%g", o->scale));
        const int applies = !im->applies || im->applies(rows, cols, dt, gpu, why, sizeof why);
        if (im->applies && applies) printf("%s applies: %s\n", im->name, why);
        if (!applies) {
            printf("%s does not apply: %s\n", im->name, why);
            report_set(rep, row, "ok", "n/a");
            if (wanted) {
                const size_t l = strlen(why_not);
                snprintf(why_not + l, why_len - l, "%s%s: %s", l ? "; " : "", im->name, why);
            }
            continue;
        }
        *ran += wanted;
        run_arg_t a = { im, dx, dy, rows, cols, dt, NULL, NULL, 0 };
        ledger_t lg = { 0 };
        hbm_t hxa, hya;
        if (!gpu) {
            hxa = hbm_wrap(&lg, "x", hx, n, dt);
            hya = hbm_wrap(&lg, "y", hy, n, dt);
            a.x = &hxa;
            a.y = &hya;
        }
        bench_job_t job = { gpu, gpu ? run_gpu : run_cpu, &a, gpu ? dy : hy, bytes, o->warmup, o->iters };
        bench_checked_run(&job);
        size_t nonfinite = 0;
        if (gpu) {
            nonfinite = gpu_count_nonfinite(dy, dt, n);
            for (size_t r = 0; r < nchk; r++) gpu_d2h_rows((char *)yr + r * cols * es, dy, check_idx[r], 1, cols * es);
        } else {
            if (a.rc) {
                report_set(rep, row, "ok", "NO: error");
                failed = 1;
                continue;
            }
            report_set(rep, row, "counted_mb", "%s", mb((double)ledger_total(&lg)));
            for (size_t i = 0; i < n; i++) nonfinite += !isfinite(dtype_get(hy, dt, i));
            for (size_t r = 0; r < nchk; r++) memcpy((char *)yr + r * cols * es, (char *)hy + check_idx[r] * cols * es, cols * es);
        }

        check_t c;
        check_init(&c);
        size_t under = 0;
        for (size_t r = 0; r < nchk; r++) {
            const void *yrow = (char *)yr + r * cols * es;
            if (im->is_copy) {
                const int same = !memcmp(yrow, (char *)xr + r * cols * es, cols * es);
                c.rows++; /* bit for bit: memcmp, no tolerance */
                for (size_t j = 0; j < cols; j++) c.nonfinite += !isfinite(dtype_get(yrow, dt, j));
                if (!same) c.max_rel = c.worst_ratio = INFINITY;
            } else if (im->overflow_lesson && overflows[r]) {
                check_row_excused(&c, yrow, dt, cols);
                under += overflows[r] == NAIVE_UNDERFLOW;
            } else {
                check_row(&c, yrow, dt, ref + r * cols, cols, softmax_tolerance(dt, cols, tol[r], im->round_k));
            }
        }
        const int ok = check_ok(&c);

        bench_meas_t m;
        bench_measure(&job, &m);
        if (base_ms == 0) base_ms = m.ms;
        const double model = (double)(im->loads + im->stores) * (double)bytes;
        const double gbps = 2.0 * (double)bytes / (m.ms * 1e-3) / 1e9;

        if (o->save_npy) {
            char path[4096];
            float *f = malloc(n * sizeof(float));
            void *tmp = gpu ? malloc(bytes) : hy;
            if (!f || !tmp) { fprintf(stderr, "%s: out of host memory for --save-npy\n", st->prog); exit(2); }
            if (gpu) gpu_d2h(tmp, dy, bytes); /* the timed runs rewrote the same values */
            for (size_t i = 0; i < n; i++) f[i] = dtype_get(tmp, dt, i);
            size_t shape[2] = { rows, cols };
            snprintf(path, sizeof path, "%s/y_%s.npy", o->save_npy, im->name);
            int bad = npy_batch_write_f32(nb, path, f, shape, 2);
            if (!bad && k == st->own) {
                snprintf(path, sizeof path, "%s/y.npy", o->save_npy);
                bad = npy_batch_write_f32(nb, path, f, shape, 2);
            }
            if (gpu) free(tmp);
            free(f);
            if (bad) exit(2);
        }

        report_set(rep, row, "model_mb", "%s", mb(model));
        report_set(rep, row, "measured_mb", "%s", m.measured);
        report_set(rep, row, "time_ms", "%.4f", m.ms);
        report_set(rep, row, "gbps", "%.1f", gbps);
        report_set(rep, row, "pct_copy", "%.1f", 100.0 * gbps / copy_gbps);
        report_set(rep, row, "speedup", "%.2f", base_ms / m.ms);
        if (c.excused < c.rows) { /* every row excused: nothing was judged, no figure to show */
            report_set(rep, row, "max_rel_err", "%.2e", c.max_rel);
            report_set(rep, row, "tolerance", "%s", im->is_copy ? "exact" : fmt("%.1e", c.max_tol));
        }
        report_set(rep, row, "nonfinite", "%zu", nonfinite);
        report_set(rep, row, "ok", "%s", bench_ok_cell(ok, c.excused, c.unresolved));
        if (ok && !im->is_copy && c.excused == 0) fastest_note(im->name, gbps);
        if (c.excused > under)
            printf("%s: %zu of %zu checked rows overflow the formula (e^x beyond the largest %s, or a sum beyond "
                   "fp32's): the lesson of Q2, reported, not judged\n", im->name, c.excused - under, nchk,
                   dtype_name(dt));
        if (under)
            printf("%s: %zu of %zu checked rows underflow the formula (every e^x below the smallest normal %s, so "
                   "the sum loses its digits or is 0: 0/0), overflow's twin: reported, not judged\n",
                   im->name, under, nchk, dtype_name(dt));
        if (c.unresolved)
            printf("%s: %zu checked rows need a tolerance above %g (largest %.2e): the check cannot resolve this "
                   "input, a failure\n", im->name, c.unresolved, CHECK_TOL_CAP, c.max_tol);
        else if (!ok)
            printf("%s: FAILED: error %.2e, %.3g times its tolerance %.2e\n", im->name, c.max_rel, c.worst_ratio,
                   c.max_tol);
        if (!ok) {
            failed = 1;
            const size_t l = strlen(failed_names);
            snprintf(failed_names + l, failed_len - l, "%s%s", l ? ", " : "", im->name);
        }
    }
    free(overflows);

    if (gpu) { gpu_free(dx); gpu_free(dy); }
    free(hx); free(hy); free(xr); free(yr); free(ref); free(tol);
    return failed;
}

int softmax_stage_main(const softmax_stage_t *st, int argc, char **argv)
{
    cli_spec_t spec = { st->prog, st->summary, CLI_SOFTMAX, NULL };
    opts_t o;
    int rc = cli_parse_opts(&spec, st->opts, st->nopts, argc, argv, &o, stderr);
    if (rc == 1) return 0;
    if (rc) return rc;
    if (o.csv && report_csv_check(o.csv, COLS, NCOLS, stderr)) return 2; /* one CSV, one layout */
    if (cli_resolve_device(st->prog, &o, stderr)) return 2;
    const int gpu = o.device == DEV_GPU;
    if (!(o.given & GIVEN_ITERS)) o.iters = gpu ? 20 : 5;
    if (!(o.given & GIVEN_WARMUP)) o.warmup = gpu ? 3 : 1;

    float *loaded = NULL;
    size_t rows = gpu ? 16384 : 1024, cols = gpu ? 16384 : 1024; /* GPU: 1 GiB of fp32, 17x the L2 */
    if (o.given & GIVEN_ROWS) rows = (size_t)o.rows;
    if (o.given & GIVEN_COLS) cols = (size_t)o.cols;
    if (o.load_npy) {
        if (o.given & (GIVEN_ROWS | GIVEN_COLS)) {
            fprintf(stderr, "%s: --rows/--cols cannot be combined with --load-npy: the file gives the shape\n", st->prog);
            return 2;
        }
        char path[4096];
        size_t shape[NPY_MAX_DIMS];
        snprintf(path, sizeof path, "%s/x.npy", o.load_npy);
        if (npy_peek_f32(path, 2, shape)) return 2;
        /* the float32 array read, then input and output in the storage type:
         * checked from the header, before a byte of data is read */
        const double n = (double)shape[0] * (double)shape[1], es = (double)dtype_size(o.dtype);
        if (!fits_host((size_t)fmin(n * (4.0 + 2.0 * es), 1e19), st->prog,
                       fmt("x.npy [%zu,%zu] (nothing was read)", shape[0], shape[1])))
            return 2;
        if (gpu) {
            size_t fr = 0, tot = 0;
            gpu_mem_info(&fr, &tot);
            if (2.0 * n * es + (double)(256u << 20) > (double)fr) {
                fprintf(stderr, "%s: --load-npy: x.npy [%zu,%zu] needs %.2f GiB of device memory in %s; %.2f GiB are "
                                "free. Nothing was read.\n", st->prog, shape[0], shape[1],
                        (2.0 * n * es + (double)(256u << 20)) / 1073741824.0, dtype_name(o.dtype), fr / 1073741824.0);
                return 2;
            }
        }
        if (npy_read_f32(path, 2, &loaded, shape)) return 2;
        rows = shape[0];
        cols = shape[1];
        size_t at;
        if (dtype_first_unfit(loaded, rows * cols, o.dtype, &at)) {
            fprintf(stderr, "%s: --load-npy: x.npy [%zu,%zu] holds %.9g at [%zu,%zu], beyond the largest %s (%g): it "
                            "would be stored as inf and change the problem; scale the input or use a wider --dtype\n",
                    st->prog, rows, cols, (double)loaded[at], at / cols, at % cols, dtype_name(o.dtype),
                    dtype_max_finite(o.dtype));
            free(loaded);
            return 2;
        }
    }
    if (rows > ((size_t)1 << 40) / cols) {
        fprintf(stderr, "%s: rows x cols = %zu x %zu is too large (more than 2^40 elements)\n", st->prog, rows, cols);
        free(loaded);
        return 2;
    }

    env_stamp_t env;
    print_run_header(st->prog, st->summary, gpu, &env);
    if (o.load_npy)
        printf("dtype %s, logits from %s/x.npy [%zu,%zu], median of %d runs after %d warm-up, commit %s, %s\n",
               dtype_name(o.dtype), o.load_npy, rows, cols, o.iters, o.warmup, env.commit, env.date);
    else
        printf("dtype %s, seed %llu, logits = %g * U[-1,1), median of %d runs after %d warm-up, commit %s, %s\n",
               dtype_name(o.dtype), (unsigned long long)o.seed, o.scale, o.iters, o.warmup, env.commit, env.date);
    if (gpu && !hwc_available()) printf("HBM measured: n/a (%s)\n", hwc_reason());
    printf("GB/s counts the matrix read once and written once; %%copy is against the measured %s copy.\n\n",
           gpu ? "device-to-device" : "memcpy");

    size_t shapes[16][2];
    int nshapes = 0;
    if (o.sweep) {
        size_t total = rows * cols;
        for (size_t c = 1024; c <= ((size_t)1 << 20); c *= 2) {
            shapes[nshapes][0] = total / c ? total / c : 1;
            shapes[nshapes][1] = c;
            nshapes++;
        }
    } else {
        shapes[0][0] = rows;
        shapes[0][1] = cols;
        nshapes = 1;
    }

    npy_batch_t nb;
    npy_batch_init(&nb);
    int worst = 0;
    char failed[256] = "";
    for (int s = 0; s < nshapes; s++) {
        report_t rep;
        report_init(&rep, COLS, NCOLS);
        if (gpu) {
            gpu_info_t g;
            gpu_info(&g);
            if (shapes[s][0] < (size_t)g.sm_count)
                printf("note: %zu rows on %d SMs: one block per row leaves SMs idle\n", shapes[s][0], g.sm_count);
        }
        int ran = 0;
        char why_not[1024] = "", fnames[256] = "";
        rc = run_shape(st, &o, shapes[s][0], shapes[s][1], loaded, &rep, &nb, &ran, why_not, sizeof why_not, fnames,
                       sizeof fnames);
        if (rc == 2) { npy_batch_abort(&nb); free(loaded); return 2; }
        report_print(&rep, stdout);
        if (fastest.gbps[0] > 0 && fastest.gbps[1] > 0)
            printf("fastest for %zu x %zu %s: %s, %.4g GB/s (next: %s, %.4g GB/s)\n", shapes[s][0], shapes[s][1],
                   dtype_name(o.dtype), fastest.name[0], fastest.gbps[0], fastest.name[1], fastest.gbps[1]);
        printf("\n");
        if (!ran) {
            fprintf(stderr, "%s: none of this stage's own implementations ran on %zu x %zu %s on the %s: %s\n",
                    st->prog, shapes[s][0], shapes[s][1], dtype_name(o.dtype), gpu ? "GPU" : "CPU",
                    why_not[0] ? why_not : "the stage lists none");
            npy_batch_abort(&nb);
            free(loaded);
            return 2;
        }
        if (rc > worst) worst = rc;
        if (fnames[0] && !strstr(failed, fnames)) {
            const size_t l = strlen(failed);
            snprintf(failed + l, sizeof failed - l, "%s%s", l ? ", " : "", fnames);
        }
        if (o.csv && report_csv_append(&rep, o.csv, &env)) { npy_batch_abort(&nb); free(loaded); return 2; }
    }
    free(loaded);
    if (o.save_npy && npy_batch_commit(&nb)) return 2;
    if (worst) fprintf(stderr, "%s: wrong result from %s (see the ok column and the lines under the table)\n",
                       st->prog, failed[0] ? failed : "an implementation");
    return worst;
}
