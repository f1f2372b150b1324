#!/usr/bin/env bash
# Stage 02's benchmarks, run by `make bench` (contract: plots/bench.sh):
#   softmax.csv        the default shape (QUICK=1: 37 x 1000), fp32 and fp16
#   softmax_sweep.csv  cols = 1024 ... 1048576 at the default rows x cols
#                      (QUICK=1: at 2^20 elements, one timed run each)
set -euo pipefail
source plots/bench_lib.sh
P=$BIN/02_safe_softmax
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
# Q2: the same logits through naive (stage 01) and safe softmax, past the
# overflow point: fp16 logits up to 12 > ln 65504 = 11.09, fp32 up to 100 > 88.72.
# The shape is the same with QUICK=1 (the counts of lost elements are quoted
# in the notes); only the timed runs are fewer.
ovf=()
[ "$QUICK" = 1 ] && ovf=(--iters 1 --warmup 0)
run "$P" --device "$DEVICE" --dtype fp16 --scale 12 --rows 256 --cols 4096 "${ovf[@]}" --csv "$OUT/overflow.csv"
run "$P" --device "$DEVICE" --dtype fp32 --scale 100 --rows 256 --cols 4096 "${ovf[@]}" --csv "$OUT/overflow.csv"
