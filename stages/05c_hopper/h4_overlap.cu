/* h4_overlap: h3 with FlashAttention-3's intra-warpgroup pipelining: the
 * next tile's S = Q K^T is issued before this tile's softmax is done with.
 *
 * What changes against h3_warpspec.cu: in h3 a consumer group runs, per
 * tile, S = Q K^T (tensor cores), then the softmax (FMA and MUFU units,
 * tensor cores idle for this group), then O += P V (tensor cores, the
 * softmax units idle). Here iteration t issues S_t and then O += P_{t-1}
 * V_{t-1} back to back, waits for S_t only (wgmma.wait_group 1), and runs
 * tile t's softmax while P_{t-1} V_{t-1} is still on the tensor cores; O is
 * rescaled (by tile t's alpha) and P_t packed once that PV is done
 * (wait_group 0). One more S tile lives in registers beside P (Shah et al.
 * 2024, section 3.2, "intra-warpgroup overlapping"). A stage is released
 * when the PV that reads its V is done. A group whose rows see none of a
 * tile's keys (causal) still waits for and releases it.
 *
 * Traffic: as h1 (tiles 128 x 128).
 *
 * Run: build/bin/05c_hopper --dtype bf16 --dim 128 --kernel h4_overlap */
#include "hop_ws.cuh"

/* the flag block (hop_ws.cuh lists every rung's) */
using h4_rung = hop_ws_rung</* OVERLAP */ true, /* PINGPONG */ false, /* STAGES3 */ false>;

HOP_WS_RUNG(4, h4_rung,
            "as h3, and S of the next tile issued before the softmax of this one (intra-warpgroup overlap)")
