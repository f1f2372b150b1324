#!/usr/bin/env bash
# Everything that needs the GPU, in one go (the project's own check on a
# machine with an NVIDIA GPU, after `make` and the test binaries are built).
# Three phases; PARTS picks some (default: all three, in this order):
#   counters  the hardware-counter test, Nsight Compute's DRAM bytes against
#             the programs' own counters (stages 01-02), and stage 06's DRAM
#             and L2 counters per method (tools/gqa_counters.sh). Alone on
#             the GPU: profilers need the counters to themselves.
#   checks    correctness, as parallel jobs (none of it is timed): the GPU
#             tests (STF_GPU_ONLY=1); compute-sanitizer memcheck on the GPU
#             tests and on every stage's quick benchmark runs (tools/bench.sh
#             QUICK=1: small odd shapes, the GPU kernels of every stage);
#             racecheck on the tests whose kernels share memory between warps
#             (softmax reductions, the tensor-core ladder, GQA, split-KV, the
#             tensor-core decode, the paged cache);
#             FlashAttention's 2x-torch accuracy criterion over the
#             tensor-core ladder (tools/fa_accuracy.sh; needs torch).
#   bench     every stage's benchmarks (tools/bench.sh: tools/bench_shapes.tsv
#             and the stages' own scripts), alone on the GPU. BENCH_ONLY
#             narrows it, and the checks' memcheck_bench too (its summary
#             line says so: a narrowed run is not a full check).
# Stages are found by tools/bench.sh, so a new stage needs no edit here.
# Logs and CSV go to $OUT (default build/bench); a summary comes last.
# Exit status: 1 if any test, sanitizer run, benchmark run or ncu run failed.
#   bash tools/gpu_check.sh                      # all
#   PARTS="counters checks" bash tools/gpu_check.sh; PARTS=bench bash tools/gpu_check.sh
# A checks phase too long for one sitting can be split (extended regexes):
# CHECK_ONLY picks jobs (tests, memcheck_tests, memcheck_bench, racecheck,
# fa_accuracy), TEST_ONLY the test programs they run, e.g.
#   PARTS=checks CHECK_ONLY='tests|racecheck' TEST_ONLY='gqa|tiled' bash tools/gpu_check.sh
set -uo pipefail
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/bench}
DEVICE=${DEVICE:-gpu}
PARTS=${PARTS:-counters checks bench}
mkdir -p "$OUT"
BUILD=$(cd "$BUILD" && pwd)
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
export STF_BIN_DIR=$BUILD/bin
for p in $PARTS; do
    case $p in counters | checks | bench) ;; *) echo "gpu_check: unknown part '$p' (counters, checks, bench)" >&2; exit 2 ;; esac
