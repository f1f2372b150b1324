/* Stage 08: the backward pass. Every implementation of the list
 * (backward_impls.c) on odd shapes, causal or not, GQA, lengths 1 and 0, in
 * every storage type, against the fp64 reference with its derived tolerance
 * per gradient row (bwd_ref.c); the reference itself against central finite
 * differences of the fp64 forward; the CPU ledger against the closed forms;
 * deliberately broken backwards (wrong D, missing scale, dK summed over the
 * wrong heads, dV from unnormalised P) that the check must reject; the GPU
 * kernels (skipped without a GPU; STF_TEST_SMALL=1 shrinks them for
 * compute-sanitizer), the deterministic one bit-identical across runs; and
 * the program's exit status on bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../stages/08_backward/backward.h"
#include "attn_harness.h"
#include "gpu.h"
#include "harness.h"
#include "rng.h"

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }
/* STF_TEST_SMALL=2: one shape, one dtype, d = 64 (racecheck instruments every shared-memory access) */
static int tiny_mode(void) { return small_mode() && !strcmp(getenv("STF_TEST_SMALL"), "2"); }

typedef struct { size_t B, H, Hkv, Nq, Nk, d; int causal; } shape_t;

/* odd lengths, one key, one query, GQA, causal with Nq > Nk (rows that see no key) and Nq < Nk, odd d */
static const shape_t SHAPES[] = {
    { 1, 1, 1, 1, 1, 16, 0 },  { 1, 1, 1, 1, 1, 16, 1 },   { 1, 2, 2, 17, 17, 8, 1 }, { 2, 4, 2, 33, 65, 16, 0 },
    { 2, 4, 2, 33, 65, 16, 1 }, { 1, 2, 1, 65, 33, 32, 1 }, { 1, 2, 2, 70, 70, 64, 1 }, { 1, 3, 1, 20, 30, 5, 0 },
    { 1, 1, 1, 50, 7, 3, 1 },  { 1, 2, 1, 1, 90, 24, 1 },
};
#define NSHAPES (sizeof SHAPES / sizeof *SHAPES)
static const dtype_t DTYPES[] = { DT_F32, DT_F16, DT_BF16 };

typedef struct {
    attn_shape_t s;
    void *q, *k, *v, *dout;      /* inputs, host, dt */
    void *o, *dq, *dk, *dv;      /* outputs, host, dt */
    float *lse;
    uint64_t fwd_bytes, bwd_bytes, onchip;
} prob_t;

static void *rand_arr(dtype_t dt, size_t n, uint32_t stream)
{
    void *x = malloc(n * dtype_size(dt) + 1);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) dtype_set(x, dt, i, rng_logit(test_seed(), stream, i, 1.0f));
    return x;
}

static void prob_make(prob_t *p, const shape_t *sh, dtype_t dt)
{
    memset(p, 0, sizeof *p);
    attn_shape_init(&p->s, sh->B, sh->H, sh->Hkv, sh->Nq, sh->Nk, sh->d, sh->causal, dt);
    const size_t E = (size_t)attn_q_elems(&p->s), Ekv = (size_t)attn_kv_elems(&p->s), es = dtype_size(dt);
    p->q = rand_arr(dt, E, 11);
    p->k = rand_arr(dt, Ekv, 12);
    p->v = rand_arr(dt, Ekv, 13);
    p->dout = rand_arr(dt, E, 14);
    p->o = malloc(E * es + 1);
    p->dq = malloc(E * es + 1);
    p->dk = malloc(Ekv * es + 1);
    p->dv = malloc(Ekv * es + 1);
    p->lse = malloc((size_t)attn_rows(&p->s) * 4 + 4);
    assert_true(p->o && p->dq && p->dk && p->dv && p->lse);
}

static void prob_free(prob_t *p)
{
    free(p->q); free(p->k); free(p->v); free(p->dout); free(p->o); free(p->dq); free(p->dk); free(p->dv); free(p->lse);
}

