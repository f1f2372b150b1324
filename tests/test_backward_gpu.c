/* Stage 08 on the GPU (stages/08_backward/bwd_*.cu): the forward that keeps
 * L (bwd_gpu_forward) and every backward kernel (bwd_gpu_launch) against the
 * fp64 reference of backward.h (bwd_ref_compute: O, L, dQ, dK, dV with each
 * row's tolerance for the kernel's roundings), over odd shapes: (Nq, Nk) =
 * (77, 139), (139, 77), (1, 257), (64, 64), (130, 1); B = 2, H = 4 query
 * heads over Hkv = 2 K/V heads (GQA: dK, dV summed over 2 heads), causal
 * (bottom-right: 130 x 1 leaves 129 rows with no key) or not; d = 32, 64, 96,
 * 128 for the tensor-core kernels, 32, 64, 96, 128, 256 for the others; fp16
 * and bf16 (and fp32 for the CUDA-core and cuBLAS kernels); the tensor-core
 * kernels with K/V blocks of 64 keys (4 warps) and 128 (8 warps), and bwd-tc-k32
 * (d = 32, 64: 32 keys per warp, 32 query rows per block). The reference
 * (about 5 Nq Nk d multiply-adds per query head, with its error bounds) is
 * computed for one of the 4 K/V groups of each problem, a different one from
 * problem to problem; every output element of every group must be finite.
 * Outputs and the workspace are poisoned (NaN) before each run, so an
 * element not written fails. Also: Nq = 0 or Nk = 0; a larger problem (515 x 300 and back,
 * d = 128, 2 query heads on one K/V head) for the tensor-core kernels; bwd-tc-det bit-identical across
 * runs; and, so that the check cannot pass a wrong answer, a wrong scale, a
 * shifted L, a NaN and one perturbed element must each fail it.
 * GPU cases skip without a GPU; STF_TEST_SMALL=1 runs small shapes only (for
 * compute-sanitizer); STF_GPU_ONLY=1 runs the *_gpu tests only,
 * STF_TEST_FILTER=name the one named; STF_BWD_BENCH=1 adds timings (=3: of
 * the tensor-core kernels only; =2: the same at one shape, for a profiler). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../stages/08_backward/backward.h"
#include "attention_ref.h"
#include "gpu.h"
#include "harness.h"
#include "test_main.h"
#include "rng.h"

static int small_mode(void) { return getenv("STF_TEST_SMALL") != NULL; }

static const int SHAPES[5][2] = { { 77, 139 }, { 139, 77 }, { 1, 257 }, { 64, 64 }, { 130, 1 } };
static const int SHAPES_SMALL[3][2] = { { 37, 70 }, { 70, 37 }, { 1, 17 } };
static int nshapes(void) { return small_mode() ? 3 : 5; }
static const int *shape_at(int i) { return small_mode() ? SHAPES_SMALL[i] : SHAPES[i]; }

/* What each kernel rounds (the contract's roundings, as the notes state):
 * cuBLAS and the tensor-core kernels store or feed P and dS in 16 bits; the
 * CUDA-core kernel computes in fp32 throughout. */
static unsigned rounding_of(int kern, dtype_t dt)
{
    if (dt == DT_F32 || kern == BWD_GPU_FA2_FP32) return 0;
    return BWD_ROUND_P | BWD_ROUND_DS | BWD_MMA_LOWP;
}
/* bwd_gpu_forward: tensor cores for 16-bit d = 32, 64, 96, 128, else CUDA cores */
static unsigned fwd_rounding_of(const attn_shape_t *s)
{
    return s->dt != DT_F32 && s->dim <= 128 ? (ATT_ROUND_P | ATT_MMA_LOWP) : 0;
}

typedef struct {
    attn_shape_t s;
    void *q, *k, *v, *dout;
    size_t nq, nkv;
} prob_t;

static void *rand_array(dtype_t dt, size_t n, uint32_t stream, float scale)
{
    void *x = malloc((n ? n : 1) * dtype_size(dt));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) dtype_set(x, dt, i, rng_logit(test_seed(), stream, i, scale));
    return x;
}

