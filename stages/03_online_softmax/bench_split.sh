#!/usr/bin/env bash
# Stage 03 beyond one SM: the benchmark runs behind notes/03_online_softmax.md
# ("Beyond one SM") and plots/draw_softmax_split.sh. Writes into $OUT:
#   softmax_split.csv          the target shapes: 1 x 1048576 fp32, 16 x 256000
#                              fp32 and bf16 (stage 03, and stage 01's copy of
#                              the same shape)
#   softmax_rows.csv           rows = 1, 2, 4 ... 4096 at cols = 262144 fp32
#                              (GPU; CPU: rows 1 ... 32), stage 03 and copy
#   softmax_cluster_sweep.csv  stage 03's cols sweep (rows x cols = 2^28 on
#                              the GPU, 2^21 on the CPU), fp32 and fp16: every
#                              path, merge-cluster and merge-persist included
# Every stage 03 run includes merge-wave and merge-persist where they apply,
# and names the fastest path of each shape after its tables.
# Called by tools/bench.sh with cwd = the repository root and BIN, OUT,
# DEVICE (auto|cpu|gpu), QUICK (0|1) exported; runs alone too:
#   BIN=build/bin OUT=build/bench DEVICE=gpu bash stages/03_online_softmax/bench_split.sh
# QUICK=1: tiny shapes only. Exits non-zero if any run failed (bench_lib.sh).
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
source tools/bench_lib.sh # run; a failed run makes the script exit 1

S03=$BIN/03_online_softmax
S01=$BIN/01_naive_softmax
# Which device "auto" means here: tools/bench_lib.sh decides it once.
dev=$(bench_device)
rm -f "$OUT"/softmax_split.csv "$OUT"/softmax_rows.csv "$OUT"/softmax_cluster_sweep.csv

if [ "$QUICK" = 1 ]; then
    shapes=("1 65536 fp32" "4 16000 fp32" "4 16000 bf16")
    rows_list=(1 2 4 8)
    rows_cols=16384
    sweep=(--rows 16 --cols 4096)
    it=(--iters 2 --warmup 1)
elif [ "$dev" = gpu ]; then
    shapes=("1 1048576 fp32" "16 256000 fp32" "16 256000 bf16")
    rows_list=(1 2 4 8 16 32 64 128 256 512 1024 2048 4096)
    rows_cols=262144
    sweep=(--rows 16384 --cols 16384) # 2^28 elements, 1 GiB of fp32
    it=(--iters 10 --warmup 3)
else
    shapes=("1 1048576 fp32" "16 256000 fp32" "16 256000 bf16")
    rows_list=(1 2 4 8 16 32)
    rows_cols=262144
    sweep=(--rows 8 --cols 262144) # 2^21 elements
    it=(--iters 3 --warmup 1)
fi

for s in "${shapes[@]}"; do
    set -- $s
    for p in "$S01" "$S03"; do
        run "$p" --device "$dev" --rows "$1" --cols "$2" --dtype "$3" "${it[@]}" --csv "$OUT/softmax_split.csv"
    done
done
for r in "${rows_list[@]}"; do
    for p in "$S01" "$S03"; do
        run "$p" --device "$dev" --rows "$r" --cols "$rows_cols" --dtype fp32 "${it[@]}" --csv "$OUT/softmax_rows.csv"
    done
done
for dt in fp32 fp16; do
    run "$S03" --device "$dev" --dtype "$dt" --sweep "${sweep[@]}" "${it[@]}" --csv "$OUT/softmax_cluster_sweep.csv"
done

echo "bench_split: CSV in $OUT (softmax_split.csv, softmax_rows.csv, softmax_cluster_sweep.csv)"
