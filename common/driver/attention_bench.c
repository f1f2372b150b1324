/* See attention_bench.h. Mirrors softmax_bench.c, and shares its run loop
 * (bench_run.h): the checked run from a poisoned output, the counters, the
 * timed runs, the verdict. On the GPU the inputs are generated in place by
 * the counter-based generator (streams 1, 2, 3 for Q, K, V) and only the
 * checked rows, with the K/V slices they read, come back to the host.
 *
 * Which rows are checked: on the CPU every row while that costs no more than
 * a few runs of the implementations (rows x Nk x d <= 2^31 and the references
 * fit in 32 MiB); otherwise, and always on the GPU, 64 (b, h, i) rows spread
 * evenly from the first to the last (so the first and last query of the
 * causal triangle are among them). */
#include "attention_bench.h"

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
#include "report.h"
#include "reference.h"
#include "rng.h"

#define CHECK_ROWS_MAX 64
#define GPU_MARGIN ((size_t)256 << 20) /* cuBLAS workspace, allocator slack, the L2 flush buffer */

static const report_col_t COLS[] = {
    { "run_by", "program", 0 },       { "stage", "stage", 5 },          { "impl", "impl", 17 },
    { "device", "dev", 3 },           { "dtype", "dtype", 5 },          { "batch", "B", 4 },
    { "heads", "H", 4 },              { "kv_heads", "Hkv", 4 },         { "seq", "Nq", 6 },
    { "seq_kv", "Nk", 6 },            { "dim", "d", 4 },                { "causal", "causal", 6 },
    { "tiles", "tiles", 7 },          { "time_ms", "time ms", 10 },     { "tflops", "TFLOP/s", 8 },
    { "speedup", "vs 1st", 7 },       { "model_mb", "HBM model MB", 12 }, { "ledger_mb", "ledger MB", 11 },
    { "measured_mb", "HBM meas MB", 11 }, { "peak_mb", "peak MB", 10 },   { "model_bytes", "", 0 },
    { "ledger_bytes", "", 0 },        { "measured_bytes", "", 0 },      { "peak_bytes", "", 0 },
    { "kv_gbps", "K/V GB/s", 8 },     { "read_pct", "% read", 6 },     { "ceiling_gbps", "", 0 },
    { "varlen", "", 0 },
    { "max_err", "max err", 9 },      { "tolerance", "tol", 9 },        { "nonfinite", "inf/nan", 7 },
    { "ok", "ok", 15 },               { "seed", "seed", 0 },            { "scale", "scale", 0 },
};
#define NCOLS ((int)(sizeof COLS / sizeof COLS[0]))

unsigned attn_impl_rounding(const attn_impl_t *im, const attn_shape_t *s, int gpu)
{
    return im->rounding_for ? im->rounding_for(s, gpu) : im->rounding;
}

double attn_kv_bytes_once(const attn_shape_t *s)
{
    double n = 0;
    for (size_t b = 0; b < s->batch; b++) n += (double)attn_kv_len(s, b);
    return 2.0 * (double)dtype_size(s->dt) * (double)s->dim * (double)s->kv_heads * n;
}

int attn_dim_listed(const int *dims, size_t d)
{
    for (const int *p = dims; p && *p; p++)
        if ((size_t)*p == d) return 1;
    return 0;
}

typedef struct {
    const attn_impl_t *im;
    const attn_shape_t *s;
    const void *dq, *dk, *dv;
    void *dout, *ws;
    hbm_t *q, *k, *v, *o; /* CPU */
    int rc;               /* CPU: the last run's return code */
} run_arg_t;

static void run_gpu(void *p)
{
    run_arg_t *a = p;
    a->im->gpu(a->s, a->dq, a->dk, a->dv, a->dout, a->ws);
}

static void run_cpu(void *p)
{
    run_arg_t *a = p;
    a->rc = a->im->cpu(a->s, a->q, a->k, a->v, a->o, a->ws);
}

static double host_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
}

/* A quarter of the host is left to everything else. */
static int fits_host(double bytes) { return host_bytes() <= 0 || bytes <= 0.75 * host_bytes(); }

static const char *gib(double bytes) { return fmt("%.2f GiB", bytes / 1073741824.0); }

/* Which rows are checked (see the top of this file). */
static size_t pick_rows(const attn_shape_t *s, int gpu, uint64_t **idx)
{
    const uint64_t rows = attn_rows(s);
    const double cost = (double)rows * (double)s->seq_kv * (double)s->dim;
    size_t n;
    if (!gpu && (double)rows * (double)s->dim <= (double)(1 << 22) && cost <= 2147483648.0) {
        n = (size_t)rows;
        *idx = malloc(n * sizeof **idx);
        if (*idx)
            for (size_t i = 0; i < n; i++) (*idx)[i] = i;
    } else {
        n = rows < CHECK_ROWS_MAX ? (size_t)rows : CHECK_ROWS_MAX;
        *idx = malloc(n * sizeof **idx);
        if (*idx)
            for (size_t i = 0; i < n; i++) (*idx)[i] = n == 1 ? 0 : (uint64_t)i * (rows - 1) / (n - 1);
    }
    return n;
}

/* Returns 0, or -1 after printing why. The file goes to nb under a
 * temporary name, renamed when the whole run has succeeded. */
static int save_npy(npy_batch_t *nb, const char *dir, const char *name, const void *data, dtype_t dt, uint64_t n,
                    const size_t *shape)
{
    char path[4096];
    float *f = malloc((size_t)n * sizeof(float));
    if (!f) { fprintf(stderr, "error: out of host memory for --save-npy\n"); return -1; }
    for (uint64_t i = 0; i < n; i++) f[i] = dtype_get(data, dt, (size_t)i);
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    int rc = npy_batch_write_f32(nb, path, f, shape, 4);
    free(f);
    return rc;
}

/* The same, from device memory. */
static int save_npy_dev(npy_batch_t *nb, const char *dir, const char *name, const void *dev, dtype_t dt, uint64_t n,
                        const size_t *shape)
{
    void *t = malloc((size_t)n * dtype_size(dt));
    if (!t) { fprintf(stderr, "error: out of host memory for --save-npy\n"); return -1; }
    gpu_d2h(t, dev, (size_t)n * dtype_size(dt));
    int rc = save_npy(nb, dir, name, t, dt, n, shape);
    free(t);
    return rc;
}