static void prob_make(prob_t *p, size_t B, size_t H, size_t Hkv, int nq, int nk, int d, int causal, dtype_t dt,
                      uint32_t stream)
{
    memset(p, 0, sizeof *p);
    attn_shape_init(&p->s, B, H, Hkv, (size_t)nq, (size_t)nk, (size_t)d, causal, dt);
    p->nq = (size_t)attn_q_elems(&p->s);
    p->nkv = (size_t)attn_kv_elems(&p->s);
    /* q, k in [-2, 2) (logits spread like randn inputs'), v and dO in [-1, 1) */
    p->q = rand_array(dt, p->nq, stream, 2.0f);
    p->k = rand_array(dt, p->nkv, stream + 1, 2.0f);
    p->v = rand_array(dt, p->nkv, stream + 2, 1.0f);
    p->dout = rand_array(dt, p->nq, stream + 3, 1.0f);
}

static void prob_free(prob_t *p)
{
    free(p->q); free(p->k); free(p->v); free(p->dout);
    memset(p, 0, sizeof *p);
}

/* The results of one run, on the host. */
typedef struct {
    void *o, *dq, *dk, *dv;
    float *lse;
} out_t;

static void out_alloc(out_t *r, const prob_t *p)
{
    const size_t es = dtype_size(p->s.dt);
    r->o = malloc(p->nq * es + 1);
    r->dq = malloc(p->nq * es + 1);
    r->dk = malloc(p->nkv * es + 1);
    r->dv = malloc(p->nkv * es + 1);
    r->lse = malloc(attn_rows(&p->s) * sizeof(float) + 1);
    assert_true(r->o && r->dq && r->dk && r->dv && r->lse);
}
static void out_free(out_t *r) { free(r->o); free(r->dq); free(r->dk); free(r->dv); free(r->lse); }

static void *dev(size_t bytes, const char *what) { return gpu_malloc(bytes ? bytes : 16, what); }

/* Forward then backward of kern on p's inputs with shape *s (p->s unless a
 * test changes it), every output and the workspace poisoned first. lse_shift
 * is added to L between the two (a test of the check). Returns the launch's
 * status. */
static int run(int kern, const prob_t *p, const attn_shape_t *s, out_t *r, float lse_shift)
{
    const size_t es = dtype_size(p->s.dt), qb = p->nq * es, kvb = p->nkv * es, lb = attn_rows(&p->s) * sizeof(float);
    const size_t wsb = bwd_gpu_ws_bytes(kern, s);
    void *q = dev(qb, "Q"), *k = dev(kvb, "K"), *v = dev(kvb, "V"), *dout = dev(qb, "dO"), *o = dev(qb, "O");
    void *dq = dev(qb, "dQ"), *dk = dev(kvb, "dK"), *dv = dev(kvb, "dV"), *ws = dev(wsb, "workspace");
    float *lse = dev(lb, "L");
    if (qb) {
        gpu_h2d(q, p->q, qb);
        gpu_h2d(dout, p->dout, qb);
    }
    if (kvb) {
        gpu_h2d(k, p->k, kvb);
        gpu_h2d(v, p->v, kvb);
    }
    gpu_poison(o, qb ? qb : 16);
    gpu_poison(lse, lb ? lb : 16);
    gpu_poison(dq, qb ? qb : 16);
    gpu_poison(dk, kvb ? kvb : 16);
    gpu_poison(dv, kvb ? kvb : 16);
    gpu_poison(ws, wsb ? wsb : 16);
    int rc = bwd_gpu_forward(s, q, k, v, o, lse);
    if (rc == 0 && lse_shift != 0.0f && lb) {
        float *h = malloc(lb);
        assert_non_null(h);
        gpu_sync();
        gpu_d2h(h, lse, lb);
        for (size_t i = 0; i < lb / sizeof(float); i++) h[i] += lse_shift;
        gpu_h2d(lse, h, lb);
        free(h);
    }
    if (rc == 0) rc = bwd_gpu_launch(kern, s, q, k, v, o, dout, lse, dq, dk, dv, ws);
    gpu_sync();
    if (qb) {
        gpu_d2h(r->o, o, qb);
        gpu_d2h(r->dq, dq, qb);
    }
    if (kvb) {
        gpu_d2h(r->dk, dk, kvb);
        gpu_d2h(r->dv, dv, kvb);
    }
    if (lb) gpu_d2h(r->lse, lse, lb);
    gpu_free(q); gpu_free(k); gpu_free(v); gpu_free(dout); gpu_free(o);
    gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(ws); gpu_free(lse);
    return rc;
}

/* Checks O, L and the three gradients against ref; returns the worst
 * error / tolerance ratio over all of them (infinity when anything fails). */
