/* h6_stages: h5 with three K/V stages instead of two (d = 64, 128).
 *
 * What changes against h5_pingpong.cu: from h4 on, a consumer group holds
 * two tiles at once: K_t (its S is being computed) and V_{t-1} (its PV runs
 * behind it), and releases stage t - 1 only when that PV is done, late in
 * iteration t. With two stages both are in use, so the producer can start
 * tile t + 1 only then, and its copy has the rest of iteration t to land:
 * the load is exposed again. A third stage lets tile t + 1 load during all
 * of iteration t. Shared memory: Q 32 KB + 3 x 64 KB at d = 128 (225 KB of
 * the 227 KB a block may have); d = 256 keeps two stages (64 KB of Q, 64 KB
 * a stage).
 *
 * Traffic: as h1 (tiles 128 x 128).
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h6_stages */
#include "hop_ws.cuh"

/* the flag block (hop_ws.cuh lists every rung's) */
using h6_rung = hop_ws_rung</* OVERLAP */ true, /* PINGPONG */ true, /* STAGES3 */ true>;

template <typename T, int D>
__global__ void __launch_bounds__(HOP_WS_THREADS, 1)
    h6_kernel(tc_args_t a, const __grid_constant__ CUtensorMap tmK, const __grid_constant__ CUtensorMap tmV)
{
#if HOP_DEVICE
    extern __shared__ uint8_t h6_smem_raw[];
    __shared__ __align__(8) uint64_t full[h6_rung::stages<D>()], empty[h6_rung::stages<D>()];
    hop_ws_body<T, D, h6_rung>(a, tmK, tmV, h6_smem_raw, full, empty);
#endif
}

struct h6_pick {
    template <typename T, int D> static auto kernel() { return h6_kernel<T, D>; }
};

extern "C" int h6_launch(const tc_shape_t *s, const void *q, const void *k, const void *v, void *o)
{
    return hop_ws_launch<h6_pick, h6_rung>(s, q, k, v, o);
}
extern "C" int h6_describe(const tc_shape_t *s, char *buf, size_t n)
{
    return hop_ws_describe<h6_pick, h6_rung>(s, buf, n, "as h5, 3 K/V stages (2 at d = 256)");
}
