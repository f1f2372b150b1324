#!/usr/bin/env bash
# s08's GPU round (stage 08, the backward; issue 20): run from the worktree
# root on the H200 machine after `make -j16 all tests`, logs under $RESULTS.
# Every step has a timeout; steps past the slice are skipped (said so).
#
# MODE=check (about 120 s, in parallel with other helpers: nothing timed)
#   test_backward_gpu (every GPU kernel against the fp64 reference),
#   test_backward (all of it), compute-sanitizer memcheck on both, racecheck
#   and synccheck on every kernel with shared memory and barriers (small
#   shapes), and tools/bwd_accuracy.sh: FlashAttention's criterion per
#   gradient (dQ, dK, dV within 2 x PyTorch's same-precision error against an
#   fp32 reference) for every kernel, d = 32 ... 256, fp16 and bf16, causal
#   or not, odd shapes.
# MODE=bench (about 100 s; alone on the GPU), by set (S08_SET, default by the
#   clock: B before 16:15 UTC, C after):
#   B (98 s; its logs are the last the note can use): PyTorch's backward
#      (SDPA flash = FA2, cuDNN) and the tensor-core kernels' configurations
#      at the issue's shapes (test_backward_gpu's bench), same session; the N
#      sweep 1024 ... 16384 (standard against tc-atomic: time, HBM bytes by
#      CUPTI, peak memory measured) and the paper's shape in 08_backward
#      (the stage's manifest lines); ncu on our K/V kernel and on FA2's backward
#      kernels (tensor pipe, stalls, shared memory); the paper's shape's
#      DRAM bytes of PyTorch's math (standard) and flash backends, forward +
#      backward, by ncu; then spills, atomics and shared-memory totals.
#   C (118 s): the same speed runs again, the last ncu counters and the
#      paper's shape if B did not reach them, and the issue's shapes in
#      08_backward (tc-atomic, tc-det).
set -u
cd "$(dirname "$0")/../.."
R=${RESULTS:-results/s08}
MODE=${MODE:-check}
mkdir -p "$R"
SUM=$R/summary.txt
: >"$SUM"
note() { echo "$*" | tee -a "$SUM"; }
# few files come back from a round: on exit (a slice's TERM included) every log goes into one tarball,
# beside summary.txt, and the summary is printed last
pack() {
    trap - EXIT TERM INT
    local j; j=$(jobs -p)
    [ -n "$j" ] && kill $j 2>/dev/null # steps still running when the slice ends (each its own timeout)
    (cd "$R" && tar czf "s08b_$MODE.tgz" --exclude="s08b_*.tgz" --exclude=summary.txt . 2>/dev/null &&
        find . -mindepth 1 ! -name "s08b_*.tgz" ! -name summary.txt -delete 2>/dev/null)
    echo "==== s08b $MODE summary (logs: s08b_$MODE.tgz)"
    tail -n 38 "$SUM"
}
trap pack EXIT
trap 'exit 124' TERM INT

t0=$(date +%s)
T=(build/bin/test_backward_gpu build/bin/08_backward build/bin/test_backward)
if ! make -j16 "${T[@]}" >"$R/build.log" 2>&1; then
    note "BUILD of ${T[*]} FAILED (tail of build.log):"
    tail -n 30 "$R/build.log" | tee -a "$SUM"
    exit 1
fi
tb=$(date +%s)
note "MODE=$MODE build: $((tb - t0)) s"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; nvcc --version | tail -n 2;
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; ncu --version | tail -n 1;
  git log --oneline -1; date -u; } >"$R/env.txt" 2>&1