static double check(const bwd_ref_t *ref, const prob_t *p, const out_t *r, unsigned fwd_rounding, const char *what,
                    int verbose)
{
    const attn_shape_t *s = &p->s;
    const size_t d = s->dim, es = dtype_size(s->dt), R = (size_t)attn_rows(s);
    attn_check_t oc;
    attn_check_init(&oc);
    size_t lse_bad = 0, o_rows = 0;
    double worst = 0;
    size_t nonfinite = 0;
    for (size_t x = 0; x < p->nq; x++)
        nonfinite += !isfinite(dtype_get(r->o, s->dt, x)) + !isfinite(dtype_get(r->dq, s->dt, x));
    for (size_t x = 0; x < p->nkv; x++)
        nonfinite += !isfinite(dtype_get(r->dk, s->dt, x)) + !isfinite(dtype_get(r->dv, s->dt, x));
    for (size_t x = 0; x < R; x++) nonfinite += isnan(r->lse[x]);
    for (size_t x = 0; x < R; x++) {
        const double L = ref->lse[x], g = r->lse[x];
        if (ref->rq[x].tol < 0) continue; /* a group the reference left out */
        if (L == -INFINITY) { /* no visible key: O = 0 exactly, L = -inf */
            lse_bad += g != -INFINITY;
            for (size_t c = 0; c < d; c++) lse_bad += dtype_get(r->o, s->dt, x * d + c) != 0.0f;
            continue;
        }
        const double e = fabs(g - L) / ref->lse_tol[x];
        if (!(e <= 1.0)) lse_bad++;
        else if (e > worst) worst = e;
        attn_check_row(&oc, (const char *)r->o + x * d * es, s->dt, ref->o + x * d, &ref->ost[x], d, fwd_rounding);
        o_rows++;
    }
    bwd_check_t c[3];
    const int ok = bwd_check_all(ref, r->dq, r->dk, r->dv, s->dt, c);
    const int o_ok = o_rows == 0 || attn_check_ok(&oc);
    for (int i = 0; i < 3; i++)
        if (c[i].worst_ratio > worst) worst = c[i].worst_ratio;
    if (oc.worst_ratio > worst) worst = oc.worst_ratio;
    if (!ok || !o_ok || lse_bad || nonfinite) worst = INFINITY;
    if (verbose && !(worst <= 1.0))
        print_message("%s (%zu, %zu) d=%zu %s causal=%d: %zu non-finite outputs, O ratio %.3g (%zu non-finite), "
                      "L bad %zu, dQ %.3g/%zu nf/%zu unres, dK %.3g/%zu/%zu, dV %.3g/%zu/%zu\n",
                      what, s->seq_q, s->seq_kv, s->dim, dtype_name(s->dt), s->causal, nonfinite, oc.worst_ratio,
                      oc.nonfinite,
                      lse_bad, c[0].worst_ratio, c[0].nonfinite, c[0].unresolved, c[1].worst_ratio, c[1].nonfinite,
                      c[1].unresolved, c[2].worst_ratio, c[2].nonfinite, c[2].unresolved);
    return worst;
}

/* ---- references, shared by the kernels that round alike */
#define MAXREF 256
static struct {
    int key[6];
    prob_t p;
    bwd_ref_t r;
    int used;
} g_refs[MAXREF];

static const bwd_ref_t *ref_get(int si, int d, dtype_t dt, int causal, unsigned rounding, const prob_t **pp)
{
    const int key[6] = { si, d, (int)dt, causal, (int)rounding, small_mode() };
    int slot = -1;
    for (int i = 0; i < MAXREF; i++) {
        if (g_refs[i].used && !memcmp(g_refs[i].key, key, sizeof key)) {
            *pp = &g_refs[i].p;
            return &g_refs[i].r;
        }
        if (!g_refs[i].used && slot < 0) slot = i;
    }
    assert_true(slot >= 0);
    const int *sh = shape_at(si);
    prob_t *p = &g_refs[slot].p;
    prob_make(p, 2, 4, 2, sh[0], sh[1], d, causal, dt, (uint32_t)(7000 + 97 * si + 13 * d + 5 * (int)dt + causal) * 4u);
    unsigned char want[4] = { 0, 0, 0, 0 }; /* B Hkv = 4 groups: one of them, by problem */
    want[(si + d / 32 + causal + (int)dt) % 4] = 1;
    assert_int_equal(bwd_ref_compute_groups(&g_refs[slot].r, &p->s, p->q, p->k, p->v, p->dout, rounding,
                                            fwd_rounding_of(&p->s), want),
                     0);
    memcpy(g_refs[slot].key, key, sizeof key);
    g_refs[slot].used = 1;
    *pp = p;
    return &g_refs[slot].r;
}

