#!/usr/bin/env bash
# r05's GPU round (stages 05 and 05b; issues 16 and 17): run from the worktree
# root on the H200 machine, logs under $RESULTS. About 90 s after the build:
# every step has a timeout and steps past the budget are skipped (said so).
#   1. the ladder's timing: every rung, bf16, N = 4096, B x N = 16384 tokens,
#      H x d = 2048, at d = 64 and 128, causal or not
#   2. GPU tests, small shapes: test_attention_tc (every rung, d = 32 ...
#      256), test_tiled (fa1/fa2/fa2-regtile; d = 16, 192, 256 with GQA),
#      test_f16acc
#   3. the new head dims through the programs (bf16 and fp32)
#   4. compute-sanitizer memcheck on test_attention_tc, small shapes, the new
#      rungs; racecheck if time allows
set -u
cd "$(dirname "$0")/../.."
R=${RESULTS:-results/r05}
mkdir -p "$R"
SUM=$R/summary.txt
: >"$SUM"
note() { echo "$*" | tee -a "$SUM"; }

t0=$(date +%s)
make -j16 build/bin/05_tiled_attention build/bin/05b_tensor_cores build/bin/test_attention_tc build/bin/test_tiled \
    build/bin/test_f16acc >"$R/build.log" 2>&1 || { note "BUILD FAILED (tail of build.log):"; tail -n 30 "$R/build.log"; exit 1; }
tb=$(date +%s)
note "build: $((tb - t0)) s"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; nvcc --version | tail -n 2;
  git log --oneline -1; date -u; } >"$R/env.txt" 2>&1
BUDGET=${R05_BUDGET:-88}
left() { echo $((BUDGET - ($(date +%s) - tb))); }
step() { # step NAME TIMEOUT CMD...: runs unless the budget is spent; log in $R/NAME.log
    local name=$1 to=$2; shift 2
    local l; l=$(left)
    if [ "$l" -le 3 ]; then note "SKIP  $name (budget spent)"; return 0; fi
    [ "$to" -gt "$l" ] && to=$l
    local s; s=$(date +%s)
    timeout "$to" "$@" >"$R/$name.log" 2>&1
    local rc=$?
    note "$(printf '%-4s %-28s rc=%-3s %3ss' "$([ $rc = 0 ] && echo ok || echo FAIL)" "$name" "$rc" "$(($(date +%s) - s))")"
    return 0
}
B=build/bin

# 1. the ladder, every rung (and stage 04's standard, stage 05's fa2-regtile), in one session
L=(--dtype bf16 --seq 4096 --iters 20 --warmup 3 --csv "$R/ladder.csv")
step ladder_d64 10 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 32 --dim 64
step ladder_d128 10 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 16 --dim 128
step ladder_d64_causal 10 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 32 --dim 64 --causal
step ladder_d128_causal 10 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 16 --dim 128 --causal
# the same two non-causal runs again (another CSV): the run-to-run spread the table's small steps sit in
RP=(--dtype bf16 --seq 4096 --iters 20 --warmup 3 --csv "$R/ladder_repeat.csv")
step ladder_d64_repeat 10 $B/05b_tensor_cores "${RP[@]}" --batch 4 --heads 32 --dim 64
step ladder_d128_repeat 10 $B/05b_tensor_cores "${RP[@]}" --batch 4 --heads 16 --dim 128

# 2. the tests, GPU cases, small shapes (the fp64 reference of the full
#    shapes at d = 256 alone takes minutes of CPU)
step test_attention_tc 30 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $B/test_attention_tc
step test_tiled_gpu 20 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $B/test_tiled
step test_f16acc 10 $B/test_f16acc

# 3. head dims through the programs
D=(--batch 2 --heads 8 --seq 1000 --iters 3 --warmup 1 --csv "$R/dims.csv")
step dims_05b_bf16_d32 5 $B/05b_tensor_cores --dtype bf16 --dim 32 --kernel tc5_tuned,tc6_m32 "${D[@]}"
step dims_05b_bf16_d256 5 $B/05b_tensor_cores --dtype bf16 --dim 256 --kernel tc5_tuned,tc6_m32 "${D[@]}"
step dims_05b_bf16_d256c 5 $B/05b_tensor_cores --dtype bf16 --dim 256 --kv-heads 2 --causal --kernel tc5_tuned "${D[@]}"
# d = 192 through the programs once every d is accepted (issue 16's harness; refused before it, exit 2)
step dims_05b_bf16_d192 5 $B/05b_tensor_cores --dtype bf16 --dim 192 --kernel tc5_tuned,tc6_m32 "${D[@]}"
step dims_05_fp32_d192 5 $B/05_tiled_attention --device gpu --dim 192 --kernel fa2,fa2-regtile,fa2-regtile-br128 "${D[@]}"
step dims_05_fp32_d16 5 $B/05_tiled_attention --device gpu --dim 16 "${D[@]}"
step dims_05_fp32_d256 5 $B/05_tiled_attention --device gpu --dim 256 --kernel fa2,fa2-regtile,fa2-regtile-br128 "${D[@]}"

# 4. compute-sanitizer on the new rungs (small shapes)
CS=compute-sanitizer
step memcheck_tc5 30 env STF_TEST_SMALL=1 STF_GPU_ONLY=1 STF_TEST_FILTER='tc5*' $CS --tool memcheck --error-exitcode 9 $B/test_attention_tc
step memcheck_tc6 15 env STF_TEST_SMALL=1 STF_GPU_ONLY=1 STF_TEST_FILTER='tc6*' $CS --tool memcheck --error-exitcode 9 $B/test_attention_tc
step racecheck_tc5_tuned 25 env STF_TEST_SMALL=1 STF_GPU_ONLY=1 STF_TEST_FILTER='tc5_tuned' $CS --tool racecheck --error-exitcode 9 $B/test_attention_tc

# the ladder as one table: TFLOP/s per rung and shape (from the CSVs' rows)
if [ -s "$R/ladder.csv" ]; then
    python3 - "$R/ladder.csv" <<'EOF' | tee -a "$SUM"
import csv, sys
rows = list(csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith('#')))
key = lambda r: f"d{r['dim']}{'c' if r['causal'] == 'yes' else ''}"
cols, tab = [], {}
for r in rows:
    k = key(r)
    if k not in cols: cols.append(k)
    tab.setdefault(r['impl'], {})[k] = (r.get('tflops') or '-', r.get('ok', ''))
print('TFLOP/s, bf16, N = 4096, B x N = 16384, H x d = 2048 (' + ', '.join(cols) + ')')
for impl, v in tab.items():
    print(f"{impl:18s}" + ''.join(f"{v.get(c, ('-', ''))[0]:>10s}" for c in cols) + '  ' + ' '.join(v.get(c, ('', ''))[1] for c in cols))
EOF
fi
note "total after build: $(($(date +%s) - tb)) s"
cat "$SUM"
