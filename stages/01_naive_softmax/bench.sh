#!/usr/bin/env bash
# Stage 01's benchmarks, run by `make bench` (contract: plots/bench.sh):
#   softmax.csv        the default shape (QUICK=1: 37 x 1000), fp32 and fp16
#   softmax_sweep.csv  cols = 1024 ... 1048576 at the default rows x cols
#                      (QUICK=1: at 2^20 elements, one timed run each)
set -euo pipefail
source plots/bench_lib.sh
P=$BIN/01_naive_softmax
if [ "$QUICK" = 1 ]; then
    one=(--rows 37 --cols 1000 --iters 3 --warmup 1)
    sweep=(--sweep --rows 1024 --cols 1024 --iters 1 --warmup 0)
else
    one=()
    sweep=(--sweep --iters 10)
fi
for dt in fp32 fp16; do
    run "$P" --device "$DEVICE" --dtype "$dt" "${one[@]}" --csv "$OUT/softmax.csv"
done
for dt in fp32 fp16; do
    run "$P" --device "$DEVICE" --dtype "$dt" "${sweep[@]}" --csv "$OUT/softmax_sweep.csv" >/dev/null
done