/* meta.json beside the arrays: what a checker outside this program needs to
 * recompute the same problem (tools/torch_attention.py --check). */
static int save_meta(npy_batch_t *nb, const char *dir, const attn_shape_t *s)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    const char *tmp = npy_batch_tmp(nb, path);
    FILE *f = tmp ? fopen(tmp, "w") : NULL;
    if (!f) {
        fprintf(stderr, "error: cannot write '%s'\n", path);
        return -1;
    }
    fprintf(f, "{\"causal\": %d, \"scale\": %.9g, \"dtype\": \"%s\", \"seq_q\": %zu, \"seq_kv\": %zu, "
               "\"heads\": %zu, \"kv_heads\": %zu}\n",
            s->causal, (double)s->scale, dtype_name(s->dt), s->seq_q, s->seq_kv, s->heads, s->kv_heads);
    return fclose(f) ? -1 : 0;
}

/* What one shape's runs tell main: which of the wanted implementations
 * (the stage's own, or those --kernel chose) ran, why the others did not,
 * and which failed. */
#define TALLY_REASONS 8
typedef struct {
    int wanted, ran;
    /* the wanted ones that did not run, grouped by reason: "a, b: reason; c: other" */
    struct { char names[256], reason[256]; } skip[TALLY_REASONS];
    int nskip;
    char more[512];    /* "name: reason; ..." past TALLY_REASONS distinct reasons */
    char why[1024];    /* the groups above as one line (tally_why) */
    char failed[256];  /* names of the implementations whose check failed */
} tally_t;

static void tally_add2(char *buf, size_t n, const char *sep, const char *text, const char *more)
{
    const size_t k = strlen(buf);
    if (k + 1 < n) snprintf(buf + k, n - k, "%s%s%s%s", k ? sep : "", text, more ? ": " : "", more ? more : "");
}
static void tally_add(char *buf, size_t n, const char *sep, const char *text) { tally_add2(buf, n, sep, text, NULL); }

/* A wanted implementation that did not run, and why: the ladders' rungs
 * decline a CPU run with one reason, said once for all of them. */
static void tally_skip(tally_t *ty, const char *name, const char *reason)
{
    int i = 0;
    while (i < ty->nskip && strcmp(ty->skip[i].reason, reason)) i++;
    if (i == TALLY_REASONS) { /* every group taken: this one as it comes */
        tally_add2(ty->more, sizeof ty->more, "; ", name, reason);
        return;
    }
    if (i == ty->nskip) snprintf(ty->skip[ty->nskip++].reason, sizeof ty->skip[0].reason, "%s", reason);
    tally_add(ty->skip[i].names, sizeof ty->skip[i].names, ", ", name);
}
static const char *tally_why(tally_t *ty)
{
    ty->why[0] = 0;
    for (int i = 0; i < ty->nskip; i++) tally_add2(ty->why, sizeof ty->why, "; ", ty->skip[i].names, ty->skip[i].reason);
    if (ty->more[0]) tally_add(ty->why, sizeof ty->why, "; ", ty->more);
    return ty->why;
}

typedef struct { float *q, *k, *v; } loaded_t;

/* Implementation k of the stage on shape s: 0 when it is not in this table
 * (--kernel left it out, or it runs only when asked for), 1 when it is, 2
 * when it is also wanted: what --kernel chose, else the stage's own (not a
 * demonstration), the runs the exit status speaks for. */
static int impl_role(const attn_stage_t *st, const opts_t *o, int k, const attn_shape_t *s)
{
    const attn_impl_t *im = st->impls[k];
    if (!cli_kernel_selected(o->kernels, im->name)) return 0;
    if (!o->kernels && im->listed && !im->listed(s)) return 0; /* not asked for */
    return o->kernels || (k >= st->own && !im->demo) ? 2 : 1;
}

/* 1 when im cannot run s on this device, with the reason in why. */
static int impl_declines(const attn_impl_t *im, const attn_shape_t *s, int gpu, char *why, size_t n)
{
    why[0] = 0;
    if (!(gpu && !im->gpu) && !(im->supports && !im->supports(s, gpu, why, n))) return 0;
    if (!why[0]) snprintf(why, n, "no GPU kernel in this build");
    return 1;
}

/* Every name in --kernel must be an implementation of this stage. */
static int check_kernels(const attn_stage_t *st, const char *list)
{
    if (!list) return 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        for (int k = 0; k < st->nimpls; k++)
            found |= strlen(st->impls[k]->name) == len && !strncmp(st->impls[k]->name, p, len);
        if (!found) {
            fprintf(stderr, "%s: --kernel: no implementation named '%.*s'; this stage has:", st->prog, (int)len, p);
            for (int k = 0; k < st->nimpls; k++) fprintf(stderr, " %s", st->impls[k]->name);
            fprintf(stderr, "\n");
            return 2;
        }
        p += len + (e != NULL);
    }
    return 0;
}

/* The shape's columns, shared by every row of its table. */
static int shape_row(report_t *rep, const attn_stage_t *st, const opts_t *o, const attn_shape_t *s, const attn_impl_t *im)
{
    const int row = report_add_row(rep);
    report_set(rep, row, "run_by", "%s", st->prog);
    report_set(rep, row, "stage", "%s", im->stage);
    report_set(rep, row, "impl", "%s", im->name);
    report_set(rep, row, "device", "%s", o->device == DEV_GPU ? "gpu" : "cpu");
    report_set(rep, row, "dtype", "%s", dtype_name(s->dt));
    report_set(rep, row, "batch", "%zu", s->batch);
    report_set(rep, row, "heads", "%zu", s->heads);
    report_set(rep, row, "kv_heads", "%zu", s->kv_heads);
    report_set(rep, row, "seq", "%zu", s->seq_q);
    report_set(rep, row, "seq_kv", "%zu", s->seq_kv);
    report_set(rep, row, "dim", "%zu", s->dim);
    report_set(rep, row, "causal", "%s", s->causal ? "yes" : "no");
    report_set(rep, row, "varlen", "%s", s->varlen ? "yes" : "no");
    /* with --load-npy neither describes the input: the file does */
    report_set(rep, row, "seed", "%s", o->load_npy ? "file" : fmt("%llu", (unsigned long long)o->seed));
    report_set(rep, row, "scale", "%s", o->load_npy ? "file" : fmt("%g", o->scale));
    report_set(rep, row, "tiles", "%s", im->tiles ? im->tiles(s, o->device == DEV_GPU) : "-");
    return row;
}

