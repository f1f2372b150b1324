#!/usr/bin/env bash
# Runs every stage's benchmarks and writes the CSV files the plots are drawn
# from, with the full log beside them. Called by `make bench`.
#
# Contract (stage scripts are added against it; nothing here names a stage):
#   - Runs every stages/*/bench*.sh, in sorted order (LC_ALL=C), each with
#     bash, cwd = the repository root, and these variables exported:
#       BIN     the build's bin folder (absolute path)
#       OUT     the bench output folder (absolute path; CSV, bench.log)
#       DEVICE  auto|cpu|gpu, passed to the programs as --device
#       QUICK   0 or 1; 1: small (odd) shapes and short sweeps, so every stage
#               finishes in seconds on a CPU (all stages: under a minute)
#       BENCH_STEP, BENCH_STEPS  this script's number k and the count n
#   - A stage script sources tools/bench_lib.sh and calls
#       run PROGRAM ARGS...
#     for each program run: it prints "[step k of n, run r] ...", logs the
#     command and its output to $OUT/bench.log, and records a failure; the
#     script exits non-zero if any run failed (bench_lib.sh's EXIT trap).
#   - Stage scripts append to CSV files in $OUT (--csv); this script removes
#     the old CSV, plots and bench.log first. Today's files:
#       softmax.csv        stages 01-03 at one shape, fp32 and fp16
#       softmax_sweep.csv  stages 01-03, cols = 1024 ... 1048576 at fixed rows x cols
#       overflow.csv       Q2: naive vs safe softmax past the overflow point (stage 02)
#       attention.csv      stage 04: sweeps over N (d = 64 fp32, d = 128 bf16), one causal run
#   - Every stage script runs even when an earlier one failed; this script
#     exits 1 at the end if any failed, and lists them.
#
# Inputs (environment): BIN (default $BUILD/bin, BUILD default build),
# OUT (default $BENCH_DIR, default build/bench), DEVICE, QUICK,
# BENCH_WRAP (see tools/bench_lib.sh), DRAW=1 (then the plots, `make bench`:
# gnuplot-nox is installed if it can be, plots/need_gnuplot.sh; without it
# the CSV stay and `make plots` draws them later), and BENCH_ONLY: an extended regex;
# only the stage scripts whose path matches it run (for a machine that cuts
# a long run into pieces: BENCH_ONLY='0[1-4]_', then BENCH_ONLY='0[5-7]_'
# into the same OUT; nothing is removed first, bench.log is appended to).
set -uo pipefail
BUILD=${BUILD:-build}
BIN=${BIN:-$BUILD/bin}
OUT=${OUT:-${BENCH_DIR:-$BUILD/bench}}
DEVICE=${DEVICE:-auto}
QUICK=${QUICK:-0}
case $DEVICE in auto | cpu | gpu) ;; *) echo "bench: DEVICE must be auto, cpu or gpu (got '$DEVICE')" >&2; exit 2 ;; esac
case $QUICK in 0 | 1) ;; *) echo "bench: QUICK must be 0 or 1 (got '$QUICK')" >&2; exit 2 ;; esac
[ -d "$BIN" ] || { echo "bench: no bin folder '$BIN': build first (make)" >&2; exit 2; }
mkdir -p "$OUT"
BIN=$(cd "$BIN" && pwd)
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."

mapfile -t scripts < <(LC_ALL=C ls -1 stages/*/bench*.sh 2>/dev/null | LC_ALL=C sort | grep -E -- "${BENCH_ONLY:-.}")
n=${#scripts[@]}
[ "$n" -gt 0 ] || { echo "bench: no stages/*/bench*.sh found${BENCH_ONLY:+ matching BENCH_ONLY='$BENCH_ONLY'}" >&2; exit 2; }
if [ -z "${BENCH_ONLY:-}" ]; then
    rm -f "$OUT"/*.csv "$OUT"/*.dat "$OUT"/*.info "$OUT"/*.png "$OUT/bench.log"
    : >"$OUT/bench.log"
fi # with BENCH_ONLY the other pieces' CSV stay and bench.log grows
export BIN OUT DEVICE QUICK BENCH_STEPS=$n
# what DEVICE=auto means, decided once for every stage script (bench_lib.sh's bench_device)
BENCH_DEV=$(source tools/bench_lib.sh && trap - EXIT && bench_device)
export BENCH_DEV

failed=()
start=$SECONDS
echo "bench: $n stage scripts, DEVICE=$DEVICE (runs on the $BENCH_DEV) QUICK=$QUICK, output in $OUT"
for k in "${!scripts[@]}"; do
    s=${scripts[$k]}
    t0=$SECONDS
    echo "== step $((k + 1)) of $n: $s"
    echo "== step $((k + 1)) of $n: $s" >>"$OUT/bench.log"
    BENCH_STEP=$((k + 1)) BENCH_SCRIPT=$s bash "$s"
    rc=$?
    [ $rc = 0 ] || failed+=("$s (exit $rc)")
    echo "== step $((k + 1)) of $n done in $((SECONDS - t0)) s$([ $rc = 0 ] || echo ": FAILED")"
done

echo "bench: $n stage scripts in $((SECONDS - start)) s; CSV and log in $OUT:"
(cd "$OUT" && ls -1 -- *.csv bench.log 2>/dev/null | sed 's/^/  /')
rc=0
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: FAILED:"
    printf '  %s\n' "${failed[@]}"
    rc=1
fi
if [ "${DRAW:-0}" = 1 ]; then
    if bash plots/need_gnuplot.sh; then
        DIR=$OUT bash plots/draw.sh || rc=1
    else
        echo "plots skipped: gnuplot is not installed and could not be installed; run 'make plots' on a machine with gnuplot (apt-get install gnuplot-nox)"
    fi
fi
exit $rc