static int teardown_refs(void **state)
{
    (void)state;
    for (int i = 0; i < MAXREF; i++)
        if (g_refs[i].used) {
            bwd_ref_free(&g_refs[i].r);
            prob_free(&g_refs[i].p);
            g_refs[i].used = 0;
        }
    return 0;
}

/* ---- every kernel on every shape it supports */
static const int DIMS_TC[] = { 32, 64, 96, 128 }, DIMS_ALL[] = { 32, 64, 96, 128, 256 };

static void test_kernel(int kern)
{
    SKIP_WITHOUT_GPU();
    const int tc = kern == BWD_GPU_TC_ATOMIC || kern == BWD_GPU_TC_DET || kern == BWD_GPU_TC_K32;
    const int k32 = kern == BWD_GPU_TC_K32; /* 4 or 8 warps, d = 32 and 64 */
    const dtype_t dts[3] = { DT_BF16, DT_F16, DT_F32 };
    double worst = 0;
    int ran = 0, failed = 0;
    for (int ti = 0; ti < (tc ? 2 : 3); ti++)
        for (int di = 0; di < (tc ? 4 : 5); di++) {
            const int d = tc ? DIMS_TC[di] : DIMS_ALL[di];
            if (k32 && d > 64) continue;
            /* fp16 on the CUDA-core / cuBLAS kernels: the tensor-core head dims only */
            if (!tc && dts[ti] == DT_F16 && d != 64 && d != 128) continue;
            if (small_mode() && d != 64 && d != 128) continue;
            /* small (sanitizer) runs: the CUDA-core and cuBLAS kernels at fp32, d = 64 only */
            if (small_mode() && !tc && (dts[ti] != DT_F32 || d != 64)) continue;
            for (int causal = 0; causal < 2; causal++)
                for (int si = 0; si < nshapes(); si++) {
                    const prob_t *p;
                    const bwd_ref_t *ref = ref_get(si, d, dts[ti], causal, rounding_of(kern, dts[ti]), &p);
                    char why[256];
                    if (!bwd_gpu_supports(kern, &p->s, why, sizeof why)) {
                        print_message("%s declines d=%d %s: %s\n", bwd_gpu_name(kern), d, dtype_name(dts[ti]), why);
                        fail();
                    }
                    /* the tensor-core kernels: K/V blocks of 4 warps, of 8, and (d <= 64) of 4 warps
                     * with 3 blocks per SM */
                    for (int nw = 4; nw <= (!tc ? 4 : k32 ? 8 : d <= 64 ? 12 : 8); nw += 4) {
                        setenv("STF_BWD_TC_WARPS", nw == 8 ? "8" : "4", 1);
                        setenv("STF_BWD_TC_MINB", nw == 12 ? "3" : "2", 1);
                        out_t r;
                        out_alloc(&r, p);
                        assert_int_equal(run(kern, p, &p->s, &r, 0.0f), 0);
                        const double w = check(ref, p, &r, fwd_rounding_of(&p->s), bwd_gpu_name(kern), 1);
                        if (!(w <= 1.0) && tc) print_message("  (that was with %d warps%s)\n", nw == 8 ? 8 : 4,
                                                             nw == 12 ? ", 3 blocks per SM" : "");
                        failed += !(w <= 1.0);
                        if (w > worst) worst = w;
                        ran++;
                        out_free(&r);
                    }
                    unsetenv("STF_BWD_TC_WARPS");
                    unsetenv("STF_BWD_TC_MINB");
                }
        }
    print_message("%s: %d problems, %d failed, worst error/tolerance %.3f\n", bwd_gpu_name(kern), ran, failed, worst);
    assert_int_equal(failed, 0);
    assert_true(ran > 0);
}
static void test_standard_gpu(void **state) { (void)state; test_kernel(BWD_GPU_STANDARD); }
static void test_fa2_fp32_gpu(void **state) { (void)state; test_kernel(BWD_GPU_FA2_FP32); }
static void test_tc_atomic_gpu(void **state) { (void)state; test_kernel(BWD_GPU_TC_ATOMIC); }
static void test_tc_det_gpu(void **state) { (void)state; test_kernel(BWD_GPU_TC_DET); }
static void test_tc_k32_gpu(void **state) { (void)state; test_kernel(BWD_GPU_TC_K32); }

/* ---- a larger problem: many K/V blocks and query blocks, the double buffer
 * cycling, GQA over 2 heads, checked in full */
