#!/usr/bin/env bash
# FlashAttention's own accuracy criterion (its tests/test_flash_attn.py),
# applied to every tensor-core kernel of stage 05: on the same input, the
# largest error against an fp32 reference may be at most twice that of
# PyTorch's attention in the same 16-bit precision. Needs a GPU and python3
# with torch (the GPU machine has both).
#
# For each shape, 05b_tensor_cores runs the selected kernels once and saves
# q, k, v, every output and meta.json (--save-npy); tools/torch_attention.py
# --check then compares each output with torch's. The grid: every supported d
# (64, 96, 128), fp16 and bf16, causal or not, on odd lengths (113 queries
# against 203 keys with 8 query heads over 2 K/V heads; 203 against 113;
# 1000 against 1000).
# The check itself is proved on every run: broken copies of the first case's
# outputs (one NaN, one inf, all zeros, one element 5 x torch's error off)
# must all fail it (torch_attention.py --check-broken).
# DIMS="64 128" limits the head dims (a stage whose kernels take fewer).
# Usage: BIN=build/bin OUT=build/bench bash tools/fa_accuracy.sh
# Without a GPU (torch on the CPU, stage 05's CPU kernels):
#   DEVICE=cpu PROG=05_tiled_attention KERNELS=fa1,fa2 bash tools/fa_accuracy.sh
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
DEVICE=${DEVICE:-gpu}
PROG=${PROG:-05b_tensor_cores}
KERNELS=${KERNELS:-tc1_mma,tc2_swizzle,tc3_pipeline,tc4_exp2,tc5a_kouter,tc5b_tree,tc5c_immoff,tc5d_lazy,tc5e_ostore,tc5f_qborrow,tc5_tuned,tc6_m32}
HERE=$(cd "$(dirname "$0")" && pwd)
log=$OUT/fa_accuracy.log
mkdir -p "$OUT"
: >"$log"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail=0 n=0
impl_args=()
for k in ${KERNELS//,/ }; do impl_args+=(--impl "$k"); done
dirs=()
# the cases run FA_JOBS at a time (each program run is mostly CPU: its fp64
# reference and checks), each into its own log, appended in order after
slot() { while [ "$(jobs -rp | wc -l)" -ge "$1" ]; do wait -n; done; }
cases=()
for d in ${DIMS:-64 96 128}; do
    for dt in bf16 fp16; do
        for causal in "" --causal; do
            s=0
            for shape in "--batch 2 --heads 8 --kv-heads 2 --seq-q 113 --seq-kv 203" \
                         "--batch 2 --heads 4 --seq-q 203 --seq-kv 113" \
                         "--batch 1 --heads 4 --seq-q 1000 --seq-kv 1000"; do
                s=$((s + 1))
                # the directory's name says the case, so a failure in the log names it
                dir=$root/d${d}_${dt}${causal:+_causal}_shape$s
                mkdir -p "$dir"
                n=$((n + 1))
                cases+=("$dir")
                slot "${FA_JOBS:-4}"
                # --kv-heads differs from --heads: stage 05's kernels read the K/V head by index
                ( if "$BIN/$PROG" --device "$DEVICE" --dtype $dt --dim $d $causal $shape --iters 1 --warmup 0 \
                        --kernel "$KERNELS" --save-npy "$dir" >"$dir.log" 2>&1; then
                      touch "$dir.ok"
                  else
                      echo "FAILED (program): d=$d $dt $causal $shape" >>"$dir.log"
                  fi ) &
            done
        done
    done
done
wait
for dir in "${cases[@]}"; do
    cat "$dir.log" >>"$log"
    if [ -e "$dir.ok" ]; then dirs+=("$dir"); else grep '^FAILED (program)' "$dir.log"; fail=1; fi
done
# one python process for every case: importing torch takes seconds
echo "shapes: 1 = 2 x 8 query heads over 2 K/V heads, 113 x 203; 2 = 2 x 4 heads, 203 x 113; 3 = 1 x 4 heads, 1000 x 1000" >>"$log"
if [ ${#dirs[@]} -gt 0 ] && ! python3 "$HERE/torch_attention.py" --check "${dirs[@]}" "${impl_args[@]}" >>"$log" 2>&1; then
    echo "FAILED (2x torch): see the FAIL lines in $log" | tee -a "$log"
    fail=1
fi
# and the check must fail what is wrong
if [ ${#dirs[@]} -gt 0 ] && ! python3 "$HERE/torch_attention.py" --check-broken "${dirs[0]}" "${impl_args[@]}" >>"$log" 2>&1; then
    echo "FAILED (the check passed a broken output): see the 'broken' lines in $log" | tee -a "$log"
    fail=1
fi
sed -i "s|$root/||g" "$log"
grep ' FAIL$' "$log" | head -n 20
echo "fa_accuracy: $n cases x kernels ($KERNELS, $DEVICE); $(grep -c ' PASS$' "$log") checks passed, $(grep -c ' FAIL$' "$log") failed; $(grep -c 'fails, as it must$' "$log") of $(grep -c '^broken ' "$log") broken outputs failed, as they must (log: $log)"
exit $fail
