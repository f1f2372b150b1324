#!/usr/bin/env bash
# Stage 06 sweep over group sizes g = Hq / Hkv = 1, 2, 4, 8, 32 (Hq = 32),
# the three methods, prefill and decode, into $OUT/gqa.csv (drawn by
# plots/draw_gqa.sh). Called by tools/bench.sh with cwd = the repository root
# and BIN, OUT, DEVICE (auto|cpu|gpu), QUICK (0|1) exported.
#   GPU: bf16, d = 128; prefill B = 4, N = 4096 (and B = 1, N = 16384 for
#        g = 1, 4: the 3% target); decode B = 8, Nk = 32768.
#   CPU: fp32, d = 64; prefill N = 128; decode B = 2, Nk = 4096.
#   QUICK=1: tiny shapes (seconds); on a GPU its kernels in bf16, so that
#   tools/gpu_check.sh runs them under compute-sanitizer.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
# shellcheck disable=SC1091
source tools/bench_lib.sh # run; a failed run makes the script exit 1
CSV=$OUT/gqa.csv
rm -f "$CSV"

dev=$(bench_device)
P=$BIN/06_gqa_attention
if [ "$QUICK" = 1 ]; then
    # on a GPU (DEVICE=gpu, or auto with one) the GPU kernels in bf16: this is
    # what tools/gpu_check.sh runs under compute-sanitizer
    A=(--device "$dev" --dim 64 --iters 1 --warmup 0 --csv "$CSV")
    [ "$dev" = gpu ] && A+=(--dtype bf16)
    for kv in 32 16 8 4 1; do
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --seq 16
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --decode --seq-kv 256
    done
elif [ "$dev" = gpu ]; then
    A=(--device gpu --dim 128 --dtype bf16 --iters 20 --csv "$CSV")
    for kv in 32 16 8 4 1; do
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 4 --seq 4096
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 8 --decode --seq-kv 32768
    done
    for kv in 32 8; do run "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 1 --seq 16384; done
    run "$P" "${A[@]}" --heads 32 --kv-heads 8 --batch 4 --seq 4096 --causal
else
    A=(--device cpu --dim 64 --iters 3 --warmup 1 --csv "$CSV")
    for kv in 32 16 8 4 1; do
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --seq 128
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 2 --decode --seq-kv 4096
    done
fi
