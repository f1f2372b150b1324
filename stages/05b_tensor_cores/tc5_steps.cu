/* tc5_steps.cu: the rungs tc5a_kouter ... tc5f_qborrow, instances of
 * tc5_kernel (tc5_steps.cuh, which says what each change is and why) at the
 * ladder's tile shape: 4 warps (64 query rows), 64 keys per tile, head dims
 * 64, 96 and 128. Each rung is the one before plus one bit of F.
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5a_kouter,tc5f_qborrow */
#include "tc5_steps.cuh"

/* what each rung's describe line ends with */
static constexpr const char *tc5_step_what(unsigned F)
{
    return F == TC5A_FLAGS   ? "cp.async, 2 K/V stages, exp2, k-step-outer S"
           : F == TC5B_FLAGS ? "cp.async, 2 K/V stages, exp2, k-step-outer S, tree reductions"
           : F == TC5C_FLAGS ? "cp.async x2, exp2, k-step-outer S, trees, immediate ldmatrix offsets"
           : F == TC5D_FLAGS ? "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale"
           : F == TC5E_FLAGS ? "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale, 16B O stores"
                             : "cp.async x2, exp2, k-outer S, trees, immediate offsets, lazy rescale, 16B O stores, "
                               "Q in stage 1";
}

/* The instances of rung F: 4 warps, 64 keys per tile, Q in registers. */
template <unsigned F> struct tc5_step {
    template <typename T, int D> struct inst {
        static constexpr int WARPS = 4, BQ = MMA_M * WARPS, BKV = 64, THREADS = 32 * WARPS;
        static constexpr auto kernel = tc5_kernel<T, D, F, WARPS, BKV, 0, 1>;
        static constexpr int SMEM = tc5_smem<D, F, WARPS, BKV, 1>();
        static const char *what() { return tc5_step_what(F); }
    };
};

TC_RUNG(tc5a, tc5_step<TC5A_FLAGS>::inst, TC_DIMS_BASE)
TC_RUNG(tc5b, tc5_step<TC5B_FLAGS>::inst, TC_DIMS_BASE)
TC_RUNG(tc5c, tc5_step<TC5C_FLAGS>::inst, TC_DIMS_BASE)
TC_RUNG(tc5d, tc5_step<TC5D_FLAGS>::inst, TC_DIMS_BASE)
TC_RUNG(tc5e, tc5_step<TC5E_FLAGS>::inst, TC_DIMS_BASE)
TC_RUNG(tc5f, tc5_step<TC5F_FLAGS>::inst, TC_DIMS_BASE)
