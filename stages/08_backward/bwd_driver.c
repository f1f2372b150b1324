/* Stage 08's driver: the counterpart of common/driver/attention_bench.c for
 * a pass with four inputs (Q, K, V, dO) and three outputs (dQ, dK, dV). It
 * reuses common's pieces (options, table and CSV, .npy, the poisoned checked
 * run, the counters and the median timing) and adds what the backward needs:
 *
 *   per shape: Q, K, V, dO generated (streams 1-4 of the counter-based
 *   generator, the same values on CPU and GPU) or loaded; the fp64 reference
 *   of O, L, dQ, dK, dV (bwd_ref.c) for the K/V groups it can afford;
 *   per implementation: its forward (O and L; the standard one also S and P),
 *   checked against the forward's reference and tolerance; its backward from
 *   poisoned dQ, dK, dV (and workspace on the GPU), checked row by row; on
 *   the GPU three more runs compared bit for bit with the first (the spread
 *   of the atomic dQ; a deterministic kernel must not differ); the DRAM
 *   counters of the forward and of the backward; the median time of the
 *   backward and of forward + backward; the peak memory (allocated, and on
 *   the GPU the drop of free device memory).
 *
 * Which rows are checked: every row of every K/V group (b, kv head) while
 * the reference fits a budget of G Nq Nk d (REF_BUDGET), else of groups
 * spread from the first to the last within it (at least the first); when
 * one group alone is beyond REF_ONE_MAX (or $STF_BWD_REF_MAX, for the
 * tests), about 32 sampled query rows of the first and the last group: their
 * O, L and dQ (each row needs only itself), while dK and dV go unchecked
 * there (the ok cell says "yes (dQ rows)"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backward.h"
#include "bench_run.h"
#include "cli.h"
#include "gpu.h"
#include "hwcounters.h"
#include "npy.h"
#include "report.h"
#include "reference.h"
#include "rng.h"

#define PROG "08_backward"
#define SUMMARY "stage 08, the backward pass by recomputation: standard (P stored) against FlashAttention-2's"
/* The fp64 reference costs about 15 G Nq Nk d flops per K/V group, on one
 * host core: the CPU runs check up to 2^31 of G Nq Nk d (seconds), the GPU
 * runs (timing-bound) up to 2^26; beyond, sampled rows (see above). */
#define REF_BUDGET(gpu) ((gpu) ? 67108864.0 : 2147483648.0)
#define REF_ONE_MAX(gpu) ((gpu) ? 67108864.0 : 8589934592.0)
#define GPU_MARGIN ((size_t)256 << 20)
#define SPREAD_RUNS 3

static const report_col_t COLS[] = {
    { "run_by", "program", 0 },        { "stage", "stage", 0 },           { "impl", "impl", 13 },
    { "device", "dev", 3 },            { "dtype", "dtype", 5 },           { "batch", "B", 3 },
    { "heads", "H", 3 },               { "kv_heads", "Hkv", 3 },          { "seq", "Nq", 5 },
    { "seq_kv", "Nk", 5 },             { "dim", "d", 3 },                 { "causal", "causal", 6 },
    { "tiles", "tiles", 5 },           { "time_ms", "bwd ms", 9 },        { "tflops", "TFLOP/s", 7 },
    { "fwdbwd_ms", "fwd+bwd ms", 10 }, { "fwd_model_mb", "fwd model MB", 12 }, { "fwd_count_mb", "fwd cnt MB", 10 },
    { "model_mb", "bwd model MB", 12 }, { "ledger_mb", "bwd ledger MB", 13 }, { "measured_mb", "bwd meas MB", 11 },
    { "peak_mb", "peak MB", 9 },       { "peak_meas_mb", "peak meas MB", 12 }, { "onchip_bytes", "on-chip B", 9 },
    { "ratio_dq", "dQ err/tol", 10 },  { "ratio_dk", "dK err/tol", 10 },  { "ratio_dv", "dV err/tol", 10 },
    { "spread", "runs differ", 11 },   { "ok", "ok", 10 },
    { "fwd_model_bytes", "", 0 },      { "fwd_count_bytes", "", 0 },      { "model_bytes", "", 0 },
    { "ledger_bytes", "", 0 },         { "measured_bytes", "", 0 },       { "peak_bytes", "", 0 },
    { "peak_meas_bytes", "", 0 },      { "err_dq", "", 0 },               { "err_dk", "", 0 },
    { "err_dv", "", 0 },               { "seed", "", 0 },
};
#define NCOLS ((int)(sizeof COLS / sizeof COLS[0]))

typedef struct { float *q, *k, *v, *dout; } loaded_t;

static const char *gib(double bytes) { return fmt("%.2f GiB", bytes / 1073741824.0); }

static double host_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
}

static int check_kernels(const char *list)
{
    if (!list) return 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        for (int k = 0; k < BWD_NIMPLS; k++)
            found |= strlen(BWD_IMPLS[k].name) == len && !strncmp(BWD_IMPLS[k].name, p, len);
        if (!found) {
            fprintf(stderr, "%s: --kernel: no implementation named '%.*s'; this stage has:", PROG, (int)len, p);
            for (int k = 0; k < BWD_NIMPLS; k++) fprintf(stderr, " %s", BWD_IMPLS[k].name);
            fprintf(stderr, "\n");
            return 2;
        }
        p += len + (e != NULL);
    }
    return 0;
}

