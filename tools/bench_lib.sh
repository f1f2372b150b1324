# Sourced by tools/bench.sh's stage runs and by every stages/*/bench*.sh
# (the contract is in tools/bench.sh):
#
#   source tools/bench_lib.sh
#   run "$BIN/NN_name" --device "$DEVICE" ... --csv "$OUT/file.csv"
#
# bench_manifest STAGE the runs of tools/bench_shapes.tsv for STAGE that apply
#                      here (QUICK, the device), each through run, after
#                      removing the CSV files STAGE alone writes.
# run PROGRAM ARGS...  prints a progress line ("[step k of n] ..." on stderr),
#                      appends "+ PROGRAM ARGS" and the program's output to
#                      $OUT/bench.log, shows the output on stdout (redirect
#                      the call to /dev/null to keep a sweep quiet), and
#                      records a failure without stopping the script: the
#                      next run still runs, and the script then exits 1
#                      (an EXIT trap set here; a stage script that sets its
#                      own EXIT trap must call bench_finish in it).
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

BENCH_SHAPES=${BENCH_SHAPES:-tools/bench_shapes.tsv}

bench_manifest() {
    local stage=$1 dev st when prog args w ok quiet torch csv n=0
    local -a tags av
    dev=$(bench_device)
    [ -f "$BENCH_SHAPES" ] || { echo "bench: no $BENCH_SHAPES" >&2; bench_failures=$((bench_failures + 1)); return 0; }
    # the CSV files only this stage writes: removed first (a rerun does not append twice)
    for csv in $(awk -F'\t' -v s="$stage" '!/^#/ && NF >= 4 {
            n = split($4, a, " ")
            for (i = 1; i < n; i++) if (a[i] == "--csv") { f[a[i + 1]] = f[a[i + 1]] (f[a[i + 1]] ~ "(^| )" $1 "( |$)" ? "" : " " $1) }
        } END { for (c in f) if (f[c] == " " s) print c }' "$BENCH_SHAPES"); do
        rm -f "${csv//@OUT@/$OUT}"
    done
    while IFS=$'\t' read -r -u 3 st when prog args; do
        [ -n "$st" ] && [ "${st#\#}" = "$st" ] && [ "$st" = "$stage" ] || continue
        ok=0 quiet=0 torch=0
        IFS=, read -r -a tags <<<"$when"
        for w in "${tags[@]}"; do
            case $w in
            quick) [ "$QUICK" = 1 ] && ok=1 ;;
            quick-cpu | quick-gpu) [ "$QUICK" = 1 ] && [ "$dev" = "${w#quick-}" ] && ok=1 ;;
            cpu | gpu) [ "$QUICK" = 0 ] && [ "$dev" = "$w" ] && ok=1 ;;
            quiet) quiet=1 ;;
            torch) torch=1 ;;
            *) echo "bench: $BENCH_SHAPES: unknown 'when' tag '$w' ($stage $prog $args)" >&2
               bench_failures=$((bench_failures + 1)) ;;
            esac
        done
        [ "$ok" = 1 ] || continue
        if [ "$torch" = 1 ] && ! python3 -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
            echo "bench: $stage: PyTorch with CUDA not found: skipped $prog $args"
            continue
        fi
        args=${args//@DEVICE@/$DEVICE}
        args=${args//@OUT@/$OUT}
        read -r -a av <<<"$args"
        case $prog in [0-9][0-9]*_*) prog=$BIN/$prog ;; esac
        n=$((n + 1))
        if [ "$quiet" = 1 ]; then run "$prog" "${av[@]}" >/dev/null; else run "$prog" "${av[@]}"; fi
    done 3<"$BENCH_SHAPES"
    echo "bench: $stage: $n runs from $BENCH_SHAPES (QUICK=$QUICK, $dev)"
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
