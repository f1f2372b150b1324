#!/usr/bin/env bash
# hop's GPU round (stage 05c, the Hopper ladder; issues 18 and 17), from the
# repository root on the H200, logs under $RESULTS; every step has a timeout
# and a step past the slice is skipped (said so). MODE (environment):
#   check  (150 s, beside other helpers' checks: nothing is timed)
#     FlashAttention's 2x-PyTorch criterion (tools/fa_accuracy.sh, PROG=05c_hopper,
#       every rung, fp16 and bf16, causal or not, odd lengths: 12 cases per d),
#       one background job per d = 64, 128, 256 (36 program runs in all), beside:
#     tests/test_hopper (every rung, odd shapes; its broken variants must fail)
#       under STF_GPU_ONLY=1;
#     compute-sanitizer memcheck (the test, small shapes), racecheck d = 64 and
#       128, synccheck (the program, small odd shapes, every rung);
#     d = 96 must be declined (exit 2).
#   bench  (130 s, alone on the GPU)
#     the ladder beside 05b's tc5_tuned/tc6_m32: bf16, B x N = 16384,
#       H x d = 2048, d = 128, 64, 256, N = 4096, 16384, causal or not;
#     PyTorch SDPA (flash = FA2, cudnn, efficient) at the same shapes;
#     Nsight Compute on h3_warpspec and on cuDNN's SDPA kernel, d = 128,
#       N = 4096, with the same sections (only those `ncu --list-sections`
#       lists) and the same raw metrics (tensor pipe, issue, stalls, DRAM);
#       each ncu step is its own step: a bad name fails only that step.
set -u
cd "$(dirname "$0")/../.."
MODE=${MODE:-check}
R=${RESULTS:-build/gpu-hop}
mkdir -p "$R"
R=$(cd "$R" && pwd)
SUM=$R/summary.txt
: >"$SUM"
note() { echo "$*" | tee -a "$SUM"; }
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
B=build/bin

t0=$(date +%s)
make -j16 $B/05c_hopper $B/test_hopper >"$R/build.log" 2>&1 || { note "BUILD FAILED (tail of build.log):"; tail -n 30 "$R/build.log"; exit 1; }
tb=$(date +%s)
note "hop $MODE, $(date -u +%FT%TZ), build $((tb - t0)) s"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; nvcc --version | tail -n 2;
  ncu --version 2>&1 | tail -n 1; git log --oneline -1; date -u; } >"$R/env.txt" 2>&1
if [ "$MODE" = bench ]; then BUDGET=${HOP_BUDGET:-122}; else BUDGET=${HOP_BUDGET:-142}; fi
left() { echo $((BUDGET - ($(date +%s) - tb))); }
step() { # step NAME TIMEOUT CMD...: runs unless the slice is spent; log in $R/NAME.log
    local name=$1 to=$2; shift 2
    local l; l=$(left)
    if [ "$l" -le 3 ]; then note "SKIP  $name (slice spent)"; return 0; fi
    [ "$to" -gt "$l" ] && to=$l
    local s; s=$(date +%s)
    timeout "$to" "$@" >"$R/$name.log" 2>&1
    local rc=$?
    note "$(printf '%-4s %-30s rc=%-3s %3ss' "$([ $rc = 0 ] && echo ok || echo FAIL)" "$name" "$rc" "$(($(date +%s) - s))")"
    return 0
}
rungs=$($B/05c_hopper --kernel list-the-names 2>&1 | grep -o "\bh[0-9][a-z0-9]*_[a-z0-9]*" | sort -u | paste -sd, -)
[ -n "$rungs" ] || rungs=h1_wgmma,h2_tma,h3_warpspec,h4_overlap,h5_pingpong,h6_stages
note "rungs: $rungs"

