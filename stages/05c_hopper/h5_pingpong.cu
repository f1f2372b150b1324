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

HOP_WS_RUNG(5, h5_rung,
            "as h4, the two consumer groups taking turns on the tensor cores (named barriers)")
