#!/usr/bin/env bash
# Stage 05c benchmarks (run by tools/bench.sh with cwd = the repository root and
# BIN, OUT, DEVICE = auto|cpu|gpu, QUICK = 0|1 in the environment). GPU only:
# on a machine without a usable GPU (or DEVICE=cpu) it says so and exits 0.
# Writes:
#   hop_ladder.csv  every rung of the ladder beside stage 05b's tc6_m32
#                   (tc5_tuned where tc6 declines): bf16, B x N = 16384
#                   tokens, H x d = 2048, N = 4096 and 16384, d = 64 and 128,
#                   causal or not (notes/05c_hopper.md, the ladder table)
#   hop_torch.csv    PyTorch's SDPA (flash, cudnn, efficient) at the same shapes,
#                   same timing (tools/torch_attention.py), when torch is there
# QUICK=1: one small shape per d, 3 timed runs.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
P=$BIN/05c_hopper
[ -x "$P" ] || { echo "stage 05c: $P is missing: run make first" >&2; exit 1; }

if [ "$DEVICE" = cpu ] || ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
    why="no usable GPU (nvidia-smi -L found none)"
    [ "$DEVICE" = cpu ] && why="DEVICE=cpu"
    echo "stage 05c: skipped: GPU only (Hopper sm_90a kernels): $why"
    exit 0
fi
# shellcheck source=/dev/null
source tools/bench_lib.sh # run; a failed run makes the script exit 1

rm -f "$OUT/hop_ladder.csv" "$OUT/hop_torch.csv"
C=(--device gpu --dtype bf16 --csv "$OUT/hop_ladder.csv")
if [ "$QUICK" = 1 ]; then
    for d in 64 128; do
        run "$P" "${C[@]}" --batch 2 --heads 4 --seq 1000 --dim $d --iters 3 --warmup 1
        run "$P" "${C[@]}" --batch 2 --heads 4 --seq 1000 --dim $d --causal --iters 3 --warmup 1
    done
else
    for d in 64 128; do
        H=$((2048 / d))
        for N in 4096 16384; do
            B=$((16384 / N))
            run "$P" "${C[@]}" --batch $B --heads $H --seq $N --dim $d --iters 20 --warmup 3
            run "$P" "${C[@]}" --batch $B --heads $H --seq $N --dim $d --causal --iters 20 --warmup 3
        done
    done
    if python3 -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
        run python3 tools/torch_attention.py --csv "$OUT/hop_torch.csv" --iters 20
    else
        echo "stage 05c: PyTorch with CUDA not found: hop_torch.csv not written"
    fi
fi
echo "stage 05c: CSV in $OUT (hop_ladder.csv$([ -s "$OUT/hop_torch.csv" ] && echo ', hop_torch.csv'))"