SET=${S08_SET:-$([ "$(date -u +%H%M)" -lt 1615 ] && echo B || echo C)}
# round C's slices: check 120 s, bench 30 s
if [ "$MODE" = check ]; then BUDGET=${S08_BUDGET:-108}; elif [ "$SET" = C ]; then BUDGET=${S08_BUDGET:-27}; else BUDGET=${S08_BUDGET:-98}; fi
left() { echo $((BUDGET - ($(date +%s) - tb))); }
run_to() { # run_to NAME TIMEOUT CMD...: one step, log in $R/NAME.log, a line in the summary
    local name=$1 to=$2; shift 2
    local s; s=$(date +%s)
    timeout "$to" "$@" >"$R/$name.log" 2>&1
    local rc=$?
    local extra=""
    case "$name" in
        *memcheck*|*racecheck*|*synccheck*) extra=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$R/$name.log" | tail -n 1) ;;
        test_*) extra=$(grep -E "^\[  (PASSED|FAILED|SKIPPED) +\]" "$R/$name.log" | head -n 3 | tr '\n' ' ') ;;
        bwd_accuracy) extra=$(grep -E "^bwd_accuracy:|^broken copies" "$R/$name.log" | tr '\n' ' ') ;;
    esac
    note "$(printf '%-4s %-30s rc=%-3s %3ss  %s' "$([ $rc = 0 ] && echo ok || echo FAIL)" "$name" "$rc" "$(($(date +%s) - s))" "$extra")"
}
step() { # step NAME TIMEOUT CMD...: as run_to, unless the slice is spent (then said so)
    local name=$1 to=$2; shift 2
    local l; l=$(left)
    if [ "$l" -le 3 ]; then note "SKIP  $name (slice spent)"; return 0; fi
    [ "$to" -gt "$l" ] && to=$l
    run_to "$name" "$to" "$@"
}
B=build/bin
CS="compute-sanitizer --print-limit 20 --error-exitcode 1"
NCU="ncu --clock-control none"
# ncu CSV (--print-units base) -> the summed DRAM bytes of every kernel profiled
dram_sum() {
    python3 - "$1" <<'EOF'
import csv, sys
rd = wr = 0.0
kern = set()
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
for r in csv.DictReader(lines):
    v = float(r["Metric Value"].replace(",", ""))
    if r["Metric Name"] == "dram__bytes_read.sum": rd += v; kern.add(r["ID"])
    if r["Metric Name"] == "dram__bytes_write.sum": wr += v
print(f"{len(kern)} kernels, DRAM read {rd / 1e9:.3f} GB + written {wr / 1e9:.3f} GB = {(rd + wr) / 1e9:.3f} GB")
EOF
}

if [ "$MODE" = check ]; then
    step_bg() { step "$@" & }
    step_bg bwd_accuracy 104 env BIN=$B OUT="$R" bash tools/bwd_accuracy.sh
    step_bg test_backward_gpu 60 env STF_GPU_ONLY=1 $B/test_backward_gpu
    step_bg test_backward 60 env STF_BIN_DIR=$B $B/test_backward
    step_bg memcheck_test_backward_gpu 60 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $CS --tool memcheck $B/test_backward_gpu
    step_bg memcheck_test_backward 60 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $CS --tool memcheck $B/test_backward
    for t in tc_atomic tc_det tc_k32 fa2_fp32 standard; do
        step_bg racecheck_$t 60 env STF_TEST_SMALL=1 STF_TEST_FILTER=test_${t}_gpu $CS --tool racecheck $B/test_backward_gpu
    done
    for t in tc_atomic tc_det tc_k32 fa2_fp32; do
        step_bg synccheck_$t 60 env STF_TEST_SMALL=1 STF_TEST_FILTER=test_${t}_gpu $CS --tool synccheck $B/test_backward_gpu
    done
    step_bg racecheck_test_backward 60 env STF_GPU_ONLY=1 STF_TEST_SMALL=2 $CS --tool racecheck $B/test_backward
    wait
    grep -hE "^\[  FAILED  \]|must fail|failed, worst|worst error|bit-identical|differ|declines|ratio" \
        "$R"/test_backward_gpu.log 2>/dev/null | head -n 40 >"$R/test_summary.txt"
    grep -A16 '^worst ratio' "$R/bwd_accuracy.log" 2>/dev/null | tee -a "$SUM"
    grep -hE "declines|^\[  FAILED  \]" "$R"/test_backward*.log 2>/dev/null | head -n 4 | tee -a "$SUM"
    note "total after build: $(($(date +%s) - tb)) s"
    exit 0
