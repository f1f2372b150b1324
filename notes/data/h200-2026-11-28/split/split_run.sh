#!/usr/bin/env bash
# The H200 run behind stage 03's "Beyond one SM" section (one call of the
# device machine): GPU tests, compute-sanitizer (memcheck, racecheck,
# synccheck) on test_softmax, the benchmarks of
# stages/03_online_softmax/bench_split.sh, two experiments (large cluster
# blocks only; no programmatic dependent launch for the split), torch.softmax
# on the same shapes, and Nsight Compute on the new kernels. Binaries and
# scripts come prebuilt in $C (bin/, bench_split.sh, torch_softmax.py).
# Results: at most 8 files in $OUT, written as each phase ends.
set -uo pipefail
C=${C:-.carry/softmax}
B=$C/bin
W=/tmp/w
mkdir -p "$W" "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$B
export STF_BIN_DIR=$B
T0=$(date +%s)
# a phase's time limit: at most $1 seconds, and nothing past 335 s in all
tmo() { local l=$((335 - ($(date +%s) - T0))); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }
note() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm --format=csv >"$W/gpu.log" 2>&1
cat "$W/gpu.log" >>"$OUT/summary.txt"

# 1. GPU tests; the sanitizers alongside (correctness only: nothing is timed)
for t in test_hwcounters test_common; do
    STF_GPU_ONLY=1 timeout 40 "$B/$t" >"$W/test_$t.log" 2>&1
    note "$t: exit $?"
done
(STF_GPU_ONLY=1 timeout 100 "$B/test_softmax" >"$W/test_softmax.log" 2>&1; echo $? >"$W/rc_softmax") &
(STF_GPU_ONLY=1 timeout 100 "$B/test_attention" >"$W/test_attention.log" 2>&1; echo $? >"$W/rc_attention") &
for tool in memcheck racecheck synccheck; do
    extra=()
    [ "$tool" = memcheck ] && extra=(--leak-check full)
    (STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_NO_HWC=1 timeout 100 compute-sanitizer --tool "$tool" "${extra[@]}" \
        "$B/test_softmax" >"$W/san_$tool.log" 2>&1; echo $? >"$W/rc_$tool") &
done
wait
note "test_softmax: exit $(cat "$W/rc_softmax"); test_attention: exit $(cat "$W/rc_attention")"
for tool in memcheck racecheck synccheck; do
    note "$tool test_softmax: exit $(cat "$W/rc_$tool"), $(grep -h -E 'ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY' "$W/san_$tool.log" | tr '\n' ' ')"
done
grep -h -E '^\[  (FAILED|PASSED|SKIPPED) \]|^\[  FAILED|error/tol|ratio|worst|FAIL' "$W"/test_softmax.log "$W"/test_attention.log | head -60 >>"$OUT/summary.txt"
for f in "$W"/test_*.log "$W"/san_*.log; do echo "===== $f"; cat "$f"; done >"$OUT/tests_sanitizers.log"

# 2. benchmarks (alone on the GPU)
BIN=$B OUT=$W DEVICE=gpu QUICK=0 timeout "$(tmo 150)" bash "$C/bench_split.sh" >"$W/bench_stdout.log" 2>&1
note "bench_split: exit $?"
cp "$W"/softmax_split.csv "$W"/softmax_rows.csv "$W"/softmax_cluster_sweep.csv "$OUT"/ 2>/dev/null

# 3. experiments: large cluster blocks only; the split without PDL
for s in "4096 65536 fp32" "2048 131072 fp32" "1024 262144 fp32" "16 256000 fp32" "16 256000 bf16"; do
    set -- $s
    STF_CLUSTER_THREADS=1024 timeout "$(tmo 15)" "$B/03_online_softmax" --device gpu --rows "$1" --cols "$2" --dtype "$3" \
        --iters 10 --csv "$W/exp_cluster1024.csv" >>"$W/exp.log" 2>&1
done
for s in "1 1048576 fp32" "16 256000 fp32" "16 256000 bf16"; do
    set -- $s
    STF_SPLIT_PDL=0 timeout "$(tmo 15)" "$B/03_online_softmax" --device gpu --rows "$1" --cols "$2" --dtype "$3" \
        --iters 10 --csv "$W/exp_nopdl.csv" >>"$W/exp.log" 2>&1
done
{ cat "$W/exp_cluster1024.csv"; tail -n +2 "$W/exp_nopdl.csv"; } >"$OUT/experiments.csv" 2>/dev/null
note "experiments done"

# 4. torch.softmax, same shapes
PYTHONUNBUFFERED=1 timeout "$(tmo 30)" python3 "$C/torch_softmax.py" --shapes split --iters 10 --csv "$OUT/torch_split.csv" \
    >"$W/torch.log" 2>&1
note "torch: exit $?"

# 5. Nsight Compute on the new kernels (one launch each)
ncu_run() { # label, program args...
    local label=$1; shift
    echo "===== ncu $label" >>"$W/ncu.log"
    STF_NO_HWC=1 timeout "$(tmo 25)" ncu --clock-control none --print-units base -k 'regex:split_|merge_cluster|onchip_kernel' -c 3 \
        --section SpeedOfLight --section LaunchStats --section Occupancy \
        --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum \
        "$B/03_online_softmax" --device gpu --iters 1 --warmup 0 "$@" >>"$W/ncu.log" 2>&1
    echo "ncu $label: exit $?" >>"$W/ncu.log"
}
ncu_run "1 x 1048576 fp32" --rows 1 --cols 1048576
ncu_run "16 x 256000 bf16" --rows 16 --cols 256000 --dtype bf16
ncu_run "1024 x 262144 fp32" --rows 1024 --cols 262144
note "ncu done"
{ for f in "$W"/gpu.log "$W"/bench_stdout.log "$W"/bench_split.log "$W"/exp.log "$W"/torch.log "$W"/ncu.log; do
    echo "===== $f"; cat "$f"; done; } >"$OUT/logs.txt" 2>/dev/null

# 6. the short table
echo "================ summary ($(($(date +%s) - T0)) s)" | tee -a "$OUT/summary.txt"
awk -F, 'NR > 1 && $3 != "naive" { printf "%-18s %-13s %-5s %5s x %-8s %9s GB/s %6s%% copy  meas %s MB  %s\n", $1, $3, $5, $6, $7, $14, $15, $12, $21 }' \
    "$W/softmax_split.csv" 2>/dev/null | tee -a "$OUT/summary.txt"
awk -F, 'NR > 1 && ($7 == 65536 || $7 == 131072 || $7 == 262144) && $3 != "safe" { printf "sweep %-13s %-5s %5s x %-8s %9s GB/s %6s%% copy  meas %s MB %s\n", $3, $5, $6, $7, $14, $15, $12, $21 }' \
    "$W/softmax_cluster_sweep.csv" 2>/dev/null | tee -a "$OUT/summary.txt"
awk -F, 'NR > 1 && $1 ~ /^03/ && $3 ~ /online|cluster/ { printf "rows %5s %-13s %9s GB/s\n", $6, $3, $14 }' "$W/softmax_rows.csv" 2>/dev/null |
    tee -a "$OUT/summary.txt"
awk -F, 'NR > 1 { printf "exp %-13s %-5s %5s x %-8s %9s GB/s %6s%% copy\n", $3, $5, $6, $7, $14, $15 }' "$OUT/experiments.csv" 2>/dev/null |
    grep -E "split|cluster" | tee -a "$OUT/summary.txt"
cat "$OUT/torch_split.csv" 2>/dev/null | tee -a "$OUT/summary.txt"
