#!/usr/bin/env bash
# Everything that needs the GPU, in one go (the project's own check on a
# machine with an NVIDIA GPU, after `make` and the test binaries are built):
#   1. the GPU tests (test programs with STF_GPU_ONLY=1),
#   2. compute-sanitizer: memcheck on the GPU tests, memcheck on every
#      stage's quick benchmark runs (`plots/bench.sh` with QUICK=1, small odd
#      shapes, output in $OUT/memcheck/), racecheck on the softmax tests,
#   3. the benchmarks and sweeps of plots/bench.sh (every stages/*/bench*.sh),
#   4. an Nsight Compute cross-check of the in-process DRAM counters.
# Stages are found by plots/bench.sh, so a new stage needs no edit here.
# Logs and CSV go to $OUT (default build/bench). A short summary comes last.
# Exit status: 1 if any test, sanitizer run, benchmark run or ncu run failed.
set -uo pipefail
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/bench}
DEVICE=${DEVICE:-gpu}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
summary=()
rc_all=0
# note STATUS TEXT: one summary line; STATUS 0 is ok, "skip" is skipped,
# anything else fails the check.
note() {
    local word=FAILED
    case $1 in 0) word=ok ;; skip) word=skipped ;; *) rc_all=1 ;; esac
    summary+=("$word: $2")
    echo "### $2"
}
count() { local c; c=$(grep -c -E "$1" "$2" 2>/dev/null); echo "${c:-0}"; }
errsum() { grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' <(tail -n 5 "$1") || echo "no summary"; }
SAN=(compute-sanitizer --error-exitcode 1)

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.log"

# 1. GPU tests
for t in "$BUILD"/bin/test_*; do
    STF_GPU_ONLY=1 timeout 300 "$t" >>"$OUT/tests.log" 2>&1
    rc=$?
    note $rc "$(basename "$t"): exit $rc"
done
grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|FAILED|error' "$OUT/tests.log" | tail -n 20

# 2. memcheck on the GPU tests (the counter test is skipped: the sanitizer
# and the profiler cannot both hold the device)
for t in "$BUILD"/bin/test_*; do
    case $t in *hwcounters*) continue ;; esac
    # STF_TEST_SMALL: the attention tests keep N <= 100 under the sanitizer
    STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_NO_HWC=1 timeout 400 "${SAN[@]}" --tool memcheck --leak-check full "$t" \
        >>"$OUT/sanitizer.log" 2>&1
    rc=$?
    note $rc "memcheck $(basename "$t"): exit $rc ($(errsum "$OUT/sanitizer.log"))"
done
# and every stage program, end to end, through its quick benchmark runs
# (small odd shapes; every run under memcheck; log in memcheck/bench.log)
STF_NO_HWC=1 BENCH_WRAP="${SAN[*]} --tool memcheck --leak-check full" BIN=$BUILD/bin OUT=$OUT/memcheck \
    DEVICE=$DEVICE QUICK=1 timeout 1200 bash plots/bench.sh >>"$OUT/sanitizer.log" 2>&1
rc=$?
note $rc "memcheck of every stage's QUICK=1 benchmark runs: exit $rc ($(count 'ERROR SUMMARY: 0 errors' "$OUT/memcheck/bench.log") runs clean, $(count '^FAILED' "$OUT/memcheck/bench.log") failed)"

# racecheck on the softmax kernels: their block reductions share memory
# between warps, and a missing barrier shows up here before it shows up as
# a wrong answer.
STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_NO_HWC=1 timeout 200 "${SAN[@]}" --tool racecheck "$BUILD"/bin/test_softmax >>"$OUT/sanitizer.log" 2>&1
rc=$?
note $rc "racecheck test_softmax: exit $rc ($(errsum "$OUT/sanitizer.log"))"

# 3. benchmarks
BIN=$BUILD/bin OUT=$OUT DEVICE=$DEVICE QUICK=0 bash plots/bench.sh >/dev/null 2>&1
rc=$?
note $rc "bench: exit $rc ($(count '^FAILED' "$OUT/bench.log") runs failed; log in bench.log)"

# FlashAttention's accuracy criterion on every tensor-core kernel (needs torch)
if python3 -c 'import torch, numpy' 2>/dev/null; then
    BIN=$BUILD/bin OUT=$OUT timeout 600 bash plots/fa_accuracy.sh | tail -n 3
    rc=${PIPESTATUS[0]}
    note $rc "FlashAttention's 2x-torch accuracy criterion, stage 05 tensor-core kernels: exit $rc (fa_accuracy.log)"
else
    note skip "FlashAttention's 2x-torch accuracy criterion: python3 with torch and numpy not found"
fi

# 4. ncu against the in-process counters, on the copy kernel of stage 01
if command -v ncu >/dev/null; then
    # The same kernels, same shape, measured by ncu (one launch each) and by
    # the program's own counters (its "HBM meas" column).
    shape="--cols 262144 --rows 1024"
    for pk in 01_naive_softmax:copy16 01_naive_softmax:naive_kernel 02_safe_softmax:safe_kernel; do
        STF_NO_HWC=1 timeout 200 ncu --clock-control none --print-units base \
            --metrics dram__bytes_read.sum,dram__bytes_write.sum -k "regex:${pk#*:}" -c 1 \
            "$BUILD/bin/${pk%%:*}" --device gpu --iters 1 --warmup 0 $shape >>"$OUT/ncu.log" 2>&1
        rc=$?
        note $rc "ncu ${pk%%:*} ${pk#*:}: exit $rc"
    done
    grep -E '^  [a-z_]+.*\(|dram__bytes_(read|write).sum' "$OUT/ncu.log"
    for p in 01_naive_softmax 02_safe_softmax; do
        "$BUILD"/bin/$p --device gpu --iters 3 $shape | grep -E '^ +0[0-2] '
    done | tee -a "$OUT/ncu.log"
else
    note skip "ncu: not on PATH, the cross-check did not run"
fi

echo
echo "================ summary"
printf '%s\n' "${summary[@]}"
grep -E '^ +[0-9][0-9] +[a-z]' "$OUT/bench.log" | head -n 60
exit $rc_all
