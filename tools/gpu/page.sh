#!/usr/bin/env bash
# page's GPU round (issue 19, second half: the paged K/V cache, stage 07).
#   MODE=check  (90 s (round C), in parallel with other scripts, nothing timed): the
#               paged tests (STF_GPU_ONLY=1), memcheck and racecheck on small
#               shapes, the checked program runs with several P, dtypes and
#               head dims, stage 06/07's own GPU tests (the decode kernel's
#               loader changed: its K/V row policy).
#   MODE=bench  (25 s (round C), alone): contiguous split vs split-paged at P = 16 ...
#               256 on bf16 d = 128, Hq = 32, Hkv = 8: B = 8, 32k keys and
#               B = 1, 128k keys (stage 06's packed decode in the same
#               tables); the append kernel's row comes after each table.
# Logs under $RESULTS, packed at the end into one .tgz (the round returns
# few files) beside summary.txt; a summary last.
#   MODE=check RESULTS=/tmp/page bash tools/gpu/page.sh   (from the worktree root)
set -uo pipefail
MODE=${MODE:-check}
. "$(dirname "$0")/round.sh"
gpu_round "page-$MODE"
summary=()
# on exit (also when the round's timeout sends TERM): every log into one .tgz beside summary.txt
pack() {
    (cd "$RESULTS" && ls | grep -qv -e '\.tgz$' -e '^summary.txt$' || exit 0
     tar czf "page-$MODE.tgz" --exclude="page-$MODE.tgz" --exclude=summary.txt . &&
         find . -type f ! -name "page-$MODE.tgz" ! -name summary.txt -delete) 2>/dev/null
}
trap pack EXIT
trap 'exit 143' TERM INT
note() { summary+=("$(printf '%-46s %s' "$1" "$2")"); }
t0=$SECONDS
make -j"${JOBS:-16}" $B/07_split_kv_decode $B/test_paged $B/test_split_kv $B/test_gqa >"$RESULTS/build.log" 2>&1
rc=$?
note "build" "rc=$rc ($((SECONDS - t0)) s)"
if [ $rc -ne 0 ]; then tail -30 "$RESULTS/build.log"; printf '%s\n' "${summary[@]}"; exit 1; fi
nvidia-smi -L >"$RESULTS/device.txt" 2>&1
git log -1 --format='%H %s' >"$RESULTS/commit.txt" 2>&1
date -u >>"$RESULTS/commit.txt"

if [ "$MODE" = check ]; then
    left=$((${PAGE_CHECK_S:-82} - (SECONDS - t0)))
    T="timeout $left"
    bg() { # name, log, command...: in the background, noted when it ends
        local name=$1 log=$2; shift 2
        ( t=$SECONDS; $T "$@" >"$RESULTS/$log" 2>&1; rc=$?; printf '%-46s rc=%d (%d s, %s)\n' "$name" $rc $((SECONDS - t)) "$log" >"$RESULTS/$log.rc" ) &
    }
    bg "test_paged (GPU)" test_paged.log env STF_GPU_ONLY=1 $B/test_paged
    bg "memcheck test_paged (small)" memcheck_paged.log env STF_GPU_ONLY=1 STF_TEST_SMALL=1 \
        compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_paged
    bg "racecheck 07 split-paged P=16 (small)" racecheck_07.log \
        compute-sanitizer --tool racecheck --error-exitcode 9 $B/07_split_kv_decode --device gpu --dtype bf16 \
        --heads 8 --kv-heads 2 --batch 3 --seq-kv 300 --dim 64 --varlen --page-size 16 --iters 1 --warmup 0 --kernel split-paged
    bg "memcheck 07 P=16,256 varlen (small)" memcheck_07.log bash -c \
        "for P in 16 256; do compute-sanitizer --tool memcheck --error-exitcode 9 $B/07_split_kv_decode --device gpu --dtype bf16 --heads 8 --kv-heads 2 --batch 3 --seq-kv 1000 --dim 128 --varlen --page-size \$P --splits 3 --iters 1 --warmup 0 || exit; done"
    bg "test_split_kv (GPU, small)" test_split_kv.log env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $B/test_split_kv
    bg "test_gqa (GPU, small)" test_gqa.log env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $B/test_gqa
    # checked runs: every P, varlen (lengths mid-page: Nk = 5001), dtypes, head dims (d = 96: 12 chunks per row)
    bg "07 P=16..256 bf16 varlen, Nk=5001" runs_p.log bash -c \
        "for P in 16 32 64 128 256; do $B/07_split_kv_decode --device gpu --dtype bf16 --heads 32 --kv-heads 8 --batch 4 --seq-kv 5001 --varlen --page-size \$P --iters 2 --warmup 1 || exit; done"
    bg "07 P=16,64 fp32/fp16 d=96,256, MQA" runs_d.log bash -c \
        "for d in 96 256; do for dt in fp32 fp16; do for P in 16 64; do $B/07_split_kv_decode --device gpu --dtype \$dt --dim \$d --heads 16 --kv-heads 1 --batch 3 --seq-kv 2001 --varlen --page-size \$P --iters 2 --warmup 1 || exit; done; done; done"
    wait
    for f in "$RESULTS"/*.log.rc; do summary+=("$(cat "$f")"); done
    grep -hE "PASSED|FAILED|SKIPPED|ERROR SUMMARY|RACECHECK SUMMARY" "$RESULTS"/*.log >"$RESULTS/tests_summary.txt" 2>&1
    grep -hE "^append|NO|FAILED" "$RESULTS"/runs_*.log | sort | uniq -c | head -20 >"$RESULTS/runs_summary.txt"
    echo "== page check summary ($((SECONDS - t0)) s)"
    printf '%s\n' "${summary[@]}" | tee "$RESULTS/summary.txt"
    cat "$RESULTS/tests_summary.txt" "$RESULTS/runs_summary.txt" | tee -a "$RESULTS/summary.txt"
    exit 0
fi

# MODE=bench: alone on the GPU, sequential, within the slice (25 s in round
# C; a run takes ~6 s: the most telling shapes first, the rest skipped once
# PAGE_BENCH_S - 8 s are gone)
CSV=$RESULTS/paged.csv
rm -f "$CSV"
A=(--device gpu --dim 128 --dtype bf16 --heads 32 --kv-heads 8 --iters 20 --kernel split,split-paged,split-tc,split-tc-paged --csv "$CSV")
for run in "8 32768 16" "1 131072 64" "8 32768 32" "1 131072 16" "8 32768 64" "8 32768 256" "8 32768 128"; do
    set -- $run
    if [ $((SECONDS - t0)) -gt $((${PAGE_BENCH_S:-25} - 8)) ]; then note "B=$1 Nk=$2 P=$3" "skipped: the slice"; continue; fi
    t=$SECONDS
    $B/07_split_kv_decode "${A[@]}" --batch "$1" --seq-kv "$2" --page-size "$3" >"$RESULTS/bench_B$1_P$3.log" 2>&1
    note "bench B=$1 Nk=$2 P=$3" "rc=$? ($((SECONDS - t)) s)"
done
echo "== page bench summary ($((SECONDS - t0)) s)"
printf '%s\n' "${summary[@]}" | tee "$RESULTS/summary.txt"
# contiguous split vs paged: the table rows and the append rows
for f in "$RESULTS"/bench_B*.log; do
    grep -HE " (packed|split|split-paged|split-tc|split-tc-paged) gpu |^append" "$f" | sed "s|^$RESULTS/||"
done | tee -a "$RESULTS/summary.txt"
