#!/usr/bin/env bash
# s03's GPU run (issue 21: stage 03 beyond one SM, second pass), for the
# coordinator: run from the worktree root on the H200 with RESULTS set.
# Phases, each skipped once the time slice (150 s) runs short:
#   build   stage 03's program and test_softmax (only stages 01-03 and common:
#           test_softmax is linked by hand against those, not the whole tree)
#   bench   the target shapes: 1 x 1048576 fp32, 16 x 256000 fp32 and bf16,
#           4096 x 65536 and 1024 x 262144 fp32 (stage 03 and stage 01's copy
#           of the same shape), CSV + log
#   test    test_softmax, GPU cases only
#   san     compute-sanitizer memcheck and racecheck on the new kernels (the
#           program on small shapes, where each path applies)
#   torch   torch.softmax on the six shapes, timed as plots/torch_softmax.py
#   ncu     Nsight Compute on each new kernel: sections, then the warp stall
#           reasons and instruction counts
#   sweeps  rows = 1 ... 256 at cols = 262144, and cols at rows x cols = 2^28
#           (fp32), as far as the time slice allows
set -uo pipefail
RESULTS=${RESULTS:-build/s03-results}
mkdir -p "$RESULTS"
T0=$(date +%s)
left() { echo $((150 - ($(date +%s) - T0))); }
summary=()
note() { summary+=("$1"); echo "== $1"; }

B=build
S03=$B/bin/03_online_softmax
S01=$B/bin/01_naive_softmax
objs="$B/obj/tests/test_softmax.o $B/obj/tests/harness.o $B/lib/lib03_online_softmax.a $B/lib/lib02_safe_softmax.a \
$B/lib/lib01_naive_softmax.a $B/lib/libcommon.a"
make -j16 "$S03" "$S01" >"$RESULTS/build.log" 2>&1
rc=$?
note "build of the programs rc=$rc ($(($(date +%s) - T0)) s)"
[ $rc = 0 ] || { tail -30 "$RESULTS/build.log"; printf '%s\n' "${summary[@]}"; exit 1; }
# test_softmax by hand against stages 01-03 only (its make rule links every stage)
{
    make -j16 $objs &&
        LDLIBS=$(make --no-print-directory --eval='print-%: ; @echo $($*)' print-LDLIBS) &&
        LDFLAGS=$(make --no-print-directory --eval='print-%: ; @echo $($*)' print-LDFLAGS) &&
        cc $LDFLAGS $objs -lcmocka -Wl,-rpath,'$ORIGIN' $LDLIBS -o $B/bin/test_softmax &&
        { cp -L /usr/lib/x86_64-linux-gnu/libcmocka.so.0 $B/bin/ 2>/dev/null || true; }
} >>"$RESULTS/build.log" 2>&1
trc=$?
note "build of test_softmax rc=$trc ($(($(date +%s) - T0)) s)"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv >"$RESULTS/gpu.txt" 2>&1

# ---- bench
it=(--iters 10 --warmup 3)
rm -f "$RESULTS/s03_split.csv"
for s in "1 1048576 fp32" "16 256000 fp32" "16 256000 bf16" "4096 65536 fp32" "2048 131072 fp32" "1024 262144 fp32"; do
    set -- $s
    [ "$(left)" -gt 40 ] || { note "bench $s skipped (time)"; continue; }
    for p in "$S01" "$S03"; do
        echo "+ $p --rows $1 --cols $2 --dtype $3" >>"$RESULTS/bench.log"
        timeout 40 "$p" --device gpu --rows "$1" --cols "$2" --dtype "$3" "${it[@]}" --csv "$RESULTS/s03_split.csv" \
            >>"$RESULTS/bench.log" 2>&1 || note "bench $p $s failed rc=$?"
    done
done
# merge-persist's block size, the same session: 16 small blocks a row against the 8 large ones the plan takes
# at 262144, and 2 large blocks against 4 small at 65536 (experiments, not the plan)
for e in "512 1024 262144" "1024 4096 65536"; do
    set -- $e
    [ "$(left)" -gt 60 ] || break
    echo "+ STF_PERSIST_SMALL_MAX=16 STF_CLUSTER_THREADS=$1 $S03 --rows $2 --cols $3" >>"$RESULTS/exp_threads.log"
    STF_PERSIST_SMALL_MAX=16 STF_CLUSTER_THREADS=$1 timeout 15 "$S03" --device gpu --rows "$2" --cols "$3" "${it[@]}" >>"$RESULTS/exp_threads.log" 2>&1
done
note "bench done ($(($(date +%s) - T0)) s)"

# ---- torch.softmax, same shapes, same timing as plots/torch_softmax.py
if [ "$(left)" -gt 20 ]; then
    timeout $(($(left) - 10)) python3 - >"$RESULTS/torch.log" 2>&1 <<'EOF'
import statistics, torch
dev = torch.device("cuda")
flush = torch.empty(2 * torch.cuda.get_device_properties(dev).L2_cache_size, dtype=torch.uint8, device=dev)
for dt, name, rows, cols in ((torch.float32, "fp32", 1, 1048576), (torch.float32, "fp32", 16, 256000),
                             (torch.bfloat16, "bf16", 16, 256000), (torch.float32, "fp32", 4096, 65536),
                             (torch.float32, "fp32", 2048, 131072), (torch.float32, "fp32", 1024, 262144)):
    x = (torch.rand(rows, cols, device=dev, dtype=torch.float32) * 2 - 1).to(dt)
    times = []
    for i in range(13):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); torch.softmax(x, dim=-1); e.record(); torch.cuda.synchronize()
        if i >= 3: times.append(s.elapsed_time(e))
    ms = statistics.median(times)
    print(f"torch.softmax {name} {rows} x {cols} {ms:.4f} ms {2 * x.numel() * x.element_size() / (ms * 1e-3) / 1e9:.1f} GB/s "
          f"(torch {torch.__version__})", flush=True)