/* The largest N (power of two, Nq = Nk = N) whose intermediates would fit now,
 * for this B and H: where the N^2 term ends standard attention. */
static void print_ws_limit(const attn_impl_t *im, const attn_shape_t *s, int gpu, double in_bytes, double chk_bytes)
{
    double avail;
    if (gpu) {
        size_t fr = 0, tot = 0;
        gpu_mem_info(&fr, &tot);
        avail = (double)fr - (double)GPU_MARGIN + in_bytes; /* this run's Q, K, V, O are already allocated */
    } else {
        avail = 0.75 * host_bytes() - in_bytes - chk_bytes;
    }
    attn_shape_t t = *s;
    size_t nmax = 0;
    const double per_token = in_bytes / (double)(s->seq_q + s->seq_kv);
    for (size_t n = 1; n <= ((size_t)1 << 24); n *= 2) {
        t.seq_q = t.seq_kv = n;
        if ((double)im->ws_bytes(&t) + (gpu ? per_token * 2.0 * (double)n : 0.0) > avail) break;
        nmax = n;
    }
    printf("%s: its workspace (intermediates beside Q, K, V, O) fits in %s memory up to N = %zu (powers of two) for B = %zu, H = %zu, %s\n",
           im->name, gpu ? "device" : "host", nmax, s->batch, s->heads, dtype_name(s->dt));
}

/* 1 when the workspace grows faster than N (S and P: N x N), so that a
 * largest N is worth reporting; a workspace of O(N d) (stage 05's FA1 keeps
 * O, l, m there) has no such limit worth printing. */
static int quadratic_ws(const attn_impl_t *im, const attn_shape_t *s)
{
    attn_shape_t t = *s;
    const double w1 = (double)im->ws_bytes(&t);
    t.seq_q *= 2;
    t.seq_kv *= 2;
    return (double)im->ws_bytes(&t) > 3.0 * w1;
}

/* Runs every selected implementation on one shape and fills its table.
 * Returns 0 on success, 2 on bad input, 1 on a failed check. */
