/* tc5_steps.cu: the rungs tc5a_kouter ... tc5f_qborrow, instances of
 * tc5_kernel (tc5_steps.cuh, which says what each change is and why) at the
 * ladder's tile shape: 4 warps (64 query rows), 64 keys per tile, head dims
 * 64, 96 and 128. Each rung is the one before plus one bit of F.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5a_kouter,tc5f_qborrow */
#include "tc5_steps.cuh"

template <unsigned F> struct tc5_step {
    static constexpr int WARPS = 4, BQ = MMA_M * WARPS, BKV = 64, THREADS = 32 * WARPS;
    template <typename T, int D> static constexpr auto kernel = tc5_kernel<T, D, F, WARPS, BKV, 0, 1>;
    template <int D> static constexpr int smem() { return tc5_smem<D, F, WARPS, BKV, 1>(); }
};

template <unsigned F> struct tc5_step_run {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    const tc_shape_t *s;
    const void *q, *k, *v;
    void *o;
    template <typename T, int D> int run()
    {
        using S = tc5_step<F>;
        tc_launch_kernel<S::template kernel<T, D>>(tc_grid(s, S::BQ), S::THREADS, S::template smem<D>(),
                                                   tc_make_args(s, q, k, v, o));
        return 0;
    }
};
template <unsigned F> struct tc5_step_desc {
    static constexpr unsigned DIMS = TC_DIMS_BASE;
    char *buf;
    size_t n;
    const char *what;
    template <typename T, int D> int run()
    {
        using S = tc5_step<F>;
        tc_describe_kernel(buf, n, S::template kernel<T, D>, S::BQ, S::BKV, S::THREADS, S::template smem<D>(), what);
        return 0;
    }
};

/* p_launch and p_describe of tc.h's table (tc_impls.c) for rung p. */
#define TC5_STEP(p, FLAGS, WHAT)                                                                 \
    extern "C" int p##_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o) \
    {                                                                                            \
        tc5_step_run<FLAGS> f = { s, q, k, v, o };                                               \
        return tc_dispatch(s, f);                                                                \
    }                                                                                            \
    extern "C" int p##_describe(const tc_shape_t *s, char *buf, size_t n)                        \
    {                                                                                            \
        tc5_step_desc<FLAGS> f = { buf, n, WHAT };                                               \
        return tc_dispatch(s, f);                                                                \
    }

TC5_STEP(tc5a, TC5A_FLAGS, "cp.async, 2 K/V stages, exp2, k-step-outer S")
TC5_STEP(tc5b, TC5B_FLAGS, "cp.async, 2 K/V stages, exp2, k-step-outer S, tree reductions")
TC5_STEP(tc5c, TC5C_FLAGS, "cp.async x2, exp2, k-step-outer S, trees, immediate ldmatrix offsets")
TC5_STEP(tc5d, TC5D_FLAGS, "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale")
TC5_STEP(tc5e, TC5E_FLAGS, "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale, 16B O stores")
TC5_STEP(tc5f, TC5F_FLAGS,
         "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale, 16B O stores, Q in stage 1")
