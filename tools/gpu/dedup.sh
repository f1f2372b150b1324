#!/usr/bin/env bash
# dedup's GPU round (issue 17: the tc5 rungs as one kernel, tc5_steps.cuh):
# run from the worktree root on the H200 machine, logs under $RESULTS.
#   MODE=check (about 90 s, in parallel with others, nothing timed):
#     1. test_attention_tc (every rung, small shapes) and test_f16acc, GPU only;
#        test_softmax (GPU only) and stage 03's cluster kernels through the
#        program (their limits now come from cluster_limits.cuh)
#     2. compute-sanitizer memcheck on the tc5 rungs (small shapes), then
#        racecheck on tc5f_qborrow and tc5_tuned (the borrowed buffers) if time allows
#     3. the SASS of every tc5 instance (cuobjdump) against the one the files
#        before the change compile to (git show f63accd:...), if time allows
#   MODE=bench (about 70 s, alone): the ladder at bf16, N = 4096, d = 64 and
#     128, causal or not (as tools/gpu/r05.sh), compared by tools/compare_csv.py
#     with notes/data/h200-2026-12-02-merged/r05/ladder.csv (the same runs
#     before the change)
# Every step has a timeout; steps past the budget are skipped (said so).
set -u
cd "$(dirname "$0")/../.."
MODE=${MODE:-check}
R=${RESULTS:-results/dedup}
mkdir -p "$R"
SUM=$R/summary.txt
: >"$SUM"
note() { echo "$*" | tee -a "$SUM"; }

t0=$(date +%s)
make -j16 build/bin/05b_tensor_cores build/bin/test_attention_tc build/bin/test_f16acc build/bin/03_online_softmax \
    build/bin/test_softmax >"$R/build.log" 2>&1 ||
    { note "BUILD FAILED (tail of build.log):"; tail -n 30 "$R/build.log" | tee -a "$SUM"; exit 1; }
tb=$(date +%s)
note "mode $MODE, build: $((tb - t0)) s"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; nvcc --version | tail -n 2;
  git log --oneline -1; date -u; } >"$R/env.txt" 2>&1
if [ "$MODE" = bench ]; then BUDGET=${DEDUP_BUDGET:-68}; else BUDGET=${DEDUP_BUDGET:-88}; fi
left() { echo $((BUDGET - ($(date +%s) - tb))); }
step() { # step NAME TIMEOUT CMD...: runs unless the budget is spent; log in $R/NAME.log
    local name=$1 to=$2; shift 2
    local l; l=$(left)
    if [ "$l" -le 3 ]; then note "SKIP $name (budget spent)"; return 0; fi
    [ "$to" -gt "$l" ] && to=$l
    local s; s=$(date +%s)
    timeout "$to" "$@" >"$R/$name.log" 2>&1
    local rc=$?
    note "$(printf '%-4s %-26s rc=%-3s %3ss' "$([ $rc = 0 ] && echo ok || echo FAIL)" "$name" "$rc" "$(($(date +%s) - s))")"
    return 0
}
B=build/bin
CS=compute-sanitizer

if [ "$MODE" = bench ]; then
    L=(--dtype bf16 --seq 4096 --iters 20 --warmup 3 --csv "$R/ladder.csv")
    step ladder_d64 12 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 32 --dim 64
    step ladder_d128 12 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 16 --dim 128
    step ladder_d64_causal 12 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 32 --dim 64 --causal
    step ladder_d128_causal 12 $B/05b_tensor_cores "${L[@]}" --batch 4 --heads 16 --dim 128 --causal
    REF=notes/data/h200-2026-12-02-merged/r05/ladder.csv
    if [ -s "$R/ladder.csv" ] && [ -f "$REF" ]; then
        python3 tools/compare_csv.py "$REF" "$R/ladder.csv" >"$R/compare.txt" 2>&1
        note "compare_csv vs $REF: rc=$? (new/old per row: compare.txt)"
        cat "$R/compare.txt" >>"$SUM"
    fi
    note "total after build: $(($(date +%s) - tb)) s"
    exit 0
fi

# ---- MODE=check
step test_attention_tc 35 env STF_GPU_ONLY=1 STF_TEST_SMALL=1 $B/test_attention_tc
step test_f16acc 15 env STF_GPU_ONLY=1 $B/test_f16acc
# stage 03's cluster kernels: their limits come from one helper now (cluster_limits.cuh)
step test_softmax_gpu 25 env STF_GPU_ONLY=1 $B/test_softmax
step clusters_03 15 $B/03_online_softmax --device gpu --rows 16 --cols 256000 --dtype fp32 --iters 2 --warmup 1
grep -E "merge-(cluster|persist) (applies|does not)|^ +03 merge-(cluster|persist) " "$R/clusters_03.log" | cut -c1-160 | tee -a "$SUM"
step memcheck_tc5 30 env STF_TEST_SMALL=1 STF_GPU_ONLY=1 STF_TEST_FILTER='tc5*' $CS --tool memcheck --error-exitcode 9 $B/test_attention_tc
step racecheck_tc5f 20 env STF_TEST_SMALL=1 STF_GPU_ONLY=1 STF_TEST_FILTER='tc5f_qborrow' $CS --tool racecheck --error-exitcode 9 $B/test_attention_tc
step racecheck_tc5_tuned 20 env STF_TEST_SMALL=1 STF_GPU_ONLY=1 STF_TEST_FILTER='tc5_tuned' $CS --tool racecheck --error-exitcode 9 $B/test_attention_tc

