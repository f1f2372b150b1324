#!/usr/bin/env bash
# Stage 08 benchmarks (run by tools/bench.sh with cwd = the repository root and
# BIN, OUT, DEVICE = auto|cpu|gpu, QUICK = 0|1 in the environment). Writes:
#   backward_io.csv   the traffic and peak memory of the standard against the
#                     FlashAttention-2 backward, always on the CPU (the ledger
#                     counts every byte; tests/test_backward.c proves ledger =
#                     closed form): N = 64 ... 2048, B = H = 1, d = 64, fp32
#   backward.csv      the stage's table on DEVICE. GPU (bf16): the issue's
#                     shapes (B N = 16384 tokens, H d = 2048; d = 64, 128;
#                     N = 4096, 16384; causal or not) for the tensor-core
#                     kernels; the sweep N = 1024 ... 16384 (d = 64) for the
#                     standard against FlashAttention's traffic and peak
#                     memory; the FlashAttention paper's shape (GPT-2 medium:
#                     B 64, H 16, N 1024, d 64), forward + backward; a checked
#                     run saved with --save-npy for tools/torch_backward.py
#                     --check (FlashAttention's 2x-PyTorch criterion).
#                     CPU: the sweep N = 64 ... 512 (fp32 and bf16).
# The GPU round gives this script about 45 s (tools/gpu/s08.sh): the
# repetitions are few, and BWD_PART=1 runs only the traffic, memory and paper
# runs, BWD_PART=2 only the speed shapes (default: both, and the
# checked runs), so that two rounds can cover it all.
# plots/draw_backward.sh draws them. QUICK=1: tiny shapes, seconds on a CPU.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-${BENCH_DIR:-build/bench}}
DEVICE=${DEVICE:-auto}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
P=$BIN/08_backward
[ -x "$P" ] || { echo "stage 08: $P is missing: run make first" >&2; exit 1; }
# shellcheck source=/dev/null
source tools/bench_lib.sh # run; a failed run makes the script exit 1
rm -f "$OUT/backward_io.csv" "$OUT/backward.csv"

gpu=0
if [ "$DEVICE" = gpu ] || { [ "$DEVICE" = auto ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
    gpu=1
fi

# ---- 1. traffic and peak memory, counted (CPU ledger)
IO=(--device cpu --batch 1 --heads 1 --dim 64 --iters 1 --warmup 0 --kernel bwd-standard,bwd-fa2 --csv "$OUT/backward_io.csv")
if [ "$QUICK" = 1 ]; then NS="64 128"; elif [ "$gpu" = 1 ]; then NS=""; else NS="64 128 256 512 1024 2048"; fi
for n in $NS; do run "$P" "${IO[@]}" --seq "$n"; done
# the Q-side re-reads fall as 1/Bc: FA2 at N = 1024 with Br = 64 and growing key blocks (rows of backward_io.csv with tiles 64xBc)
if [ "$QUICK" != 1 ] && [ "$gpu" = 0 ]; then
    for bc in 16 32 128 256; do run "$P" "${IO[@]}" --kernel bwd-fa2 --seq 1024 --br 64 --bc $bc; done
fi

# ---- 2. the stage's table on DEVICE
C=(--csv "$OUT/backward.csv")
if [ "$QUICK" = 1 ]; then
    run "$P" "${C[@]}" --device "$DEVICE" --seq-q 37 --seq-kv 45 --heads 4 --kv-heads 2 --dim 24 --iters 1 --warmup 0
    run "$P" "${C[@]}" --device "$DEVICE" --seq 40 --heads 2 --causal --dtype bf16 --iters 1 --warmup 0
fi
G=(--device gpu --dtype bf16 --iters 5 --warmup 1)
PART=${BWD_PART:-all}
if [ "$QUICK" != 1 ] && [ "$gpu" = 1 ] && [ "$PART" != 2 ]; then
    # traffic and peak memory against N: the standard (cuBLAS, N x N in HBM) against FlashAttention's
    run "$P" "${C[@]}" "${G[@]}" --iters 3 --kernel bwd-standard,bwd-tc-atomic --sweep --dim 64 --heads 16
    # the paper's shape, forward + backward (Dao et al. 2022, Fig. 2: 40.3 GB vs 4.4 GB of HBM traffic)
    run "$P" "${C[@]}" "${G[@]}" --kernel bwd-standard,bwd-tc-atomic,bwd-tc-det,bwd-tc-k32 --batch 64 --heads 16 --seq 1024 --dim 64
fi
if [ "$QUICK" != 1 ] && [ "$gpu" = 1 ] && [ "$PART" = all ]; then
    # checked runs (the fp64 reference is affordable here), saved for FlashAttention's criterion
    # (tools/bwd_accuracy.sh runs the whole grid of it)
    mkdir -p "$OUT/bwd_npy"
    run "$P" "${C[@]}" "${G[@]}" --batch 1 --heads 2 --kv-heads 1 --seq-q 600 --seq-kv 700 --dim 64 --causal \
        --save-npy "$OUT/bwd_npy"
    if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
        run python3 tools/torch_backward.py --check "$OUT/bwd_npy"
    fi
    run "$P" "${C[@]}" "${G[@]}" --batch 1 --heads 2 --seq 512 --dim 128
fi
if [ "$QUICK" != 1 ] && [ "$gpu" = 1 ] && [ "$PART" != 1 ]; then
    # the shapes: tensor-core kernels (16384 tokens, H d = 2048)
    for d in 64 128; do
        for n in 4096 16384; do
            for c in "" --causal; do
                run "$P" "${C[@]}" "${G[@]}" --kernel bwd-tc-atomic,bwd-tc-det$([ $d = 64 ] && echo ,bwd-tc-k32) --dim $d --heads $((2048 / d)) \
                    --batch $((16384 / n)) --seq $n $c
            done
        done
    done
fi
if [ "$QUICK" != 1 ] && [ "$gpu" = 0 ]; then
    run "$P" "${C[@]}" --device cpu --sweep --dim 64 --iters 1 --warmup 0
    run "$P" "${C[@]}" --device cpu --sweep --dim 64 --iters 1 --warmup 0 --causal --dtype bf16
fi
