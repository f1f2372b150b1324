# Sourced by every stages/*/bench*.sh (the contract is in tools/bench.sh):
#
#   source tools/bench_lib.sh
#   run "$BIN/NN_name" --device "$DEVICE" ... --csv "$OUT/file.csv"
#
# run PROGRAM ARGS...  prints a progress line ("[step k of n] ..." on stderr),
#                      appends "+ PROGRAM ARGS" and the program's output to
#                      $OUT/bench.log, shows the output on stdout (redirect
#                      the call to /dev/null to keep a sweep quiet), and
#                      records a failure without stopping the script: the
#                      next run still runs, and the script then exits 1
#                      (an EXIT trap set here; a stage script that sets its
#                      own EXIT trap must call bench_finish in it).
# softmax_stage_runs PROGRAM
#                      the runs every softmax stage (01-03) makes: the
#                      default shape (QUICK=1: 37 x 1000) into softmax.csv
#                      and the cols sweep 1024 ... 1048576 (QUICK=1: at 2^20
#                      elements, one timed run each) into softmax_sweep.csv,
#                      fp32 and fp16.
# BENCH_WRAP           optional command put before every program (word-split),
#                      e.g. "compute-sanitizer --error-exitcode 1": the
#                      sanitizer runs over the same runs (tools/gpu_check.sh).
: "${BIN:?BIN is not set: run the stage benchmarks through tools/bench.sh (make bench)}"
: "${OUT:?OUT is not set: run the stage benchmarks through tools/bench.sh (make bench)}"
DEVICE=${DEVICE:-auto}
QUICK=${QUICK:-0}
BENCH_STEP=${BENCH_STEP:-1}
BENCH_STEPS=${BENCH_STEPS:-1}
BENCH_SCRIPT=${BENCH_SCRIPT:-$0}
bench_runs=0
bench_failures=0
mkdir -p "$OUT"

run() {
    bench_runs=$((bench_runs + 1))
    local ps=()
    printf '[step %s of %s, run %d] %s\n' "$BENCH_STEP" "$BENCH_STEPS" "$bench_runs" "${*#"$BIN"/}" >&2
    echo "+ $*" >>"$OUT/bench.log"
    # The braces with || true: a failing program must not end a script that
    # runs under set -e; its status is read from PIPESTATUS instead.
    { ${BENCH_WRAP:-} "$@" 2>&1 | tee -a "$OUT/bench.log"; ps=("${PIPESTATUS[@]}"); } || true
    local rc=${ps[0]:-1}
    [ "$rc" = 0 ] && rc=${ps[1]:-0}
    if [ "$rc" != 0 ]; then
        bench_failures=$((bench_failures + 1))
        echo "FAILED (exit $rc): $*" | tee -a "$OUT/bench.log" >&2
    fi
    return 0
}

softmax_stage_runs() {
    local p=$1 dt
    local -a one sweep
    if [ "$QUICK" = 1 ]; then
        one=(--rows 37 --cols 1000 --iters 3 --warmup 1)
        sweep=(--sweep --rows 1024 --cols 1024 --iters 1 --warmup 0)
    else
        one=()
        sweep=(--sweep --iters 10)
    fi
    for dt in fp32 fp16; do
        run "$p" --device "$DEVICE" --dtype "$dt" "${one[@]}" --csv "$OUT/softmax.csv"
    done
    for dt in fp32 fp16; do
        run "$p" --device "$DEVICE" --dtype "$dt" "${sweep[@]}" --csv "$OUT/softmax_sweep.csv" >/dev/null
    done
}

# bench_device         prints what DEVICE means for this run: cpu or gpu.
#                      DEVICE=auto is decided once per `make bench`
#                      (tools/bench.sh exports BENCH_DEV): gpu when a tiny
#                      GPU run of stage 01 succeeds, else cpu. Every stage
#                      script asks this instead of probing on its own.
bench_device() {
    if [ "$DEVICE" != auto ]; then
        echo "$DEVICE"
    elif [ -n "${BENCH_DEV:-}" ]; then
        echo "$BENCH_DEV"
    elif "$BIN/01_naive_softmax" --device gpu --rows 1 --cols 32 --iters 1 --warmup 0 >/dev/null 2>&1; then
        echo gpu
    else
        echo cpu
    fi
}

bench_finish() {
    local rc=$?
    if [ "$bench_failures" != 0 ]; then
        echo "$BENCH_SCRIPT: $bench_failures of $bench_runs runs failed (see $OUT/bench.log)" >&2
        exit 1
    fi
    exit "$rc"
}
trap bench_finish EXIT