static int save_arr(const char *dir, const char *name, const void *data, dtype_t dt, uint64_t n, const size_t *shape)
{
    char path[4096];
    float *f = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!f) { fprintf(stderr, "%s: out of host memory for --save-npy\n", PROG); return -1; }
    for (uint64_t i = 0; i < n; i++) f[i] = dtype_get(data, dt, (size_t)i);
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    int rc = npy_write_f32(path, f, shape, 4);
    free(f);
    return rc;
}

static int save_meta(const char *dir, const attn_shape_t *s)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "%s: cannot write '%s'\n", PROG, path); return -1; }
    fprintf(f, "{\"causal\": %d, \"scale\": %.9g, \"dtype\": \"%s\", \"seq_q\": %zu, \"seq_kv\": %zu, "
               "\"heads\": %zu, \"kv_heads\": %zu}\n",
            s->causal, (double)s->scale, dtype_name(s->dt), s->seq_q, s->seq_kv, s->heads, s->kv_heads);
    return fclose(f) ? -1 : 0;
}

/* ---- the stage's own options (cli.h, cli_opt_t) */
static const cli_opt_t OPTS[] = {
    { "kv-heads", "G", 65536, "K/V heads (grouped-query attention; must divide --heads; default: --heads)" },
    { "br", "N", 4096, "query rows per tile of the CPU FA2 backward (default 64)" },
    { "bc", "N", 4096, "keys per tile of the CPU FA2 backward (default 64)" },
    { "sram", "BYTES", 1LL << 30, "simulated on-chip bytes of the CPU FA2 backward (tiles chosen to fit)" },
};
#define OPT_GIVEN(o, name) cli_opt_given(&(o), name)
#define OPT_VALUE(o, name) cli_opt_value(&(o), name)
#define PARSE(spec, argc, argv, o) cli_parse_opts(&(spec), OPTS, (int)(sizeof OPTS / sizeof OPTS[0]), argc, argv, &(o), stderr)

/* ---- one run of an implementation (the job bench_run times) */

typedef struct {
    const bwd_impl_t *im;
    const attn_shape_t *s;
    int gpu, fwd_too, rc;
    /* GPU: device pointers; CPU: the ledger arrays */
    const void *q, *k, *v, *dout;
    void *o, *dq, *dk, *dv, *ws;
    float *lse;
    bwd_io_t *io;
} job_arg_t;

static void run_job(void *p)
{
    job_arg_t *a = p;
    if (a->gpu) {
        if (a->fwd_too && bwd_gpu_forward(a->s, a->q, a->k, a->v, a->o, a->lse)) a->rc = -1;
        if (bwd_gpu_launch(a->im->gpu_kernel, a->s, a->q, a->k, a->v, a->o, a->dout, a->lse, a->dq, a->dk, a->dv, a->ws))
            a->rc = -1;
    } else {
        if (a->fwd_too && a->im->cpu_fwd(a->s, a->io, a->ws)) a->rc = -1;
        if (a->im->cpu_bwd(a->s, a->io, a->ws)) a->rc = -1;
    }
}

static void run_fwd_gpu(void *p)
{
    job_arg_t *a = p;
    if (bwd_gpu_forward(a->s, a->q, a->k, a->v, a->o, a->lse)) a->rc = -1;
}

/* ---- the reference, cached per (rounding, forward rounding) */

typedef struct {
    unsigned rnd, frnd;
    int have;
    bwd_ref_t r;
} ref_slot_t;

static const bwd_ref_t *reference(ref_slot_t *slots, int nslots, const attn_shape_t *s, const void *q, const void *k,
                                  const void *v, const void *dout, unsigned rnd, unsigned frnd, const unsigned char *want,
                                  size_t stride)
{
    for (int i = 0; i < nslots; i++)
        if (slots[i].have && slots[i].rnd == rnd && slots[i].frnd == frnd) return &slots[i].r;
    for (int i = 0; i < nslots; i++)
        if (!slots[i].have) {
            if (stride ? bwd_ref_compute_rows(&slots[i].r, s, q, k, v, dout, rnd, frnd, want, stride)
                       : bwd_ref_compute_groups(&slots[i].r, s, q, k, v, dout, rnd, frnd, want))
                return NULL;
            slots[i].have = 1;
            slots[i].rnd = rnd;
            slots[i].frnd = frnd;
            return &slots[i].r;
        }
    return NULL;
}

/* The forward's check: O rows against attention_ref's tolerance, L against
 * its bound. Only groups the reference computed. Returns 1 when it passes. */
static int check_forward(const bwd_ref_t *r, const void *o, const float *lse, unsigned frnd, size_t *rows)
{
    const attn_shape_t *s = &r->s;
    const size_t d = s->dim, es = dtype_size(s->dt);
    attn_check_t c;
    attn_check_init(&c);
    int lse_ok = 1;
    *rows = 0;
    for (uint64_t x = 0; x < attn_rows(s); x++) {
        if (r->rq[x].tol < 0) continue;
        attn_check_row(&c, (const char *)o + x * d * es, s->dt, r->o + x * d, &r->ost[x], d, frnd);
        const double L = lse[x], R = r->lse[x];
        if (isinf(R) ? L != R : !(fabs(L - R) <= r->lse_tol[x])) lse_ok = 0;
        ++*rows;
    }
    return *rows == 0 || (lse_ok && attn_check_ok(&c));
}