EOF
    note "torch rc=$? ($(($(date +%s) - T0)) s)"
fi

# ---- tests
if [ "$trc" != 0 ]; then
    note "test_softmax not built: see build.log"
elif [ "$(left)" -gt 30 ]; then
    STF_GPU_ONLY=1 STF_BIN_DIR=$B/bin timeout $(($(left) - 20)) $B/bin/test_softmax >"$RESULTS/test_softmax.log" 2>&1
    note "test_softmax (GPU cases) rc=$? ($(($(date +%s) - T0)) s): $(grep -E 'PASSED|FAILED  \]' "$RESULTS/test_softmax.log" | tr '\n' ' ')"
else
    note "test_softmax skipped (time)"
fi

# ---- compute-sanitizer on the new kernels, small shapes
san() {
    local tool=$1
    shift
    [ "$(left)" -gt 15 ] || { note "$tool $* skipped (time)"; return; }
    local cap=$(($(left) - 10))
    [ $cap -gt 30 ] && cap=30
    timeout $cap compute-sanitizer --tool "$tool" --error-exitcode 1 "$S03" --device gpu --iters 1 --warmup 0 "$@" \
        >>"$RESULTS/sanitizer.log" 2>&1
    note "compute-sanitizer $tool $*: rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$RESULTS/sanitizer.log" | tail -1)"
}
export STF_NO_HWC=1
san memcheck --rows 1 --cols 65536       # merge-wave (one row over the wave), merge-persist (cluster of 4)
san memcheck --rows 3 --cols 65537 --dtype bf16 # single elements, cluster of 5
san racecheck --rows 5 --cols 65536      # merge-persist: 5 rows over the clusters (cp.async staging), merge-wave
unset STF_NO_HWC

# ---- Nsight Compute: the new kernels, sections and the warp stall breakdown
prof() {
    local name=$1
    shift
    [ "$(left)" -gt 15 ] || { note "ncu $name skipped (time)"; return; }
    STF_NO_HWC=1 timeout $(($(left) - 5)) ncu --clock-control none -k "regex:merge_(wave|persist)_kernel" -c 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SchedulerStats "$S03" --device gpu --iters 1 --warmup 0 "$@" \
        >"$RESULTS/ncu_$name.txt" 2>&1
    note "ncu $name rc=$?"
}
stalls() {
    local name=$1
    shift
    [ "$(left)" -gt 15 ] || { note "ncu stalls $name skipped (time)"; return; }
    local r m=""
    for r in barrier long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle lg_throttle membar sleeping \
        no_instruction not_selected selected dispatch_stall branch_resolving drain; do
        m="$m,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio"
    done
    STF_NO_HWC=1 timeout $(($(left) - 5)) ncu --clock-control none -k "regex:merge_(wave|persist)_kernel" -c 1 \
        --metrics "smsp__inst_executed.sum,sm__warps_launched.sum,gpu__time_duration.sum$m" \
        "$S03" --device gpu --iters 1 --warmup 0 "$@" >"$RESULTS/ncu_stalls_$name.txt" 2>&1
    note "ncu stalls $name rc=$?"
}
prof wave_1x1048576 --rows 1 --cols 1048576
prof persist_1024x262144 --rows 1024 --cols 262144
prof wave_16x256000_bf16 --rows 16 --cols 256000 --dtype bf16
stalls wave_1x1048576 --rows 1 --cols 1048576
stalls persist_1024x262144 --rows 1024 --cols 262144
stalls wave_16x256000_bf16 --rows 16 --cols 256000 --dtype bf16

# ---- the sweeps, as far as the time allows: rows at cols = 262144, then cols at 2^28 (fp32)
for r in 1 2 4 8 16 32 64 128 256; do
    [ "$(left)" -gt 12 ] || { note "rows sweep stopped before $r (time)"; break; }
    for p in "$S01" "$S03"; do
        timeout 10 "$p" --device gpu --rows "$r" --cols 262144 "${it[@]}" --csv "$RESULTS/softmax_rows.csv" >>"$RESULTS/sweep.log" 2>&1
    done
done
for c in 65536 131072 262144 524288 32768 16384 8192 4096 2048 1024 1048576; do
    [ "$(left)" -gt 10 ] || { note "cols sweep stopped before $c (time)"; break; }
    timeout 8 "$S03" --device gpu --rows $(((1 << 28) / c)) --cols "$c" "${it[@]}" --csv "$RESULTS/softmax_cluster_sweep.csv" \
        >>"$RESULTS/sweep.log" 2>&1
done

echo
echo "s03 summary ($(($(date +%s) - T0)) s):"
printf '  %s\n' "${summary[@]}"
grep -hE "^ +0[0-9] +(copy|online|online-split|merge-wave|merge-cluster|merge-persist) gpu" "$RESULTS/bench.log" |
    awk '{printf "  %-14s %-5s %7s x %-8s %9s GB/s %6s%%\n", $2, $4, $5, $6, $(NF-6), $(NF-5)}' 2>/dev/null