/* The CPU implementation: forward then backward, outputs poisoned first,
 * each through its own ledger. */
static int run_cpu(const bwd_impl_t *im, prob_t *p)
{
    const attn_shape_t *s = &p->s;
    const dtype_t dt = s->dt;
    const size_t E = (size_t)attn_q_elems(s), Ekv = (size_t)attn_kv_elems(s), es = dtype_size(dt), R = (size_t)attn_rows(s);
    const size_t wsb = bwd_impl_ws_bytes(im, s, 0);
    void *ws = malloc(wsb + 1);
    assert_non_null(ws);
    memset(ws, 0xff, wsb);
    memset(p->o, 0xff, E * es); memset(p->lse, 0xff, R * 4);
    memset(p->dq, 0xff, E * es); memset(p->dk, 0xff, Ekv * es); memset(p->dv, 0xff, Ekv * es);
    ledger_t lf = { 0 }, lb = { 0 };
    bwd_io_t io = {
        hbm_wrap(&lf, "Q", p->q, E, dt), hbm_wrap(&lf, "K", p->k, Ekv, dt), hbm_wrap(&lf, "V", p->v, Ekv, dt),
        hbm_wrap(&lf, "O", p->o, E, dt), hbm_wrap(&lf, "L", p->lse, R, DT_F32), hbm_wrap(&lf, "dO", p->dout, E, dt),
        hbm_wrap(&lf, "dQ", p->dq, E, dt), hbm_wrap(&lf, "dK", p->dk, Ekv, dt), hbm_wrap(&lf, "dV", p->dv, Ekv, dt),
    };
    int rc = im->cpu_fwd(s, &io, ws);
    p->fwd_bytes = ledger_total(&lf);
    hbm_t *arr[] = { &io.q, &io.k, &io.v, &io.o, &io.lse, &io.dout, &io.dq, &io.dk, &io.dv };
    for (size_t x = 0; x < sizeof arr / sizeof *arr; x++) arr[x]->lg = &lb;
    if (!rc) rc = im->cpu_bwd(s, &io, ws);
    p->bwd_bytes = ledger_total(&lb);
    p->onchip = lb.sram_peak;
    free(ws);
    return rc;
}

/* The GPU kernel: the forward (O, L), then the backward from poisoned
 * outputs and workspace; results back on the host. */
static int run_gpu(const bwd_impl_t *im, prob_t *p)
{
    const attn_shape_t *s = &p->s;
    const size_t es = dtype_size(s->dt), qb = (size_t)attn_q_elems(s) * es, kvb = (size_t)attn_kv_elems(s) * es;
    const size_t lb = (size_t)attn_rows(s) * 4, wsb = bwd_impl_ws_bytes(im, s, 1);
    void *q = gpu_malloc(qb + 4, "q"), *k = gpu_malloc(kvb + 4, "k"), *v = gpu_malloc(kvb + 4, "v");
    void *dout = gpu_malloc(qb + 4, "dO"), *o = gpu_malloc(qb + 4, "o"), *dq = gpu_malloc(qb + 4, "dq");
    void *dk = gpu_malloc(kvb + 4, "dk"), *dv = gpu_malloc(kvb + 4, "dv"), *ws = gpu_malloc(wsb + 4, "ws");
    float *l = gpu_malloc(lb + 4, "L");
    gpu_h2d(q, p->q, qb); gpu_h2d(k, p->k, kvb); gpu_h2d(v, p->v, kvb); gpu_h2d(dout, p->dout, qb);
    gpu_poison(o, qb + 4); gpu_poison(l, lb + 4); gpu_poison(dq, qb + 4); gpu_poison(dk, kvb + 4); gpu_poison(dv, kvb + 4);
    gpu_poison(ws, wsb + 4);
    int rc = bwd_gpu_forward(s, q, k, v, o, l);
    if (!rc) rc = bwd_gpu_launch(im->gpu_kernel, s, q, k, v, o, dout, l, dq, dk, dv, ws);
    gpu_sync();
    gpu_d2h(p->o, o, qb); gpu_d2h(p->lse, l, lb); gpu_d2h(p->dq, dq, qb); gpu_d2h(p->dk, dk, kvb); gpu_d2h(p->dv, dv, kvb);
    gpu_free(q); gpu_free(k); gpu_free(v); gpu_free(dout); gpu_free(o); gpu_free(dq); gpu_free(dk); gpu_free(dv);
    gpu_free(ws); gpu_free(l);
    return rc;
}