done
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
summary=()
rc_all=0
T0=$SECONDS
# note STATUS TEXT: one summary line; STATUS 0 is ok, "skip" is skipped,
# anything else fails the check.
note() {
    local word=FAILED
    case $1 in 0) word=ok ;; skip) word=skipped ;; *) rc_all=1 ;; esac
    summary+=("$word: $2")
    echo "### [$((SECONDS - T0)) s] $word: $2"
}
count() { local c; c=$(grep -c -E "$1" "$2" 2>/dev/null); echo "${c:-0}"; }
errsum() { grep -h -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$1" 2>/dev/null | tail -n 1 || true; }
SAN=(bash tools/sanitize_gpu.sh) # compute-sanitizer, and CPU-only programs told apart

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.log"

# ---------------------------------------------------------------- counters
if has counters; then
    STF_GPU_ONLY=1 timeout 300 "$BUILD/bin/test_hwcounters" >"$OUT/test_hwcounters.log" 2>&1
    rc=$?
    note $rc "test_hwcounters: exit $rc"
    if command -v ncu >/dev/null; then
        # The same kernels, same shape, measured by ncu (one launch each) and by
        # the program's own counters (its "HBM meas" column).
        shape="--cols 262144 --rows 1024"
        : >"$OUT/ncu.log"
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
        BIN=$BUILD/bin OUT=$OUT timeout 900 bash tools/gqa_counters.sh
        rc=$?
        note $rc "stage 06 DRAM and L2 counters per method (gqa_counters.txt): exit $rc"
    else
        note skip "ncu: not on PATH, the counter cross-checks did not run"
    fi
fi

# ---------------------------------------------------------------- checks
if has checks; then
    C=$OUT/checks
    mkdir -p "$C"
    # job NAME command...: runs in the background; its log is $C/NAME.log,
    # its exit status $C/NAME.rc
    jobs_started=()
    job() {
        local name=$1
        shift
        [[ $name =~ ^(${CHECK_ONLY:-.*})$ ]] || return 0
        ( "$@" >"$C/$name.log" 2>&1; echo $? >"$C/$name.rc" ) &
        jobs_started+=("$name")
    }
    tests=()
    for t in "$BUILD"/bin/test_*; do
        case $t in *hwcounters*) continue ;; esac
        [[ $(basename "$t") =~ ${TEST_ONLY:-.} ]] || continue
        tests+=("$t")
    done
    # at most N of this shell's background jobs at a time: start the next as
    # soon as any one ends (waiting for a whole batch left the pool waiting on
    # its slowest program)
    slot() { while [ "$(jobs -rp | wc -l)" -ge "$1" ]; do wait -n; done; }
    # pool DIR JOBS LABEL PROGRAM...: "${RUN[@]}" PROGRAM for each program,
    # JOBS at a time, a log and an exit status each in DIR; then the logs in
    # order, each ending "=== LABELprogram: exit N"; fails if any program did
    pool() {
        local d=$1 n=$2 label=$3 t fail=0
        shift 3
        mkdir -p "$d"
        for t in "$@"; do
            slot "$n"
            ( "${RUN[@]}" "$t" >"$d/$(basename "$t").log" 2>&1; echo $? >"$d/$(basename "$t").rc" ) &
        done
        wait
        for t in "$@"; do
            cat "$d/$(basename "$t").log"
            echo "=== $label$(basename "$t"): exit $(cat "$d/$(basename "$t").rc")"
            [ "$(cat "$d/$(basename "$t").rc")" = 0 ] || fail=1
        done
        return $fail
    }
    # 1. the GPU tests, TEST_JOBS programs at a time, in one job (STF_NO_HWC:
    # the sanitizer jobs beside this one hold the device, and the counters
    # were checked in the counters phase)
    gpu_tests() {
        local RUN=(env STF_GPU_ONLY=1 STF_NO_HWC=1 timeout 600)
        pool "$C/tests.parts" "${TEST_JOBS:-4}" "" "${tests[@]}"
    }
    job tests gpu_tests
    # 2. memcheck on the GPU tests (STF_TEST_SMALL: the attention tests keep
    # N small under the sanitizer; the counter test is left out, the
    # sanitizer and the profiler cannot both hold the device), SAN_JOBS test
    # programs at a time (each under the sanitizer is one CPU-bound process)
    san_tests() {
        local tool=$1
        shift
        local RUN=(env STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_NO_HWC=1 timeout 900 "${SAN[@]}" --tool "$tool")
        [ "$tool" = memcheck ] && RUN+=(--leak-check full)
        RUN+=(--)
        pool "$C/$tool.parts" "${SAN_JOBS:-6}" "$tool " "$@"
    }
    job memcheck_tests san_tests memcheck "${tests[@]}"
    # 3. every stage program, end to end, through its quick benchmark runs
    job memcheck_bench env STF_NO_HWC=1 BENCH_WRAP="${SAN[*]} --tool memcheck --leak-check full --" BIN="$BUILD/bin" \
        OUT="$C/memcheck_bench" DEVICE="$DEVICE" QUICK=1 timeout 1800 bash tools/bench.sh
    # 4. racecheck where warps share memory: block reductions (softmax), the
    # tensor-core tiles (ldmatrix from swizzled shared memory), the GQA and
    # split-KV kernels, the tensor-core decode and the paged cache (its
    # tiles and combines, and the append)
    race=()
    for t in test_softmax test_attention_tc test_gqa test_split_kv test_split_tc test_paged; do
        [ -x "$BUILD/bin/$t" ] && [[ $t =~ ${TEST_ONLY:-.} ]] && race+=("$BUILD/bin/$t")
    done
    job racecheck san_tests racecheck "${race[@]}"
    # 5. FlashAttention's accuracy criterion on every tensor-core kernel
    if python3 -c 'import torch, numpy' 2>/dev/null; then
        job fa_accuracy env BIN="$BUILD/bin" OUT="$OUT" timeout 900 bash tools/fa_accuracy.sh
    fi
    wait
    for name in "${jobs_started[@]}"; do
        rc=$(cat "$C/$name.rc" 2>/dev/null || echo 1)
        case $name in
        tests) extra="$(grep -c '^=== .*: exit 0$' "$C/tests.log") of $(grep -c '^=== ' "$C/tests.log") test programs passed; $(awk '/^\[  SKIPPED \] [0-9]+ test/ { n += $4 } END { print n + 0 }' "$C/tests.log") tests skipped" ;;
        memcheck_tests | racecheck) extra="$(grep -c -E 'ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards' "$C/$name.log") runs clean of $(grep -c '^=== ' "$C/$name.log"), $(count '^sanitize_gpu: no CUDA call' "$C/$name.log") without CUDA calls; last: $(errsum "$C/$name.log")" ;;
        memcheck_bench) extra="$(count 'ERROR SUMMARY: 0 errors' "$C/memcheck_bench/bench.log") runs clean, $(count '^sanitize_gpu: no CUDA call' "$C/memcheck_bench/bench.log") without CUDA calls, $(count '^FAILED' "$C/memcheck_bench/bench.log") failed; $(grep -m1 -o '^bench: [0-9]* stages' "$C/memcheck_bench.log" | cut -d' ' -f2-)${BENCH_ONLY:+, only those BENCH_ONLY='$BENCH_ONLY' picks}" ;;
        fa_accuracy) extra=$(tail -n 1 "$C/fa_accuracy.log") ;;
        *) extra="" ;;
        esac
        note "$rc" "$name: exit $rc ($extra; log checks/$name.log)"
    done
    python3 -c 'import torch, numpy' 2>/dev/null ||
        note skip "FlashAttention's 2x-torch accuracy criterion: python3 with torch and numpy not found"
fi

# ---------------------------------------------------------------- bench
if has bench; then
    BIN=$BUILD/bin OUT=$OUT DEVICE=$DEVICE QUICK=0 bash tools/bench.sh >"$OUT/bench_progress.log" 2>&1
    rc=$?
    note $rc "bench${BENCH_ONLY:+ (BENCH_ONLY=$BENCH_ONLY)}: exit $rc ($(count '^FAILED' "$OUT/bench.log") runs failed; log in bench.log)"
    grep -E '^== step .* done in' "$OUT/bench_progress.log"
fi

echo
echo "================ summary ($((SECONDS - T0)) s; PARTS=$PARTS)"
printf '%s\n' "${summary[@]}"
has bench && grep -E '^ +[0-9][0-9] +[a-z]' "$OUT/bench.log" | head -n 60
exit $rc_all
