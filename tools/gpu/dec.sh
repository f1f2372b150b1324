#!/usr/bin/env bash
# Helper dec's GPU run (issue 19, first half: split-tc, the tensor-core decode
# kernel of stage 07). From the worktree root on the H200:
#   MODE=check RESULTS=dir bash tools/gpu/dec.sh   correctness only (120 s slice,
#       may share the GPU): test_split_tc and test_split_kv on the GPU,
#       compute-sanitizer memcheck / racecheck / synccheck on small shapes,
#       checked program runs (varlen, Nk = 1, d = 64, fp16, g = 48).
#   MODE=bench RESULTS=dir bash tools/gpu/dec.sh   timed, alone (100 s slice):
#       the six shapes of stage 07's table for split and split-tc, PyTorch's
#       flash and cudnn backends on the same shapes, the g sweep at fixed K/V
#       bytes, one capped ncu run of split-tc.
# Logs under $RESULTS; a summary table last.
set -uo pipefail
MODE=${MODE:-check}
. "$(dirname "$0")/round.sh"
gpu_round dec
sum=()
note() { sum+=("$(printf '%-46s %s' "$1" "$2")"); }
left() { echo $((SLICE - (SECONDS - T0))); }

make -j"${JOBS:-16}" $B/07_split_kv_decode $B/test_split_tc $B/test_split_kv >"$RESULTS/build.log" 2>&1
rc=$?
note "build" "rc=$rc ($((SECONDS - T0)) s)"
if [ $rc -ne 0 ]; then tail -30 "$RESULTS/build.log"; printf '%s\n' "${sum[@]}"; exit 1; fi
nvidia-smi -L >"$RESULTS/device.txt" 2>&1
{ git log -1 --format='%H %s'; git status --short; date -u; } >"$RESULTS/commit.txt" 2>&1