/* Checks O, L and the three gradients; returns the worst err/tol (> 1 or inf: fails). */
static double check_prob(const prob_t *p, unsigned rnd, unsigned frnd, bwd_check_t c[3])
{
    bwd_ref_t r;
    assert_int_equal(bwd_ref_compute(&r, &p->s, p->q, p->k, p->v, p->dout, rnd, frnd), 0);
    bwd_check_all(&r, p->dq, p->dk, p->dv, p->s.dt, c);
    double worst = 0;
    for (int g = 0; g < 3; g++) {
        const double w = bwd_check_ok(&c[g]) || c[g].rows == 0 ? (c[g].rows ? c[g].worst_ratio : 0) : INFINITY;
        if (!(w <= worst)) worst = w;
        if (c[g].nonfinite) worst = INFINITY;
    }
    /* the forward: O rows and L */
    attn_check_t oc;
    attn_check_init(&oc);
    const size_t d = p->s.dim, es = dtype_size(p->s.dt);
    for (uint64_t x = 0; x < attn_rows(&p->s); x++) {
        attn_check_row(&oc, (const char *)p->o + x * d * es, p->s.dt, r.o + x * d, &r.ost[x], d, frnd);
        const double L = p->lse[x], R = r.lse[x];
        if (isinf(R) ? L != R : !(fabs(L - R) <= r.lse_tol[x])) worst = INFINITY;
    }
    if (attn_rows(&p->s) && !attn_check_ok(&oc)) worst = INFINITY;
    bwd_ref_free(&r);
    return worst;
}

static void expect_pass(const bwd_impl_t *im, int gpu, prob_t *p, const char *what)
{
    const int rc = gpu ? run_gpu(im, p) : run_cpu(im, p);
    assert_int_equal(rc, 0);
    bwd_check_t c[3];
    const double w = check_prob(p, bwd_impl_rounding(im, &p->s, gpu), bwd_impl_fwd_rounding(im, &p->s, gpu), c);
    if (!(w <= 1.0))
        print_message("%s %s %s B=%zu H=%zu/%zu Nq=%zu Nk=%zu d=%zu causal=%d %s: dQ %.3g dK %.3g dV %.3g (err/tol; "
                      "unresolved %zu %zu %zu, non-finite %zu %zu %zu)\n",
                      gpu ? "gpu" : "cpu", im->name, what, p->s.batch, p->s.heads, p->s.kv_heads, p->s.seq_q, p->s.seq_kv,
                      p->s.dim, p->s.causal, dtype_name(p->s.dt), c[0].worst_ratio, c[1].worst_ratio, c[2].worst_ratio,
                      c[0].unresolved, c[1].unresolved, c[2].unresolved, c[0].nonfinite, c[1].nonfinite, c[2].nonfinite);
    assert_true(w <= 1.0);
}

/* ---- CPU */

static void test_cpu_shapes(void **state)
{
    (void)state;
    for (int k = 0; k < BWD_NIMPLS; k++) {
        const bwd_impl_t *im = &BWD_IMPLS[k];
        if (!im->cpu_bwd) continue;
        for (size_t t = 0; t < sizeof DTYPES / sizeof *DTYPES; t++)
            for (size_t i = 0; i < NSHAPES; i++) {
                prob_t p;
                prob_make(&p, &SHAPES[i], DTYPES[t]);
                expect_pass(im, 0, &p, "shape");
                prob_free(&p);
            }
    }
}

