/* The decode tests' runs (decode_harness.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "decode_harness.h"
#include "gpu.h"

void decode_run_cpu(const attn_problem_t *p, const int *lens, int splits, void *o, ledger_t *lg_out)
{
    const attn_shape_t *s = &p->s;
    const size_t wsb = split_partial_bytes(s, splits);
    ledger_t lg = { 0 };
    void *ws = wsb ? malloc(wsb) : NULL;
    hbm_t q = hbm_wrap(&lg, "Q", p->q, (size_t)attn_q_elems(s), s->dt);
    hbm_t k = hbm_wrap(&lg, "K", p->k, (size_t)attn_kv_elems(s), s->dt);
    hbm_t v = hbm_wrap(&lg, "V", p->v, (size_t)attn_kv_elems(s), s->dt);
    hbm_t oo = hbm_wrap(&lg, "O", o, (size_t)attn_q_elems(s), s->dt);
    memset(o, 0xff, (size_t)attn_q_elems(s) * dtype_size(s->dt));
    assert_int_equal(split_decode_cpu(s, &q, &k, &v, &oo, lens, splits, ws), 0);
    free(ws);
    if (lg_out) *lg_out = lg;
}

void decode_run_gpu(const attn_problem_t *p, const int *lens, int splits, void *o, decode_gpu_fn *run)
{
    const attn_shape_t *s = &p->s;
    const size_t es = dtype_size(s->dt), qb = (size_t)attn_q_elems(s) * es, kvb = (size_t)attn_kv_elems(s) * es;
    const size_t wsb = split_partial_bytes(s, splits);
    void *dq = gpu_malloc(qb, "Q"), *dk = gpu_malloc(kvb, "K"), *dv = gpu_malloc(kvb, "V"), *dout = gpu_malloc(qb, "O");
    void *ws = wsb ? gpu_malloc(wsb, "partials") : NULL;
    int *dl = NULL;
    if (lens) {
        dl = gpu_malloc(s->batch * sizeof(int), "lengths");
        gpu_h2d(dl, lens, s->batch * sizeof(int));
    }
    gpu_h2d(dq, p->q, qb);
    gpu_h2d(dk, p->k, kvb);
    gpu_h2d(dv, p->v, kvb);
    gpu_poison(dout, qb);
    if (wsb) gpu_poison(ws, wsb); /* every partial state read must have been written */
    run(s, dq, dk, dv, dout, dl, splits, ws);
    gpu_sync();
    gpu_d2h(o, dout, qb);
    gpu_free(dq); gpu_free(dk); gpu_free(dv); gpu_free(dout); gpu_free(ws); gpu_free(dl);
}

/* p with plan's split count, by run, checked; returns the plan. */
static split_plan_t check_planned(const attn_problem_t *p, const attn_impl_t *im, decode_plan_fn *plan,
                                  decode_gpu_fn *run)
{
    const attn_shape_t *s = &p->s;
    split_plan_t pl;
    plan(s, &pl);
    void *o = malloc((size_t)attn_q_elems(s) * dtype_size(s->dt));
    decode_run_gpu(p, NULL, pl.splits, o, run);
    const double ratio = attn_check_all(p, o, attn_impl_rounding(im, s, 1), NULL);
    print_message("gpu %s Hq=%zu Hkv=%zu Nk=%zu --br %zu: %d splits, error/tolerance %.3g\n", im->name, s->heads,
                  s->kv_heads, s->seq_kv, s->tune.br, pl.splits, ratio);
    assert_true(ratio <= 1.0);
    free(o);
    return pl;
}

void decode_long_gpu(size_t Nk, uint32_t stream, const attn_impl_t *im, decode_plan_fn *plan, decode_gpu_fn *run,
                     size_t (*br)(const attn_shape_t *s))
{
    static const size_t heads[4][2] = { { 32, 32 }, { 32, 8 }, { 32, 1 }, { 12, 3 } };
    for (size_t h = 0; h < 4; h++) {
        attn_problem_t p;
        attn_problem_make(&p, 1, heads[h][0], heads[h][1], 1, Nk, 128, 0, DT_BF16, 1.0f, stream + (uint32_t)h);
        attn_problem_ref(&p, NULL);
        (void)check_planned(&p, im, plan, run);
        if (br) {
            p.s.tune.br = br(&p.s);
            assert_int_equal(check_planned(&p, im, plan, run).hpb, (int)p.s.tune.br);
        }
        attn_problem_free(&p);
    }
}