static void test_large_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    if (small_mode()) skip();
    const int sh[2][2] = { { 515, 300 }, { 300, 515 } };
    for (int i = 0; i < 2; i++)
        for (int causal = 0; causal < 2; causal++) {
            prob_t p;
            prob_make(&p, 1, 2, 1, sh[i][0], sh[i][1], 128, causal, DT_BF16, (uint32_t)(9000 + 10 * i + causal) * 4u);
            bwd_ref_t ref;
            const unsigned rnd = BWD_ROUND_P | BWD_ROUND_DS | BWD_MMA_LOWP;
            assert_int_equal(bwd_ref_compute(&ref, &p.s, p.q, p.k, p.v, p.dout, rnd, fwd_rounding_of(&p.s)), 0);
            const int kerns[3] = { BWD_GPU_TC_ATOMIC, BWD_GPU_TC_DET, BWD_GPU_STANDARD };
            for (int x = 0; x < 3; x++) {
                out_t r;
                out_alloc(&r, &p);
                assert_int_equal(run(kerns[x], &p, &p.s, &r, 0.0f), 0);
                const double w = check(&ref, &p, &r, fwd_rounding_of(&p.s), bwd_gpu_name(kerns[x]), 1);
                print_message("%s (%d, %d) causal=%d: worst error/tolerance %.3f\n", bwd_gpu_name(kerns[x]),
                              sh[i][0], sh[i][1], causal, w);
                assert_true(w <= 1.0);
                out_free(&r);
            }
            bwd_ref_free(&ref);
            prob_free(&p);
        }
}

/* ---- Nq = 0 or Nk = 0: nothing to attend; every gradient 0, O 0, L -inf */
static void test_zero_lengths_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    const int sh[2][2] = { { 5, 0 }, { 0, 5 } };
    for (int kern = 0; kern < BWD_GPU_NKERNELS; kern++)
        for (int i = 0; i < 2; i++) {
            prob_t p;
            prob_make(&p, 2, 4, 2, sh[i][0], sh[i][1], 64, i, DT_BF16, 9500u);
            char why[256];
            assert_int_equal(bwd_gpu_supports(kern, &p.s, why, sizeof why), 1);
            out_t r;
            out_alloc(&r, &p);
            assert_int_equal(run(kern, &p, &p.s, &r, 0.0f), 0);
            for (size_t x = 0; x < p.nq; x++) {
                assert_true(dtype_get(r.dq, p.s.dt, x) == 0.0f);
                assert_true(dtype_get(r.o, p.s.dt, x) == 0.0f);
            }
            for (size_t x = 0; x < attn_rows(&p.s); x++) assert_true(r.lse[x] == -INFINITY);
            for (size_t x = 0; x < p.nkv; x++) {
                assert_true(dtype_get(r.dk, p.s.dt, x) == 0.0f);
                assert_true(dtype_get(r.dv, p.s.dt, x) == 0.0f);
            }
            out_free(&r);
            prob_free(&p);
        }
}

/* ---- bit-identical across runs: bwd-tc-det must be; bwd-tc-atomic is
 * reported (fp32 atomics add in the order the blocks arrive) */
static void test_deterministic_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    prob_t p;
    prob_make(&p, 2, 8, 2, small_mode() ? 200 : 777, small_mode() ? 300 : 1333, 128, 0, DT_BF16, 9700u);
    const size_t es = dtype_size(p.s.dt);
    const int kerns[2] = { BWD_GPU_TC_DET, BWD_GPU_TC_ATOMIC };
    for (int x = 0; x < 2; x++) {
        out_t a, b;
        out_alloc(&a, &p);
        out_alloc(&b, &p);
        int same = 1;
        assert_int_equal(run(kerns[x], &p, &p.s, &a, 0.0f), 0);
        for (int rep = 0; rep < 3; rep++) {
            assert_int_equal(run(kerns[x], &p, &p.s, &b, 0.0f), 0);
            same &= !memcmp(a.dq, b.dq, p.nq * es) && !memcmp(a.dk, b.dk, p.nkv * es) &&
                    !memcmp(a.dv, b.dv, p.nkv * es);
        }
        print_message("%s: 4 runs %s\n", bwd_gpu_name(kerns[x]), same ? "bit-identical" : "differ (dQ by atomics)");
        if (kerns[x] == BWD_GPU_TC_DET) assert_true(same);
        out_free(&a);
        out_free(&b);
    }
    prob_free(&p);
}

