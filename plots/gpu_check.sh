#!/usr/bin/env bash
# Everything that needs the GPU, in one go (the project's own check on a
# machine with an NVIDIA GPU, after `make` and the test binaries are built):
#   1. the GPU tests (test programs with STF_GPU_ONLY=1),
#   2. compute-sanitizer memcheck on them,
#   3. the benchmarks and sweeps of plots/bench.sh,
#   4. an Nsight Compute cross-check of the in-process DRAM counters.
# Logs and CSV go to $OUT (default build/bench). A short summary comes last.
set -uo pipefail
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/bench}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
summary=()
note() { summary+=("$*"); echo "### $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.log"

# 1. GPU tests
rc_all=0
for t in "$BUILD"/bin/test_*; do
    STF_GPU_ONLY=1 timeout 300 "$t" >>"$OUT/tests.log" 2>&1
    rc=$?
    [ $rc = 0 ] || rc_all=1
    note "$(basename "$t"): exit $rc"
done
grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|FAILED|error' "$OUT/tests.log" | tail -n 20

# 2. memcheck on the GPU tests (the counter test is skipped: the sanitizer
# and the profiler cannot both hold the device)
for t in "$BUILD"/bin/test_*; do
    case $t in *hwcounters*) continue ;; esac
    # STF_TEST_SMALL: the attention tests keep N <= 100 under the sanitizer
    STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_NO_HWC=1 timeout 400 compute-sanitizer --tool memcheck --leak-check full "$t" \
        >>"$OUT/sanitizer.log" 2>&1
    note "memcheck $(basename "$t"): exit $? ($(grep -m1 'ERROR SUMMARY' <(tail -n 5 "$OUT/sanitizer.log")))"
done
# and every stage program once, end to end, on a small odd shape
for p in 01_naive_softmax 02_safe_softmax 03_online_softmax; do
    STF_NO_HWC=1 timeout 120 compute-sanitizer --tool memcheck --leak-check full "$BUILD/bin/$p" --device gpu \
        --rows 37 --cols 1000 --iters 1 --warmup 0 --dtype fp16 >>"$OUT/sanitizer.log" 2>&1
    note "memcheck $p: exit $? ($(grep -m1 'ERROR SUMMARY' <(tail -n 5 "$OUT/sanitizer.log")))"
done
STF_NO_HWC=1 timeout 120 compute-sanitizer --tool memcheck --leak-check full "$BUILD/bin/04_one_pass_attention" --device gpu \
    --batch 2 --heads 3 --seq 100 --dim 80 --causal --dtype fp16 --iters 1 --warmup 0 >>"$OUT/sanitizer.log" 2>&1
note "memcheck 04_one_pass_attention: exit $? ($(grep -m1 'ERROR SUMMARY' <(tail -n 5 "$OUT/sanitizer.log")))"

# racecheck on the softmax kernels: their block reductions share memory
# between warps, and a missing barrier shows up here before it shows up as
# a wrong answer.
STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_NO_HWC=1 timeout 200 compute-sanitizer --tool racecheck "$BUILD"/bin/test_softmax >>"$OUT/sanitizer.log" 2>&1
note "racecheck test_softmax: exit $? ($(grep -m1 'RACECHECK SUMMARY\|ERROR SUMMARY' <(tail -n 5 "$OUT/sanitizer.log")))"

# 3. benchmarks
BUILD=$BUILD BENCH_DIR=$OUT DEVICE=gpu bash plots/bench.sh >/dev/null 2>&1
note "bench: exit $? (log in bench.log)"

# 4. ncu against the in-process counters, on the copy kernel of stage 01
if command -v ncu >/dev/null; then
    # The same kernels, same shape, measured by ncu (one launch each) and by
    # the program's own counters (its "HBM meas" column).
    shape="--cols 262144 --rows 1024"
    for pk in 01_naive_softmax:copy16 01_naive_softmax:naive_kernel 02_safe_softmax:safe_kernel; do
        STF_NO_HWC=1 timeout 200 ncu --clock-control none --print-units base \
            --metrics dram__bytes_read.sum,dram__bytes_write.sum -k "regex:${pk#*:}" -c 1 \
            "$BUILD/bin/${pk%%:*}" --device gpu --iters 1 --warmup 0 $shape >>"$OUT/ncu.log" 2>&1
    done
    note "ncu: exit $?"
    grep -E '^  [a-z_]+.*\(|dram__bytes_(read|write).sum' "$OUT/ncu.log"
    for p in 01_naive_softmax 02_safe_softmax; do
        "$BUILD"/bin/$p --device gpu --iters 3 $shape | grep -E '^ +0[0-2] '
    done | tee -a "$OUT/ncu.log"
fi

echo
echo "================ summary"
printf '%s\n' "${summary[@]}"
grep -E '^ +0[0-4] ' "$OUT/bench.log" | head -n 40
exit $rc_all
