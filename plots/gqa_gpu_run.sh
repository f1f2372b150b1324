#!/usr/bin/env bash
# Stages 06-07 on the GPU in one call (tests, benchmarks, the torch decode
# comparison, ncu on the decode kernel, compute-sanitizer), within a time
# budget (DEADLINE seconds, default 380). BIN: the programs and test binaries;
# S: the folder holding the bench scripts and torch_attention.py (default:
# the repository's own); R: where logs and CSV go. A summary table comes last.
set -u
BIN=${BIN:-build/bin}
S=${S:-.}
R=${R:-build/bench/gqa_gpu}
DEADLINE=${DEADLINE:-380}
mkdir -p "$R"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
sum=$R/summary.txt
: >"$sum"
left() { echo $((DEADLINE - SECONDS)); }
step() { # step NAME MAXSECONDS LOG command...
    local name=$1 max=$2 log=$3
    shift 3
    local t=$(left)
    [ "$t" -gt "$max" ] && t=$max
    if [ "$t" -lt 10 ]; then echo "$name: skipped (out of time)" | tee -a "$sum"; return; fi
    local t0=$SECONDS
    timeout "$t" "$@" >"$log" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s" | tee -a "$sum"
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$R/gpu.log" 2>&1

export STF_BIN_DIR=$BIN
step test_gqa 100 "$R/test_gqa.log" env STF_GPU_ONLY=1 "$BIN/test_gqa"
step test_split_kv 60 "$R/test_split_kv.log" env STF_GPU_ONLY=1 "$BIN/test_split_kv"
step bench06 110 "$R/bench06.log" env BIN="$BIN" OUT="$R" DEVICE=gpu QUICK=0 bash "$S/stages/06_gqa_attention/bench.sh"
step bench07 110 "$R/bench07.log" env BIN="$BIN" OUT="$R" DEVICE=gpu QUICK=0 bash "$S/stages/07_split_kv_decode/bench.sh"
step torch 70 "$R/torch_decode.log" env PYTHONUNBUFFERED=1 python3 "$S/plots/torch_attention.py" --decode --iters 20 --csv "$R/torch_decode.csv"
NCU=(ncu --clock-control none --kernel-name regex:decode_kernel --launch-count 1 --section SpeedOfLight
     --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats --section SchedulerStats
     --section LaunchStats --metrics dram__bytes_read.sum,dram__bytes_write.sum)
D=(--device gpu --decode --batch 8 --heads 32 --dim 128 --dtype bf16 --iters 1 --warmup 0)
step ncu_split_gqa 45 "$R/ncu_split_gqa.txt" env STF_NO_HWC=1 "${NCU[@]}" "$BIN/07_split_kv_decode" "${D[@]}" --kv-heads 8 --seq-kv 32768 --kernel split
step ncu_split_mqa 45 "$R/ncu_split_mqa.txt" env STF_NO_HWC=1 "${NCU[@]}" "$BIN/07_split_kv_decode" "${D[@]}" --kv-heads 1 --seq-kv 32768 --kernel split
SAN=(env STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_NO_HWC=1 compute-sanitizer)
step memcheck_split 60 "$R/memcheck_split.log" "${SAN[@]}" --tool memcheck "$BIN/test_split_kv"
step memcheck_gqa 80 "$R/memcheck_gqa.log" "${SAN[@]}" --tool memcheck "$BIN/test_gqa"
step racecheck_split 60 "$R/racecheck_split.log" "${SAN[@]}" --tool racecheck "$BIN/test_split_kv"

echo "==== summary"
cat "$sum"
for f in "$R"/memcheck_*.log "$R"/racecheck_*.log; do [ -f "$f" ] && echo "$(basename "$f"): $(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f")"; done
grep -hE "^\[  (PASSED|FAILED) \]|FAILED|worst|bit-identical" "$R"/test_*.log | head -20
echo "==== decode (K/V GB/s, % of read ceiling)"
for f in "$R/gqa.csv" "$R/split_kv.csv"; do
    [ -f "$f" ] || continue
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        { printf "%-3s %-10s B=%-2s H=%s/%-2s Nq=%-5s Nk=%-6s %-5s %9s ms %7s TF %6s GB/s %4s%% meas %8s MB %s\n",
          $c["stage"], $c["impl"], $c["batch"], $c["heads"], $c["kv_heads"], $c["seq"], $c["seq_kv"], $c["causal"],
          $c["time_ms"], $c["tflops"], $c["kv_gbps"], $c["read_pct"], $c["measured_mb"], $c["ok"] }' "$f"
done | tail -n 80
grep -hE "^(flash|cudnn)" "$R/torch_decode.log" | grep -E "32768|131072" | head -20
