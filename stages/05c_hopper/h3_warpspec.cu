/* h3_warpspec: h2 with warp specialization: a producer warp group that only
 * loads, and two consumer warp groups that only compute.
 *
 * What changes against h2_tma.cu: in h2 the thread that issues the TMA
 * copies is also a consumer, and a tile is refilled only after a
 * __syncthreads of the whole block, so the slower group stalls the faster
 * one and the copies are issued late. Here warp group 0 is the producer:
 * one of its threads runs ahead, waiting on each stage's "empty" mbarrier
 * (all 256 consumer threads arrive on it once their wgmma reads of the stage
 * are done) and refilling it, armed on the stage's "full" mbarrier as in
 * h2. Groups 1 and 2 consume, each at its own pace: no block-wide barrier
 * in the loop. Since the producer needs few registers, it gives them back
 * (setmaxnreg.dec to 40) and the consumers take them (setmaxnreg.inc to
 * 232): 128 x 40 + 256 x 232 = 64512 of the SM's 65536 (FlashAttention-3,
 * Shah et al. 2024, section 3.1, "producer-consumer asynchrony"). Each
 * consumer group loads its own 64 rows of Q (cp.async, a named barrier).
 *
 * Traffic: as h1 (tiles 128 x 128).
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h3_warpspec */
#include "hop_ws.cuh"

/* the flag block (hop_ws.cuh lists every rung's) */
using h3_rung = hop_ws_rung</* OVERLAP */ false, /* PINGPONG */ false, /* STAGES3 */ false>;

HOP_WS_RUNG(3, h3_rung,
            "1 producer + 2 consumer warp groups (setmaxnreg 40/232), TMA, 2 stages, full/empty mbarriers")