static void test_cpu_tiles(void **state)
{
    (void)state;
    const bwd_impl_t *im = bwd_impl_find("bwd-fa2");
    assert_non_null(im);
    const size_t tiles[][3] = { { 7, 13, 0 }, { 1, 1, 0 }, { 200, 300, 0 }, { 0, 0, 20000 }, { 16, 0, 0 } };
    const shape_t sh = { 1, 4, 2, 45, 37, 16, 1 };
    for (size_t t = 0; t < sizeof tiles / sizeof *tiles; t++)
        for (int causal = 0; causal < 2; causal++) {
            shape_t x = sh;
            x.causal = causal;
            prob_t p;
            prob_make(&p, &x, DT_F32);
            p.s.tune.br = tiles[t][0];
            p.s.tune.bc = tiles[t][1];
            p.s.tune.sram = tiles[t][2];
            expect_pass(im, 0, &p, "tiles");
            size_t br, bc;
            char why[256];
            assert_int_equal(bwd_fa2_tiles(&p.s, &br, &bc, why, sizeof why), 0);
            assert_true(p.onchip <= bwd_fa2_onchip_bytes(br, bc, p.s.dim));
            if (tiles[t][2]) assert_true(p.onchip <= tiles[t][2]);
            prob_free(&p);
        }
    /* a budget that holds no tile: declined by supports(), and the implementation refuses */
    prob_t p;
    prob_make(&p, &sh, DT_F32);
    p.s.tune.sram = 100;
    char why[256];
    assert_int_equal(bwd_impl_supports(im, &p.s, 0, why, sizeof why), 0);
    assert_int_not_equal(run_cpu(im, &p), 0);
    prob_free(&p);
}

/* The ledger equals the closed forms, and the closed forms equal the
 * header's formula where it is simple (not causal). */
static void test_ledger_model(void **state)
{
    (void)state;
    for (int k = 0; k < BWD_NIMPLS; k++) {
        const bwd_impl_t *im = &BWD_IMPLS[k];
        if (!im->cpu_bwd) continue;
        for (size_t t = 0; t < 2; t++)
            for (size_t i = 0; i < NSHAPES; i++) {
                prob_t p;
                prob_make(&p, &SHAPES[i], t ? DT_BF16 : DT_F32);
                if (i % 3 == 1) { p.s.tune.br = 7; p.s.tune.bc = 5; }
                assert_int_equal(run_cpu(im, &p), 0);
                assert_true((double)p.fwd_bytes == bwd_impl_fwd_bytes(im, &p.s, 0));
                assert_true((double)p.bwd_bytes == bwd_impl_bwd_bytes(im, &p.s, 0));
                prob_free(&p);
            }
    }
    /* FA2, not causal: es (2 Nq d G) + 4 Nq G + 4 Nq d G + es 4 Nk d + Tc G Nq (2 es d + 8 + 8 d) + G Nq d (4 + es), per group */
    attn_shape_t s;
    attn_shape_init(&s, 2, 6, 2, 100, 70, 16, 0, DT_F16);
    const double G = 3, Nq = 100, Nk = 70, d = 16, es = 2, Tc = 2; /* Bc = 64 */
    const double want = 4 * (es * 2 * Nq * d * G + 4 * Nq * G + 4 * Nq * d * G + es * 4 * Nk * d +
                             Tc * G * Nq * (2 * es * d + 8 + 8 * d) + G * Nq * d * (4 + es));
    assert_true(bwd_fa2_bwd_bytes(&s, 64, 64) == want);
    /* the standard one: es (6E + 2E' + 2Ekv) + (8 + 5 es) nn + 8R */
    const double E = 2 * 6 * Nq * d, Ep = 2 * 6 * Nk * d, Ekv = 2 * 2 * Nk * d, nn = 2 * 6 * Nq * Nk, R = 2 * 6 * Nq;
    assert_true(bwd_standard_bwd_bytes(&s) == es * (6 * E + 2 * Ep + 2 * Ekv) + (8 + 5 * es) * nn + 8 * R);
}

