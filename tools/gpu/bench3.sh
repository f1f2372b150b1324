#!/usr/bin/env bash
# Helper bench3's GPU run for issue 19 (stage 07: split-tc, the paged cache),
# replacing tools/gpu/dec.sh and tools/gpu/page.sh (kept: earlier rounds'
# READMEs name them). From the worktree root on the H200, after the
# coordinator's `make -j16 all tests`:
#   MODE=check RESULTS=dir bash tools/gpu/bench3.sh   correctness only (120 s,
#       beside other scripts, nothing timed): test_split_tc, test_paged,
#       test_split_kv, test_gqa (small) on the GPU; compute-sanitizer memcheck, racecheck,
#       synccheck on small shapes; FlashAttention's 2x-PyTorch criterion on
#       split, split-tc, split-paged and split-tc-paged; checked program runs;
#       `ncu --list-sections` (the names this ncu knows).
#   MODE=bench RESULTS=dir bash tools/gpu/bench3.sh   timed, alone (180 s):
#       PyTorch's SDPA flash and cuDNN on the six shapes of issue 19's table,
#       split and split-tc on the same six; the g sweep at B = 8, 32k keys,
#       Hq = 32 (g = 1 ... 32, Hkv = 32 / g); the page sizes P = 16 ... 256
#       (split, split-paged, split-tc, split-tc-paged, GQA B = 8, 32k; B = 1,
#       128k at P = 64 and 16) with the append's row; B = 1, 32k at P = 64;
#       ncu on split and split-paged at P = 16 (B = 8, 32k); ncu on split-tc at MQA
#       B = 8, 32k (sections only if this ncu lists them); both kernels
#       unsplit (--splits 1: what the merge across blocks costs); ncu at MQA
#       B = 1, 128k; the cache-length sweep last, as far as the slice goes.
# Step durations were taken from rounds B and C (notes/data/h200-2026-12-02-rB/
# dec, -page-rB, -rC/page): a bench run of one shape ~6-13 s, PyTorch's six
# shapes < 28 s. Every step has a timeout; a step whose estimate does not fit
# what is left of the slice is skipped and the summary says so. Logs under
# $RESULTS (steps.txt: each step's rc and seconds); a summary table last.
set -uo pipefail
MODE=${MODE:-check}
. "$(dirname "$0")/round.sh"
gpu_round "bench3-$MODE"
P=$B/07_split_kv_decode
STEPS=$RESULTS/steps.txt
: >"$STEPS"
left() { echo $((SLICE - (SECONDS - T0))); }
log_step() { printf '%-52s %s\n' "$1" "$2" >>"$STEPS"; }

finish() {
    echo "== bench3 $MODE summary ($((SECONDS - T0)) s)"
    cat "$STEPS"
    [ -s "$RESULTS/table.txt" ] && cat "$RESULTS/table.txt"
    [ -s "$RESULTS/tests_summary.txt" ] && cat "$RESULTS/tests_summary.txt"
    # a failed step fails the round (exit 1): the summary alone once
    # reported a round whose paged steps had all died at once as done.
    # Steps skipped for time are counted, not failed (the slice says how far
    # the sweeps go).
    local nf ns
    nf=$(grep -cE 'rc=[1-9]' "$STEPS")
    ns=$(grep -c 'skipped' "$STEPS")
    if [ "$nf" -gt 0 ]; then echo "bench3 $MODE: FAILED: $nf steps failed, $ns skipped for time"; return 1; fi
    echo "bench3 $MODE: no step failed, $ns skipped for time"
}
trap 'log_step "script" "stopped by a signal at $((SECONDS - T0)) s"; finish; exit 143' TERM INT

make -j"${JOBS:-16}" $P $B/test_split_tc $B/test_split_kv $B/test_paged $B/test_gqa >"$RESULTS/build.log" 2>&1
rc=$?
log_step "build" "rc=$rc ($((SECONDS - T0)) s)"
if [ $rc -ne 0 ]; then tail -30 "$RESULTS/build.log"; finish; exit 1; fi
nvidia-smi -L >"$RESULTS/device.txt" 2>&1
{ git log -1 --format='%H %s'; date -u; } >"$RESULTS/commit.txt" 2>&1

