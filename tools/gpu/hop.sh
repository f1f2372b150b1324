#!/usr/bin/env bash
# hop's GPU round (stage 05c, the Hopper ladder; issue 18), from the worktree
# root on the H200, logs under $RESULTS; every step has a timeout and steps
# past the slice are skipped (said so). MODE (environment):
#   check  (150 s, runs beside other helpers' checks: nothing is timed)
#     1. tests/test_hopper (every rung, odd shapes, fp16/bf16, d 64/128, GQA,
#        causal both ways; the broken variants) under STF_GPU_ONLY=1
#     2. compute-sanitizer memcheck on it (small shapes), racecheck and
#        synccheck on the program (small shapes, every rung)
#     3. the program on odd shapes (its own fp64-derived check; exit 0)
#     4. FlashAttention's 2x-PyTorch criterion (tools/fa_accuracy.sh,
#        PROG=05c_hopper, d 64 and 128), if the slice allows
#   bench  (150 s; alone on the GPU)
#     1. the ladder beside 05b's tc6_m32 (tc5_tuned): bf16, B x N = 16384,
#        H x d = 2048, d = 64, 128, N = 4096, 16384, causal or not; d = 256 at
#        N = 16384
#     2. PyTorch SDPA (flash, cudnn, efficient) at the same shapes
#     3. ncu on the best rung at d = 128, N = 4096 (tensor pipe, stalls)
# Rungs: whatever the build has (the table lists them; the tests run each).
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
  git log --oneline -1; date -u; } >"$R/env.txt" 2>&1
if [ "$MODE" = bench ]; then BUDGET=${HOP_BUDGET:-145}; else BUDGET=${HOP_BUDGET:-145}; fi
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
rungs=$($B/05c_hopper --kernel list-the-names 2>&1 | grep -o "\bh[0-9][a-z0-9]*_[a-z0-9]*" | paste -sd, -)
[ -n "$rungs" ] || rungs=h1_wgmma
note "rungs: $rungs"

if [ "$MODE" = check ]; then
    step test_hopper 90 env STF_GPU_ONLY=1 STF_BIN_DIR=$B $B/test_hopper
    grep -h -E "ran [0-9]+ of|must fail|declines|FAILED|ratio" "$R/test_hopper.log" | head -60 | tee -a "$SUM"
    CS=(compute-sanitizer --error-exitcode 9)
    step memcheck_test 40 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 STF_TEST_FILTER='h*' STF_BIN_DIR=$B "${CS[@]}" --tool memcheck $B/test_hopper
    P=(--device gpu --dtype bf16 --batch 1 --heads 2 --kv-heads 1 --seq-q 130 --seq-kv 200 --iters 1 --warmup 0 --kernel "$rungs")
    step racecheck_d64 25 "${CS[@]}" --tool racecheck $B/05c_hopper "${P[@]}" --dim 64 --causal
    step synccheck_d128 20 "${CS[@]}" --tool synccheck $B/05c_hopper "${P[@]}" --dim 128
    # d = 96 is declined by every rung: the run must say so and exit 2, never 0
    timeout 10 $B/05c_hopper --device gpu --dim 96 --seq 100 --iters 1 --kernel "$rungs" >"$R/d96_declined.log" 2>&1
    note "d96_declined                    rc=$? (want 2)"
    step fa_accuracy 60 env BIN=$B OUT="$R/fa" PROG=05c_hopper KERNELS="$rungs" DIMS="64 128" bash tools/fa_accuracy.sh
    tail -n 2 "$R/fa_accuracy.log" 2>/dev/null | tee -a "$SUM"
    O=(--device gpu --iters 2 --warmup 1 --csv "$R/odd.csv")
    step odd_bf16_d128_gqa_causal 10 $B/05c_hopper "${O[@]}" --dtype bf16 --dim 128 --batch 2 --heads 8 --kv-heads 2 --seq-q 1000 --seq-kv 777 --causal
    step odd_fp16_d64_causal_q_gt_k 10 $B/05c_hopper "${O[@]}" --dtype fp16 --dim 64 --batch 2 --heads 4 --seq-q 333 --seq-kv 129 --causal
    step odd_bf16_d64_seq1 10 $B/05c_hopper "${O[@]}" --dtype bf16 --dim 64 --batch 3 --heads 4 --seq-q 1 --seq-kv 4097
    step odd_bf16_d256_gqa 10 $B/05c_hopper "${O[@]}" --dtype bf16 --dim 256 --batch 2 --heads 4 --kv-heads 2 --seq-q 300 --seq-kv 517 --causal
    step odd_fp16_d128_long 15 $B/05c_hopper "${O[@]}" --dtype fp16 --dim 128 --batch 1 --heads 16 --seq 4100 --causal
    step racecheck_d128 25 "${CS[@]}" --tool racecheck $B/05c_hopper "${P[@]}" --dim 128
    note "== odd-shape rows (impl, Nq, Nk, d, max err, tol, ok)"
    [ -s "$R/odd.csv" ] && python3 -c '
