#!/usr/bin/env bash
# Runs every stage's benchmarks and writes the CSV files the plots are drawn
# from, with the full log beside them. Called by `make bench`.
#
# What runs, stage by stage (sorted, LC_ALL=C), each a step:
#   1. its stages/<stage>/bench_*.sh: what is stage-specific (a sweep whose
#      output is post-processed into a plot's CSV);
#   2. then the stage's lines of tools/bench_shapes.tsv (the manifest: every
#      stage's shapes for QUICK=1, the CPU and the GPU), through bench_lib.sh's
#      bench_manifest;
#   3. a stage without lines in the manifest runs its stages/<stage>/bench.sh
#      instead (a stage's bench.sh is otherwise only the way to run its part
#      alone: `bash stages/05b_tensor_cores/bench.sh` = this script with the
#      stage named).
# Each step runs with cwd = the repository root and these variables
# exported: BIN (absolute), OUT (absolute; CSV, bench.log), DEVICE
# (auto|cpu|gpu), QUICK (0 or 1; 1: small, odd shapes, every stage in seconds
# on a CPU), BENCH_DEV (what DEVICE=auto means, decided once), BENCH_STEP,
# BENCH_STEPS. A stage script sources tools/bench_lib.sh and calls
#     run PROGRAM ARGS...
# for each program run: it prints "[step k of n, run r] ...", logs the command
# and its output to $OUT/bench.log, and records a failure; the step exits
# non-zero if any run failed (bench_lib.sh's EXIT trap). Every step runs even
# when an earlier one failed; this script exits 1 at the end if any failed,
# and lists them. Runs append to CSV files in $OUT (--csv); this script
# removes the old CSV, plots and bench.log first. Today's files: softmax.csv,
# softmax_sweep.csv (01-03), overflow.csv (02), softmax_split.csv,
# softmax_rows.csv, softmax_cluster_sweep.csv (03), attention.csv (04),
# tiled_io.csv, tiled.csv (05), tc_ladder.csv, tc_torch.csv (05b), gqa.csv
# (06), split_kv.csv (07), backward_io.csv, backward.csv (08).
#
#   bash tools/bench.sh [STAGE]   STAGE: one stage folder's name (its runs
#                                 alone, nothing else removed)
#
# Inputs (environment): BIN (default $BUILD/bin, BUILD default build),
# OUT (default $BENCH_DIR, default build/bench), DEVICE, QUICK,
# BENCH_WRAP (see tools/bench_lib.sh), DRAW=1 (then the plots, `make bench`:
# gnuplot-nox is installed if it can be, plots/need_gnuplot.sh; without it
# the CSV stay and `make plots` draws them later), and BENCH_ONLY: an extended regex;
# only the stages whose folder, stages/<stage>/, matches it run (for a machine that cuts
# a long run into pieces: BENCH_ONLY='0[1-4]_', then BENCH_ONLY='0[5-7]_'
# into the same OUT; nothing is removed first but the CSV files of the
# stages that run, bench.log is appended to).
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

[ $# -le 1 ] || { echo "usage: $0 [STAGE]" >&2; exit 2; }
if [ $# = 1 ]; then
    [ -d "stages/$1" ] || { echo "bench: no stage folder stages/$1" >&2; exit 2; }
    BENCH_ONLY="^stages/$1/\$"
fi
SHAPES=tools/bench_shapes.tsv
in_manifest() { awk -F'\t' -v s="$1" '!/^#/ && $1 == s { f = 1 } END { exit !f }' "$SHAPES"; }
# the stages: those with lines in the manifest or a bench script of their own
mapfile -t stages < <({ awk -F'\t' '!/^#/ && NF >= 4 { print $1 }' "$SHAPES"
    LC_ALL=C ls -1 stages/*/bench*.sh 2>/dev/null | cut -d/ -f2; } | LC_ALL=C sort -u |
    while read -r st; do printf 'stages/%s/\n' "$st"; done | grep -E -- "${BENCH_ONLY:-.}" | cut -d/ -f2)
n=${#stages[@]}
[ "$n" -gt 0 ] || { echo "bench: no stage to run${BENCH_ONLY:+ matching BENCH_ONLY='$BENCH_ONLY'}" >&2; exit 2; }
if [ -z "${BENCH_ONLY:-}" ]; then
    rm -f "$OUT"/*.csv "$OUT"/*.dat "$OUT"/*.info "$OUT"/*.png "$OUT/bench.log"
    : >"$OUT/bench.log"
fi # with BENCH_ONLY the other stages' CSV stay and bench.log grows
export BIN OUT DEVICE QUICK BENCH_STEPS=$n
# what DEVICE=auto means, decided once for every stage (bench_lib.sh's bench_device)
BENCH_DEV=$(source tools/bench_lib.sh && trap - EXIT && bench_device)
export BENCH_DEV

failed=()
start=$SECONDS
echo "bench: $n stages, DEVICE=$DEVICE (runs on the $BENCH_DEV) QUICK=$QUICK, output in $OUT"
for k in "${!stages[@]}"; do
    st=${stages[$k]}
    t0=$SECONDS
    echo "== step $((k + 1)) of $n: stages/$st"
    echo "== step $((k + 1)) of $n: stages/$st" >>"$OUT/bench.log"
    export BENCH_STEP=$((k + 1))
    rc=0
    if in_manifest "$st"; then extra=(stages/"$st"/bench_*.sh); else extra=(stages/"$st"/bench*.sh); fi
    for s in "${extra[@]}"; do
        [ -f "$s" ] || continue
        BENCH_SCRIPT=$s bash "$s" || { rc=1; failed+=("$s"); }
    done
    if in_manifest "$st"; then
        BENCH_SCRIPT="$SHAPES ($st)" bash -c 'source tools/bench_lib.sh && bench_manifest "$1"' bench "$st" || rc=1
    fi
    [ $rc = 0 ] || failed+=("stages/$st")
    echo "== step $((k + 1)) of $n done in $((SECONDS - t0)) s$([ $rc = 0 ] || echo ": FAILED")"
done

echo "bench: $n stages in $((SECONDS - start)) s; CSV and log in $OUT:"
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
