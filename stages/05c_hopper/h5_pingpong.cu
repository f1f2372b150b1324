/* h5_pingpong: h4 with the two consumer groups taking turns on the tensor
 * cores ("ping-pong" scheduling).
 *
 * What changes against h4_overlap.cu: in h4 both consumer groups issue
 * their GEMMs whenever they are ready, so they tend to run in step: both
 * issue S and PV at about the same time, then both do their softmax while
 * the tensor cores idle. Here a pair of named barriers makes them alternate:
 * group g waits for its turn (bar.sync), issues tile t's S and tile t - 1's
 * PV, and passes the turn (bar.arrive) before its softmax, so one group's
 * exponentials run while the other group's GEMMs hold the tensor cores
 * (Shah et al. 2024, section 3.1, "pingpong scheduling").
 *
 * Traffic: as h1 (tiles 128 x 128).
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h5_pingpong */
#include "hop_ws.cuh"

/* the flag block (hop_ws.cuh lists every rung's) */
using h5_rung = hop_ws_rung</* OVERLAP */ true, /* PINGPONG */ true, /* STAGES3 */ false>;

template <typename T, int D>
__global__ void __launch_bounds__(HOP_WS_THREADS, 1)
    h5_kernel(tc_args_t a, const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV)
{
#if HOP_DEVICE
    extern __shared__ uint8_t h5_smem_raw[];
    __shared__ __align__(8) uint64_t full[h5_rung::stages<D>()], empty[h5_rung::stages<D>()];
    hop_ws_body<T, D, h5_rung>(a, tmK, tmV, h5_smem_raw, full, empty);
#endif
}

struct h5_pick {
    template <typename T, int D> static auto kernel() { return h5_kernel<T, D>; }
};

extern "C" int h5_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    return hop_ws_launch<h5_pick, h5_rung>(s, q, k, v, o);
}
extern "C" int h5_describe(const tc_shape_t *s, char *buf, size_t n)
{
    return hop_ws_describe<h5_pick, h5_rung>(s, buf, n, "as h4, the two consumer groups taking turns on the tensor cores (named barriers)");
}
