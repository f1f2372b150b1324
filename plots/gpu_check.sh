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
    STF_GPU_ONLY=1 STF_NO_HWC=1 timeout 400 compute-sanitizer --tool memcheck --leak-check full "$t" >>"$OUT/sanitizer.log" 2>&1
    note "memcheck $(basename "$t"): exit $? ($(grep -m1 'ERROR SUMMARY' <(tail -n 5 "$OUT/sanitizer.log")))"
done

# 3. benchmarks
BUILD=$BUILD BENCH_DIR=$OUT DEVICE=gpu bash plots/bench.sh >/dev/null 2>&1
note "bench: exit $? (log in bench.log)"

# 4. ncu against the in-process counters, on the copy kernel of stage 01
if command -v ncu >/dev/null; then
    STF_NO_HWC=1 timeout 200 ncu --clock-control none --metrics dram__bytes_read.sum,dram__bytes_write.sum \
        -k regex:copy16 -c 1 "$BUILD"/bin/01_naive_softmax --device gpu --iters 1 --warmup 0 >"$OUT/ncu.log" 2>&1
    note "ncu: exit $?"
    grep -E 'dram__bytes_(read|write).sum' "$OUT/ncu.log"
    grep -E ' copy ' "$OUT/bench.log" | head -n 2
fi

echo
echo "================ summary"
printf '%s\n' "${summary[@]}"
grep -E '^ +0[0-3] ' "$OUT/bench.log" | awk '$5 ~ /^[0-9]+$/' | head -n 30
exit $rc_all