# SASS of each instance, before (the seven files at f63accd) and after; needs
# git history and cuobjdump, and about 40 s of 16 cores
sass_cmp() {
    local old=f63accd tmp=$R/sass
    git cat-file -e "$old" 2>/dev/null || { echo "no commit $old here"; return 3; }
    mkdir -p "$tmp/old" "$tmp/new"
    local d=stages/05b_tensor_cores
    mkdir -p "$tmp/old_src"
    for f in tc5a_kouter tc5b_tree tc5c_immoff tc5d_lazy tc5e_ostore tc5f_qborrow tc5_tuned; do
        git show "$old:$d/$f.cu" >"$tmp/old_src/$f.cu" || return 3
    done
    local NV CU
    NV=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    CU=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
    local NVF=(-O3 -std=c++17 -DHAVE_CUDA=1 -Icommon/numerics -Icommon/driver -Icommon/device -Istages/05b_tensor_cores -arch=sm_90 -cubin)
    for f in tc5a_kouter tc5b_tree tc5c_immoff tc5d_lazy tc5e_ostore tc5f_qborrow tc5_tuned; do
        "$NV" "${NVF[@]}" "$tmp/old_src/$f.cu" -o "$tmp/old/$f.cubin" &
    done
    for f in tc5_steps tc5_tuned; do "$NV" "${NVF[@]}" "$d/$f.cu" -o "$tmp/new/$f.cubin" & done
    wait
    for x in old new; do
        for c in "$tmp/$x"/*.cubin; do "$CU" -sass "$c"; done >"$tmp/$x.sass"
        for c in "$tmp/$x"/*.cubin; do "$CU" -res-usage "$c"; done >"$tmp/$x.res"
    done
    python3 - "$tmp/old.sass" "$tmp/new.sass" "$tmp/old.res" "$tmp/new.res" <<'EOF'
import re, sys
FLAGS = {1: 'tc5a', 3: 'tc5b', 7: 'tc5c', 15: 'tc5d', 31: 'tc5e', 63: 'tc5f'}
def key(n):  # the instance: rung, type, d (and tc5_tuned's shape)
    m = re.match(r'_Z10tc5_kernelI(6__half|13__nv_bfloat16)Li(\d+)ELj(\d+)E(.*)Ev9tc_args_t$', n)
    if m:  # after: tc5_kernel<T, D, F, ...>
        t, d, f, rest = m.groups()
        return (FLAGS.get(int(f), 'tuned'), t, d)
    m = re.match(r'_Z\d+(tc5[a-f]?)_kernelI(6__half|13__nv_bfloat16)Li(\d+)E(.*)Ev9tc_args_t$', n)
    r, t, d, rest = m.groups()  # before: tc5a_kernel<T, D> ... tc5_kernel<T, D, WARPS, ...>
    return (r if r != 'tc5' else 'tuned', t, d)
def sass(p):
    out, cur = {}, None
    for ln in open(p):
        m = re.search(r'Function : (\S+)', ln)
        if m: cur = key(m.group(1)); out[cur] = []; continue
        m = re.search(r'/\*[0-9a-f]{4,}\*/\s+(.*?);', ln)
        if m and cur: out[cur].append(m.group(1).strip())
    return out
def res(p):  # "Function NAME:" then, on the same line or the next, "REG:n STACK:n ..."
    out, cur = {}, None
    for ln in open(p):
        m = re.search(r'Function (\S+?):\s*(.*)', ln)
        if m:
            cur = key(m.group(1))
            if m.group(2).strip(): out[cur], cur = m.group(2).strip(), None
        elif cur and 'REG:' in ln:
            out[cur], cur = ln.strip(), None
    return out
a, b = sass(sys.argv[1]), sass(sys.argv[2])
ra, rb = res(sys.argv[3]), res(sys.argv[4])
same = 0
for k in sorted(set(a) | set(b)):
    ok = k in a and k in b and a[k] == b[k] and ra.get(k) == rb.get(k)
    same += ok
    print('same' if ok else 'DIFF', *k, len(a.get(k, [])), len(b.get(k, [])), rb.get(k, '-'))
print(f'{same} of {len(set(a) | set(b))} instances: identical SASS and resource usage')
sys.exit(0 if same == len(set(a) | set(b)) and same > 0 else 1)
EOF
}
if [ "$(left)" -ge 45 ]; then
    export R
    export -f sass_cmp
    step sass_compare 40 bash -c sass_cmp
    tail -n 1 "$R/sass_compare.log" | tee -a "$SUM"
else
    note "SKIP sass_compare ($(left) s left, needs 45)"
fi
note "total after build: $(($(date +%s) - tb)) s"
