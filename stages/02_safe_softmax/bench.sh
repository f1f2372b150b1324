#!/usr/bin/env bash
# Stage 02's benchmarks, run by `make bench` (contract: tools/bench.sh):
#   softmax.csv, softmax_sweep.csv  the default shape and the cols sweep, fp32
#                                   and fp16 (softmax_stage_runs, tools/bench_lib.sh)
set -euo pipefail
source tools/bench_lib.sh
P=$BIN/02_safe_softmax
softmax_stage_runs "$P"
# Q2: the same logits through naive (stage 01) and safe softmax, past the
# overflow point: fp16 logits up to 12 > ln 65504 = 11.09, fp32 up to 100 > 88.72.
# The shape is the same with QUICK=1 (the counts of lost elements are quoted
# in the notes); only the timed runs are fewer.
ovf=()
[ "$QUICK" = 1 ] && ovf=(--iters 1 --warmup 0)
run "$P" --device "$DEVICE" --dtype fp16 --scale 12 --rows 256 --cols 4096 "${ovf[@]}" --csv "$OUT/overflow.csv"
run "$P" --device "$DEVICE" --dtype fp32 --scale 100 --rows 256 --cols 4096 "${ovf[@]}" --csv "$OUT/overflow.csv"