fi

note "bench set $SET"
# the paper's shape (GPT-2 medium: B 64, H 16, N 1024, d 64; bf16 as ours: the same bytes as fp16), forward +
# backward: PyTorch's standard attention (math backend, P kept) against FA2 (flash), DRAM bytes of every kernel
paper() {
    local be=$1
    step paper_$be 25 $NCU --profile-from-start off --metrics dram__bytes_read.sum,dram__bytes_write.sum \
        --csv --print-units base --log-file "$R/paper_$be.csv" \
        python3 tools/torch_backward.py --one $be --what fwd+bwd --shape 64 16 1024 64 0 --dtype bf16
    [ -s "$R/paper_$be.csv" ] && note "paper shape, torch $be fwd+bwd: $(dram_sum "$R/paper_$be.csv" 2>&1)"
}
# what limits the K/V kernel, against FA2's: the same counters on both (N = 4096, d = 128, bf16, not causal)
M=sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum
M=$M,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum
M=$M,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_bytes.sum,smsp__average_warp_latency_per_inst_issued.ratio
for r in barrier long_scoreboard short_scoreboard mio_throttle math_pipe_throttle wait not_selected lg_throttle \
         dispatch_stall selected no_instruction branch_resolving membar drain sleeping; do
    M=$M,smsp__average_warps_issue_stalled_${r}_per_issue_active.ratio
done
SEC=(--section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis)
# local-memory (spill) and atomic traffic, shared-memory totals, by name (a separate step: a counter's
# absence fails only this one)
M2=l1tex__t_sectors_pipe_lsu_mem_local_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_local_op_st.sum,lts__t_sectors_op_red.sum
M2=$M2,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
M2=$M2,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum.pct_of_peak_sustained_elapsed
M2=$M2,sm__cycles_elapsed.avg,sm__inst_executed_pipe_tensor_op_hmma.sum
# the bench's 12 launches of the 4-warp kernel come first, then the 8-warp one's: the last of the first, the first of
# the second
ncu_tc() { step "$1" 25 env STF_BWD_BENCH=2 STF_TEST_FILTER=test_bench_gpu $NCU --kernel-name regex:'bwd_tc_kv_kernel' \
    --launch-skip 11 --launch-count 2 "${@:2}" $B/test_backward_gpu; }
ncu_fa2() { step "$1" 25 $NCU --profile-from-start off --kernel-name regex:'flash_bwd' "${@:2}" \
    python3 tools/torch_backward.py --one flash --shape 4 16 4096 128 0; }
# at d = 64 (N = 4096, B 4, H 32, not causal: the bench's shape 4): tc1 (16 keys per warp, 64-query blocks) against
# tc-k32 (32 and 32), 4 warps each, the third launch of each; and FA2's kernels at the same shape
ncu_d64() { step "$1" 25 env STF_BWD_BENCH=3 STF_BWD_BENCH_CFG=4 STF_TEST_FILTER=test_bench_gpu $NCU \
    --kernel-name-base demangled --kernel-name regex:"$2" --launch-skip 2 --launch-count 1 --metrics "$M" \
    --section LaunchStats --section Occupancy $B/test_backward_gpu; }