static int run_shape(const attn_stage_t *st, const attn_stage_ext_t *ext, const opts_t *o, const attn_shape_t *s,
                     const loaded_t *ld, report_t *rep, npy_batch_t *nb, tally_t *ty)
{
    const int gpu = o->device == DEV_GPU;
    const dtype_t dt = s->dt;
    const size_t es = dtype_size(dt), d = s->dim, Nk = s->seq_kv;
    const uint64_t E = attn_q_elems(s), Ekv = attn_kv_elems(s);
    const double in_bytes = (double)(2 * E + 2 * Ekv) * (double)es;
    const float scale = (float)o->scale;
    int failed = 0, rc = 0;

    /* None of the wanted implementations takes the shape: fail before running
     * the earlier stages' (a CPU run of stage 05b would spend a minute on
     * stage 04's standard attention first); main says why, grouped. */
    int takes = 0;
    for (int k = 0; k < st->nimpls && !takes; k++) {
        if (impl_role(st, o, k, s) != 2) continue;
        ty->wanted++;
        char why[256];
        if (impl_declines(st->impls[k], s, gpu, why, sizeof why)) tally_skip(ty, st->impls[k]->name, why);
        else takes = 1;
    }
    if (!takes) return 0; /* ty->ran == 0 */
    memset(ty, 0, sizeof *ty);

    uint64_t *idx = NULL;
    const size_t nchk = pick_rows(s, gpu, &idx);
    const double chk_bytes = (double)nchk * (double)d * (8.0 + 2.0 * (double)es) + 2.0 * (double)Nk * (double)d * (double)es;
    if (!fits_host((gpu ? 0 : in_bytes) + chk_bytes)) {
        fprintf(stderr, "%s: B x H x Nq x Nk x d = %zu x %zu x %zu x %zu x %zu in %s needs %s of host memory %s; "
                        "this machine has %s. Choose a smaller shape.\n",
                st->prog, s->batch, s->heads, s->seq_q, Nk, d, dtype_name(dt), gib((gpu ? 0 : in_bytes) + chk_bytes),
                gpu ? "for the check buffers (Q, K, V, O live on the device)" : "for Q, K, V, O and the check buffers",
                gib(host_bytes()));
        free(idx);
        return 2;
    }
    double *ref = malloc(nchk * d * sizeof *ref);
    attn_row_stats_t *rst = malloc(nchk * sizeof *rst);
    char *orows = malloc(nchk * d * es);
    char *qrow = malloc(d * es), *kslice = malloc(Nk * d * es), *vslice = malloc(Nk * d * es);
    void *hq = NULL, *hk = NULL, *hv = NULL, *ho = NULL, *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL;
    const size_t qbytes = (size_t)E * es, kvbytes = (size_t)Ekv * es;
    if (!idx || !ref || !rst || !orows || !qrow || !kslice || !vslice) {
        fprintf(stderr, "%s: out of host memory for the check buffers\n", st->prog);
        rc = 2;
        goto out;
    }

    if (gpu) {
        size_t fr = 0, tot = 0;
        gpu_mem_info(&fr, &tot);
        if (in_bytes + (double)GPU_MARGIN > (double)fr) {
            fprintf(stderr, "%s: B x H x Nq x Nk x d = %zu x %zu x %zu x %zu x %zu in %s needs %s of device memory for "
                            "Q, K, V and O; %s of %s are free. Choose a smaller shape.\n",
                    st->prog, s->batch, s->heads, s->seq_q, Nk, d, dtype_name(dt), gib(in_bytes + (double)GPU_MARGIN),
                    gib((double)fr), gib((double)tot));
            rc = 2;
            goto out;
        }
        dq = gpu_malloc(qbytes, "Q");
        dk = gpu_malloc(kvbytes, "K");
        dv = gpu_malloc(kvbytes, "V");
        dout = gpu_malloc(qbytes, "O");
        if (ld) {
            void *tmp = malloc(qbytes > kvbytes ? qbytes : kvbytes);
            if (!tmp) {
                fprintf(stderr, "%s: out of host memory for --load-npy\n", st->prog);
                rc = 2;
                goto out;
            }
            for (uint64_t i = 0; i < E; i++) dtype_set(tmp, dt, (size_t)i, ld->q[i]);
            gpu_h2d(dq, tmp, qbytes);
            for (uint64_t i = 0; i < Ekv; i++) dtype_set(tmp, dt, (size_t)i, ld->k[i]);
            gpu_h2d(dk, tmp, kvbytes);
            for (uint64_t i = 0; i < Ekv; i++) dtype_set(tmp, dt, (size_t)i, ld->v[i]);
            gpu_h2d(dv, tmp, kvbytes);
            free(tmp);
        } else {
            gpu_fill_logits(dq, dt, (size_t)E, o->seed, 1, scale);
            gpu_fill_logits(dk, dt, (size_t)Ekv, o->seed, 2, scale);
            gpu_fill_logits(dv, dt, (size_t)Ekv, o->seed, 3, scale);
        }
        gpu_sync();
    } else {
        hq = malloc(qbytes);
        hk = malloc(kvbytes);
        hv = malloc(kvbytes);
        ho = malloc(qbytes);
        if (!hq || !hk || !hv || !ho) {
            fprintf(stderr, "%s: out of host memory for Q, K, V, O (%s)\n", st->prog, gib(in_bytes));
            rc = 2;
            goto out;
        }
        for (uint64_t i = 0; i < E; i++) dtype_set(hq, dt, (size_t)i, ld ? ld->q[i] : rng_logit(o->seed, 1, i, scale));
        for (uint64_t i = 0; i < Ekv; i++) dtype_set(hk, dt, (size_t)i, ld ? ld->k[i] : rng_logit(o->seed, 2, i, scale));
        for (uint64_t i = 0; i < Ekv; i++) dtype_set(hv, dt, (size_t)i, ld ? ld->v[i] : rng_logit(o->seed, 3, i, scale));
    }

    /* The references of the checked rows, from the stored inputs. */
    uint64_t have_slice = UINT64_MAX;
    for (size_t r = 0; r < nchk; r++) {
        if (gpu) {
            const uint64_t sl = attn_kv_slice(s, idx[r]);
            gpu_d2h_rows(qrow, dq, (size_t)idx[r], 1, d * es);
            if (sl != have_slice) {
                gpu_d2h_rows(kslice, dk, (size_t)sl, 1, Nk * d * es);
                gpu_d2h_rows(vslice, dv, (size_t)sl, 1, Nk * d * es);
                have_slice = sl;
            }
            attention_ref_row(qrow, kslice, vslice, dt, attn_visible(s, idx[r]), d, s->scale, ref + r * d, &rst[r]);
        } else {
            attention_ref_at(s, hq, hk, hv, idx[r], ref + r * d, &rst[r]);
        }
    }

    const size_t shape_q[4] = { s->batch, s->heads, s->seq_q, d }, shape_kv[4] = { s->batch, s->kv_heads, Nk, d };
    if (o->save_npy) {
        const int bad = ensure_dir(o->save_npy) ||
                        (gpu ? save_npy_dev(nb, o->save_npy, "q", dq, dt, E, shape_q) ||
                                   save_npy_dev(nb, o->save_npy, "k", dk, dt, Ekv, shape_kv) ||
                                   save_npy_dev(nb, o->save_npy, "v", dv, dt, Ekv, shape_kv)
                             : save_npy(nb, o->save_npy, "q", hq, dt, E, shape_q) ||
                                   save_npy(nb, o->save_npy, "k", hk, dt, Ekv, shape_kv) ||
                                   save_npy(nb, o->save_npy, "v", hv, dt, Ekv, shape_kv));
        if (bad || save_meta(nb, o->save_npy, s)) { rc = 2; goto out; }
    }

    const char *notes[16];
    int nnotes = 0;
    double base_ms = 0;
    /* decode: K/V GB/s, against the stage's read-only ceiling on the GPU */
    const int decode = s->seq_q == 1;
    const double ceiling = decode && gpu && ext && ext->read_ceiling_gbps ? ext->read_ceiling_gbps(s) : 0.0;
    if (ceiling > 0)
        printf("read-only ceiling: %.0f GB/s (a kernel that only reads %.4g MB, the K/V bytes of this shape, timed "
               "the same way)\n", ceiling, attn_kv_bytes_once(s) / 1e6);
    for (int k = 0; k < st->nimpls; k++) {
        const attn_impl_t *im = st->impls[k];
        const int role = impl_role(st, o, k, s), wanted = role == 2;
        if (!role) continue;
        ty->wanted += wanted;
        char why[256];
        if (impl_declines(im, s, gpu, why, sizeof why)) {
            const int row = shape_row(rep, st, o, s, im);
            report_set(rep, row, "ok", "n/a");
            printf("%s: n/a: %s\n", im->name, why);
            if (wanted) tally_skip(ty, im->name, why);
            continue;
        }
        const size_t ws_bytes = im->ws_bytes ? im->ws_bytes(s) : 0;
        const double model = im->model_bytes(s), peak = in_bytes + (double)ws_bytes;
        if (im->describe && nnotes < 16) notes[nnotes++] = im->describe(s);
        if (ws_bytes && s->seq_q == s->seq_kv && quadratic_ws(im, s)) print_ws_limit(im, s, gpu, in_bytes, chk_bytes);
        const int row = shape_row(rep, st, o, s, im);
        report_set(rep, row, "model_mb", "%.6g", model / 1e6);
        report_set(rep, row, "model_bytes", "%.0f", model);
        report_set(rep, row, "peak_mb", "%.6g", peak / 1e6);
        report_set(rep, row, "peak_bytes", "%.0f", peak);

        /* The N x N intermediates: allocated here, so that a shape whose
         * intermediates do not fit is reported and the rest still runs. */
        void *ws = NULL;
        int fits = 1;
        if (ws_bytes) {
            if (gpu) {
                size_t fr = 0, tot = 0;
                gpu_mem_info(&fr, &tot);
                fits = (double)ws_bytes + (double)GPU_MARGIN <= (double)fr && (ws = gpu_try_malloc(ws_bytes)) != NULL;
                if (!fits)
                    fprintf(stderr, "%s: %s needs %s of device memory for its intermediates (workspace) beside "
                                    "Q, K, V, O; %s of %s are free: does not fit. The other implementations still run.\n",
                            st->prog, im->name, gib((double)ws_bytes), gib((double)fr), gib((double)tot));
            } else {
                fits = fits_host(in_bytes + chk_bytes + (double)ws_bytes) && (ws = malloc(ws_bytes)) != NULL;
                if (!fits)
                    fprintf(stderr, "%s: %s needs %s of host memory for its intermediates (workspace) beside "
                                    "Q, K, V, O; this machine has %s: does not fit. The other implementations still run.\n",
                            st->prog, im->name, gib((double)ws_bytes), gib(host_bytes()));
            }
        }
        if (!fits) {
            report_set(rep, row, "ok", "does not fit");
            if (wanted) tally_skip(ty, im->name, "its workspace does not fit");
            continue;
        }
        ty->ran += wanted;

        ledger_t lg = { 0 };
        hbm_t aq, ak, av, ao;
        run_arg_t a = { im, s, dq, dk, dv, dout, ws, &aq, &ak, &av, &ao, 0 };
        if (!gpu) {
            aq = hbm_wrap(&lg, "Q", hq, (size_t)E, dt);
            ak = hbm_wrap(&lg, "K", hk, (size_t)Ekv, dt);
            av = hbm_wrap(&lg, "V", hv, (size_t)Ekv, dt);
            ao = hbm_wrap(&lg, "O", ho, (size_t)E, dt);
        }
        if (im->prepare && im->prepare(s, gpu, gpu ? dk : (const void *)hk, gpu ? dv : (const void *)hv, ws)) {
            report_set(rep, row, "ok", "NO: error");
            failed = 1;
            tally_add(ty->failed, sizeof ty->failed, ", ", im->name);
            if (gpu) gpu_free(ws);
            else free(ws);
            continue;
        }
        bench_job_t job = { gpu, gpu ? run_gpu : run_cpu, &a, gpu ? dout : ho, qbytes, o->warmup, o->iters };
        bench_checked_run(&job);
        size_t nonfinite = 0;
        if (gpu) {
            nonfinite = gpu_count_nonfinite(dout, dt, (size_t)E);
            for (size_t r = 0; r < nchk; r++) gpu_d2h_rows(orows + r * d * es, dout, (size_t)idx[r], 1, d * es);
        } else {
            if (a.rc) {
                report_set(rep, row, "ok", im->demo ? "demo: error" : "NO: error");
                if (!im->demo) {
                    failed = 1;
                    tally_add(ty->failed, sizeof ty->failed, ", ", im->name);
                }
                if (ws) free(ws);
                continue;
            }
            report_set(rep, row, "ledger_mb", "%.6g", (double)ledger_total(&lg) / 1e6);
            report_set(rep, row, "ledger_bytes", "%llu", (unsigned long long)ledger_total(&lg));
            for (uint64_t i = 0; i < E; i++) nonfinite += !isfinite(dtype_get(ho, dt, (size_t)i));
            for (size_t r = 0; r < nchk; r++) memcpy(orows + r * d * es, (char *)ho + idx[r] * d * es, d * es);
        }

        attn_check_t c;
        attn_check_init(&c);
        const unsigned rnd = attn_impl_rounding(im, s, gpu);
        for (size_t r = 0; r < nchk; r++) attn_check_row(&c, orows + r * d * es, dt, ref + r * d, &rst[r], d, rnd);
        const int ok = attn_check_ok(&c);

        bench_meas_t m;
        bench_measure(&job, &m);
        if (base_ms == 0) base_ms = m.ms;

        if (o->save_npy) {
            int bad = gpu ? save_npy_dev(nb, o->save_npy, fmt("o_%s", im->name), dout, dt, E, shape_q)
                          : save_npy(nb, o->save_npy, fmt("o_%s", im->name), ho, dt, E, shape_q);
            if (!bad && k == st->own)
                bad = gpu ? save_npy_dev(nb, o->save_npy, "o", dout, dt, E, shape_q)
                          : save_npy(nb, o->save_npy, "o", ho, dt, E, shape_q);
            if (bad) {
                if (gpu) gpu_free(ws);
                else free(ws);
                rc = 2;
                goto out;
            }
        }

        report_set(rep, row, "time_ms", "%.4f", m.ms);
        report_set(rep, row, "tflops", "%.3g", attn_flops(s) / (m.ms * 1e-3) / 1e12);
        report_set(rep, row, "speedup", "%.2f", base_ms / m.ms);
        if (decode) {
            const double gbps = attn_kv_bytes_once(s) / (m.ms * 1e-3) / 1e9;
            report_set(rep, row, "kv_gbps", "%.4g", gbps);
            if (ceiling > 0) {
                report_set(rep, row, "read_pct", "%.0f", 100.0 * gbps / ceiling);
                report_set(rep, row, "ceiling_gbps", "%.0f", ceiling);
            }
        }
        report_set(rep, row, "measured_mb", "%s", m.measured);
        report_set(rep, row, "measured_bytes", "%s", m.measured_raw);
        if (c.excused < c.rows) { /* every row excused: nothing was judged, no figure to show */
            report_set(rep, row, "max_err", "%.2e", c.max_err);
            report_set(rep, row, "tolerance", "%.1e", c.max_tol);
        }
        report_set(rep, row, "nonfinite", "%zu", nonfinite);
        if (im->demo) {
            /* The lesson, reported, never the run's failure. */
            report_set(rep, row, "ok", "%s", ok ? "demo: within tol" : c.unresolved ? "demo: unresolved"
                                                                  : fmt("demo: %.3gx tol", c.worst_ratio));
            printf("%s: a demonstration (%s): error %.2e against the tolerance %.2e of its check: %s; not counted\n",
                   im->name, im->demo, c.max_err, c.max_tol,
                   ok ? "within it" : c.unresolved ? "the check cannot resolve it (tolerance above the cap)"
                                                   : fmt("%.3g times it, the expected failure", c.worst_ratio));
        } else {
            report_set(rep, row, "ok", "%s", bench_ok_cell(ok, c.excused, c.unresolved));
            if (!ok) {
                failed = 1;
                tally_add(ty->failed, sizeof ty->failed, ", ", im->name);
                if (!c.unresolved)
                    printf("%s: FAILED: error %.2e, %.3g times its tolerance %.2e\n", im->name, c.max_err,
                           c.worst_ratio, c.max_tol);
            }
        }
        if (c.unresolved)
            printf("%s: %zu checked rows have a derived tolerance above the cap %g (largest %.2e) or not finite: "
                   "the check cannot resolve this input, which is a failure, not a pass\n",
                   im->name, c.unresolved, CHECK_TOL_CAP, c.max_tol);
        if (c.capped)
            printf("%s: %zu checked rows are judged at half their output's size (their derived tolerance is not "
                   "below it: long rows average V towards 0), so an all-zero answer cannot pass\n",
                   im->name, c.capped);
        if (c.zero_rows)
            printf("%s: %zu checked rows have the exact result 0 (V = 0, all-zero inputs, or every key masked): "
                   "judged by the absolute bound |o| <= tol max(A, min_normal)\n", im->name, c.zero_rows);
        if (c.excused)
            printf("%s: %zu checked rows have finite logits beyond the largest %s (%g): storing S overflows there, "
                   "the lesson of Q2; those rows are not judged\n", im->name, c.excused, dtype_name(dt),
                   dtype_max_finite(dt));
        if (gpu) gpu_free(ws);
        else free(ws);
    }
    report_print(rep, stdout);
    for (int i = 0; i < nnotes; i++)
        if (notes[i]) printf("  %s\n", notes[i]);
    printf("\n");
    rc = failed;

out:
    if (gpu) { gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(dout); }
    free(hq); free(hk); free(hv); free(ho);
    free(idx); free(ref); free(rst); free(orows); free(qrow); free(kslice); free(vslice);
    return rc;
}

