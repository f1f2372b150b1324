#!/usr/bin/env bash
# Stage 05 benchmarks (run by tools/bench.sh with cwd = the repository root and
# BIN, OUT, DEVICE = auto|cpu|gpu, QUICK = 0|1 in the environment). Writes:
#   tiled_io.csv     the IO-complexity experiment (Theorem 2 of Dao et al. 2022),
#                    always on the CPU, bytes counted by the ledger: standard,
#                    one-pass, FA1 order and FA2 order at one N and d, the FA
#                    orders once per on-chip budget M (--sram; column sram_bytes)
#   tiled.csv        the stage's table on DEVICE: --sweep over N at d = 64 and
#                    d = 128 (fp32), causal, and fa1/fa2 with growing tiles
# plots/draw_tiled.sh draws them. QUICK=1: tiny shapes, seconds on a 2-core CPU.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
P=$BIN/05_tiled_attention
[ -x "$P" ] || { echo "stage 05: $P is missing: run make first" >&2; exit 1; }
# shellcheck source=/dev/null
source tools/bench_lib.sh # run; a failed run makes the script exit 1

rm -f "$OUT/tiled_io.csv" "$OUT/tiled.csv"

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

# ---- 2. the stage's table on DEVICE
gpu=0
if [ "$(bench_device)" = gpu ]; then
    gpu=1
fi
C=(--device "$DEVICE" --csv "$OUT/tiled.csv")
if [ "$QUICK" = 1 ]; then
    run "$P" "${C[@]}" --seq 64 --heads 2 --iters 1 --warmup 0
    run "$P" "${C[@]}" --seq 64 --heads 2 --causal --iters 1 --warmup 0
elif [ "$gpu" = 1 ]; then
    # fp32, 16384 tokens (B = 16384 / N), H = 16; fa1 (16 to 256 thread blocks,
    # seconds per run at N = 16384) with fewer repetitions
    FAST=standard,one-pass,fa2,fa2-regtile,fa2-regtile-br128
    for d in 64 128; do
        run "$P" "${C[@]}" --sweep --dim $d --kernel $FAST --iters 10 --warmup 2
        run "$P" "${C[@]}" --sweep --dim $d --kernel fa1 --iters 3 --warmup 1
        run "$P" "${C[@]}" --causal --batch 1 --heads 16 --seq 16384 --dim $d --kernel $FAST --iters 10 --warmup 2
    done
    # the traffic against the tile size (N = 4096, B = 4, H = 16, d = 64)
    for t in 32 64 128; do
        run "$P" "${C[@]}" --batch 4 --heads 16 --seq 4096 --kernel fa1 --br 64 --bc $t --iters 3 --warmup 1
        run "$P" "${C[@]}" --batch 4 --heads 16 --seq 4096 --kernel fa2 --br $t --bc 64 --iters 5 --warmup 1
    done
else
    # CPU: N = 128 ... 2048 at B = 2048 / N, H = 2; every K/V element of
    # one-pass goes through the ledger, so its rows take the longest
    run "$P" "${C[@]}" --sweep --dim 64
    run "$P" "${C[@]}" --causal
    for t in 16 64 256; do
        run "$P" "${C[@]}" --seq 512 --kernel fa1 --br 64 --bc $t --iters 3
        run "$P" "${C[@]}" --seq 512 --kernel fa2 --br $t --bc 64 --iters 3
    done
fi
echo "stage 05: CSV in $OUT (tiled_io.csv, tiled.csv)"