/* ---- the check rejects broken results: a backward run with the scale
 * x 1.1, L shifted by 0.05, one gradient element moved by 4 tolerances, a NaN */
static void test_broken_fails_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int kern = 0; kern < BWD_GPU_NKERNELS; kern++) {
        const prob_t *p;
        const bwd_ref_t *ref = ref_get(0, 64, DT_BF16, 1, rounding_of(kern, DT_BF16), &p);
        const size_t d = p->s.dim;
        out_t r;
        out_alloc(&r, p);
        assert_int_equal(run(kern, p, &p->s, &r, 0.0f), 0);
        assert_true(check(ref, p, &r, fwd_rounding_of(&p->s), "good", 1) <= 1.0);
        /* one element of dK (a row that sees many terms) moved by 4 tolerances */
        size_t x = 0;
        for (size_t i = 0; i < p->s.batch * p->s.kv_heads * p->s.seq_kv; i++)
            if (ref->rk[i].tol > 0 && ref->rk[i].n > ref->rk[x].n) x = i;
        const float keep = dtype_get(r.dk, p->s.dt, x * d + 3);
        const double den = fmax(ref->rk[x].amax, dtype_min_normal(p->s.dt));
        dtype_set(r.dk, p->s.dt, x * d + 3, (float)(ref->dk[x * d + 3] + 4.0 * ref->rk[x].tol * den));
        assert_false(check(ref, p, &r, fwd_rounding_of(&p->s), "perturbed", 0) <= 1.0);
        dtype_set(r.dk, p->s.dt, x * d + 3, keep);
        dtype_set(r.dq, p->s.dt, 100 * d + 5, NAN);
        assert_false(check(ref, p, &r, fwd_rounding_of(&p->s), "NaN", 0) <= 1.0);
        /* the backward told a wrong scale */
        attn_shape_t s = p->s;
        s.scale *= 1.1f;
        out_t w;
        out_alloc(&w, p);
        {
            /* forward with the right scale, backward with the wrong one */
            const size_t es = dtype_size(p->s.dt), qb = p->nq * es, kvb = p->nkv * es;
            const size_t lb = attn_rows(&p->s) * sizeof(float), wsb = bwd_gpu_ws_bytes(kern, &s);
            void *q = dev(qb, "Q"), *k = dev(kvb, "K"), *v = dev(kvb, "V"), *dout = dev(qb, "dO"), *o = dev(qb, "O");
            void *dq = dev(qb, "dQ"), *dk = dev(kvb, "dK"), *dv = dev(kvb, "dV"), *ws = dev(wsb, "ws");
            float *lse = dev(lb, "L");
            gpu_h2d(q, p->q, qb);
            gpu_h2d(k, p->k, kvb);
            gpu_h2d(v, p->v, kvb);
            gpu_h2d(dout, p->dout, qb);
            assert_int_equal(bwd_gpu_forward(&p->s, q, k, v, o, lse), 0);
            assert_int_equal(bwd_gpu_launch(kern, &s, q, k, v, o, dout, lse, dq, dk, dv, ws), 0);
            gpu_sync();
            gpu_d2h(w.o, o, qb);
            gpu_d2h(w.lse, lse, lb);
            gpu_d2h(w.dq, dq, qb);
            gpu_d2h(w.dk, dk, kvb);
            gpu_d2h(w.dv, dv, kvb);
            gpu_free(q); gpu_free(k); gpu_free(v); gpu_free(dout); gpu_free(o);
            gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(ws); gpu_free(lse);
        }
        const double rs = check(ref, p, &w, fwd_rounding_of(&p->s), "scale", 0);
        /* L shifted by 0.05 between forward and backward: P off by 5% */
        assert_int_equal(run(kern, p, &p->s, &w, 0.05f), 0);
        /* the forward's own check would fail on the shifted L; judge the gradients only */
        bwd_check_t c[3];
        const int shifted_ok = bwd_check_all(ref, w.dq, w.dk, w.dv, p->s.dt, c);
        print_message("%s: scale x 1.1 -> ratio %.3g; L + 0.05 -> dQ %.3g dK %.3g dV %.3g (all must fail)\n",
                      bwd_gpu_name(kern), rs, c[0].worst_ratio, c[1].worst_ratio, c[2].worst_ratio);
        assert_false(rs <= 1.0);
        assert_false(shifted_ok);
        out_free(&w);
        out_free(&r);
    }
}