# ncu's section identifiers (the first column of --list-sections); wanted
# names that this ncu does not list are left out (round C's run died on one)
ncu_sections() {
    timeout 30 ncu --list-sections >"$RESULTS/ncu_sections.txt" 2>&1
    local s args=()
    for s in SpeedOfLight MemoryWorkloadAnalysis ComputeWorkloadAnalysis Occupancy LaunchStats SchedulerStats WarpStateStats; do
        if awk '{print $1}' "$RESULTS/ncu_sections.txt" | grep -qx "$s"; then args+=(--section "$s")
        else echo "ncu: section $s not listed by this ncu: left out" >>"$RESULTS/ncu_sections.txt"; fi
    done
    echo "${args[@]}"
}

if [ "$MODE" = check ]; then
    SLICE=${SLICE:-115}
    bg() { # name, log, timeout, command...: in the background, rc and seconds noted
        local name=$1 lg=$2 to=$3; shift 3
        ( t=$SECONDS; timeout "$to" "$@" >"$RESULTS/$lg" 2>&1; rc=$?
          printf '%-52s rc=%d (%d s, %s)\n' "$name" $rc $((SECONDS - t)) "$lg" >"$RESULTS/$lg.rc" ) &
    }
    G="env STF_GPU_ONLY=1"
    S="compute-sanitizer --error-exitcode 9 --tool"
    bg "test_split_tc (GPU)" test_split_tc.log 105 $G $B/test_split_tc
    bg "test_paged (GPU)" test_paged.log 100 $G $B/test_paged
    bg "test_split_kv (GPU, small)" test_split_kv.log 80 $G STF_TEST_SMALL=1 $B/test_split_kv
    bg "test_gqa (GPU, small: stage 06's decode glue)" test_gqa.log 80 $G STF_TEST_SMALL=1 $B/test_gqa
    bg "memcheck test_split_tc groups (small)" memcheck_split_tc.log 100 $G STF_TEST_SMALL=1 \
        STF_TEST_FILTER='*groups_gpu' $S memcheck $B/test_split_tc
    bg "memcheck test_paged (small)" memcheck_paged.log 100 $G STF_TEST_SMALL=1 $S memcheck $B/test_paged
    bg "racecheck test_split_tc long (small)" racecheck_split_tc.log 80 env STF_TEST_SMALL=1 \
        STF_TEST_FILTER='*long_gpu' $S racecheck $B/test_split_tc
    bg "synccheck test_split_tc long (small)" synccheck_split_tc.log 80 env STF_TEST_SMALL=1 \
        STF_TEST_FILTER='*long_gpu' $S synccheck $B/test_split_tc
    R="$P --device gpu --iters 1 --warmup 0"
    bg "racecheck 07 split-tc(-paged) MQA P=16, 4 splits" racecheck_07_tc.log 90 env STF_NO_HWC=1 $S racecheck \
        $R --kernel split-tc,split-tc-paged --dtype bf16 --heads 32 --kv-heads 1 --batch 2 --seq-kv 300 \
        --varlen --page-size 16 --splits 4
    bg "racecheck 07 split-paged(-lanes) P=16 d=64" racecheck_07_paged.log 90 env STF_NO_HWC=1 $S racecheck \
        $R --kernel split-paged,split-paged-lanes --dtype bf16 --heads 8 --kv-heads 2 --batch 3 --seq-kv 300 --dim 64 --varlen --page-size 16
    bg "memcheck 07 paged P=16,256 varlen" memcheck_07.log 100 env STF_NO_HWC=1 bash -c "
        for p in 16 256; do $S memcheck $R --kernel split-paged,split-paged-lanes,split-tc-paged --dtype bf16 --heads 8 --kv-heads 2 \
            --batch 3 --seq-kv 1000 --varlen --page-size \$p --splits 3 || exit; done"
    # FlashAttention's criterion (error against an fp32 reference at most 2x PyTorch's own
    # same-precision error) on all four kernels; the saved K/V are the logical (contiguous)
    # values, the paged kernels' outputs come from their own pools. Not --varlen: the check
    # takes every sequence at the full length.
    bg "FA 2x-PyTorch: 5 decode shapes x 4 kernels" fa_check.log 105 env STF_NO_HWC=1 bash -c "
        set -e
        K='--kernel split,split-tc,split-paged,split-paged-lanes,split-tc-paged'
        i=0
        for c in '--dtype bf16 --dim 128 --heads 32 --kv-heads 4 --batch 2 --seq-kv 3001 --page-size 16' \\
                 '--dtype fp16 --dim 64 --heads 32 --kv-heads 1 --batch 2 --seq-kv 2000 --page-size 64' \\
                 '--dtype bf16 --dim 64 --heads 8 --kv-heads 8 --batch 3 --seq-kv 203 --page-size 16' \\
                 '--dtype fp16 --dim 128 --heads 16 --kv-heads 2 --batch 2 --seq-kv 1 --page-size 32' \\
                 '--dtype bf16 --dim 128 --heads 32 --kv-heads 1 --batch 1 --seq-kv 20000 --page-size 256'; do
            i=\$((i + 1)); echo \"case \$i: \$c\"
            $R \$K \$c --save-npy $RESULTS/npy_\$i >/dev/null
        done
        I='--impl split --impl split-tc --impl split-paged --impl split-paged-lanes --impl split-tc-paged'
        python3 tools/torch_attention.py --check $RESULTS/npy_? \$I
        python3 tools/torch_attention.py --check-broken $RESULTS/npy_1 --impl split-tc-paged
        rm -rf $RESULTS/npy_?"
    bg "program runs (checked): P, g, d, dtypes, varlen" programs.log 100 env STF_NO_HWC=1 bash -c "
        set -e
        for p in 16 32 64 128 256; do
            $R --dtype bf16 --heads 32 --kv-heads 8 --batch 4 --seq-kv 5001 --varlen --page-size \$p; done
        $R --kernel split-tc,split-tc-paged --dtype bf16 --heads 48 --kv-heads 1 --batch 2 --seq-kv 1000 --page-size 32
        $R --kernel split-tc,split-tc-paged --dtype fp16 --dim 64 --heads 32 --kv-heads 1 --batch 2 --seq-kv 5000 --page-size 128
        $R --kernel split-paged,split-paged-lanes --dtype fp32 --dim 96 --heads 16 --kv-heads 1 --batch 3 --seq-kv 2001 --varlen --page-size 16
        $R --dtype bf16 --heads 8 --kv-heads 8 --batch 3 --seq-kv 1 --page-size 16
        ! $R --kernel split-tc --dtype fp32 --heads 8 --kv-heads 2 --seq-kv 100"
    # Nsight Compute: its sections, and a fallback profile of split-tc at MQA B = 8, 32k should the
    # bench slice not reach its own (here the GPU is shared: its throughputs include other jobs')
    sec=$(ncu_sections)
    echo "$sec" >"$RESULTS/ncu_args.txt"
    # shellcheck disable=SC2086
    bg "ncu split-tc MQA B=8 32k (shared GPU)" ncu_check.log 90 env STF_NO_HWC=1 ncu --clock-control none \
        --kernel-name regex:'decode_tc|combine' --launch-skip 0 --launch-count 2 $sec \
        $R --kernel split-tc --dtype bf16 --heads 32 --kv-heads 1 --batch 8 --seq-kv 32768
    wait
    cat "$RESULTS"/*.log.rc >>"$STEPS"
    grep -hE "PASSED|FAILED|SKIPPED|ERROR SUMMARY|RACECHECK SUMMARY|worst|must|PASS$|FAIL$" \
        "$RESULTS"/*.log >"$RESULTS/tests_summary.txt" 2>&1
    grep -hE " (split|split-tc|split-paged|split-paged-lanes|split-tc-paged) gpu |^append" "$RESULTS/programs.log" |
        awk '{print $2, $NF}' | sort | uniq -c >>"$RESULTS/tests_summary.txt"
    echo "ncu sections: $(cat "$RESULTS/ncu_args.txt")" >>"$RESULTS/tests_summary.txt"
    finish
    exit
fi

# ---- MODE=bench: alone on the GPU, one step after another ----
SLICE=${SLICE:-172} # the 180 s slice, less a margin for the summary
CSV=$RESULTS/dec.csv # every 07 run of this round
rm -f "$CSV"
A=(--device gpu --dim 128 --dtype bf16 --heads 32 --iters 20 --csv "$CSV")
# step NAME ESTIMATE_S LOG CMD...: runs when ESTIMATE_S fits what is left, with a timeout
step() {
    local name=$1 est=$2 lg=$3; shift 3
    local l; l=$(left)
    if [ "$l" -lt "$est" ]; then log_step "$name" "skipped: ${l} s left, needs ~${est} s"; return; fi
    local t=$SECONDS to=$((l < 3 * est ? l : 3 * est))
    echo "== $name" >>"$RESULTS/$lg"
    timeout "$to" "$@" >>"$RESULTS/$lg" 2>&1
    local rc=$?
    # cut by the end of the slice (not by its own 3x estimate): skipped for
    # time, as a step that did not start would be
    if [ $rc -eq 124 ] && [ "$to" -eq "$l" ]; then log_step "$name" "skipped: the slice ran out after $((SECONDS - t)) s"
    else log_step "$name" "rc=$rc ($((SECONDS - t)) s)"; fi
}
# 1. the libraries first, in the same session: SDPA flash and cuDNN, the six shapes
step "torch flash/cudnn, six shapes" 22 torch.log env PYTHONUNBUFFERED=1 \
    python3 tools/torch_attention.py --decode --decode-main --iters 20 --csv "$RESULTS/torch_decode.csv"
# 2. the six shapes, split and split-tc (GQA with the paged kernels at P = 64 in the same run)
for s in "32 8 32768" "8 8 32768 64" "1 8 32768" "32 1 131072" "8 1 131072 64" "1 1 131072"; do
    set -- $s
    if [ $# -eq 4 ]; then k=(--kernel split,split-tc,split-paged,split-paged-lanes,split-tc-paged --page-size "$4")
    else k=(--kernel split,split-tc); fi
    step "07 Hkv=$1 B=$2 Nk=$3 ${4:+P=$4}" 9 bench.log $P "${A[@]}" "${k[@]}" --kv-heads "$1" --batch "$2" --seq-kv "$3"
done
# 3. Nsight Compute on split-tc at MQA, B = 8, 32k: the main kernel and its combine
# (before the sweeps: the profile is what says what limits the MQA shapes)
sec=$(ncu_sections)
echo "$sec" >"$RESULTS/ncu_args.txt"
# shellcheck disable=SC2086
step "ncu split-tc MQA B=8 32k ($(wc -w <<<"$sec") args)" 25 ncu.log env STF_NO_HWC=1 ncu \
    --kernel-name regex:'decode_tc|combine' --launch-skip 0 --launch-count 2 $sec \
    $P --device gpu --dim 128 --dtype bf16 --heads 32 --kv-heads 1 --batch 8 --seq-kv 32768 \
    --kernel split-tc --iters 1 --warmup 0
# 4. the g sweep at B = 8, 32k keys, Hq = 32: g = 1, 4, 32 are step 2's rows
for kv in 16 4 2; do
    step "07 g=$((32 / kv)) (Hkv=$kv) B=8 Nk=32768" 7 g_sweep.log env STF_NO_HWC=1 $P "${A[@]}" --kernel split,split-tc \
        --kv-heads $kv --batch 8 --seq-kv 32768
done
# 5. page sizes against contiguous on the same shape (GQA B = 8, 32k; P = 64 is step 2's)
for p in 16 256 32 128; do
    step "07 paged P=$p B=8 Nk=32768" 7 page.log $P "${A[@]}" --kernel split,split-tc,split-paged,split-paged-lanes,split-tc-paged \
        --kv-heads 8 --batch 8 --seq-kv 32768 --page-size $p
done
step "07 paged P=16 B=1 Nk=131072" 8 page.log $P "${A[@]}" --kernel split,split-tc,split-paged,split-paged-lanes,split-tc-paged \
    --kv-heads 8 --batch 1 --seq-kv 131072 --page-size 16
# 5b. the short cache where split-tc-paged lost 6.5% to its twin through split_gpu.cu's combine
# (note 07b); it now has split-tc's combine
step "07 length B=1 Nk=32768" 6 length.log env STF_NO_HWC=1 $P "${A[@]}" --kernel split,split-tc,split-tc-paged \
    --page-size 64 --kv-heads 8 --batch 1 --seq-kv 32768
# 5c. Nsight Compute on the CUDA-core kernel at P = 16 (B = 8, 32k), contiguous then paged, the
# decode kernel and its combine each: what the paged loader's four lookups per tile cost
# shellcheck disable=SC2086
for k in split split-paged split-paged-lanes; do
    step "ncu $k P=16 B=8 32k" 20 ncu_p16.log env STF_NO_HWC=1 ncu \
        --kernel-name regex:'decode_kernel|combine_kernel' --launch-skip 0 --launch-count 2 $sec \
        $P --device gpu --dim 128 --dtype bf16 --heads 32 --kv-heads 8 --batch 8 --seq-kv 32768 \
        --page-size 16 --kernel $k --iters 1 --warmup 0
done
# 6. what the split-K merge across blocks costs: both kernels unsplit (one block per row
# group, no partial states, no combine) beside step 2's split runs, GQA and MQA at B = 8, 32k
for kv in 8 1; do
    step "07 unsplit Hkv=$kv B=8 Nk=32768 (--splits 1)" 7 unsplit.log env STF_NO_HWC=1 $P "${A[@]/$CSV/$RESULTS/unsplit.csv}" \
        --kernel split,split-tc --kv-heads $kv --batch 8 --seq-kv 32768 --splits 1
done
# 7. the other MQA shape under Nsight Compute (B = 1, 128k: 256 splits, the widest combine)
# shellcheck disable=SC2086
step "ncu split-tc MQA B=1 128k" 22 ncu_b1.log env STF_NO_HWC=1 ncu \
    --kernel-name regex:'decode_tc|combine' --launch-skip 0 --launch-count 2 $sec \
    $P --device gpu --dim 128 --dtype bf16 --heads 32 --kv-heads 1 --batch 1 --seq-kv 131072 \
    --kernel split-tc --iters 1 --warmup 0
# 8. the cache length (GQA, Hkv = 8), as far as the slice goes
# (estimates in seconds: B = 8 at 131072 keys, 4.3 GB of K/V filled and
# checked on the host, was cut at 3 x 6 s in two rounds; it goes last)
for s in "8 4096 6" "8 1024 6" "1 8192 6" "8 16384 6" "1 65536 8" "8 131072 30"; do
    set -- $s
    step "07 length B=$1 Nk=$2" "$3" length.log env STF_NO_HWC=1 $P "${A[@]}" --kernel split,split-tc,split-tc-paged --page-size 64 \
        --kv-heads 8 --batch "$1" --seq-kv "$2"
done

# summary: K/V GB/s per shape, ours and the libraries'
python3 - "$CSV" "$RESULTS/torch_decode.csv" >"$RESULTS/table.txt" 2>&1 <<'EOF'
import csv, sys, os
rd = lambda f: list(csv.DictReader(open(f))) if os.path.exists(f) else []
rows, tor = rd(sys.argv[1]), rd(sys.argv[2])
def ours(impl, kv, b, n, p=None):
    for r in rows:
        if (r["impl"] == impl and int(r["kv_heads"]) == kv and int(r["batch"]) == b and int(r["seq_kv"]) == n
                and (p is None or r["tiles"].endswith(":p%d" % p))):
            return r
def lib(be, kv, b, n):
    for r in tor:
        if r["backend"] == be and int(r["kv_heads"]) == kv and int(r["batch"]) == b and int(r["seq_kv"]) == n:
            return float(r["kv_gbps"])
f = lambda x: "-" if x is None else "%.0f" % x
print("K/V GB/s, bf16, d 128, Hq 32 (%read: split-tc against the read-only ceiling)")
print("%-16s %7s %8s %7s %7s %6s %9s %5s" % ("Hkv B Nk", "split", "split-tc", "flash", "cudnn", "%read", "tc/best", "ok"))
for kv, b, n in ((32, 8, 32768), (32, 1, 131072), (8, 8, 32768), (8, 1, 131072), (1, 8, 32768), (1, 1, 131072)):
    s, t = ours("split", kv, b, n), ours("split-tc", kv, b, n)
    fl, cu = lib("flash", kv, b, n), lib("cudnn", kv, b, n)
    tc = float(t["kv_gbps"]) if t else None
    best = max([x for x in (fl, cu) if x is not None], default=None)
    print("%-16s %7s %8s %7s %7s %6s %9s %5s" % ("%d %d %d" % (kv, b, n), f(float(s["kv_gbps"]) if s else None),
          f(tc), f(fl), f(cu), t["read_pct"] if t else "-",
          "%.2f" % (tc / best) if tc and best else "-", t["ok"] if t else "-"))
print("g sweep (B 8, Nk 32768, Hq 32): g split split-tc")
for kv in (32, 16, 8, 4, 2, 1):
    s, t = ours("split", kv, 8, 32768), ours("split-tc", kv, 8, 32768)
    print("  g=%-3d %7s %8s" % (32 // kv, s["kv_gbps"] if s else "-", t["kv_gbps"] if t else "-"))
print("pages (Hkv 8): B Nk P  split-paged/split  split-paged-lanes/split  split-tc-paged/split-tc")
for b, n in ((8, 32768), (1, 131072)):
    for p in (16, 32, 64, 128, 256):
        sp, tp = ours("split-paged", 8, b, n, p), ours("split-tc-paged", 8, b, n, p)
        lp = ours("split-paged-lanes", 8, b, n, p)
        if not (sp or tp):
            continue
        # the contiguous rows of the same run: the row just before in the CSV
        def contig(impl, paged):
            i = rows.index(paged)
            for r in reversed(rows[:i]):
                if r["impl"] == impl and r["kv_heads"] == paged["kv_heads"] and r["batch"] == paged["batch"] \
                        and r["seq_kv"] == paged["seq_kv"]:
                    return r
        cs, ct = contig("split", sp) if sp else None, contig("split-tc", tp) if tp else None
        q = lambda a, c: "%s/%s = %.3f" % (a["kv_gbps"], c["kv_gbps"], float(a["kv_gbps"]) / float(c["kv_gbps"])) \
            if a and c else "-"
        cl = contig("split", lp) if lp else None
        print("  %d %6d %3d  %-24s %-24s %-24s" % (b, n, p, q(sp, cs), q(lp, cl), q(tp, ct)))
EOF
grep -h "^append" "$RESULTS"/bench.log "$RESULTS"/page.log >>"$RESULTS/table.txt" 2>/dev/null
[ -s "$RESULTS/unsplit.csv" ] && awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; print "unsplit (--splits 1): impl Hkv B Nk tiles ms GB/s"; next }
    { print "  " $c["impl"], $c["kv_heads"], $c["batch"], $c["seq_kv"], $c["tiles"], $c["time_ms"], $c["kv_gbps"], $c["ok"] }' \
    "$RESULTS/unsplit.csv" >>"$RESULTS/table.txt"
finish
exit
