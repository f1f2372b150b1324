/* The tensor-core ladder (tc.h) as rows of the stage-05 table: each version
 * is an attn_impl_t, so the driver checks it against the fp64 reference,
 * counts its DRAM traffic and times it beside the other implementations.
 *
 * Traffic model (FlashAttention-2 order, per query head): Q read once and O
 * written once; every query tile of BQ rows streams the K/V tiles it can see,
 * BKV keys at a time, so K and V are read ceil(Nq / BQ) times in full when
 * not causal, and causal query tiles stop at the tile holding their last
 * visible key (tiles past the diagonal are never loaded):
 *     bytes = es (2 B H Nq d + 2 d B H sum_tiles min(Nk, BKV ceil(n_t / BKV)))
 * with n_t the keys visible to the tile's last row. The L2 serves many of the
 * repeated K/V reads; the "HBM meas" column shows how many reach DRAM.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --dim 128 --kernel tc6_m32 */
#include <stdio.h>

#include "tc.h"

static tc_shape_t to_tc(const attn_shape_t *s)
{
    tc_shape_t t = { (int)s->batch, (int)s->heads, (int)s->kv_heads, (int)s->seq_q, (int)s->seq_kv, (int)s->dim,
                     s->causal, s->scale, s->dt };
    return t;
}

/* The shape's tiles, read from the kernel's own description ("Q tile 64 x
 * K/V tile 64, ..."): one source for the tile sizes. 0 on success. */
static int tiles_of(int v, const attn_shape_t *s, int *bq, int *bkv)
{
    const tc_shape_t t = to_tc(s);
    if (!attn_tc_supports(v, &t, NULL, 0)) return -1;
    return sscanf(attn_tc_describe(v, &t), "Q tile %d x K/V tile %d", bq, bkv) == 2 && *bq > 0 && *bkv > 0 ? 0 : -1;
}

static int supports(int v, const attn_shape_t *s, int gpu, char *why, size_t n)
{
    if (!gpu) {
        snprintf(why, n, "GPU only: mma.sync tensor-core kernels (the CPU twin of their algorithm is fa2)");
        return 0;
    }
    if (s->batch > 65535 || s->heads > 65535 || s->seq_q > (1u << 30) || s->seq_kv > (1u << 30)) {
        snprintf(why, n, "sizes beyond the kernels' 32-bit indices and grid");
        return 0;
    }
    const tc_shape_t t = to_tc(s);
    return attn_tc_supports(v, &t, why, n);
}

static double model(int v, const attn_shape_t *s)
{
    int bq = 0, bkv = 0;
    const double es = (double)dtype_size(s->dt), d = (double)s->dim;
    double kv_rows = 0;
    if (tiles_of(v, s, &bq, &bkv)) return 0;
    for (size_t t0 = 0; t0 < s->seq_q; t0 += (size_t)bq) {
        const size_t last = t0 + (size_t)bq < s->seq_q ? t0 + (size_t)bq - 1 : s->seq_q - 1;
        const size_t n = attn_visible_keys(s, last);
        size_t keys = (n + (size_t)bkv - 1) / (size_t)bkv * (size_t)bkv;
        if (keys > s->seq_kv) keys = s->seq_kv;
        kv_rows += (double)keys;
    }
    const double bh = (double)s->batch * (double)s->heads;
    return es * (2.0 * (double)attn_q_elems(s) + 2.0 * d * bh * kv_rows);
}

static const char *tiles_text(int v, const attn_shape_t *s, int gpu)
{
    static char buf[8][32];
    static int k;
    char *b = buf[k++ & 7];
    int bq = 0, bkv = 0;
    if (!gpu || tiles_of(v, s, &bq, &bkv)) return "-";
    snprintf(b, 32, "%dx%d", bq, bkv);
    return b;
}

static const char *describe(int v, const attn_shape_t *s)
{
    static char buf[8][400];
    static int k;
    char *b = buf[k++ & 7];
    const tc_shape_t t = to_tc(s);
    snprintf(b, 400, "%s: %s; %s", TC_VERSIONS[v].name, TC_VERSIONS[v].what, attn_tc_describe(v, &t));
    return b;
}

static void launch(int v, const attn_shape_t *s, const void *q, const void *k, const void *vv, void *o)
{
    const tc_shape_t t = to_tc(s);
    (void)attn_tc_launch(v, &t, q, k, vv, o); /* supports() accepted the shape: it launches */
}

#define TC_IMPL(V)                                                                                                 \
    static int sup##V(const attn_shape_t *s, int gpu, char *why, size_t n) { return supports(V, s, gpu, why, n); } \
    static double mod##V(const attn_shape_t *s) { return model(V, s); }                                            \
    static const char *des##V(const attn_shape_t *s) { return describe(V, s); }                                    \
    static const char *til##V(const attn_shape_t *s, int gpu) { return tiles_text(V, s, gpu); }                    \
    __attribute__((unused)) static void gpu##V(const attn_shape_t *s, const void *q, const void *k, const void *v, \
                                               void *o, void *ws)                                                \
    {                                                                                                              \
        (void)ws;                                                                                                  \
        launch(V, s, q, k, v, o);                                                                                  \
    }                                                                                                              \
    static const attn_impl_t IMPL_TC##V = {                                                                        \
        .stage = "05", .rounding = ATT_ROUND_P | ATT_MMA_LOWP, .supports = sup##V, .model_bytes = mod##V,          \
        .cpu = NULL, .gpu = GPU_FN(gpu##V), .describe = des##V, .tiles = til##V,                                   \
    }

TC_IMPL(0);
TC_IMPL(1);
TC_IMPL(2);
TC_IMPL(3);
TC_IMPL(4);
TC_IMPL(5);

/* Names come from TC_VERSIONS; filled in on first use. */
static attn_impl_t tc_impls[6];
const attn_impl_t *const *attn_tc_impls(int *n)
{
    static const attn_impl_t *list[6];
    static const attn_impl_t *src[6] = { &IMPL_TC0, &IMPL_TC1, &IMPL_TC2, &IMPL_TC3, &IMPL_TC4, &IMPL_TC5 };
    if (!list[0])
        for (int v = 0; v < 6 && v < TC_NVERSIONS; v++) {
            tc_impls[v] = *src[v];
            tc_impls[v].name = TC_VERSIONS[v].name;
            list[v] = &tc_impls[v];
        }
    *n = TC_NVERSIONS < 6 ? TC_NVERSIONS : 6;
    return list;
}