/* ---- timings (only with STF_BWD_BENCH=1; the stage program's table is the
 * real benchmark): bf16, B N = 16384 tokens, H d = 2048, the backward alone
 * (forward once before), CUDA events, median of 10 after 2 warm-ups, L2
 * flushed; TFLOP/s with the backward counted as 2.5 forward FLOPs. */
typedef struct {
    int kern;
    const attn_shape_t *s;
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *ws;
    float *lse;
} bench_arg_t;

static void bench_fn(void *p)
{
    bench_arg_t *b = p;
    (void)bwd_gpu_launch(b->kern, b->s, b->q, b->k, b->v, b->o, b->dout, b->lse, b->dq, b->dk, b->dv, b->ws);
}
static void bench_fwd_fn(void *p)
{
    bench_arg_t *b = p;
    (void)bwd_gpu_forward(b->s, b->q, b->k, b->v, b->o, b->lse);
}

static void test_bench_gpu(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    if (!getenv("STF_BWD_BENCH")) skip();
    const int cfg[][3] = { { 4096, 128, 0 }, { 4096, 128, 1 }, { 16384, 128, 0 }, { 16384, 128, 1 },
                           { 4096, 64, 0 },  { 4096, 64, 1 },  { 16384, 64, 0 }, { 16384, 64, 1 } };
    /* STF_BWD_BENCH=2: the first shape only (a profiler run); STF_BWD_BENCH_CFG=i: shape i only */
    const size_t ncfg = !strcmp(getenv("STF_BWD_BENCH"), "2") ? 1 : sizeof cfg / sizeof cfg[0];
    const char *one = getenv("STF_BWD_BENCH_CFG");
    for (size_t c = 0; c < ncfg; c++) {
        if (one && (size_t)atoi(one) != c) continue;
        const size_t N = (size_t)cfg[c][0], d = (size_t)cfg[c][1], B = 16384 / N, H = 2048 / d;
        attn_shape_t s;
        attn_shape_init(&s, B, H, H, N, N, d, cfg[c][2], DT_BF16);
        const size_t qb = attn_q_elems(&s) * 2, lb = attn_rows(&s) * 4;
        bench_arg_t b = { 0, &s, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL };
        b.q = dev(qb, "Q"); b.k = dev(qb, "K"); b.v = dev(qb, "V"); b.o = dev(qb, "O"); b.dout = dev(qb, "dO");
        b.dq = dev(qb, "dQ"); b.dk = dev(qb, "dK"); b.dv = dev(qb, "dV"); b.lse = dev(lb, "L");
        gpu_fill_logits(b.q, DT_BF16, attn_q_elems(&s), 1, 1, 2.0f);
        gpu_fill_logits(b.k, DT_BF16, attn_q_elems(&s), 1, 2, 2.0f);
        gpu_fill_logits(b.v, DT_BF16, attn_q_elems(&s), 1, 3, 1.0f);
        gpu_fill_logits(b.dout, DT_BF16, attn_q_elems(&s), 1, 4, 1.0f);
        const double fl = attn_flops(&s);
        const double tf = gpu_time_median_ms(bench_fwd_fn, &b, 2, 10, 1);
        print_message("bench N=%zu d=%zu causal=%d forward: %.3f ms, %.1f TFLOP/s\n", N, d, cfg[c][2], tf,
                      fl / tf * 1e-9);
        for (int kern = 0; kern < BWD_GPU_NKERNELS; kern++) {
            if (kern == BWD_GPU_FA2_FP32 && N > 4096) continue; /* CUDA cores: seconds per run */
            /* STF_BWD_BENCH=2 or 3: the tensor-core kernels only */
            if (strcmp(getenv("STF_BWD_BENCH"), "1") && kern != BWD_GPU_TC_ATOMIC && kern != BWD_GPU_TC_DET &&
                kern != BWD_GPU_TC_K32)
                continue;
            if (kern == BWD_GPU_TC_K32 && d > 64) continue;
            const size_t wsb = bwd_gpu_ws_bytes(kern, &s);
            size_t fr, tot;
            gpu_mem_info(&fr, &tot);
            if (wsb + (1u << 30) > fr) {
                print_message("bench N=%zu d=%zu causal=%d %s: workspace %.1f GB does not fit\n", N, d, cfg[c][2],
                              bwd_gpu_name(kern), wsb / 1e9);
                continue;
            }
            b.kern = kern;
            b.ws = dev(wsb, "ws");
            const int tc = kern == BWD_GPU_TC_ATOMIC || kern == BWD_GPU_TC_DET || kern == BWD_GPU_TC_K32;
            /* the tensor-core kernels' K/V block: 4 warps, 8, and at d = 64 4 warps with 3 blocks per SM
             * (bwd-tc-k32: 4 or 8 warps) */
            for (int w = 4; w <= (!tc ? 4 : kern == BWD_GPU_TC_K32 ? 8 : d <= 64 ? 12 : 8); w += 4) {
                setenv("STF_BWD_TC_WARPS", w == 8 ? "8" : "4", 1);
                setenv("STF_BWD_TC_MINB", w == 12 ? "3" : "2", 1);
                const double t = gpu_time_median_ms(bench_fn, &b, 2, kern == BWD_GPU_FA2_FP32 ? 3 : 10, 1);
                print_message("bench N=%zu d=%zu causal=%d %s%s: %.3f ms, %.1f TFLOP/s\n", N, d, cfg[c][2],
                              bwd_gpu_name(kern),
                              !tc ? "" : w == 4 ? " (4 warps)" : w == 8 ? " (8 warps)" : " (4 warps, 3 blocks/SM)", t,
                              2.5 * fl / t * 1e-9);
            }
            unsetenv("STF_BWD_TC_WARPS");
            unsetenv("STF_BWD_TC_MINB");
            gpu_free(b.ws);
        }
        gpu_free(b.q); gpu_free(b.k); gpu_free(b.v); gpu_free(b.o); gpu_free(b.dout);
        gpu_free(b.dq); gpu_free(b.dk); gpu_free(b.dv); gpu_free(b.lse);
    }
}

