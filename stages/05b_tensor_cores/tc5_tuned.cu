/* tc5_tuned: tc5f with the tile shape and occupancy chosen per head dim.
 *
 * What changes against tc5f_qborrow: tc1-tc5f run every head dim with 4
 * warps (64 query rows) and 64 keys per tile. Here each d has its own
 * configuration (tc5_config below): warps per block, keys per tile, the
 * blocks per SM asked of the register allocator, and at d = 256 Q re-read
 * from shared memory instead of held in registers. It also takes the head
 * dims the earlier rungs decline: 32, 192 and 256 (FlashAttention-2 takes
 * every multiple of 8 up to 256; models use 32 ... 256). The kernel is
 * tc5f's, tc5_kernel with every change on (tc5_steps.cuh: the ladder from
 * tc4, one change per rung, and what each buys).
 *
 * Traffic per head: HBM es d (2 N_q + 2 N_kv ceil(N_q / BQ)) at most (K/V
 * re-reads mostly hit L2); shared memory per warp and tile: K and V once.
 * Measured: note 05b's ladder table (notes/05b_tensor_cores.md).
 *
 * Run: build/bin/05b_tensor_cores --dtype bf16 --kernel tc5_tuned [--dim 256] */
#include "tc5_steps.cuh"

/* ---------------------------------------------------------------- configurations */

/* The one configuration each head dim runs (TC5_CONFIG), chosen by measuring
 * (note 05b, "tc5_tuned: per head dim") where a figure exists, else by the
 * register and shared-memory budget: one block of 8 warps per SM loses to
 * two blocks of 4 (a barrier stalls every warp of a block, and a second
 * block fills those cycles); at d = 64 8 warps capped at 128 registers (2
 * blocks, 16 warps per SM) won. d = 32 takes d = 64's choice, d = 96
 * d = 128's. d = 192 takes 32 keys per tile (with 64, Q's 48 registers, O's
 * 96 and S's 32 spill 56 bytes: ptxas -v). d = 256 re-reads Q (QREG = 0) and
 * takes 32 keys, so that O (128 registers) and S fit without spilling and 2
 * blocks (96 KB of shared memory each) share an SM. d = 32, 96, 192, 256:
 * chosen by these budgets, not by measurement. */
template <int D> struct tc5_config;
template <> struct tc5_config<32> { static constexpr int WARPS = 8, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<64> { static constexpr int WARPS = 8, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<96> { static constexpr int WARPS = 4, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<128> { static constexpr int WARPS = 4, BKV = 64, MINB = 2, QREG = 1; };
template <> struct tc5_config<192> { static constexpr int WARPS = 4, BKV = 32, MINB = 2, QREG = 1; };
template <> struct tc5_config<256> { static constexpr int WARPS = 4, BKV = 32, MINB = 2, QREG = 0; };

template <typename T, int D> struct tc5_inst {
    using C = tc5_config<D>;
    static constexpr auto kernel = tc5_kernel<T, D, TC5_TUNED_FLAGS, C::WARPS, C::BKV, C::MINB, C::QREG>;
    static constexpr int BQ = MMA_M * C::WARPS, BKV = C::BKV, THREADS = 32 * C::WARPS;
    static constexpr int SMEM = tc5_smem<D, TC5_TUNED_FLAGS, C::WARPS, C::BKV, C::QREG>();
    static const char *what()
    {
        static char extra[160];
        snprintf(extra, sizeof extra, "tiles for d = %d: %d warps, %d keys, %s", D, C::WARPS, C::BKV,
                 C::QREG ? "Q fragments in registers, Q tile in stage 1's buffers"
                         : "Q re-read from shared memory per k-step (registers for O at d = 256)");
        return extra;
    }
};
TC_RUNG(tc5, tc5_inst, TC_DIMS_ALL)