/* Which K/V groups the reference computes; returns how many. */
static size_t pick_groups(const attn_shape_t *s, int gpu, unsigned char *want)
{
    const size_t groups = s->batch * s->kv_heads;
    const double one = (double)(s->heads / s->kv_heads) * (double)s->seq_q * (double)s->seq_kv * (double)s->dim;
    const char *env = getenv("STF_BWD_REF_MAX");
    if (env && one > atof(env)) {
        memset(want, 0, groups ? groups : 1);
        return 0;
    }
    size_t n = one > REF_ONE_MAX(gpu) ? 0
               : one * (double)groups <= REF_BUDGET(gpu) ? groups : (size_t)(REF_BUDGET(gpu) / fmax(one, 1));
    if (one <= REF_ONE_MAX(gpu) && n == 0) n = 1;
    if (n > groups) n = groups;
    memset(want, 0, groups ? groups : 1);
    for (size_t i = 0; i < n; i++) want[n == 1 ? 0 : i * (groups - 1) / (n - 1)] = 1;
    return n;
}

/* ---- one shape */

typedef struct {
    const opts_t *o;
    int gpu;
} ctx_t;

static int run_shape(const ctx_t *cx, const attn_shape_t *s, const loaded_t *ld, report_t *rep)
{
    const opts_t *o = cx->o;
    const int gpu = cx->gpu;
    const dtype_t dt = s->dt;
    const size_t es = dtype_size(dt), d = s->dim;
    const uint64_t E = attn_q_elems(s), Ekv = attn_kv_elems(s), R = attn_rows(s);
    const size_t qb = (size_t)E * es, kvb = (size_t)Ekv * es, lb = (size_t)R * 4;
    const double io_bytes = (double)(4 * qb + 2 * kvb + 2 * kvb + lb); /* q, o, dO, dq; k, v, dk, dv; L */
    int rc = 0, failed = 0;
    if (host_bytes() > 0 && (double)(5 * qb + 6 * kvb) + 8.0 * (double)(3 * E + 2 * Ekv) > 0.75 * host_bytes()) {
        fprintf(stderr, "%s: B x H x Nq x Nk x d = %zu x %zu x %zu x %zu x %zu in %s needs more than the host's %s "
                        "for its arrays and references. Choose a smaller shape.\n",
                PROG, s->batch, s->heads, s->seq_q, s->seq_kv, d, dtype_name(dt), gib(host_bytes()));
        return 2;
    }
    /* host copies of the inputs (the reference reads them) and of the outputs */
    void *hq = malloc(qb + 1), *hk = malloc(kvb + 1), *hv = malloc(kvb + 1), *hdo = malloc(qb + 1);
    void *ho = malloc(qb + 1), *hdq = malloc(qb + 1), *hdk = malloc(kvb + 1), *hdv = malloc(kvb + 1);
    void *sdq = malloc(qb + 1), *sdk = malloc(kvb + 1), *sdv = malloc(kvb + 1); /* spread runs */
    float *hl = malloc(lb + 4);
    const size_t groups = s->batch * s->kv_heads;
    unsigned char *want = malloc(groups + 1);
    ref_slot_t slots[4];
    memset(slots, 0, sizeof slots);
    void *dq_ = NULL, *dk_ = NULL, *dv_ = NULL, *ddo = NULL, *dO_ = NULL, *ddq = NULL, *ddk = NULL, *ddv = NULL;
    float *dl = NULL;
    if (!hq || !hk || !hv || !hdo || !ho || !hdq || !hdk || !hdv || !sdq || !sdk || !sdv || !hl || !want) {
        fprintf(stderr, "%s: out of host memory\n", PROG);
        rc = 2;
        goto out;
    }
    const size_t ngroups = pick_groups(s, gpu, want);
    /* beyond the budget: sampled query rows of the first and last group (O, L and dQ only, each row
     * costing about 3 Nk d), about 16 per group */
    const size_t G = s->heads / s->kv_heads, stride = ngroups ? 0 : (G * s->seq_q / 16 > 1 ? G * s->seq_q / 16 : 1);
    if (!ngroups && groups) want[0] = want[groups - 1] = 1;
    const size_t nsampled = ngroups || !groups ? 0 : (groups > 1 ? 2 : 1) * ((G * s->seq_q + stride - 1) / stride + 1);
    /* the host needs the inputs for the reference, --save-npy and --load-npy; otherwise the GPU generates
     * them in place (the same values: the counter-based generator) */
    const int host_inputs = !gpu || ngroups || o->save_npy || ld;
    if (host_inputs) {
        for (uint64_t i = 0; i < E; i++) dtype_set(hq, dt, (size_t)i, ld ? ld->q[i] : rng_logit(o->seed, 1, i, (float)o->scale));
        for (uint64_t i = 0; i < Ekv; i++) dtype_set(hk, dt, (size_t)i, ld ? ld->k[i] : rng_logit(o->seed, 2, i, (float)o->scale));
        for (uint64_t i = 0; i < Ekv; i++) dtype_set(hv, dt, (size_t)i, ld ? ld->v[i] : rng_logit(o->seed, 3, i, (float)o->scale));
        for (uint64_t i = 0; i < E; i++) dtype_set(hdo, dt, (size_t)i, ld ? ld->dout[i] : rng_logit(o->seed, 4, i, (float)o->scale));
    } else if (nsampled) { /* the GPU generates everything; the host only what the sampled rows read */
        const size_t nkd = s->seq_kv * d, nqd = s->seq_q * d;
        for (size_t g = 0; g < groups; g += (groups > 1 ? groups - 1 : 1)) {
            for (size_t i = g * nkd; i < (g + 1) * nkd; i++) {
                dtype_set(hk, dt, i, rng_logit(o->seed, 2, i, (float)o->scale));
                dtype_set(hv, dt, i, rng_logit(o->seed, 3, i, (float)o->scale));
            }
            const size_t h0 = (g / s->kv_heads) * s->heads + (g % s->kv_heads) * G; /* the group's first query head */
            for (size_t i = h0 * nqd; i < (h0 + G) * nqd; i++) {
                dtype_set(hq, dt, i, rng_logit(o->seed, 1, i, (float)o->scale));
                dtype_set(hdo, dt, i, rng_logit(o->seed, 4, i, (float)o->scale));
            }
        }
    }

    const size_t shq[4] = { s->batch, s->heads, s->seq_q, d }, shkv[4] = { s->batch, s->kv_heads, s->seq_kv, d };
    if (o->save_npy) {
        if (ensure_dir(o->save_npy) || save_arr(o->save_npy, "q", hq, dt, E, shq) ||
            save_arr(o->save_npy, "k", hk, dt, Ekv, shkv) || save_arr(o->save_npy, "v", hv, dt, Ekv, shkv) ||
            save_arr(o->save_npy, "do", hdo, dt, E, shq) || save_meta(o->save_npy, s)) {
            rc = 2;
            goto out;
        }
    }

    size_t free0 = 0, tot = 0;
    double io_meas = 0;
    if (gpu) {
        gpu_mem_info(&free0, &tot);
        if (io_bytes + (double)GPU_MARGIN > (double)free0) {
            fprintf(stderr, "%s: this shape needs %s of device memory for Q, K, V, O, dO, L, dQ, dK, dV; %s are free. "
                            "Choose a smaller shape.\n", PROG, gib(io_bytes + (double)GPU_MARGIN), gib((double)free0));
            rc = 2;
            goto out;
        }
        dq_ = gpu_malloc(qb, "Q"); dk_ = gpu_malloc(kvb, "K"); dv_ = gpu_malloc(kvb, "V");
        ddo = gpu_malloc(qb, "dO"); dO_ = gpu_malloc(qb, "O"); dl = gpu_malloc(lb, "L");
        ddq = gpu_malloc(qb, "dQ"); ddk = gpu_malloc(kvb, "dK"); ddv = gpu_malloc(kvb, "dV");
        size_t free1 = 0;
        gpu_mem_info(&free1, &tot);
        io_meas = (double)free0 - (double)free1; /* the drop of free device memory: allocation granularity included */
        if (host_inputs) {
            gpu_h2d(dq_, hq, qb); gpu_h2d(dk_, hk, kvb); gpu_h2d(dv_, hv, kvb); gpu_h2d(ddo, hdo, qb);
        } else {
            gpu_fill_logits(dq_, dt, (size_t)E, o->seed, 1, (float)o->scale);
            gpu_fill_logits(dk_, dt, (size_t)Ekv, o->seed, 2, (float)o->scale);
            gpu_fill_logits(dv_, dt, (size_t)Ekv, o->seed, 3, (float)o->scale);
            gpu_fill_logits(ddo, dt, (size_t)E, o->seed, 4, (float)o->scale);
        }
        gpu_sync();
    }

    if (ngroups)
        printf("checked: %zu of %zu K/V groups (every row of dQ, dK, dV, O and L in them)\n", ngroups, groups);
    else
        printf("checked: about %zu sampled query rows (O, L, dQ) of the first and last K/V group; dK and dV are not "
               "checked at this size (the fp64 reference of one group is beyond this program's budget)\n", nsampled);
    double base_ms = 0;
    int ran = 0; /* implementations that ran: none is a failure, not a success */
    for (int k = 0; k < BWD_NIMPLS; k++) {
        const bwd_impl_t *im = &BWD_IMPLS[k];
        if (!cli_kernel_selected(o->kernels, im->name)) continue;
        const int row = report_add_row(rep);
        report_set(rep, row, "run_by", "%s", PROG);
        report_set(rep, row, "stage", "%s", im->stage);
        report_set(rep, row, "impl", "%s", im->name);
        report_set(rep, row, "device", "%s", gpu ? "gpu" : "cpu");
        report_set(rep, row, "dtype", "%s", dtype_name(dt));
        report_set(rep, row, "batch", "%zu", s->batch);
        report_set(rep, row, "heads", "%zu", s->heads);
        report_set(rep, row, "kv_heads", "%zu", s->kv_heads);
        report_set(rep, row, "seq", "%zu", s->seq_q);
        report_set(rep, row, "seq_kv", "%zu", s->seq_kv);
        report_set(rep, row, "dim", "%zu", d);
        report_set(rep, row, "causal", "%s", s->causal ? "yes" : "no");
        report_set(rep, row, "seed", "%llu", (unsigned long long)o->seed);
        char why[256] = "";
        if (!bwd_impl_supports(im, s, gpu, why, sizeof why)) {
            report_set(rep, row, "ok", "n/a");
            printf("%s: n/a: %s\n", im->name, why);
            continue;
        }
        report_set(rep, row, "tiles", "%s", bwd_impl_tiles(im, s, gpu));
        ran++;
        const size_t wsb = bwd_impl_ws_bytes(im, s, gpu);
        const double fmodel = bwd_impl_fwd_bytes(im, s, gpu), bmodel = bwd_impl_bwd_bytes(im, s, gpu);
        const double peak = io_bytes + (double)wsb;
        report_set(rep, row, "fwd_model_mb", "%.6g", fmodel / 1e6);
        report_set(rep, row, "fwd_model_bytes", "%.0f", fmodel);
        report_set(rep, row, "model_mb", "%.6g", bmodel / 1e6);
        report_set(rep, row, "model_bytes", "%.0f", bmodel);
        report_set(rep, row, "peak_mb", "%.6g", peak / 1e6);
        report_set(rep, row, "peak_bytes", "%.0f", peak);

        void *ws = NULL;
        size_t fr_ws = 0, t_ws = 0;
        if (gpu) gpu_mem_info(&fr_ws, &t_ws); /* free memory before this implementation's workspace */
        if (wsb) {
            if (gpu) {
                size_t fr = 0, t2 = 0;
                gpu_mem_info(&fr, &t2);
                ws = (double)wsb + (double)GPU_MARGIN <= (double)fr ? gpu_try_malloc(wsb) : NULL;
            } else {
                ws = (host_bytes() <= 0 || peak * 2 <= 0.75 * host_bytes()) ? malloc(wsb) : NULL;
            }
            if (!ws) {
                fprintf(stderr, "%s: %s needs %s of %s memory for its workspace: does not fit. The others still run.\n",
                        PROG, im->name, gib((double)wsb), gpu ? "device" : "host");
                report_set(rep, row, "ok", "does not fit");
                continue;
            }
        }
        if (gpu) {
            size_t fr = 0, t2 = 0;
            gpu_mem_info(&fr, &t2);
            const double pm = io_meas + (double)fr_ws - (double)fr; /* arrays + this workspace, measured */
            report_set(rep, row, "peak_meas_mb", "%.6g", pm / 1e6);
            report_set(rep, row, "peak_meas_bytes", "%.0f", pm);
        }

        /* the forward: O and L (and the standard's P) */
        ledger_t lgf = { 0 }, lgb = { 0 };
        bwd_io_t io;
        job_arg_t ja = { im, s, gpu, 0, 0, dq_, dk_, dv_, ddo, dO_, ddq, ddk, ddv, ws, dl, &io };
        int fwd_ok = 1;
        if (gpu) {
            gpu_poison(dO_, qb);
            gpu_poison(dl, lb);
            if (bwd_gpu_forward(s, dq_, dk_, dv_, dO_, dl)) fwd_ok = 0;
            gpu_sync();
            gpu_d2h(ho, dO_, qb);
            gpu_d2h(hl, dl, lb);
            double rd = 0, wr = 0; /* the forward's DRAM bytes (a second run: the steady state hwcounters.h asks for) */
            if (hwc_available() && hwc_begin() == 0) {
                run_fwd_gpu(&ja);
                if (hwc_end(&rd, &wr) == 0) {
                    report_set(rep, row, "fwd_count_mb", "%.6g", (rd + wr) / 1e6);
                    report_set(rep, row, "fwd_count_bytes", "%.0f", rd + wr);
                }
            }
        } else {
            io.q = hbm_wrap(&lgf, "Q", hq, (size_t)E, dt);
            io.k = hbm_wrap(&lgf, "K", hk, (size_t)Ekv, dt);
            io.v = hbm_wrap(&lgf, "V", hv, (size_t)Ekv, dt);
            io.o = hbm_wrap(&lgf, "O", ho, (size_t)E, dt);
            io.lse = hbm_wrap(&lgf, "L", hl, (size_t)R, DT_F32);
            io.dout = hbm_wrap(&lgf, "dO", hdo, (size_t)E, dt);
            io.dq = hbm_wrap(&lgf, "dQ", hdq, (size_t)E, dt);
            io.dk = hbm_wrap(&lgf, "dK", hdk, (size_t)Ekv, dt);
            io.dv = hbm_wrap(&lgf, "dV", hdv, (size_t)Ekv, dt);
            memset(ho, 0xff, qb);
            memset(hl, 0xff, lb);
            if (im->cpu_fwd(s, &io, ws)) fwd_ok = 0;
            report_set(rep, row, "fwd_count_mb", "%.6g", (double)ledger_total(&lgf) / 1e6);
            report_set(rep, row, "fwd_count_bytes", "%llu", (unsigned long long)ledger_total(&lgf));
            /* the backward's arrays count in their own ledger */
            hbm_t *arr[] = { &io.q, &io.k, &io.v, &io.o, &io.lse, &io.dout, &io.dq, &io.dk, &io.dv };
            for (size_t x = 0; x < sizeof arr / sizeof *arr; x++) arr[x]->lg = &lgb;
        }
        const unsigned rnd = bwd_impl_rounding(im, s, gpu), frnd = bwd_impl_fwd_rounding(im, s, gpu);
        const bwd_ref_t *ref = groups ? reference(slots, 4, s, hq, hk, hv, hdo, rnd, frnd, want, stride) : NULL;
        if (groups && !ref) {
            fprintf(stderr, "%s: out of host memory for the reference\n", PROG);
            rc = 2;
            if (gpu) gpu_free(ws); else free(ws);
            goto out;
        }
        size_t frows = 0;
        if (!fwd_ok) printf("%s: the forward declined this shape\n", im->name);
        else if (ref && !check_forward(ref, ho, hl, frnd, &frows)) {
            printf("%s: the forward's O or L is outside its tolerance\n", im->name);
            fwd_ok = 0;
        }

        /* the checked backward: dQ, dK, dV (and the GPU workspace) poisoned */
        const size_t onchip0 = (size_t)lgb.sram_peak;
        (void)onchip0;
        if (gpu) {
            gpu_poison(ddq, qb); gpu_poison(ddk, kvb); gpu_poison(ddv, kvb);
            if (ws) gpu_poison(ws, wsb);
            run_job(&ja);
            gpu_sync();
            gpu_d2h(hdq, ddq, qb); gpu_d2h(hdk, ddk, kvb); gpu_d2h(hdv, ddv, kvb);
        } else {
            memset(hdq, 0xff, qb); memset(hdk, 0xff, kvb); memset(hdv, 0xff, kvb);
            run_job(&ja);
            report_set(rep, row, "ledger_mb", "%.6g", (double)ledger_total(&lgb) / 1e6);
            report_set(rep, row, "ledger_bytes", "%llu", (unsigned long long)ledger_total(&lgb));
            report_set(rep, row, "onchip_bytes", "%llu", (unsigned long long)lgb.sram_peak);
        }
        int ok = fwd_ok && ja.rc == 0;
        if (ja.rc) printf("%s: the backward returned an error\n", im->name);
        bwd_check_t c[3];
        if (ref) {
            bwd_check_all(ref, hdq, hdk, hdv, dt, c);
            for (int g = 0; g < 3; g++) /* sampled rows: dK and dV have no checked row, and say so */
                if (c[g].rows || g == 0) ok &= bwd_check_ok(&c[g]);
            const char *keys[3][2] = { { "ratio_dq", "err_dq" }, { "ratio_dk", "err_dk" }, { "ratio_dv", "err_dv" } };
            for (int g = 0; g < 3; g++) {
                if (c[g].rows) {
                    report_set(rep, row, keys[g][0], "%.3g", c[g].worst_ratio);
                    report_set(rep, row, keys[g][1], "%.3e", c[g].max_err);
                }
                if (c[g].excused)
                    printf("%s: %s: %zu of %zu rows not judged: their bound exceeds %g or half the row (dS = P (dP - D) "
                           "cancels below the rounding of a %s O)\n", im->name, g == 0 ? "dQ" : g == 1 ? "dK" : "dV",
                           c[g].excused, c[g].rows, CHECK_TOL_CAP, dtype_name(dt));
                if (c[g].unresolved)
                    printf("%s: %s: %zu rows have a tolerance the check cannot resolve (a failure, not a pass)\n",
                           im->name, g == 0 ? "dQ" : g == 1 ? "dK" : "dV", c[g].unresolved);
            }
        }
        /* the spread across runs (GPU): the same input, the same kernel */
        if (gpu) {
            size_t ndiff = 0;
            double worst = 0;
            for (int t = 0; t < SPREAD_RUNS; t++) {
                run_job(&ja);
                gpu_sync();
                gpu_d2h(sdq, ddq, qb); gpu_d2h(sdk, ddk, kvb); gpu_d2h(sdv, ddv, kvb);
                const void *a3[3] = { hdq, hdk, hdv }, *b3[3] = { sdq, sdk, sdv };
                const uint64_t n3[3] = { E, Ekv, Ekv };
                for (int g = 0; g < 3; g++) {
                    if (!memcmp(a3[g], b3[g], (size_t)n3[g] * es)) continue;
                    double mx = 0, df = 0;
                    for (uint64_t x = 0; x < n3[g]; x++) {
                        const double u = dtype_get(a3[g], dt, (size_t)x), w = dtype_get(b3[g], dt, (size_t)x);
                        if (u != w) ndiff++;
                        if (fabs(u) > mx) mx = fabs(u);
                        if (fabs(u - w) > df) df = fabs(u - w);
                    }
                    if (mx > 0 && df / mx > worst) worst = df / mx;
                }
            }
            if (!ndiff) report_set(rep, row, "spread", "0 (bitwise)");
            else report_set(rep, row, "spread", "%.2g max/max", worst);
            if (ndiff)
                printf("%s: %zu elements differ across %d repeated runs; largest difference %.3g of the gradient's largest "
                       "element%s\n", im->name, ndiff, SPREAD_RUNS, worst, im->deterministic ? " (DETERMINISTIC kernel: a failure)" : "");
            if (ndiff && im->deterministic) ok = 0;
        } else {
            report_set(rep, row, "spread", "-");
        }

        bench_job_t jb = { gpu, run_job, &ja, gpu ? ddq : hdq, qb, o->warmup, o->iters };
        bench_meas_t mb;
        bench_measure(&jb, &mb);
        if (base_ms == 0) base_ms = mb.ms;
        report_set(rep, row, "time_ms", "%.4f", mb.ms);
        report_set(rep, row, "tflops", "%.3g", bwd_flops(s) / (mb.ms * 1e-3) / 1e12);
        report_set(rep, row, "measured_mb", "%s", mb.measured);
        report_set(rep, row, "measured_bytes", "%s", mb.measured_raw);
        if (gpu) {
            ja.fwd_too = 1; /* timed only: its bytes are the two columns' sum */
            const double fb = gpu_time_median_ms(run_job, &ja, o->warmup, o->iters, 1);
            ja.fwd_too = 0;
            report_set(rep, row, "fwdbwd_ms", "%.4f", fb);
        }
        if (o->save_npy && ja.rc == 0) {
            if (save_arr(o->save_npy, fmt("dq_%s", im->name), hdq, dt, E, shq) ||
                save_arr(o->save_npy, fmt("dk_%s", im->name), hdk, dt, Ekv, shkv) ||
                save_arr(o->save_npy, fmt("dv_%s", im->name), hdv, dt, Ekv, shkv)) {
                rc = 2;
                if (gpu) gpu_free(ws); else free(ws);
                goto out;
            }
        }
        const size_t exc = ref ? c[0].excused + c[1].excused + c[2].excused : 0;
        report_set(rep, row, "ok", "%s", !ref ? (ja.rc ? "NO: error" : "unchecked") : !ok ? "NO"
                                          : exc ? fmt("yes (%zu exc.)", exc) : stride ? "yes (dQ rows)" : "yes");
        if (ref && !ok) failed = 1;
        if (ja.rc) failed = 1;
        if (gpu) gpu_free(ws); else free(ws);
    }
    report_print(rep, stdout);
    printf("\n");
    rc = failed;
    if (!ran) {
        fprintf(stderr, "%s: no implementation ran on this shape and device (see the n/a reasons above)\n", PROG);
        rc = 2;
    }
out:
    for (int i = 0; i < 4; i++)
        if (slots[i].have) bwd_ref_free(&slots[i].r);
    if (gpu) {
        gpu_free(dq_); gpu_free(dk_); gpu_free(dv_); gpu_free(ddo); gpu_free(dO_); gpu_free(dl);
        gpu_free(ddq); gpu_free(ddk); gpu_free(ddv);
    }
    free(hq); free(hk); free(hv); free(hdo); free(ho); free(hdq); free(hdk); free(hdv);
    free(sdq); free(sdk); free(sdv); free(hl); free(want);
    return rc;
}

