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
t0=$SECONDS
make -j"${JOBS:-16}" $B/06_gqa_attention $B/07_split_kv_decode $B/test_gqa $B/test_split_kv >"$RESULTS/build.log" 2>&1
rc=$?
note "build" "rc=$rc ($((SECONDS - t0)) s)"
if [ $rc -ne 0 ]; then tail -30 "$RESULTS/build.log"; printf '%s\n' "${summary[@]}"; exit 1; fi
nvidia-smi -L >"$RESULTS/device.txt" 2>&1
git log -1 --format='%H %s' >"$RESULTS/commit.txt" 2>&1
git status --short >>"$RESULTS/commit.txt" 2>&1

# 1. benchmarks alone on the GPU: stage 07's shapes (bf16, d = 128, Hq = 32)
CSV=$RESULTS/split_kv.csv
rm -f "$CSV"
A=(--device gpu --dim 128 --dtype bf16 --decode --iters 20 --csv "$CSV")
{
    for kv in 32 8 1; do
        $B/07_split_kv_decode "${A[@]}" --heads 32 --kv-heads $kv --batch 8 --seq-kv 32768 || echo "rc=$? kv=$kv B=8"
        $B/07_split_kv_decode "${A[@]}" --heads 32 --kv-heads $kv --batch 1 --seq-kv 131072 || echo "rc=$? kv=$kv B=1"
    done
} >"$RESULTS/bench07.log" 2>&1
note "bench 07 (6 shapes)" "$(grep -c '^rc=' "$RESULTS/bench07.log") failed runs"
python3 tools/compare_csv.py notes/data/h200-2026-11-28/split_kv.csv "$CSV" --tol 0.05 >"$RESULTS/compare.txt" 2>&1
rc=$?
note "compare with 2026-11-28" "rc=$rc ($(grep -i median "$RESULTS/compare.txt" | head -1))"

# 2. correctness, in parallel (nothing timed), each within 35 s: the GPU
# tests (test_gqa's groupings with small shapes: in full they take ~90 s; its
# head dims in full), memcheck on them with small shapes, the defaults (fp32)
# of 06 and 07, decode at the new head dims
T="timeout 35"
bg() { # name, log, command...: in the background, noted when it ends
    local name=$1 log=$2; shift 2
    ( t=$SECONDS; $T "$@" >"$RESULTS/$log" 2>&1; rc=$?; printf '%-44s rc=%d (%d s, %s)\n' "$name" $rc $((SECONDS - t)) "$log" >"$RESULTS/$log.rc" ) &
}
bg "test_gqa (GPU, small shapes)" test_gqa.log env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $B/test_gqa
bg "test_gqa head dims (GPU, full)" test_gqa_dims.log env STF_TEST_FILTER='*head_dims_gpu' $B/test_gqa
bg "test_split_kv (GPU)" test_split_kv.log env STF_GPU_ONLY=1 $B/test_split_kv
bg "memcheck test_gqa (small)" memcheck_gqa.log env STF_GPU_ONLY=1 STF_TEST_SMALL=1 \
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_gqa
bg "memcheck test_split_kv (small)" memcheck_split.log env STF_GPU_ONLY=1 STF_TEST_SMALL=1 \
    compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_split_kv
bg "06 defaults (fp32 prefill, GPU)" defaults06.log $B/06_gqa_attention --device gpu --iters 3
bg "06 defaults --decode (fp32, GPU)" defaults06_decode.log $B/06_gqa_attention --device gpu --decode --iters 3
bg "07 defaults (fp32, decode implied, GPU)" defaults07.log $B/07_split_kv_decode --device gpu --iters 3
for d in 32 192 256; do
    bg "07 decode d=$d fp32+bf16" "d$d.log" bash -c \
        "for dt in fp32 bf16; do $B/07_split_kv_decode --device gpu --dim $d --dtype \$dt --heads 32 --kv-heads 8 --batch 4 --seq-kv 5000 --iters 3 || exit; done"
done
bg "06 decode d=256 fp32 (MHA, MQA)" d256_06.log bash -c \
    "$B/06_gqa_attention --device gpu --dim 256 --decode --seq-kv 3000 --heads 16 --kv-heads 16 --iters 3 &&
     $B/06_gqa_attention --device gpu --dim 256 --decode --seq-kv 3000 --heads 16 --kv-heads 1 --iters 3"
wait
for f in "$RESULTS"/*.log.rc; do summary+=("$(cat "$f")"); done
grep -hE "PASSED|FAILED|ERROR SUMMARY" "$RESULTS"/test_*.log "$RESULTS"/memcheck_*.log >"$RESULTS/tests_summary.txt" 2>&1

echo "== r07 summary ($((SECONDS - t0)) s)"
printf '%s\n' "${summary[@]}" | tee "$RESULTS/summary.txt"
grep -E "n/a|NO" "$RESULTS"/defaults0*.log | head -20
tail -15 "$RESULTS/compare.txt"
