#!/usr/bin/env bash
# r07's GPU round (issues 16/17, stages 06-07): build, benchmark shapes of
# stage 07 against notes/data/h200-2026-11-28/split_kv.csv, the fp32 defaults
# of 06 and 07, decode at d = 32/192/256, the GPU tests, compute-sanitizer
# memcheck on the tests with small shapes. Logs under $RESULTS; summary last.
#   RESULTS=/tmp/r07 bash tools/gpu/r07.sh      (from the worktree root)
set -uo pipefail
cd "$(dirname "$0")/../.."
RESULTS=${RESULTS:-build/r07}
mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
export STF_BIN_DIR=$PWD/build/bin
B=build/bin
summary=()
note() { summary+=("$(printf '%-44s %s' "$1" "$2")"); }
run() { # name, log, command...
    local name=$1 log=$2; shift 2
    local t0=$SECONDS
    "$@" >"$RESULTS/$log" 2>&1
    local rc=$?
    note "$name" "rc=$rc ($((SECONDS - t0)) s, $log)"
    return $rc
}

t0=$SECONDS
make -j16 $B/06_gqa_attention $B/07_split_kv_decode $B/test_gqa $B/test_split_kv >"$RESULTS/build.log" 2>&1
rc=$?
note "build" "rc=$rc ($((SECONDS - t0)) s)"
if [ $rc -ne 0 ]; then tail -30 "$RESULTS/build.log"; printf '%s\n' "${summary[@]}"; exit 1; fi
nvidia-smi -L >"$RESULTS/device.txt" 2>&1
git log -1 --format='%H %s' >"$RESULTS/commit.txt" 2>&1
git status --short >>"$RESULTS/commit.txt" 2>&1

# 1. benchmarks alone on the GPU: stage 07's shapes (bf16, d = 128, Hq = 32)
CSV=$RESULTS/split_kv.csv
rm -f "$CSV"
A=(--device gpu --dim 128 --dtype bf16 --decode --iters 30 --csv "$CSV")
{
    for kv in 32 8 1; do
        $B/07_split_kv_decode "${A[@]}" --heads 32 --kv-heads $kv --batch 8 --seq-kv 32768 || echo "rc=$? kv=$kv B=8"
        $B/07_split_kv_decode "${A[@]}" --heads 32 --kv-heads $kv --batch 1 --seq-kv 131072 || echo "rc=$? kv=$kv B=1"
    done
} >"$RESULTS/bench07.log" 2>&1
note "bench 07 (6 shapes)" "$(grep -c '^rc=' "$RESULTS/bench07.log") failed runs"
python3 tools/compare_csv.py notes/data/h200-2026-11-28/split_kv.csv "$CSV" --tol 0.05 >"$RESULTS/compare.txt" 2>&1
note "compare with 2026-11-28" "rc=$? ($(grep -i median "$RESULTS/compare.txt" | head -1))"

# 2. the defaults (fp32) and the new head dims, on the GPU
run "06 defaults (fp32, prefill)" defaults06.log $B/06_gqa_attention --device gpu --iters 3
run "06 defaults --decode (fp32)" defaults06_decode.log $B/06_gqa_attention --device gpu --decode --iters 3
run "07 defaults (fp32, decode implied)" defaults07.log $B/07_split_kv_decode --device gpu --iters 3
for d in 32 192 256; do
    for dt in fp32 bf16; do
        run "07 decode d=$d $dt" "d${d}_$dt.log" $B/07_split_kv_decode --device gpu --dim $d --dtype $dt \
            --heads 32 --kv-heads 8 --batch 4 --seq-kv 5000 --iters 3
    done
done
run "06 decode d=256 fp32 (MHA, MQA)" d256_06.log bash -c \
    "$B/06_gqa_attention --device gpu --dim 256 --decode --seq-kv 3000 --heads 16 --kv-heads 16 --iters 3 &&
     $B/06_gqa_attention --device gpu --dim 256 --decode --seq-kv 3000 --heads 16 --kv-heads 1 --iters 3"

# 3. the GPU tests, and memcheck on them with small shapes (in parallel)
STF_GPU_ONLY=1 $B/test_gqa >"$RESULTS/test_gqa.log" 2>&1 & p1=$!
STF_GPU_ONLY=1 $B/test_split_kv >"$RESULTS/test_split_kv.log" 2>&1 & p2=$!
STF_GPU_ONLY=1 STF_TEST_SMALL=1 timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_gqa \
    >"$RESULTS/memcheck_gqa.log" 2>&1 & p3=$!
STF_GPU_ONLY=1 STF_TEST_SMALL=1 timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_split_kv \
    >"$RESULTS/memcheck_split.log" 2>&1 & p4=$!
wait $p1; note "test_gqa (GPU)" "rc=$? $(grep -E 'PASSED|FAILED' "$RESULTS/test_gqa.log" | head -2 | tr '\n' ' ')"
wait $p2; note "test_split_kv (GPU)" "rc=$? $(grep -E 'PASSED|FAILED' "$RESULTS/test_split_kv.log" | head -2 | tr '\n' ' ')"
wait $p3; note "memcheck test_gqa (small)" "rc=$? $(grep -E 'ERROR SUMMARY' "$RESULTS/memcheck_gqa.log" | tail -1)"
wait $p4; note "memcheck test_split_kv (small)" "rc=$? $(grep -E 'ERROR SUMMARY' "$RESULTS/memcheck_split.log" | tail -1)"

echo "== r07 summary ($((SECONDS - t0)) s)"
printf '%s\n' "${summary[@]}" | tee "$RESULTS/summary.txt"
grep -E "n/a|NO" "$RESULTS"/defaults0*.log | head -20
tail -15 "$RESULTS/compare.txt"
