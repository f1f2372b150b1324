#!/usr/bin/env bash
# s08's GPU round (stage 08, the backward; issue 20): run from the worktree
# root on the H200 machine, logs under $RESULTS. About 120 s after the build:
# every step has a timeout and steps past the budget are skipped (said so).
#   1. correctness, in parallel (the GPU is shared, nothing timed):
#      test_backward_gpu (every kernel against the fp64 reference),
#      test_backward (s08c's, all of it), compute-sanitizer memcheck on both
#      (small shapes), racecheck on the shared-memory kernels (small shapes)
#   2. timings, one at a time: test_backward_gpu's bench of the tensor-core
#      kernels' configurations (bf16, B N = 16384, H d = 2048), PyTorch SDPA's
#      backward (tools/torch_backward.py: flash and cuDNN backends), then
#      Nsight Compute on the K/V kernel (one launch of 4 warps, one of 8), then
#      s08c's stages/08_backward/bench.sh (DEVICE=gpu BWD_PART=1) with the rest
set -u
cd "$(dirname "$0")/../.."
R=${RESULTS:-results/s08}
mkdir -p "$R"
SUM=$R/summary.txt
: >"$SUM"
note() { echo "$*" | tee -a "$SUM"; }

t0=$(date +%s)
T=(build/bin/test_backward_gpu)
[ -f stages/08_backward/main.c ] && T+=(build/bin/08_backward)
[ -f tests/test_backward.c ] && T+=(build/bin/test_backward)
if ! make -j16 "${T[@]}" >"$R/build.log" 2>&1; then
    note "BUILD of ${T[*]} FAILED (tail of build.log):"
    tail -n 30 "$R/build.log" | tee -a "$SUM"
    make -j16 build/bin/test_backward_gpu >"$R/build2.log" 2>&1 || { note "test_backward_gpu alone fails too"; tail -n 30 "$R/build2.log"; exit 1; }
    note "test_backward_gpu alone builds"
fi
tb=$(date +%s)
note "build: $((tb - t0)) s"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; nvcc --version | tail -n 2;
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; git log --oneline -1; date -u; } >"$R/env.txt" 2>&1
BUDGET=${S08_BUDGET:-118}
left() { echo $((BUDGET - ($(date +%s) - tb))); }
run_to() { # run_to NAME TIMEOUT CMD...: one step, log in $R/NAME.log, a line in the summary
    local name=$1 to=$2; shift 2
    local s; s=$(date +%s)
    timeout "$to" "$@" >"$R/$name.log" 2>&1
    local rc=$?
    local extra=""
    case "$name" in
        *memcheck*|*racecheck*) extra=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$R/$name.log" | tail -n 1) ;;
        test_*) extra=$(grep -E "^\[  (PASSED|FAILED|SKIPPED) +\]" "$R/$name.log" | head -n 3 | tr '\n' ' ') ;;
    esac
    note "$(printf '%-4s %-30s rc=%-3s %3ss  %s' "$([ $rc = 0 ] && echo ok || echo FAIL)" "$name" "$rc" "$(($(date +%s) - s))" "$extra")"
}
step() { # step NAME TIMEOUT CMD...: as run_to, unless the budget is spent (then said so)
    local name=$1 to=$2; shift 2
    local l; l=$(left)
    if [ "$l" -le 3 ]; then note "SKIP  $name (budget spent)"; return 0; fi
    [ "$to" -gt "$l" ] && to=$l
    run_to "$name" "$to" "$@"
}
B=build/bin
CS="compute-sanitizer --print-limit 20 --error-exitcode 1"

# 1. correctness, in parallel
step_bg() { step "$@" & }
step_bg test_backward_gpu 50 env STF_GPU_ONLY=1 $B/test_backward_gpu
[ -x $B/test_backward ] && step_bg test_backward 45 env STF_BIN_DIR=$B $B/test_backward
step_bg memcheck_test_backward_gpu 45 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $CS --tool memcheck $B/test_backward_gpu
step_bg racecheck_tc_atomic 45 env STF_TEST_SMALL=1 STF_TEST_FILTER=test_tc_atomic_gpu $CS --tool racecheck $B/test_backward_gpu
step_bg racecheck_tc_det 45 env STF_TEST_SMALL=1 STF_TEST_FILTER=test_tc_det_gpu $CS --tool racecheck $B/test_backward_gpu
step_bg racecheck_fa2 45 env STF_TEST_SMALL=1 STF_TEST_FILTER=test_fa2_fp32_gpu $CS --tool racecheck $B/test_backward_gpu
if [ -x $B/test_backward ]; then
    step_bg memcheck_test_backward 45 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $CS --tool memcheck $B/test_backward
    step_bg racecheck_test_backward 45 env STF_GPU_ONLY=1 STF_TEST_SMALL=2 $CS --tool racecheck $B/test_backward
fi
wait
grep -hE "^\[  FAILED  \]|must fail|failed, worst|worst error|bit-identical|differ|declines|ratio" "$R"/test_backward_gpu.log 2>/dev/null | head -n 40 >"$R/test_summary.txt"

# 2. timings, one at a time: the tensor-core kernels' configurations, PyTorch, then the stage's table
step bench_kernels 20 env STF_BWD_BENCH=3 STF_TEST_FILTER=test_bench_gpu $B/test_backward_gpu
if [ -f tools/torch_backward.py ]; then
    step torch_backward 20 python3 tools/torch_backward.py --bench --csv "$R/torch_backward.csv"
fi
# Nsight Compute on the tensor-core K/V kernel, 4 and 8 warps (N = 4096, d = 128): the bench's 12 launches
# of the 4-warp kernel come first, then the 8-warp one's; profiled: the last of the first, the first of the second
if command -v ncu >/dev/null; then
    step ncu_tc 25 env STF_BWD_BENCH=2 STF_TEST_FILTER=test_bench_gpu ncu --kernel-name regex:'bwd_tc_kv_kernel' \
        --launch-skip 11 --launch-count 2 --section SpeedOfLight --section Occupancy --section LaunchStats \
        --section WarpStateStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis $B/test_backward_gpu
fi
if [ -f stages/08_backward/bench.sh ] && [ -x $B/08_backward ]; then
    l=$(left); to=$((l - 3)); [ $to -lt 5 ] && to=5
    step bench_08 $to env DEVICE=gpu BWD_PART=1 BENCH_DIR="$R" bash stages/08_backward/bench.sh
fi

# summary: the timings
{
    echo "---- timings (bf16, B N = 16384, H d = 2048; backward = 2.5 forward FLOPs)"
    grep -h "bench N=" "$R/bench_kernels.log" 2>/dev/null
    grep -hE "torch sdpa|^(flash|cudnn) +bwd" "$R/torch_backward.log" 2>/dev/null
} | tee -a "$SUM"
note "total after build: $(($(date +%s) - tb)) s"