static void free_loaded(loaded_t *ld)
{
    free(ld->q);
    free(ld->k);
    free(ld->v);
    memset(ld, 0, sizeof *ld);
}

static const char *shape_text(const size_t *sh) { return fmt("[%zu,%zu,%zu,%zu]", sh[0], sh[1], sh[2], sh[3]); }

/* q.npy [B, H, Nq, d], k.npy and v.npy [B, Hkv, Nk, d]: the headers first
 * (shapes, and whether the arrays fit in host memory, and on the GPU in
 * device memory, before a byte of data is read), then the data, then every
 * value against the storage type. Returns 0 or 2 (and frees what it read). */
static int load_inputs(const attn_stage_t *st, const char *dir, dtype_t dt, int gpu, loaded_t *ld, size_t *shq,
                       size_t *shkv)
{
    char pq[4096], pk[4096], pv[4096];
    size_t shv[NPY_MAX_DIMS];
    memset(ld, 0, sizeof *ld);
    snprintf(pq, sizeof pq, "%s/q.npy", dir);
    snprintf(pk, sizeof pk, "%s/k.npy", dir);
    snprintf(pv, sizeof pv, "%s/v.npy", dir);
    if (npy_peek_f32(pq, 4, shq) || npy_peek_f32(pk, 4, shkv) || npy_peek_f32(pv, 4, shv)) return 2;
    if (memcmp(shkv, shv, 4 * sizeof *shv) || shq[0] != shkv[0] || shq[3] != shkv[3]) {
        fprintf(stderr, "%s: --load-npy: shapes disagree: q.npy %s, k.npy %s, v.npy %s; expected q [B,H,Nq,d] and "
                        "k, v [B,Hkv,Nk,d]\n", st->prog, shape_text(shq), shape_text(shkv), shape_text(shv));
        return 2;
    }
    const double eq = (double)shq[0] * (double)shq[1] * (double)shq[2] * (double)shq[3];
    const double ekv = (double)shkv[0] * (double)shkv[1] * (double)shkv[2] * (double)shkv[3];
    /* host: the float32 arrays read, Q, K, V, O in the storage type (CPU), or
     * one staging buffer (GPU); device: Q, K, V, O */
    const double es = (double)dtype_size(dt), fbytes = 4.0 * (eq + 2.0 * ekv);
    const double host = fbytes + (gpu ? es * fmax(eq, ekv) : es * (2.0 * eq + 2.0 * ekv));
    if (!fits_host(host)) {
        fprintf(stderr, "%s: --load-npy: q.npy %s, k.npy %s, v.npy %s (%s of float32) need %s of host memory with "
                        "the arrays in %s; this machine has %s (3/4 of it may be used). Nothing was read.\n",
                st->prog, shape_text(shq), shape_text(shkv), shape_text(shv), gib(fbytes), gib(host), dtype_name(dt),
                gib(host_bytes()));
        return 2;
    }
    if (gpu) {
        size_t fr = 0, tot = 0;
        gpu_mem_info(&fr, &tot);
        const double dev = es * (2.0 * eq + 2.0 * ekv) + (double)GPU_MARGIN;
        if (dev > (double)fr) {
            fprintf(stderr, "%s: --load-npy: q.npy %s, k.npy %s, v.npy %s need %s of device memory in %s; %s of %s "
                            "are free. Nothing was read.\n",
                    st->prog, shape_text(shq), shape_text(shkv), shape_text(shv), gib(dev), dtype_name(dt),
                    gib((double)fr), gib((double)tot));
            return 2;
        }
    }
    size_t sh[NPY_MAX_DIMS];
    if (npy_read_f32(pq, 4, &ld->q, sh) || npy_read_f32(pk, 4, &ld->k, sh) || npy_read_f32(pv, 4, &ld->v, sh)) {
        free_loaded(ld);
        return 2;
    }
    const struct { const char *name; const float *x; size_t n; const size_t *sh; } arr[3] = {
        { "q.npy", ld->q, (size_t)eq, shq }, { "k.npy", ld->k, (size_t)ekv, shkv }, { "v.npy", ld->v, (size_t)ekv, shv },
    };
    for (int a = 0; a < 3; a++) {
        size_t at;
        if (dtype_first_unfit(arr[a].x, arr[a].n, dt, &at)) {
            const size_t d = arr[a].sh[3], n = arr[a].sh[2], h = arr[a].sh[1];
            fprintf(stderr, "%s: --load-npy: %s %s holds %.9g at [%zu,%zu,%zu,%zu], beyond the largest %s (%g): it "
                            "would be stored as inf and change the problem; scale the input or use a wider --dtype\n",
                    st->prog, arr[a].name, shape_text(arr[a].sh), (double)arr[a].x[at], at / d / n / h, at / d / n % h,
                    at / d % n, at % d, dtype_name(dt), dtype_max_finite(dt));
            free_loaded(ld);
            return 2;
        }
    }
    return 0;
}