/* Nq = 0 or Nk = 0: nothing to attend; every written gradient is 0. */
static void test_lengths_zero(void **state)
{
    (void)state;
    const shape_t zs[] = { { 1, 2, 1, 0, 5, 8, 0 }, { 1, 2, 1, 5, 0, 8, 0 }, { 1, 2, 1, 5, 0, 8, 1 }, { 1, 1, 1, 0, 0, 4, 0 } };
    for (int k = 0; k < BWD_NIMPLS; k++) {
        const bwd_impl_t *im = &BWD_IMPLS[k];
        if (!im->cpu_bwd) continue;
        for (size_t i = 0; i < sizeof zs / sizeof *zs; i++) {
            prob_t p;
            prob_make(&p, &zs[i], DT_F32);
            assert_int_equal(run_cpu(im, &p), 0);
            for (uint64_t x = 0; x < attn_q_elems(&p.s); x++) assert_true(((float *)p.dq)[x] == 0.0f);
            for (uint64_t x = 0; x < attn_kv_elems(&p.s); x++)
                assert_true(((float *)p.dk)[x] == 0.0f && ((float *)p.dv)[x] == 0.0f);
            for (uint64_t x = 0; x < attn_rows(&p.s); x++) assert_true(p.lse[x] == -INFINITY);
            prob_free(&p);
        }
    }
}

/* The reference's gradients against central differences of the fp64 loss
 * f = sum dO * O, in fp32 inputs perturbed by h = 2^-10 (x +- h exact). */
static void test_finite_differences(void **state)
{
    (void)state;
    const shape_t shs[] = { { 1, 2, 1, 3, 4, 3, 0 }, { 1, 2, 1, 3, 4, 3, 1 }, { 2, 2, 2, 4, 2, 5, 1 } };
    for (size_t i = 0; i < sizeof shs / sizeof *shs; i++) {
        prob_t p;
        prob_make(&p, &shs[i], DT_F32);
        bwd_ref_t r;
        assert_int_equal(bwd_ref_compute(&r, &p.s, p.q, p.k, p.v, p.dout, 0, 0), 0);
        float *arrs[3] = { p.q, p.k, p.v };
        const double *grads[3] = { r.dq, r.dk, r.dv };
        const size_t ns[3] = { (size_t)attn_q_elems(&p.s), (size_t)attn_kv_elems(&p.s), (size_t)attn_kv_elems(&p.s) };
        double worst = 0, gmax = 0;
        for (int a = 0; a < 3; a++)
            for (size_t x = 0; x < ns[a]; x++) {
                const float x0 = arrs[a][x], h = 1.0f / 1024.0f;
                arrs[a][x] = x0 + h;
                const double fp = bwd_ref_loss(&p.s, p.q, p.k, p.v, p.dout);
                arrs[a][x] = x0 - h;
                const double fm = bwd_ref_loss(&p.s, p.q, p.k, p.v, p.dout);
                arrs[a][x] = x0;
                const double fd = (fp - fm) / (2.0 * (double)h);
                if (fabs(fd - grads[a][x]) > worst) worst = fabs(fd - grads[a][x]);
                if (fabs(grads[a][x]) > gmax) gmax = fabs(grads[a][x]);
            }
        /* the O(h^2) truncation: ~1e-6 here; a gradient off by 1% of its largest element would be 1e-3 */
        if (!(worst < 1e-5)) print_message("finite differences: shape %zu: worst |fd - ref| %.3g\n", i, worst);
        assert_true(worst < 1e-5);
        assert_true(gmax > 1e-2);
        bwd_ref_free(&r);
        prob_free(&p);
    }
}

/* ---- broken backwards: a plain fp32 backward with one bug at a time */
enum { BUG_NONE, BUG_D_ZERO, BUG_DQ_NO_SCALE, BUG_DK_WRONG_HEADS, BUG_DV_UNNORMALISED };

