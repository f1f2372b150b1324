#!/usr/bin/env bash
# FlashAttention's accuracy criterion for the backward (stage 08), per
# gradient: on the same input, each of dQ, dK and dV of every GPU backward
# kernel may be at most twice as far from an fp32 reference as PyTorch's
# autograd in the same 16-bit precision (tools/torch_backward.py --check).
# Needs a GPU and python3 with torch (the GPU machine has both).
#
# For each case build/bin/08_backward runs every kernel that takes the shape
# once (its own fp64 check included) and saves q, k, v, dO, the gradients and
# meta.json (--save-npy). The grid: every head dim the tensor-core kernels
# take (32, 64, 96, 128; 256 for the CUDA-core and cuBLAS kernels), fp16 and
# bf16, causal or not, odd lengths: 113 queries against 203 keys with 4 query
# heads over 2 K/V heads (GQA); 203 against 113 (causal: rows that see no
# key); 1000 against 1000. Every kernel expected for a case must have saved
# its gradients (a kernel that declined would pass nothing): --expect.
# The criterion is proved on every case: a copy with one element moved by
# 5 x torch's error must fail it (torch_backward.py prints it otherwise).
# Usage: BIN=build/bin OUT=build/bench bash tools/bwd_accuracy.sh
#   DIMS="64 128" DTYPES=bf16 to narrow the grid.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
DIMS=${DIMS:-32 64 96 128 256}
DTYPES=${DTYPES:-bf16 fp16}
HERE=$(cd "$(dirname "$0")" && pwd)
log=$OUT/bwd_accuracy.log
mkdir -p "$OUT"
: >"$log"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail=0
# one background job per head dim (the GPU machine has cores to spare); each case logs into its folder
one_dim() {
    local d=$1 K s dir
    K=bwd-standard,bwd-fa2,bwd-tc-atomic,bwd-tc-det
    [ "$d" -le 64 ] && K=$K,bwd-tc-k32
    [ "$d" = 256 ] && K=bwd-standard,bwd-fa2
    for dt in $DTYPES; do
        for causal in "" --causal; do
            s=0
            for shape in "--batch 2 --heads 4 --kv-heads 2 --seq-q 113 --seq-kv 203" \
                         "--batch 1 --heads 2 --seq-q 203 --seq-kv 113" \
                         "--batch 1 --heads 2 --seq-q 1000 --seq-kv 1000"; do
                s=$((s + 1))
                [ "$d" = 256 ] && [ $s = 3 ] && continue # the fp32 CUDA-core kernel is slow at d = 256
                # the directory's name says the case, so a failure in the log names it
                dir=$root/d${d}_${dt}${causal:+_causal}_shape$s
                mkdir -p "$dir"
                echo "== case $(basename "$dir"): $K" >"$dir/run.log"
                if "$BIN/08_backward" --device gpu --dtype "$dt" --dim "$d" $causal $shape --iters 1 --warmup 0 \
                        --kernel "$K" --save-npy "$dir" >>"$dir/run.log" 2>&1; then
                    echo "$K" >"$dir/expect"
                else
                    echo "FAILED (program): d=$d $dt $causal $shape" >>"$dir/run.log"
                fi
            done
        done
    done
}
for d in $DIMS; do one_dim "$d" & done
wait
n=0
dirs=()
for dir in "$root"/d*; do
    [ -d "$dir" ] || continue
    n=$((n + 1))
    cat "$dir/run.log" >>"$log"
    if [ -f "$dir/expect" ]; then dirs+=("$dir"); else fail=1; fi
done
echo "shapes: 1 = 2 x 4 query heads over 2 K/V heads, 113 x 203; 2 = 1 x 2 heads, 203 x 113; 3 = 1 x 2 heads, 1000 x 1000" >>"$log"
csv=$OUT/bwd_accuracy.csv
if [ ${#dirs[@]} -gt 0 ] && ! python3 "$HERE/torch_backward.py" --check "${dirs[@]}" --csv "$csv" >>"$log" 2>&1; then
    echo "FAILED (2x torch): see the FAIL lines in $log" | tee -a "$log"
    fail=1
fi
sed -i "s|$root/||g" "$log" "$csv" 2>/dev/null
grep 'FAIL' "$log" | head -n 20
echo "bwd_accuracy: $n cases; $(grep -c ' PASS$' "$log") gradient checks passed, $(grep -c ' FAIL' "$log") failed (log: $log)"
grep -h '^broken copies' "$log"
grep -A40 '^worst ratio' "$log"
exit $fail