if [ "$MODE" = check ]; then
    SLICE=${SLICE:-120}
    # in parallel, nothing timed, each with its own timeout
    bg() { # name, log, timeout, command...
        local name=$1 log=$2 to=$3; shift 3
        ( t=$SECONDS; timeout "$to" "$@" >"$RESULTS/$log" 2>&1; rc=$?
          printf '%-46s rc=%d (%d s, %s)\n' "$name" $rc $((SECONDS - t)) "$log" >"$RESULTS/$log.rc" ) &
    }
    bg "test_split_tc (GPU, full)" test_split_tc.log 100 env STF_GPU_ONLY=1 $B/test_split_tc
    bg "test_split_kv (GPU, small)" test_split_kv.log 60 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $B/test_split_kv
    bg "memcheck test_split_tc (small)" memcheck.log 100 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 \
        STF_TEST_FILTER='*groups_gpu' compute-sanitizer --tool memcheck --error-exitcode 9 $B/test_split_tc
    P="$B/07_split_kv_decode --device gpu --kernel split-tc --iters 1 --warmup 0"
    # racecheck / synccheck on the tests' kernels: the long shapes (the heuristic's many splits, the
    # wide combine) and the broken-policy path (one split, O written by the blocks)
    bg "racecheck test_split_tc long (small)" racecheck.log 100 env STF_TEST_SMALL=1 STF_TEST_FILTER='*long_gpu' \
        compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_split_tc
    bg "racecheck test_split_tc broken path" racecheck2.log 100 env STF_TEST_FILTER='*broken_gpu' \
        compute-sanitizer --tool racecheck --error-exitcode 9 $B/test_split_tc
    bg "synccheck test_split_tc long (small)" synccheck.log 100 env STF_TEST_SMALL=1 STF_TEST_FILTER='*long_gpu' \
        compute-sanitizer --tool synccheck --error-exitcode 9 $B/test_split_tc
    bg "racecheck program (MQA g=32, 4 splits)" racecheck3.log 100 env STF_NO_HWC=1 compute-sanitizer \
        --tool racecheck --error-exitcode 9 $P --dtype bf16 --heads 32 --kv-heads 1 --batch 2 --seq-kv 300 --splits 4
    # FlashAttention's criterion: error against an fp32 reference at most 2x PyTorch's same-precision error
    bg "FA 2x-PyTorch criterion (GQA bf16, MQA fp16)" fa_check.log 100 bash -c "
        set -e
        $P --dtype bf16 --heads 32 --kv-heads 4 --batch 2 --seq-kv 3001 --save-npy $RESULTS/npy_gqa >/dev/null
        $P --dtype fp16 --dim 64 --heads 32 --kv-heads 1 --batch 2 --seq-kv 2000 --save-npy $RESULTS/npy_mqa >/dev/null
        python3 tools/torch_attention.py --check $RESULTS/npy_gqa $RESULTS/npy_mqa --impl split-tc
        python3 tools/torch_attention.py --check-broken $RESULTS/npy_gqa --impl split-tc
        rm -rf $RESULTS/npy_gqa $RESULTS/npy_mqa"
    bg "program runs (checked)" programs.log 100 bash -c "
        set -e
        $P --dtype bf16 --heads 32 --kv-heads 8 --batch 5 --varlen --seq-kv 3001
        $P --dtype fp16 --dim 64 --heads 32 --kv-heads 1 --batch 2 --seq-kv 5000
        $P --dtype bf16 --heads 48 --kv-heads 1 --batch 2 --seq-kv 1000
        $P --dtype bf16 --heads 8 --kv-heads 8 --batch 3 --seq-kv 1
        $P --dtype bf16 --heads 12 --kv-heads 4 --batch 3 --seq-kv 4000 --splits 65536
        $B/07_split_kv_decode --device gpu --iters 1 --dtype bf16 --heads 32 --kv-heads 4 --batch 2 --seq-kv 2000
        # declined shapes: split-tc says why, exit 2 when nothing of the chosen ran
        ! $P --dtype fp32 --heads 8 --kv-heads 2 --seq-kv 100
        ! $P --dtype bf16 --dim 96 --heads 8 --kv-heads 2 --seq-kv 100"
    # Nsight Compute on split-tc's two kernels (MQA, B = 1 and 8): where the time goes (stall reasons,
    # throughput); ncu serializes and replays kernels, so its durations are not the benchmark's
    bg "ncu split-tc MQA B=1 128k (main + combine)" ncu.log 90 env STF_NO_HWC=1 ncu \
        --kernel-name regex:'decode_tc_kernel|combine_wide' --launch-skip 0 --launch-count 2 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
        --section LaunchStats $P --dtype bf16 --heads 32 --kv-heads 1 --batch 1 --seq-kv 131072
    bg "ncu split-tc MQA B=8 32k (main + combine)" ncu2.log 90 env STF_NO_HWC=1 ncu \
        --kernel-name regex:'decode_tc_kernel|combine_wide' --launch-skip 0 --launch-count 2 \
        --section SpeedOfLight --section WarpStateStats $P --dtype bf16 --heads 32 --kv-heads 1 --batch 8 --seq-kv 32768
    wait
    for f in "$RESULTS"/*.log.rc; do sum+=("$(cat "$f")"); done
    grep -hE "PASSED|FAILED|SKIPPED|ERROR SUMMARY|worst|must" "$RESULTS"/test_*.log "$RESULTS"/memcheck.log \
        "$RESULTS"/racecheck*.log "$RESULTS"/synccheck.log >"$RESULTS/tests_summary.txt" 2>&1
    tail -4 "$RESULTS/fa_check.log" >>"$RESULTS/tests_summary.txt" 2>&1
    grep -E "^ +07 +split-tc|n/a" "$RESULTS/programs.log" >"$RESULTS/programs_rows.txt" 2>&1
fi

if [ "$MODE" = bench ]; then
    SLICE=${SLICE:-90} # the coordinator's 100 s, less a margin: round B's run was cut at its slice
    CSV=$RESULTS/split_tc.csv
    rm -f "$CSV"
    # 1. PyTorch's flash and cudnn on the six shapes, first: the same session as ours
    t=$SECONDS
    PYTHONUNBUFFERED=1 timeout 28 python3 tools/torch_attention.py --decode --decode-main --iters 20 \
        --csv "$RESULTS/torch_decode.csv" >"$RESULTS/torch.log" 2>&1
    note "bench: torch flash/cudnn decode" "rc=$? ($((SECONDS - t)) s)"
    # 2. the six shapes (bf16, d = 128, Hq = 32), split-tc (the CUDA-core split: round B's run)
    t=$SECONDS
    A=(--device gpu --dim 128 --dtype bf16 --iters 20 --kernel split-tc --csv "$CSV")
    for kv in 32 8 1; do
        for bn in "8 32768" "1 131072"; do
            set -- $bn
            [ "$(left)" -lt 22 ] && { echo "skipped Hkv=$kv B=$1: slice" >>"$RESULTS/bench.log"; continue; }
            timeout 15 $B/07_split_kv_decode "${A[@]}" --heads 32 --kv-heads $kv --batch $1 --seq-kv $2 \
                >>"$RESULTS/bench.log" 2>&1 || echo "rc=$? Hkv=$kv B=$1" >>"$RESULTS/bench.log"
        done
    done
    note "bench: 6 shapes, split-tc" "$((SECONDS - t)) s, $(grep -c '^rc=\|^skipped' "$RESULTS/bench.log") failed/skipped"
    # 3. the g sweep at fixed K/V bytes: B = 8, Hkv = 8, Nk = 4096 (134 MB), Hq = 8 g
    t=$SECONDS
    GCSV=$RESULTS/g_sweep.csv
    rm -f "$GCSV"
    for g in 1 32 4 16 2 8; do
        [ "$(left)" -lt 4 ] && { echo "skipped g=$g: slice" >>"$RESULTS/g_sweep.log"; continue; }
        timeout 8 $B/07_split_kv_decode --device gpu --dim 128 --dtype bf16 --iters 10 --kernel split,split-tc \
            --csv "$GCSV" --heads $((8 * g)) --kv-heads 8 --batch 8 --seq-kv 4096 >>"$RESULTS/g_sweep.log" 2>&1 ||
            echo "rc=$? g=$g" >>"$RESULTS/g_sweep.log"
    done
    note "bench: g sweep (fixed 134 MB of K/V)" "$((SECONDS - t)) s"
    # 4. MQA as two blocks of 16 rows per group (--br 16) instead of one of 32 (when the slice allows)
    for bn in "1 131072" "8 32768"; do
        set -- $bn
        t=$SECONDS
        if [ "$(left)" -gt 10 ]; then
            timeout $(($(left) - 2)) $B/07_split_kv_decode "${A[@]}" --heads 32 --kv-heads 1 --batch $1 --seq-kv $2 \
                --br 16 >>"$RESULTS/bench_br16.log" 2>&1
            note "bench: MQA B=$1 --br 16" "rc=$? ($((SECONDS - t)) s)"
        else
            note "bench: MQA B=$1 --br 16" "skipped (slice)"
        fi
    done
    # 5. split-K across blocks on both kernels: GQA B = 8, 32k with one split (when the slice allows)
    t=$SECONDS
    if [ "$(left)" -gt 12 ]; then
        timeout $(($(left) - 2)) $B/07_split_kv_decode --device gpu --dim 128 --dtype bf16 --iters 10 \
            --kernel split,split-tc --csv "$RESULTS/unsplit.csv" --heads 32 --kv-heads 8 --batch 8 --seq-kv 32768 \
            --splits 1 >"$RESULTS/unsplit.log" 2>&1
        note "bench: GQA B=8 32k --splits 1" "rc=$? ($((SECONDS - t)) s)"
    else
        note "bench: GQA B=8 32k --splits 1" "skipped (slice)"
    fi
    # summary: K/V GB/s per shape
    python3 - "$CSV" "$RESULTS/torch_decode.csv" "$GCSV" >"$RESULTS/table.txt" 2>&1 <<'EOF'
import csv, sys, os
rows = list(csv.DictReader(open(sys.argv[1]))) if os.path.exists(sys.argv[1]) else []
tor = list(csv.DictReader(open(sys.argv[2]))) if os.path.exists(sys.argv[2]) else []
print("%-22s %8s %8s %8s %8s %6s %6s  %s" % ("shape (Hkv B Nk)", "split", "split-tc", "flash", "cudnn", "%read", "ok", "tiles"))
for kv, b, n in ((32, 8, 32768), (32, 1, 131072), (8, 8, 32768), (8, 1, 131072), (1, 8, 32768), (1, 1, 131072)):
    def ours(impl):
        for r in rows:
            if r["impl"] == impl and int(r["kv_heads"]) == kv and int(r["batch"]) == b and int(r["seq_kv"]) == n:
                return r
    def theirs(be):
        for r in tor:
            if r["backend"] == be and int(r["kv_heads"]) == kv and int(r["batch"]) == b and int(r["seq_kv"]) == n:
                return r["kv_gbps"]
        return "-"
    s, t = ours("split"), ours("split-tc")
    print("%-22s %8s %8s %8s %8s %6s %6s  %s" % ("%d %d %d" % (kv, b, n), s["kv_gbps"] if s else "-",
          t["kv_gbps"] if t else "-", theirs("flash"), theirs("cudnn"), t["read_pct"] if t else "-",
          t["ok"] if t else "-", t["tiles"] if t else "-"))
g = list(csv.DictReader(open(sys.argv[3]))) if os.path.exists(sys.argv[3]) else []
print("g sweep (B 8, Hkv 8, Nk 4096, d 128, bf16): K/V GB/s")
for r in g:
    print("  g=%-3d %-9s %8s  %s" % (int(r["heads"]) // int(r["kv_heads"]), r["impl"], r["kv_gbps"], r["ok"]))
EOF
fi

echo "== dec $MODE summary ($((SECONDS - T0)) s)"
printf '%s\n' "${sum[@]}" | tee "$RESULTS/summary.txt"
[ "$MODE" = bench ] && cat "$RESULTS/table.txt"
[ "$MODE" = check ] && cat "$RESULTS/tests_summary.txt" "$RESULTS/programs_rows.txt"
exit 0