if [ "$MODE" = check ]; then
    # the 2x criterion: 12 cases per d (2 dtypes x causal or not x 3 odd shapes), each one program
    # run (about 1-2 s: context, 6 rungs, --save-npy) and one torch process per d: about 40 s each
    # measured in round rB for d = 64 + 128 together; the three d run side by side
    fa_pids=()
    for d in 64 128 256; do
        ( s=$(date +%s)
          timeout $((BUDGET - 5)) env FA_JOBS=3 BIN=$B OUT="$R/fa_d$d" PROG=05c_hopper KERNELS="$rungs" DIMS="$d" \
              bash tools/fa_accuracy.sh >"$R/fa_accuracy_d$d.log" 2>&1
          echo "rc=$? $(($(date +%s) - s))s" >"$R/fa_accuracy_d$d.rc" ) &
        fa_pids+=($!)
    done
    step test_hopper 90 env STF_GPU_ONLY=1 STF_BIN_DIR=$B $B/test_hopper
    grep -h -E "ran [0-9]+ of|declines|FAILED|ratio" "$R/test_hopper.log" | head -40 | tee -a "$SUM"
    note "broken variants that failed, as they must: $(grep -c 'must fail' "$R/test_hopper.log")"
    CS=(compute-sanitizer --error-exitcode 9)
    P=(--device gpu --dtype bf16 --batch 1 --heads 2 --kv-heads 1 --seq-q 130 --seq-kv 200 --iters 1 --warmup 0 --kernel "$rungs")
    step racecheck_d64 25 "${CS[@]}" --tool racecheck $B/05c_hopper "${P[@]}" --dim 64 --causal
    step racecheck_d128 25 "${CS[@]}" --tool racecheck $B/05c_hopper "${P[@]}" --dim 128
    step synccheck_d128 20 "${CS[@]}" --tool synccheck $B/05c_hopper "${P[@]}" --dim 128 --causal
    step memcheck_test 40 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_TEST_FILTER='h*' STF_BIN_DIR=$B "${CS[@]}" --tool memcheck $B/test_hopper
    # d = 96 is declined by every rung: the run must say so and exit 2, never 0
    timeout 10 $B/05c_hopper --device gpu --dim 96 --seq 100 --iters 1 --kernel "$rungs" >"$R/d96_declined.log" 2>&1
    note "d96_declined                    rc=$? (want 2)"
    for p in "${fa_pids[@]}"; do wait "$p"; done
    for d in 64 128 256; do
        note "$(printf '%-4s %-30s %s' "$(grep -q '^rc=0 ' "$R/fa_accuracy_d$d.rc" 2>/dev/null && echo ok || echo FAIL)" \
            "fa_accuracy_d$d" "$(cat "$R/fa_accuracy_d$d.rc" 2>/dev/null || echo 'no rc (killed)')")"
        tail -n 1 "$R/fa_d$d/fa_accuracy.log" 2>/dev/null | tee -a "$SUM"
        grep -h ' FAIL$' "$R/fa_d$d/fa_accuracy.log" 2>/dev/null | head -5 | tee -a "$SUM"
    done