static void naive_bwd(const attn_shape_t *s, const float *q, const float *k, const float *v, const float *dO, int bug,
                      float *dq, float *dk, float *dv)
{
    const size_t d = s->dim, Nq = s->seq_q, Nk = s->seq_kv, H = s->heads, Hkv = s->kv_heads, G = H / Hkv;
    memset(dq, 0, attn_q_elems(s) * 4);
    memset(dk, 0, attn_kv_elems(s) * 4);
    memset(dv, 0, attn_kv_elems(s) * 4);
    float *P = malloc((Nk + 1) * 4), *o = malloc((d + 1) * 4);
    for (size_t b = 0; b < s->batch; b++)
        for (size_t h = 0; h < H; h++) {
            /* the bug: heads h and h + Hkv... summed into K/V head h % Hkv instead of h / G */
            const size_t g = b * Hkv + (bug == BUG_DK_WRONG_HEADS ? h % Hkv : h / G), gq = b * Hkv + h / G;
            for (size_t i = 0; i < Nq; i++) {
                const size_t row = (b * H + h) * Nq + i, n = attn_visible_keys(s, i);
                float m = -INFINITY, l = 0;
                for (size_t j = 0; j < n; j++) {
                    float dot = 0;
                    for (size_t x = 0; x < d; x++) dot += q[row * d + x] * k[(gq * Nk + j) * d + x];
                    P[j] = s->scale * dot;
                    m = fmaxf(m, P[j]);
                }
                for (size_t j = 0; j < n; j++) l += P[j] = expf(P[j] - m);
                memset(o, 0, d * 4);
                for (size_t j = 0; j < n; j++)
                    for (size_t x = 0; x < d; x++) o[x] += P[j] / l * v[(gq * Nk + j) * d + x];
                float D = 0;
                for (size_t x = 0; x < d; x++) D += dO[row * d + x] * o[x];
                if (bug == BUG_D_ZERO) D = 0;
                for (size_t j = 0; j < n; j++) {
                    const float p = P[j] / l;
                    float dp = 0;
                    for (size_t x = 0; x < d; x++) dp += dO[row * d + x] * v[(gq * Nk + j) * d + x];
                    const float ds = p * (dp - D);
                    for (size_t x = 0; x < d; x++) {
                        dq[row * d + x] += (bug == BUG_DQ_NO_SCALE ? 1.0f : s->scale) * ds * k[(gq * Nk + j) * d + x];
                        dk[(g * Nk + j) * d + x] += s->scale * ds * q[row * d + x];
                        dv[(gq * Nk + j) * d + x] += (bug == BUG_DV_UNNORMALISED ? P[j] : p) * dO[row * d + x];
                    }
                }
            }
        }
    free(P);
    free(o);
}

static void test_broken_variants(void **state)
{
    (void)state;
    const shape_t sh = { 1, 4, 2, 40, 48, 16, 1 };
    prob_t p;
    prob_make(&p, &sh, DT_F32);
    bwd_ref_t r;
    assert_int_equal(bwd_ref_compute(&r, &p.s, p.q, p.k, p.v, p.dout, 0, 0), 0);
    /* which gradient each bug breaks: D (dQ, dK), the scale (dQ), the heads (dK), P (dV) */
    const int bugs[] = { BUG_NONE, BUG_D_ZERO, BUG_DQ_NO_SCALE, BUG_DK_WRONG_HEADS, BUG_DV_UNNORMALISED };
    const int breaks[][3] = { { 0, 0, 0 }, { 1, 1, 0 }, { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } };
    for (size_t b = 0; b < sizeof bugs / sizeof *bugs; b++) {
        naive_bwd(&p.s, p.q, p.k, p.v, p.dout, bugs[b], p.dq, p.dk, p.dv);
        bwd_check_t c[3];
        bwd_check_all(&r, p.dq, p.dk, p.dv, DT_F32, c);
        for (int g = 0; g < 3; g++) {
            if (bwd_check_ok(&c[g]) == breaks[b][g])
                print_message("bug %d: gradient %d: check %s (err/tol %.3g)\n", bugs[b], g,
                              bwd_check_ok(&c[g]) ? "passes" : "fails", c[g].worst_ratio);
            assert_int_equal(bwd_check_ok(&c[g]), !breaks[b][g]);
        }
    }
    bwd_ref_free(&r);
    /* the sampled-rows check (dQ of every 5th row of the first and last group) rejects the dQ bugs too */
    unsigned char want[2] = { 1, 1 };
    assert_int_equal(bwd_ref_compute_rows(&r, &p.s, p.q, p.k, p.v, p.dout, 0, 0, want, 5), 0);
    for (size_t b = 0; b < 3; b++) {
        naive_bwd(&p.s, p.q, p.k, p.v, p.dout, bugs[b], p.dq, p.dk, p.dv);
        bwd_check_t c[3];
        bwd_check_all(&r, p.dq, p.dk, p.dv, DT_F32, c);
        assert_true(c[0].rows > 10 && c[1].rows == 0 && c[2].rows == 0);
        assert_int_equal(bwd_check_ok(&c[0]), !breaks[b][0]);
    }
    bwd_ref_free(&r);
    prob_free(&p);
}

