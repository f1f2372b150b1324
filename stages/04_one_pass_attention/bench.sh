#!/usr/bin/env bash
# Stage 04's benchmarks, run by `make bench` (contract: tools/bench.sh):
#   attention.csv  Q1/Q4: standard vs one-pass attention. The sweeps keep
#                  B x N fixed (16384 tokens on a GPU, H = 16; 2048 on the
#                  CPU, H = 2): d = 64 fp32 and d = 128 bf16; then one causal
#                  run at the default shape.
#                  QUICK=1: N = 100, 200, 400 at 400 tokens, H = 2, and the
#                  causal run at an odd shape (B 2, H 3, N 100, d 80, fp16).
set -euo pipefail
source tools/bench_lib.sh
P=$BIN/04_one_pass_attention
A=(--device "$DEVICE" --csv "$OUT/attention.csv")
if [ "$QUICK" = 1 ]; then
    for dd in "64 fp32" "128 bf16"; do
        set -- $dd
        for n in 100 200 400; do
            run "$P" "${A[@]}" --iters 1 --warmup 0 --batch $((400 / n)) --heads 2 --seq $n --dim "$1" --dtype "$2"
        done
    done
    run "$P" "${A[@]}" --iters 1 --warmup 0 --batch 2 --heads 3 --seq 100 --dim 80 --dtype fp16 --causal
else
    A+=(--iters 10 --warmup 2)
    run "$P" "${A[@]}" --sweep --dim 64
    run "$P" "${A[@]}" --sweep --dim 128 --dtype bf16
    run "$P" "${A[@]}" --causal
fi
