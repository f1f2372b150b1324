#!/usr/bin/env bash
# Runs every stage on the chosen device (DEVICE=auto|cpu|gpu) and writes the
# CSV files the plots are drawn from, with the full logs beside them:
#   softmax.csv        stages 01-03 at their default shape, fp32 and fp16
#   softmax_sweep.csv  stages 01-03, cols = 1024 ... 1048576 at a fixed rows x cols
#   overflow.csv       Q2: naive vs safe softmax on logits past the overflow point
#   attention.csv      stage 04: sweeps over N (d = 64 fp32, d = 128 bf16), one causal run
# Called by `make bench`; BUILD and BENCH_DIR come from the Makefile.
set -euo pipefail
BUILD=${BUILD:-build}
OUT=${BENCH_DIR:-$BUILD/bench}
DEVICE=${DEVICE:-auto}
BIN=$BUILD/bin
mkdir -p "$OUT"
rm -f "$OUT"/softmax.csv "$OUT"/softmax_sweep.csv "$OUT"/overflow.csv "$OUT"/attention.csv
log=$OUT/bench.log
: >"$log"
run() { echo "+ $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; }

for s in 01_naive_softmax 02_safe_softmax 03_online_softmax; do
    for dt in fp32 fp16; do
        run "$BIN/$s" --device "$DEVICE" --dtype "$dt" --csv "$OUT/softmax.csv"
    done
done
for s in 01_naive_softmax 02_safe_softmax 03_online_softmax; do
    for dt in fp32 fp16; do
        run "$BIN/$s" --device "$DEVICE" --dtype "$dt" --sweep --iters 10 --csv "$OUT/softmax_sweep.csv" >/dev/null
    done
done
echo "== Q2: overflow (fp16 logits up to 12 > ln 65504 = 11.09; fp32 up to 100 > 88.72)" | tee -a "$log"
run "$BIN/02_safe_softmax" --device "$DEVICE" --dtype fp16 --scale 12 --rows 256 --cols 4096 --csv "$OUT/overflow.csv"
run "$BIN/02_safe_softmax" --device "$DEVICE" --dtype fp32 --scale 100 --rows 256 --cols 4096 --csv "$OUT/overflow.csv"

if [ -x "$BIN/04_one_pass_attention" ]; then
    # Q1/Q4: standard vs one-pass attention. The sweep keeps B x N fixed
    # (16384 tokens on a GPU, 2048 on the CPU), H = 16 (GPU) or 2 (CPU).
    A=(--device "$DEVICE" --iters 10 --warmup 2 --csv "$OUT/attention.csv")
    run "$BIN/04_one_pass_attention" "${A[@]}" --sweep --dim 64
    run "$BIN/04_one_pass_attention" "${A[@]}" --sweep --dim 128 --dtype bf16
    run "$BIN/04_one_pass_attention" "${A[@]}" --causal
fi
echo "CSV and logs in $OUT"
