/* build/bin/05_tiled_attention: tiled attention (Q5) against stage 04's
 * standard and one-pass attention, on the same input. fa1 and fa2 are
 * FlashAttention-1's and -2's loop orders (CPU: tiles in a simulated on-chip
 * memory, every HBM byte counted; GPU: shared-memory tiles), fa2-regtile and
 * fa2-regtile-br128 the register-tiled FA2 kernels (fp32, CUDA cores). The
 * tensor-core ladder is the next stage (stages/05b_tensor_cores). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tiled.h"

int main(int argc, char **argv)
{
    static const attn_impl_t *const impls[] = {
        &IMPL_ATTN_STANDARD, &IMPL_ATTN_ONE_PASS, &IMPL_ATTN_FA1, &IMPL_ATTN_FA2,
        &IMPL_ATTN_FA2_REGTILE, &IMPL_ATTN_FA2_REGTILE128,
    };
    /* The stage's own options (cli.h, cli_opt_t): the K/V heads the fp32
     * kernels index (stage 06 builds on that) and the tiles. */
    static const cli_opt_t opts[] = {
        { "kv-heads", "G", 65536, "key/value heads (default --heads; must divide it)" },
        { "br", "N", 4096, "query rows per tile" },
        { "bc", "N", 4096, "key rows per tile" },
        { "sram", "BYTES", 1LL << 30, "simulated on-chip memory of the CPU tiling" },
    };
    const attn_stage_t st = {
        .prog = "05_tiled_attention",
        .summary = "stage 05, tiled attention: FlashAttention-1 and -2 loop orders against stage 04",
        .impls = impls, .nimpls = STF_LEN(impls), .own = 2, .opts = opts, .nopts = STF_LEN(opts),
    };
    /* Tiles that cannot fit in --sram are bad input (exit 2), whatever the
     * shape: checked before the driver runs anything. A parse error is left
     * to the driver, which reports it. */
    opts_t o;
    const cli_spec_t spec = { st.prog, st.summary, CLI_ATTENTION, NULL };
    FILE *devnull = fopen("/dev/null", "w");
    int help = 0;
    for (int i = 1; i < argc; i++) help |= !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h");
    if (!help && devnull && cli_parse_opts(&spec, st.opts, st.nopts, argc, argv, &o, devnull) == 0 &&
        (cli_opt_given(&o, "br") || cli_opt_given(&o, "bc") || cli_opt_given(&o, "sram"))) {
        const size_t d = (o.given & GIVEN_DIM) ? (size_t)o.dim : 64;
        if (tiled_check_options(st.prog, d, (size_t)cli_opt_value(&o, "br"), (size_t)cli_opt_value(&o, "bc"),
                                (size_t)cli_opt_value(&o, "sram"))) {
            fclose(devnull);
            return 2;
        }
    }
    if (devnull) fclose(devnull);
    return attention_stage_main(&st, argc, argv);
}