import csv, sys
for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#")):
    print(r["impl"], r["dtype"], r["seq"], r["seq_kv"], r["dim"], r["causal"], r["max_err"], r["tolerance"], r["ok"])
' "$R/odd.csv" | tee -a "$SUM"
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
    for d in 128 64; do
        H=$((2048 / d))
        for N in 4096 16384; do
            Bt=$((16384 / N))
            step ladder_d${d}_n${N} 20 $B/05c_hopper "${L[@]}" --batch $Bt --heads $H --seq $N --dim $d
            step ladder_d${d}_n${N}_causal 20 $B/05c_hopper "${L[@]}" --batch $Bt --heads $H --seq $N --dim $d --causal
        done
    done
    step torch_sdpa 40 python3 tools/torch_attention.py --csv "$R/torch.csv" --iters 20 --dims 128,64,256
    # ncu on the fastest rung at d = 128, N = 4096 (from this run's ladder) and on the rungs after it
    best=$(python3 -c '
import csv, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#"))
        if r["impl"].startswith("h") and r["dim"] == "128" and r["seq"] == "4096" and r["causal"] == "no"]
print(max(rows, key=lambda r: float(r["tflops"] or 0))["impl"] if rows else "")
' "$R/ladder.csv" 2>/dev/null)
    note "fastest rung at d = 128, N = 4096: ${best:-?}"
    for k in ${rungs//,/ }; do
        case ",$best,h4_overlap,h5_pingpong," in *",$k,"*) ;; *) continue ;; esac
        step ncu_$k 30 ncu --kernel-name regex:"${k%%_*}_kernel" --launch-count 1 --section SpeedOfLight \
            --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy \
            --section LaunchStats $B/05c_hopper --device gpu --dtype bf16 --batch 4 --heads 16 --seq 4096 --dim 128 \
            --iters 1 --warmup 0 --kernel "$k"
    done
    # the d = 128, N = 4096 runs again (another CSV): the run-to-run spread
    step repeat_d128_n4096 20 $B/05c_hopper --device gpu --dtype bf16 --iters 10 --warmup 2 --csv "$R/ladder_repeat.csv" \
        --kernel "tc6_m32,$rungs" --batch 4 --heads 16 --seq 4096 --dim 128
    # d = 256 (H = 8), N = 16384
    step ladder_d256_n16384 20 $B/05c_hopper "${L[@]}" --batch 1 --heads 8 --seq 16384 --dim 256
    step ladder_d256_n16384_causal 20 $B/05c_hopper "${L[@]}" --batch 1 --heads 8 --seq 16384 --dim 256 --causal
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
        grep -E "Duration|Compute \(SM\) Throughput|highest-utilized|Issue Slots Busy|Eligible Warps|No Eligible|Warp Cycles Per Issued|Achieved Occupancy|stall|Stall" "$f" | cut -c1-160 | head -14 | tee -a "$SUM"
    done
fi
note "total after build: $(($(date +%s) - tb)) s"
echo "== summary"
cat "$SUM"
