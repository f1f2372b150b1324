#!/usr/bin/env bash
# IO-complexity sweep at d = 128 (as stages/05_tiled_attention/bench.sh does at d = 64)
set -euo pipefail
P=${BIN:-build-cpu/bin}/05_tiled_attention
OUT=notes/data/cpu-2026-12-02
A=(--device cpu --batch 1 --heads 1 --seq 1024 --dim 128 --iters 1 --warmup 0)
csv=$OUT/tiled_io_d128.csv; tmp=$OUT/.one.csv
rm -f "$csv" "$tmp"
add_col() { awk -F, -v OFS=, -v m="$1" -v hdr="$([ -s "$csv" ] && echo 0 || echo 1)" \
    'NR == 1 { if (hdr) print $0, "sram_bytes"; next } { print $0, m }' "$tmp" >>"$csv"; rm -f "$tmp"; }
"$P" "${A[@]}" --kernel standard,one-pass --csv "$tmp" && add_col 0
for M in 4096 8192 16384 32768 65536 131072 262144 524288 1048576 2097152 4194304; do
    "$P" "${A[@]}" --kernel fa1,fa2 --sram "$M" --csv "$tmp" && add_col "$M"
done