static void free_loaded(loaded_t *ld)
{
    free(ld->q); free(ld->k); free(ld->v); free(ld->dout);
    memset(ld, 0, sizeof *ld);
}

static int load_inputs(const char *dir, loaded_t *ld, size_t *shq, size_t *shkv)
{
    char path[4096];
    size_t shk[NPY_MAX_DIMS], shv[NPY_MAX_DIMS], shd[NPY_MAX_DIMS];
    memset(ld, 0, sizeof *ld);
    snprintf(path, sizeof path, "%s/q.npy", dir);
    if (npy_read_f32(path, 4, &ld->q, shq)) goto bad;
    snprintf(path, sizeof path, "%s/k.npy", dir);
    if (npy_read_f32(path, 4, &ld->k, shk)) goto bad;
    snprintf(path, sizeof path, "%s/v.npy", dir);
    if (npy_read_f32(path, 4, &ld->v, shv)) goto bad;
    snprintf(path, sizeof path, "%s/do.npy", dir);
    if (npy_read_f32(path, 4, &ld->dout, shd)) goto bad;
    if (memcmp(shk, shv, 4 * sizeof *shk) || memcmp(shq, shd, 4 * sizeof *shq) || shq[0] != shk[0] || shq[3] != shk[3]) {
        fprintf(stderr, "%s: --load-npy: shapes disagree: q [%zu,%zu,%zu,%zu], k [%zu,%zu,%zu,%zu], v [%zu,%zu,%zu,%zu], "
                        "do [%zu,%zu,%zu,%zu]; expected q, do [B,H,Nq,d] and k, v [B,Hkv,Nk,d]\n",
                PROG, shq[0], shq[1], shq[2], shq[3], shk[0], shk[1], shk[2], shk[3], shv[0], shv[1], shv[2], shv[3],
                shd[0], shd[1], shd[2], shd[3]);
        goto bad;
    }
    for (int i = 0; i < 4; i++) shkv[i] = shk[i];
    return 0;
bad:
    free_loaded(ld);
    return 2;
}

