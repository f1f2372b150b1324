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

HOP_WS_RUNG(6, h6_rung,
            "as h5, 3 K/V stages (2 at d = 256)")
