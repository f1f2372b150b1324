/* Tests only: stage 07's tensor-core decode kernel (decode_tc.cuh) run with
 * deliberately wrong K/V row policies, so that tests/test_split_tc.c can show
 * that its check fails a wrong kernel (the production kernel has no fault
 * hooks). mode 0: the K rows of keys 2i and 2i + 1 swapped (V right), a
 * K/V misalignment; mode 1: K/V head h + 1 (mod Hkv), a wrong group map;
 * mode 2: the right policy through this same path. One split, O written. */
#include "gpu_check.h"
#include "softmax_device.cuh"
#include "../stages/07_split_kv_decode/decode_tc.cuh"

template <typename T> struct kv_broken {
    kv_contig<T> c;
    int mode;
    __device__ __forceinline__ const T *k_row(int b, int h, int pos) const
    {
        if (mode == 0) return c.k_row(b, h, (pos ^ 1) < c.nk ? pos ^ 1 : pos);
        if (mode == 1) return c.k_row(b, (h + 1) % c.hkv, pos);
        return c.k_row(b, h, pos);
    }
    __device__ __forceinline__ const T *v_row(int b, int h, int pos) const
    {
        return c.v_row(b, mode == 1 ? (h + 1) % c.hkv : h, pos);
    }
    __device__ __forceinline__ int run(int pos) const { return 1; (void)pos; }
};

/* make_kv of dtc_run: the broken policy of storage type T */
struct broken_of {
    const void *k, *v;
    int hkv, nk, d, mode;
    template <typename T> kv_broken<T> get() const { return kv_broken<T>{ kv_contig<T>{ (const T *)k, (const T *)v, hkv, nk, d }, mode }; }
};

extern "C" int test_split_tc_broken_gpu(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                                        int mode)
{
    const dec_write_o epi = { o }; /* stage 06's epilogue: O = o / l */
    const broken_of kv = { k, v, (int)s->kv_heads, (int)s->seq_kv, (int)s->dim, mode };
    return dtc_run(s, q, NULL, kv, epi, 1);
}