int backward_stage_main(int argc, char **argv)
{
    const char *extra =
        "implementations: bwd-standard, bwd-fa2 (CPU and GPU), bwd-tc-atomic, bwd-tc-det, bwd-tc-k32 (GPU); pick with --kernel\n"
        "head dimension: any d on the CPU; the GPU kernels say which they take\n"
        "defaults: GPU B=4 H=32 N=4096 d=64 (B N = 16384 tokens, H d = 2048); CPU B=1 H=2 N=128 d=64\n"
        "--sweep: GPU N = 1024 ... 16384 at B = 16384/N, H = 2048/d; CPU N = 64 ... 512 at B = 512/N, H = 2\n"
        "--load-npy DIR reads q, k, v and do (dO) .npy files; --save-npy DIR writes them and dq_<impl>,\n"
        "dk_<impl>, dv_<impl> for each implementation\n";
    cli_spec_t spec = { PROG, SUMMARY, CLI_ATTENTION, extra };
    opts_t o;
    int rc = PARSE(spec, argc, argv, o);
    if (rc == 1) return 0;
    if (rc) return rc;
    if (o.csv && report_csv_check(o.csv, COLS, NCOLS, stderr)) return 2;
    if (o.sweep && (o.given & (GIVEN_BATCH | GIVEN_SEQ | GIVEN_SEQ_Q | GIVEN_SEQ_KV))) {
        fprintf(stderr, "%s: --sweep sets the lengths and B itself; --batch, --seq, --seq-q, --seq-kv cannot be combined "
                        "with it\n", PROG);
        return 2;
    }
    if (check_kernels(o.kernels)) return 2;
    if (cli_resolve_device(PROG, &o, stderr)) return 2;
    const int gpu = o.device == DEV_GPU;
    if (!(o.given & GIVEN_ITERS)) o.iters = gpu ? 20 : 3;
    if (!(o.given & GIVEN_WARMUP)) o.warmup = gpu ? 3 : 1;
    size_t d = (o.given & GIVEN_DIM) ? (size_t)o.dim : 64;
    size_t B = gpu ? 4 : 1, H = gpu ? 2048 / (d < 2048 ? d : 2048) : 2, N = gpu ? 4096 : 128;
    if (H == 0) H = 1;
    if (o.given & GIVEN_BATCH) B = (size_t)o.batch;
    if (o.given & GIVEN_HEADS) H = (size_t)o.heads;
    if (o.given & GIVEN_SEQ) N = (size_t)o.seq;
    size_t Nq = (o.given & GIVEN_SEQ_Q) ? (size_t)o.seq_q : N, Nk = (o.given & GIVEN_SEQ_KV) ? (size_t)o.seq_kv : N;
    size_t Hkv = OPT_GIVEN(o, "kv-heads") ? (size_t)OPT_VALUE(o, "kv-heads") : H;
    loaded_t ld = { 0 }, *ldp = NULL;
    if (o.load_npy) {
        if ((o.given & (GIVEN_BATCH | GIVEN_HEADS | GIVEN_SEQ | GIVEN_SEQ_Q | GIVEN_SEQ_KV | GIVEN_DIM)) ||
            OPT_GIVEN(o, "kv-heads") || o.sweep) {
            fprintf(stderr, "%s: --batch/--heads/--kv-heads/--seq/--seq-q/--seq-kv/--dim/--sweep cannot be combined with "
                            "--load-npy: the files give the shape\n", PROG);
            return 2;
        }
        size_t shq[NPY_MAX_DIMS], shkv[NPY_MAX_DIMS];
        if (load_inputs(o.load_npy, &ld, shq, shkv)) return 2;
        B = shq[0]; H = shq[1]; Nq = shq[2]; d = shq[3]; Hkv = shkv[1]; Nk = shkv[2];
        ldp = &ld;
    }
    rc = 2;
    if (!B || !H || !Hkv || !Nq || !Nk || !d) {
        fprintf(stderr, "%s: every dimension must be at least 1\n", PROG);
        goto done;
    }
    if (H % Hkv) {
        fprintf(stderr, "%s: --kv-heads %zu must divide --heads %zu (each K/V head serves a whole group)\n", PROG, Hkv, H);
        goto done;
    }
    if (d > 1024) {
        fprintf(stderr, "%s: head dimension d = %zu is beyond this program's 1024\n", PROG, d);
        goto done;
    }
    if ((double)B * (double)H * (double)(Nq > Nk ? Nq : Nk) * (double)d > 1099511627776.0) {
        fprintf(stderr, "%s: B x H x N x d is too large (more than 2^40 elements per array)\n", PROG);
        goto done;
    }
    env_stamp_t env;
    print_run_header(PROG, SUMMARY, gpu, &env);
    printf("dtype %s, seed %llu, Q, K, V, dO = %g * U[-1,1)%s, softmax scale 1/sqrt(d), median of %d runs after %d "
           "warm-up, commit %s, %s\n",
           dtype_name(o.dtype), (unsigned long long)o.seed, o.scale, o.load_npy ? " (replaced by --load-npy)" : "",
           o.iters, o.warmup, env.commit, env.date);
    if (gpu && !hwc_available()) printf("HBM measured: n/a (%s)\n", hwc_reason());
    printf("TFLOP/s counts the backward as 2.5 x the forward's 4 d per visible pair (FlashAttention's convention); "
           "bytes moved (read + written): model (closed form), CPU ledger or GPU counters; peak = Q, K, V, O, dO, L, "
           "dQ, dK, dV and the workspace (the standard's N x N arrays).%s\n\n",
           o.causal ? " Causal masks align bottom-right." : "");
    attn_shape_t shapes[8];
    int nshapes = 0;
    if (o.sweep) {
        const size_t tokens = gpu ? 16384 : 512, h = (o.given & GIVEN_HEADS) ? H : (gpu ? (2048 / d ? 2048 / d : 1) : 2);
        for (size_t n = gpu ? 1024 : 64; n <= tokens && nshapes < 8; n *= 2)
            attn_shape_init(&shapes[nshapes++], tokens / n, h, OPT_GIVEN(o, "kv-heads") ? Hkv : h, n, n, d, o.causal,
                            o.dtype);
    } else {
        attn_shape_init(&shapes[nshapes++], B, H, Hkv, Nq, Nk, d, o.causal, o.dtype);
    }
    for (int i = 0; i < nshapes; i++) {
        shapes[i].tune.br = (size_t)OPT_VALUE(o, "br");
        shapes[i].tune.bc = (size_t)OPT_VALUE(o, "bc");
        shapes[i].tune.sram = (size_t)OPT_VALUE(o, "sram");
        if (shapes[i].heads % shapes[i].kv_heads) {
            fprintf(stderr, "%s: --kv-heads must divide the heads\n", PROG);
            goto done;
        }
    }
    if (!gpu && (OPT_GIVEN(o, "br") || OPT_GIVEN(o, "bc") || OPT_GIVEN(o, "sram"))) { /* tiles that cannot fit: bad input, before anything runs */
        size_t br, bc;
        char why[256];
        if (bwd_fa2_tiles(&shapes[0], &br, &bc, why, sizeof why)) {
            fprintf(stderr, "%s: %s\n", PROG, why);
            goto done;
        }
    }
    ctx_t cx = { &o, gpu };
    int worst = 0;
    for (int i = 0; i < nshapes; i++) {
        report_t rep;
        report_init(&rep, COLS, NCOLS);
        rc = run_shape(&cx, &shapes[i], ldp, &rep);
        if (rc == 2) goto done;
        if (rc > worst) worst = rc;
        if (o.csv && report_csv_append(&rep, o.csv, &env)) { rc = 2; goto done; }
    }
    if (worst) fprintf(stderr, "%s: an implementation gave a wrong result (see the ok column)\n", PROG);
    rc = worst;
done:
    free_loaded(&ld);
    return rc;
}