/* ---- GPU */

typedef struct { size_t B, H, Hkv, Nq, Nk; int causal; } gshape_t;
/* lengths 1 and 0 (nothing to attend: gradients 0), odd lengths, GQA, causal with Nq > Nk and Nq < Nk */
static const gshape_t GSHAPES[] = {
    { 1, 2, 2, 1, 1, 0 }, { 2, 4, 2, 77, 77, 1 }, { 1, 2, 1, 9, 0, 1 }, { 1, 4, 1, 130, 257, 0 }, { 1, 2, 2, 200, 70, 1 },
    { 1, 2, 1, 63, 300, 1 }, { 1, 2, 1, 0, 5, 0 }, { 1, 2, 2, 512, 512, 1 },
};

static void test_gpu_kernels(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    const size_t dims[] = { 64, 128, 32 };
    const size_t nshapes = small_mode() ? 3 : sizeof GSHAPES / sizeof *GSHAPES;
    const size_t ndt = tiny_mode() ? 1 : sizeof DTYPES / sizeof *DTYPES, ndims = tiny_mode() ? 1 : sizeof dims / sizeof *dims;
    int ran = 0;
    for (int k = 0; k < BWD_NIMPLS; k++) {
        const bwd_impl_t *im = &BWD_IMPLS[k];
        for (size_t t0 = 0; t0 < ndt; t0++)
            for (size_t di = 0; di < ndims; di++)
                for (size_t i = tiny_mode() ? 1 : 0; i < (tiny_mode() ? 2 : nshapes); i++) {
                    const size_t t = tiny_mode() ? 2 : t0; /* tiny: bf16 only */
                    const gshape_t *g = &GSHAPES[i];
                    const shape_t sh = { g->B, g->H, g->Hkv, g->Nq, g->Nk, dims[di], g->causal };
                    prob_t p;
                    prob_make(&p, &sh, DTYPES[t]);
                    char why[256];
                    if (bwd_impl_supports(im, &p.s, 1, why, sizeof why)) {
                        expect_pass(im, 1, &p, "gpu");
                        ran++;
                    }
                    prob_free(&p);
                }
    }
    assert_true(ran > 0); /* a run in which no kernel ran is a failure */
}