else
    # a rung that fails (or hangs on) a small checked run is left out of the timed runs
    ok_rungs=()
    for k in ${rungs//,/ }; do
        timeout 15 $B/05c_hopper --device gpu --dtype bf16 --dim 128 --batch 2 --heads 4 --seq 700 --causal --iters 1 \
            --warmup 0 --kernel "$k" >"$R/smoke_$k.log" 2>&1 && ok_rungs+=("$k")
    done
    rungs=$(IFS=,; echo "${ok_rungs[*]}")
    note "rungs passing the smoke run: ${rungs:-none}"
    [ -n "$rungs" ] || rungs=tc6_m32
    L=(--device gpu --dtype bf16 --iters 10 --warmup 2 --csv "$R/ladder.csv" --kernel "tc5_tuned,tc6_m32,$rungs")
    ladder() { # ladder d N
        local d=$1 N=$2 H=$((2048 / $1)) Bt=$((16384 / $2))
        step ladder_d${d}_n${N} 20 $B/05c_hopper "${L[@]}" --batch $Bt --heads $H --seq $N --dim $d
        step ladder_d${d}_n${N}_causal 20 $B/05c_hopper "${L[@]}" --batch $Bt --heads $H --seq $N --dim $d --causal
    }
    ladder 128 4096
    ladder 128 16384
    step torch_sdpa 40 python3 tools/torch_attention.py --csv "$R/torch.csv" --iters 20 --dims 128,64,256
    # ncu: h3_warpspec and cuDNN's SDPA kernel at d = 128, N = 4096 (B 4, H 16), same sections and metrics
    ncu --list-sections >"$R/ncu_sections.txt" 2>&1
    SEC=()
    for s in SpeedOfLight ComputeWorkloadAnalysis MemoryWorkloadAnalysis SchedulerStats WarpStateStats \
             WarpStateStatistics Occupancy LaunchStats; do
        grep -q "^ *$s " "$R/ncu_sections.txt" && SEC+=(--section "$s")
    done
    note "ncu sections used: ${SEC[*]}"
    # names every ncu since 2019 has (a bad name fails only its step); the tensor pipe and the stall
    # reasons by pattern (whatever this ncu calls them), each pattern its own step
    MET='dram__bytes_read.sum,dram__bytes_write.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,gpu__time_duration.sum'
    STALL='regex:^(sm__pipe_tensor_op_[a-z]+_cycles_active|sm__inst_executed_pipe_tensor_op_[a-z]+|smsp__average_warps_issue_stalled_[a-z_]+_per_issue_active)'
    HP=(--device gpu --dtype bf16 --batch 4 --heads 16 --seq 4096 --dim 128 --iters 1 --warmup 0 --kernel h3_warpspec)
    cat >"$R/cudnn_sdpa.py" <<'EOF'
import torch, torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
q, k, v = (torch.randn(4, 16, 4096, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
    o = F.scaled_dot_product_attention(q, k, v)  # warm-up (plan build), outside the range
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push("sdpa")
    o = F.scaled_dot_product_attention(q, k, v)
    torch.cuda.nvtx.range_pop()
torch.cuda.synchronize()
print("cudnn sdpa ran", tuple(o.shape), o.dtype)
EOF
    CK=(--kernel-name 'regex:sdpa|fprop|fmha|flash|attn' --launch-skip 1 --launch-count 1) # the second (timed) call's
    step ncu_h3_sections 30 ncu --kernel-name regex:h3_kernel --launch-count 1 "${SEC[@]}" $B/05c_hopper "${HP[@]}"
    step ncu_cudnn_sections 35 ncu "${CK[@]}" "${SEC[@]}" python3 "$R/cudnn_sdpa.py"
    if ! grep -q "Section:" "$R/ncu_cudnn_sections.log"; then
        # no kernel by those names: every kernel of the NVTX range around the timed SDPA call
        note "cuDNN kernel not found by name: profiling the kernels of the 'sdpa' NVTX range"
        CK=(--nvtx --nvtx-include "sdpa/" --launch-count 3)
        step ncu_cudnn_sections_nvtx 35 ncu "${CK[@]}" "${SEC[@]}" python3 "$R/cudnn_sdpa.py"
    fi
    step ncu_h3_metrics 20 ncu --kernel-name regex:h3_kernel --launch-count 1 --metrics "$MET" $B/05c_hopper "${HP[@]}"
    step ncu_cudnn_metrics 25 ncu "${CK[@]}" --metrics "$MET" python3 "$R/cudnn_sdpa.py"
    step ncu_h3_stalls 20 ncu --kernel-name regex:h3_kernel --launch-count 1 --metrics "$STALL" $B/05c_hopper "${HP[@]}"
    step ncu_cudnn_stalls 25 ncu "${CK[@]}" --metrics "$STALL" python3 "$R/cudnn_sdpa.py"
    ladder 64 4096
    ladder 64 16384
    ladder 256 16384
    ladder 256 4096
    if [ -s "$R/ladder.csv" ]; then
        python3 - "$R/ladder.csv" "$R/torch.csv" <<'EOF' | tee -a "$SUM"
import csv, os, sys
rows = list(csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith('#')))
key = lambda r: f"d{r['dim']} N{r['seq']}{' c' if r['causal'] == 'yes' else ''}"
cols, tab = [], {}
for r in rows:
    k = key(r)
    if k not in cols: cols.append(k)
    tab.setdefault(r['impl'], {})[k] = (r.get('tflops') or '-', r.get('ok', ''))
if os.path.exists(sys.argv[2]):
    for r in csv.DictReader(l for l in open(sys.argv[2]) if not l.startswith('#')):
        try:
            k = f"d{r['dim']} N{r['seq_q']}{' c' if r['causal'] in ('1', 'True', 'yes', 'true') else ''}"
            tab.setdefault('torch-' + r['backend'], {})[k] = (r['tflops'], '')
        except KeyError:
            pass
print('TFLOP/s, bf16, B x N = 16384, H x d = 2048: ' + ' | '.join(cols))
for impl, v in tab.items():
    print(f"{impl:16s}" + ''.join(f"{v.get(c, ('-', ''))[0]:>12s}" for c in cols) + '  ' + ' '.join(v.get(c, ('', ''))[1] for c in cols))
EOF
    fi
    for f in "$R"/ncu_*.log; do
        [ -s "$f" ] || continue
        echo "== $(basename "$f" .log)" | tee -a "$SUM"
        grep -E "==ERROR==|  [a-z_]+__|void |Duration|Compute \(SM\) Throughput|Memory Throughput|Issue Slots Busy|Issued Warp|No Eligible|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Shared Memory Config|Dynamic Shared|Theoretical Occ" "$f" \
            | cut -c1-150 | head -40 | tee -a "$SUM"
    done
fi
note "total after build: $(($(date +%s) - tb)) s"
echo "== summary"
cat "$SUM"