/* ---- what is declined, and why (no GPU needed) */
static void test_supports(void **state)
{
    (void)state;
    attn_shape_t s;
    char why[256];
    attn_shape_init(&s, 2, 4, 2, 100, 100, 64, 0, DT_BF16);
    for (int k = 0; k < BWD_GPU_NKERNELS; k++) {
        why[0] = 0;
        const int ok = bwd_gpu_supports(k, &s, why, sizeof why);
        assert_int_equal(ok, HAVE_CUDA ? 1 : 0);
        if (!ok) assert_true(strlen(why) > 0);
        assert_true(strlen(bwd_gpu_name(k)) > 0);
    }
    assert_string_equal(bwd_gpu_name(BWD_GPU_TC_DET), "bwd-tc-det");
    const struct { int kern, d, H, Hkv, varlen; dtype_t dt; } bad[] = {
        { BWD_GPU_TC_ATOMIC, 64, 4, 2, 0, DT_F32 },  { BWD_GPU_TC_DET, 256, 4, 2, 0, DT_BF16 },
        { BWD_GPU_TC_ATOMIC, 256, 4, 2, 0, DT_F16 }, { BWD_GPU_FA2_FP32, 80, 4, 2, 0, DT_F32 },
        { BWD_GPU_STANDARD, 64, 4, 3, 0, DT_BF16 },  { BWD_GPU_FA2_FP32, 64, 4, 2, 1, DT_BF16 },
        { BWD_GPU_NKERNELS, 64, 4, 2, 0, DT_BF16 },  { -1, 64, 4, 2, 0, DT_BF16 },
        { BWD_GPU_TC_K32, 128, 4, 2, 0, DT_BF16 },   { BWD_GPU_TC_K32, 64, 4, 2, 0, DT_F32 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        attn_shape_init(&s, 2, (size_t)bad[i].H, (size_t)bad[i].Hkv, 100, 100, (size_t)bad[i].d, 0, bad[i].dt);
        s.varlen = bad[i].varlen;
        why[0] = 0;
        assert_int_equal(bwd_gpu_supports(bad[i].kern, &s, why, sizeof why), 0);
        assert_true(strlen(why) > 0);
        /* refused before touching the device: no GPU needed */
        assert_int_equal(bwd_gpu_launch(bad[i].kern, &s, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_supports),
        cmocka_unit_test(test_fa2_fp32_gpu),
        cmocka_unit_test(test_tc_atomic_gpu),
        cmocka_unit_test(test_tc_det_gpu),
        cmocka_unit_test(test_tc_k32_gpu),
        cmocka_unit_test(test_standard_gpu),
        cmocka_unit_test(test_zero_lengths_gpu),
        cmocka_unit_test(test_deterministic_gpu),
        cmocka_unit_test(test_broken_fails_gpu),
        cmocka_unit_test(test_large_gpu),
        cmocka_unit_test(test_bench_gpu),
    };
    return test_main("stage 08 backward, GPU kernels", tests, teardown_refs);
}