/* The deterministic kernel: bit-identical gradients across runs. */
static void test_gpu_deterministic(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    const bwd_impl_t *im = bwd_impl_find("bwd-tc-det");
    assert_non_null(im);
    const shape_t sh = { 2, 4, 2, small_mode() ? 130 : 1000, small_mode() ? 130 : 1000, 64, 1 };
    prob_t a, b;
    prob_make(&a, &sh, DT_BF16);
    prob_make(&b, &sh, DT_BF16);
    char why[256];
    if (!bwd_impl_supports(im, &a.s, 1, why, sizeof why)) {
        print_message("bwd-tc-det: %s\n", why);
        fail();
    }
    assert_int_equal(run_gpu(im, &a), 0);
    for (int t = 0; t < 3; t++) {
        assert_int_equal(run_gpu(im, &b), 0);
        const size_t es = 2;
        assert_memory_equal(a.dq, b.dq, attn_q_elems(&a.s) * es);
        assert_memory_equal(a.dk, b.dk, attn_kv_elems(&a.s) * es);
        assert_memory_equal(a.dv, b.dv, attn_kv_elems(&a.s) * es);
    }
    prob_free(&a);
    prob_free(&b);
}

/* ---- the program */

static void test_program(void **state)
{
    (void)state;
    char out[65536];
    const char *bad[] = {
        "--dim 0", "--heads 4 --kv-heads 3", "--kernel nope", "--varlen", "--device cpu --kernel bwd-fa2 --sram 100",
        "--splits 2", "--seq 64 --sweep", "--device cpu --kernel bwd-tc-det --seq 8", /* nothing ran: a failure */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const int rc = attn_run_prog("08_backward", bad[i], "2>&1", out, sizeof out);
        if (rc != 2) print_message("'%s': exit %d, expected 2\n%s\n", bad[i], rc, out);
        assert_int_equal(rc, 2);
    }
    assert_int_equal(attn_run_prog("08_backward", "--device cpu --seq 33 --heads 4 --kv-heads 2 --dim 8 --causal", "2>&1",
                                   out, sizeof out), 0);
    assert_non_null(strstr(out, "bwd-fa2"));
    assert_null(strstr(out, " NO"));
    /* beyond the reference's budget: sampled dQ rows, said so */
    setenv("STF_BWD_REF_MAX", "1000", 1);
    assert_int_equal(attn_run_prog("08_backward", "--device cpu --seq 50 --heads 2 --dim 8 --causal --dtype bf16", "2>&1", out,
                                   sizeof out), 0);
    unsetenv("STF_BWD_REF_MAX");
    assert_non_null(strstr(out, "yes (dQ rows)"));
    assert_non_null(strstr(out, "sampled query rows"));
    /* --save-npy then --load-npy: the same inputs, the same verdict */
    char dir[] = "/tmp/stf_bwd_npyXXXXXX";
    assert_non_null(mkdtemp(dir));
    char args[512];
    snprintf(args, sizeof args, "--device cpu --seq-q 20 --seq-kv 27 --dim 5 --causal --dtype bf16 --save-npy %s", dir);
    assert_int_equal(attn_run_prog("08_backward", args, "2>&1", out, sizeof out), 0);
    const char *files[] = { "q", "k", "v", "do", "dq_bwd-fa2", "dk_bwd-fa2", "dv_bwd-standard" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[600];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s.npy", dir, files[i]);
        assert_int_equal(stat(path, &st), 0);
    }
    snprintf(args, sizeof args, "--device cpu --dtype bf16 --causal --load-npy %s", dir);
    assert_int_equal(attn_run_prog("08_backward", args, "2>&1", out, sizeof out), 0);
    assert_non_null(strstr(out, "   20 "));
    snprintf(args, sizeof args, "rm -rf %s", dir);
    assert_int_equal(system(args), 0);
}

int main(void)
{
    const struct CMUnitTest gpu_tests[] = {
        cmocka_unit_test(test_gpu_kernels),
        cmocka_unit_test(test_gpu_deterministic),
    };
    if (getenv("STF_GPU_ONLY")) return cmocka_run_group_tests(gpu_tests, NULL, NULL); /* under compute-sanitizer */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_broken_variants),
        cmocka_unit_test(test_cpu_shapes),
        cmocka_unit_test(test_cpu_tiles),
        cmocka_unit_test(test_ledger_model),
        cmocka_unit_test(test_lengths_zero),
        cmocka_unit_test(test_program),
        cmocka_unit_test(test_gpu_kernels),
        cmocka_unit_test(test_gpu_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
