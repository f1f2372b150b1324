#!/usr/bin/env bash
# Stage 05's IO-complexity runs (run by tools/bench.sh after the stage's lines
# of tools/bench_shapes.tsv, which write tiled.csv; cwd = the repository root,
# BIN, OUT, QUICK = 0|1 in the environment). Writes:
#   tiled_io.csv     the IO-complexity experiment (Theorem 2 of Dao et al. 2022),
#                    always on the CPU, bytes counted by the ledger: standard,
#                    one-pass, FA1 order and FA2 order at one N and d, the FA
#                    orders once per on-chip budget M (--sram; a column
#                    sram_bytes added to each run's rows: why this is a script)
# plots/draw_tiled.sh draws it. QUICK=1: tiny shapes, seconds on a 2-core CPU.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
P=$BIN/05_tiled_attention
[ -x "$P" ] || { echo "stage 05: $P is missing: run make first" >&2; exit 1; }
# shellcheck source=/dev/null
source tools/bench_lib.sh # run; a failed run makes the script exit 1

rm -f "$OUT/tiled_io.csv"

# ---- 1. IO complexity, counted (CPU ledger; tests/test_tiled.c proves ledger = closed form)
if [ "$QUICK" = 1 ]; then
    N=128; D=64; MS="4096 16384 65536"
else
    N=1024; D=64; MS="2048 4096 8192 16384 32768 65536 131072 262144 524288 1048576"
fi
A=(--device cpu --batch 1 --heads 1 --seq "$N" --dim "$D" --iters 1 --warmup 0)
tmp=$OUT/.tiled_io_one.csv
add_col() { # appends $tmp to tiled_io.csv with a column sram_bytes = $1
    [ -s "$tmp" ] || return 0 # the run failed (bench_lib.sh counts it)
    awk -F, -v OFS=, -v m="$1" -v hdr="$([ -s "$OUT/tiled_io.csv" ] && echo 0 || echo 1)" '
        NR == 1 { if (hdr) print $0, "sram_bytes"; next } { print $0, m }' "$tmp" >>"$OUT/tiled_io.csv"
    rm -f "$tmp"
}
rm -f "$tmp"
run "$P" "${A[@]}" --kernel standard,one-pass --csv "$tmp" && add_col 0
for M in $MS; do
    run "$P" "${A[@]}" --kernel fa1,fa2 --sram "$M" --csv "$tmp" && add_col "$M"
done

echo "stage 05: CSV in $OUT (tiled_io.csv)"
