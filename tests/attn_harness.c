#include "attn_harness.h"

#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "gpu.h"
#include "harness.h"
#include "rng.h"

static void *rand_array(dtype_t dt, size_t n, uint32_t stream, float scale)
{
    void *x = malloc((n ? n : 1) * dtype_size(dt));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) dtype_set(x, dt, i, rng_logit(test_seed(), stream, i, scale));
    return x;
}

void attn_problem_make(attn_problem_t *p, size_t B, size_t H, size_t Hkv, size_t Nq, size_t Nk, size_t d, int causal,
                       dtype_t dt, float scale, uint32_t stream)
{
    memset(p, 0, sizeof *p);
    attn_shape_init(&p->s, B, H, Hkv, Nq, Nk, d, causal, dt);
    p->q = rand_array(dt, (size_t)attn_q_elems(&p->s), stream, scale);
    p->k = rand_array(dt, (size_t)attn_kv_elems(&p->s), stream + 1, scale);
    p->v = rand_array(dt, (size_t)attn_kv_elems(&p->s), stream + 2, scale);
}

void attn_problem_ref(attn_problem_t *p, const int *lens)
{
    const attn_shape_t *s = &p->s;
    const uint64_t rows = attn_rows(s);
    const size_t d = s->dim, es = dtype_size(s->dt), Nk = s->seq_kv;
    free(p->ref);
    free(p->st);
    p->lens = lens;
    p->ref = malloc((size_t)rows * d * sizeof *p->ref);
    p->st = malloc((size_t)rows * sizeof *p->st);
    assert_non_null(p->ref);
    assert_non_null(p->st);
    for (uint64_t r = 0; r < rows; r++) {
        if (!lens) {
            attention_ref_at(s, p->q, p->k, p->v, r, p->ref + r * d, &p->st[r]);
            continue;
        }
        const size_t b = (size_t)(r / (s->seq_q * s->heads));
        const size_t n = attn_visible_of(s, (size_t)(r % s->seq_q), (size_t)lens[b]);
        const uint64_t sl = attn_kv_slice(s, r);
        attention_ref_row((const char *)p->q + r * d * es, (const char *)p->k + sl * Nk * d * es,
                          (const char *)p->v + sl * Nk * d * es, s->dt, n, d, s->scale, p->ref + r * d, &p->st[r]);
    }
}

void attn_problem_free(attn_problem_t *p)
{
    free(p->q);
    free(p->k);
    free(p->v);
    free(p->ref);
    free(p->st);
    memset(p, 0, sizeof *p);
}

int attn_run_impl(const attn_impl_t *im, int gpu, const attn_problem_t *p, void *o, attn_counts_t *cnt)
{
    const attn_shape_t *s = &p->s;
    const size_t es = dtype_size(s->dt), qb = (size_t)attn_q_elems(s) * es, kvb = (size_t)attn_kv_elems(s) * es;
    const size_t wsb = im->ws_bytes ? im->ws_bytes(s) : 0;
    memset(o, 0xff, qb);
    if (!gpu) {
        attn_counts_t c;
        memset(&c, 0, sizeof c);
        void *ws = wsb ? malloc(wsb) : NULL;
        if (wsb) assert_non_null(ws);
        c.q = hbm_wrap(&c.lg, "Q", p->q, (size_t)attn_q_elems(s), s->dt);
        c.k = hbm_wrap(&c.lg, "K", p->k, (size_t)attn_kv_elems(s), s->dt);
        c.v = hbm_wrap(&c.lg, "V", p->v, (size_t)attn_kv_elems(s), s->dt);
        c.o = hbm_wrap(&c.lg, "O", o, (size_t)attn_q_elems(s), s->dt);
        if (im->prepare && im->prepare(s, 0, p->k, p->v, ws)) { /* its own layout (stage 07's pages), uncounted */
            free(ws);
            return -1;
        }
        const int rc = im->cpu(s, &c.q, &c.k, &c.v, &c.o, ws);
        free(ws);
        if (cnt) *cnt = c;
        return rc;
    }
    void *dq = gpu_malloc(qb, "Q"), *dk = gpu_malloc(kvb ? kvb : 16, "K"), *dv = gpu_malloc(kvb ? kvb : 16, "V");
    void *dout = gpu_malloc(qb, "O"), *ws = wsb ? gpu_malloc(wsb, "workspace") : NULL;
    gpu_h2d(dq, p->q, qb);
    gpu_h2d(dk, p->k, kvb);
    gpu_h2d(dv, p->v, kvb);
    gpu_poison(dout, qb);
    if (ws) gpu_poison(ws, wsb); /* e.g. FA1 must initialise its own O, l, m */
    int rc = 0;
    if (im->prepare) rc = im->prepare(s, 1, dk, dv, ws);
    if (!rc) im->gpu(s, dq, dk, dv, dout, ws);
    gpu_sync();
    gpu_d2h(o, dout, qb);
    gpu_free(dq);
    gpu_free(dk);
    gpu_free(dv);
    gpu_free(dout);
    gpu_free(ws);
    return rc;
}

double attn_check_rows(const attn_problem_t *p, const void *o, unsigned rounding, attn_check_t *out)
{
    const size_t d = p->s.dim, es = dtype_size(p->s.dt);
    attn_check_t c;
    attn_check_init(&c);
    for (uint64_t r = 0; r < attn_rows(&p->s); r++)
        attn_check_row(&c, (const char *)o + r * d * es, p->s.dt, p->ref + r * d, &p->st[r], d, rounding);
    if (out) *out = c;
    return c.worst_ratio;
}

double attn_check_all(const attn_problem_t *p, const void *o, unsigned rounding, attn_check_t *out)
{
    attn_check_t c;
    attn_check_rows(p, o, rounding, &c);
    if (out) *out = c;
    return attn_check_ok(&c) ? c.worst_ratio : (c.worst_ratio > 1.0 ? c.worst_ratio : INFINITY);
}

int attn_run_prog(const char *prog, const char *args, const char *redir, char *out, size_t n)
{
    const char *dir = getenv("STF_BIN_DIR") ? getenv("STF_BIN_DIR") : "build/bin";
    char cmd[1024];
    assert_true(snprintf(cmd, sizeof cmd, "%s/%s %s %s; echo \"rc=$?\"", dir, prog, args, redir) < (int)sizeof cmd);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t len = 0;
    out[0] = 0;
    while (len + 1 < n && fgets(out + len, (int)(n - len), f)) len += strlen(out + len);
    assert_true(WIFEXITED(pclose(f)));
    const char *rc = strstr(out, "rc=");
    while (rc && strstr(rc + 1, "rc=")) rc = strstr(rc + 1, "rc=");
    assert_non_null(rc);
    const int code = atoi(rc + 3);
    out[rc - out] = 0; /* the caller sees the program's output only */
    return code;
}