static const char *dims_text(const int *dims)
{
    static char buf[256];
    size_t n = 0;
    buf[0] = 0;
    for (const int *p = dims; p && *p && n + 16 < sizeof buf; p++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%d", p == dims ? "" : ", ", *p);
    return buf;
}

/* 1 when the stage declares the option `name` (cli_opt_t). */
static int attn_declares(const attn_stage_t *st, const char *name)
{
    for (int i = 0; i < st->nopts; i++)
        if (!strcmp(st->opts[i].name, name)) return 1;
    return 0;
}

int attention_stage_main(const attn_stage_t *st, int argc, char **argv)
{
    return attention_stage_main_ext(st, NULL, argc, argv);
}

int attention_stage_main_ext(const attn_stage_t *st, const attn_stage_ext_t *ext, int argc, char **argv)
{
    npy_batch_t nb;
    npy_batch_init(&nb);
    char extra[768];
    snprintf(extra, sizeof extra,
             "head dimensions d: 1 to %d (the CPU implementations take each; GPU kernels compiled for some decline\n"
             "the others, with the reason in the table)%s%s\n"
             "implementations: run all, or pick with --kernel (names as in the table); a run in which none of\n"
             "the stage's own implementations (or of those picked) ran fails with exit 2 and the reasons\n"
             "defaults: GPU B=4 H=16 N=4096 d=64; CPU B=1 H=2 N=256 d=64; %s%s\n"
             "--sweep: GPU N = 1024 ... 16384 at B = 16384/N, H = 16; CPU N = 128 ... 2048 at B = 2048/N, H = 2\n"
             "         (--heads and --dim apply; --batch and the lengths do not; the CPU sweep times 3 runs by default)\n",
             ATTN_DIM_MAX, st->dims ? "; this stage's GPU kernels: d = " : "", st->dims ? dims_text(st->dims) : "",
             dtype_name(st->dtype_default), st->decode_default ? "; Nq = 1 (decode) unless --seq or --seq-q" : "");
    cli_spec_t spec = { st->prog, st->summary, CLI_ATTENTION, extra };
    opts_t o;
    int rc = cli_parse_opts(&spec, st->opts, st->nopts, argc, argv, &o, stderr);
    if (rc == 1) return 0;
    if (rc) return rc;
    if (o.csv && report_csv_check(o.csv, COLS, NCOLS, stderr)) return 2; /* one CSV, one layout */
    if (o.sweep && (o.given & (GIVEN_BATCH | GIVEN_SEQ | GIVEN_SEQ_Q | GIVEN_SEQ_KV | GIVEN_DECODE))) {
        fprintf(stderr, "%s: --sweep sets the lengths and B itself; --batch, --seq, --seq-q, --seq-kv and --decode "
                        "cannot be combined with it\n", st->prog);
        return 2;
    }
    if (check_kernels(st, o.kernels)) return 2;
    if (cli_resolve_device(st->prog, &o, stderr)) return 2;
    const int gpu = o.device == DEV_GPU;
    if (!(o.given & GIVEN_ITERS)) o.iters = gpu ? 20 : (o.sweep ? 3 : 5);
    if (!(o.given & GIVEN_WARMUP)) o.warmup = 1 + 2 * gpu;

    if (!(o.given & GIVEN_DTYPE)) o.dtype = st->dtype_default;
    const int kv_given = cli_opt_given(&o, "kv-heads");
    size_t B = gpu ? 4 : 1, H = gpu ? 16 : 2, N = gpu ? 4096 : 256, d = 64;
    if (o.given & GIVEN_BATCH) B = (size_t)o.batch;
    if (o.given & GIVEN_HEADS) H = (size_t)o.heads;
    if (o.given & GIVEN_SEQ) N = (size_t)o.seq;
    if (o.given & GIVEN_DIM) d = (size_t)o.dim;
    size_t Nq = (o.given & (GIVEN_SEQ_Q | GIVEN_DECODE)) ? (size_t)o.seq_q
              : (st->decode_default && !(o.given & GIVEN_SEQ)) ? 1 : N;
    size_t Nk = (o.given & GIVEN_SEQ_KV) ? (size_t)o.seq_kv : N;
    size_t Hkv = kv_given ? (size_t)cli_opt_value(&o, "kv-heads") : H;

    loaded_t ld = { 0 }, *ldp = NULL;
    size_t shq[NPY_MAX_DIMS] = { 0 }, shkv[NPY_MAX_DIMS] = { 0 };
    if (o.load_npy) {
        if ((o.given & (GIVEN_BATCH | GIVEN_HEADS | GIVEN_SEQ | GIVEN_SEQ_Q | GIVEN_SEQ_KV | GIVEN_DECODE | GIVEN_DIM)) ||
            kv_given) {
            fprintf(stderr, "%s: --batch/--heads/--kv-heads/--seq/--seq-q/--seq-kv/--decode/--dim cannot be combined "
                            "with --load-npy: the files give the shape\n", st->prog);
            return 2;
        }
        if (load_inputs(st, o.load_npy, o.dtype, gpu, &ld, shq, shkv)) return 2;
        B = shq[0]; H = shq[1]; Nq = shq[2]; d = shq[3]; Hkv = shkv[1]; Nk = shkv[2];
        ldp = &ld;
    }
    /* Where the shape came from, for the messages below. */
    char from[160] = "";
    if (o.load_npy) snprintf(from, sizeof from, " (from the files: q.npy %s, k.npy %s)", shape_text(shq), shape_text(shkv));
    rc = 2; /* every check below is bad input */
    if (Hkv != H && !attn_declares(st, "kv-heads")) {
        fprintf(stderr, "%s: %zu K/V heads for %zu query heads%s: this stage's implementations take as many K/V heads "
                        "as query heads (grouped K/V heads: stage 06)\n", st->prog, Hkv, H, from);
        goto done;
    }
    if (H % Hkv) {
        fprintf(stderr, "%s: %zu K/V heads must divide %zu query heads%s (each K/V head serves a whole group)\n",
                st->prog, Hkv, H, o.load_npy ? from : " (--kv-heads, --heads)");
        goto done;
    }
    if (d > ATTN_DIM_MAX) {
        fprintf(stderr, "%s: head dimension d = %zu%s: the programs take 1 to %d\n", st->prog, d, from, ATTN_DIM_MAX);
        goto done;
    }
    if ((double)B * (double)H * (double)(Nq > Nk ? Nq : Nk) * (double)d > 1099511627776.0) {
        fprintf(stderr, "%s: B x H x N x d = %zu x %zu x %zu x %zu%s is too large (more than 2^40 elements per array)\n",
                st->prog, B, H, Nq > Nk ? Nq : Nk, d, from);
        goto done;
    }

    env_stamp_t env;
    print_run_header(st->prog, st->summary, gpu, &env);
    if (o.load_npy)
        printf("dtype %s, Q, K, V from %s (q.npy %s, k.npy and v.npy %s), softmax scale 1/sqrt(d), median of %d runs "
               "after %d warm-up, commit %s, %s\n",
               dtype_name(o.dtype), o.load_npy, shape_text(shq), shape_text(shkv), o.iters, o.warmup, env.commit,
               env.date);
    else
        printf("dtype %s, seed %llu, Q, K, V = %g * U[-1,1), softmax scale 1/sqrt(d), median of %d runs after %d "
               "warm-up, commit %s, %s\n",
               dtype_name(o.dtype), (unsigned long long)o.seed, o.scale, o.iters, o.warmup, env.commit, env.date);
    if (gpu && !hwc_available()) printf("HBM measured: n/a (%s)\n", hwc_reason());
    printf("TFLOP/s counts 4 d per visible (query, key) pair; HBM model and ledger in bytes moved (read + written); "
           "peak = Q, K, V, O + the N x N intermediates.%s\n\n",
           o.causal ? " Causal masks align bottom-right (query i sees keys j <= i + Nk - Nq)." : "");
    const int varlen = cli_opt_given(&o, "varlen");
    if (varlen) printf("--varlen: batch element b holds the first Nk - floor(b Nk / 2B) keys of its K/V slices.\n");
    if (Nq == 1 && !o.sweep)
        printf("Decode: K/V GB/s = the K/V bytes held (2 es d Hkv sum_b n_b, each byte once) / time.\n");

    attn_shape_t shapes[8];
    int nshapes = 0;
    if (o.sweep) {
        const size_t tokens = gpu ? 16384 : 2048, h = (o.given & GIVEN_HEADS) ? H : (gpu ? 16 : 2);
        for (size_t n = gpu ? 1024 : 128; n <= tokens; n *= 2)
            attn_shape_init(&shapes[nshapes++], tokens / n, h, kv_given ? Hkv : h, n, n, d, o.causal, o.dtype);
    } else {
        attn_shape_init(&shapes[nshapes++], B, H, Hkv, Nq, Nk, d, o.causal, o.dtype);
    }
    for (int i = 0; i < nshapes; i++) {
        shapes[i].tune.br = (size_t)cli_opt_value(&o, "br");
        shapes[i].tune.bc = (size_t)cli_opt_value(&o, "bc");
        shapes[i].tune.sram = (size_t)cli_opt_value(&o, "sram");
        shapes[i].tune.splits = (size_t)cli_opt_value(&o, "splits");
        shapes[i].tune.page = (size_t)cli_opt_value(&o, "page-size");
        shapes[i].varlen = varlen;
        char why[256] = "";
        if (ext && ext->validate && !ext->validate(&shapes[i], why, sizeof why)) {
            fprintf(stderr, "%s: %s\n", st->prog, why);
            rc = 2;
            goto done;
        }
    }

    int worst = 0;
    char failed[512] = "";
    for (int i = 0; i < nshapes; i++) {
        report_t rep;
        tally_t ty;
        memset(&ty, 0, sizeof ty);
        report_init(&rep, COLS, NCOLS);
        rc = run_shape(st, ext, &o, &shapes[i], ldp, &rep, &nb, &ty);
        if (rc == 2) goto done;
        if (ty.ran == 0) {
            fprintf(stderr, "%s: none of %s ran on B=%zu H=%zu Hkv=%zu Nq=%zu Nk=%zu d=%zu %s on the %s: %s\n",
                    st->prog, o.kernels ? "the implementations --kernel chose" : "this stage's own implementations",
                    shapes[i].batch, shapes[i].heads, shapes[i].kv_heads, shapes[i].seq_q, shapes[i].seq_kv,
                    shapes[i].dim, dtype_name(o.dtype), gpu ? "GPU" : "CPU",
                    ty.wanted ? tally_why(&ty) : "the stage lists none");
            rc = 2;
            goto done;
        }
        if (ext && ext->after_shape && ext->after_shape(&shapes[i], gpu)) {
            if (!rc) rc = 1;
            tally_add(ty.failed, sizeof ty.failed, ", ", "after the table");
        }
        if (rc > worst) worst = rc;
        if (ty.failed[0] && !strstr(failed, ty.failed)) tally_add(failed, sizeof failed, ", ", ty.failed);
        if (o.csv && report_csv_append(&rep, o.csv, &env)) { rc = 2; goto done; }
    }
    if (worst) fprintf(stderr, "%s: wrong result from %s (see the ok column and the lines under the table)\n", st->prog,
                       failed[0] ? failed : "an implementation");
    rc = worst;
done:
    if (o.save_npy) {
        if (rc == 2) npy_batch_abort(&nb);
        else if (npy_batch_commit(&nb)) rc = 2;
    }
    free_loaded(&ld);
    return rc;
}