ncu_d64_all() {
    ncu_d64 ncu_d64_tc1 '64, 4, 1, 2, 16, 64>'
    ncu_d64 ncu_d64_k32 '64, 4, 1, 2, 32, 32>'
    step ncu_d64_fa2 25 $NCU --profile-from-start off --kernel-name regex:'flash_bwd' --metrics "$M" \
        --section LaunchStats --section Occupancy python3 tools/torch_backward.py --one flash --shape 4 32 4096 64 0
}
if [ "$SET" = B ]; then
    # the figures the note needs, most important first (round B's logs are the last the note can use)
    step torch_backward 25 python3 tools/torch_backward.py --bench --csv "$R/torch_backward.csv"
    step bench_kernels 20 env STF_BWD_BENCH=3 STF_TEST_FILTER=test_bench_gpu $B/test_backward_gpu
    step bench_08 45 env DEVICE=gpu OUT="$R" BENCH_DIR="$R" BIN=$B bash stages/08_backward/bench.sh
    ncu_tc ncu_tc --metrics "$M" "${SEC[@]}"
    ncu_fa2 ncu_fa2 --metrics "$M" "${SEC[@]}"
    ncu_d64_all
    paper math
    paper flash
    ncu_tc ncu_tc_m2 --metrics "$M2"
    ncu_fa2 ncu_fa2_m2 --metrics "$M2"
else
    # round C (30 s): the kernels' bench (bwd-tc-k32 against tc-atomic and tc-det) and PyTorch's, same session
    step bench_kernels 12 env STF_BWD_BENCH=3 STF_TEST_FILTER=test_bench_gpu $B/test_backward_gpu
    step torch_backward 16 python3 tools/torch_backward.py --bench --csv "$R/torch_backward.csv"
fi

# the kernel bench as CSV (plots/draw_backward.sh draws it against torch_backward.csv)
if [ -s "$R/bench_kernels.log" ]; then
    { echo "seq,dim,causal,kernel,config,time_ms,tflops"
      sed -nE 's/^bench N=([0-9]+) d=([0-9]+) causal=([01]) (bwd-[a-z0-9-]+)( \(([^)]*)\))?: ([0-9.]+) ms, ([0-9.]+) TFLOP\/s$/\1,\2,\3,\4,\6,\7,\8/p' \
          <(sed 's/warps, 3 blocks/warps 3 blocks/' "$R/bench_kernels.log"); } >"$R/bench_kernels.csv"
fi

# summary: per shape, the best configuration of each kernel against FA-2 and cuDNN (TFLOP/s)
[ -s "$R/bench_kernels.csv" ] && python3 - "$R/bench_kernels.csv" "$R/torch_backward.csv" <<'EOF' | tee -a "$SUM"
import csv, os, sys
best = {}
for r in csv.DictReader(open(sys.argv[1])):
    k = (int(r["dim"]), int(r["seq"]), int(r["causal"]))
    if float(r["tflops"]) > best.get((k, r["kernel"]), (0, ""))[0]:
        best[(k, r["kernel"])] = (float(r["tflops"]), r["config"])
lib = {}
if os.path.exists(sys.argv[2]):
    for r in csv.DictReader(open(sys.argv[2])):
        if r["pass"] == "bwd":
            lib[((int(r["dim"]), int(r["seq"]), int(r["causal"])), r["backend"])] = float(r["tflops"])
nan = float("nan")
print("  d     N c atomic (config)          det    k32 (config)     FA-2  cuDNN best/FA2 best/cuDNN")
for k in sorted({k for k, _ in best}):
    a, t, q = (best.get((k, n), (nan, "")) for n in ("bwd-tc-atomic", "bwd-tc-det", "bwd-tc-k32"))
    f, c = lib.get((k, "flash"), nan), lib.get((k, "cudnn"), nan)
    b = max(x[0] for x in (a, t, q) if x[0] == x[0])
    print(f"{k[0]:3d} {k[1]:5d} {k[2]} {a[0]:6.1f} ({a[1]:16s}) {t[0]:6.1f} {q[0]:6.1f} ({q[1]:7s}) {f:6.1f} {c:6.1f} "
          f"{b / f:8.2f} {b / c:9.2f}")
EOF
note "total after build: $(($(date +%s) - tb)) s"
