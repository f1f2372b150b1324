#!/usr/bin/env bash
# What issues 17, 19 and 21 still need of the H200 after 2026-12-03, in one
# call (about 8 minutes after the build), from the repository root, after
# `make -j16 all tests`; logs under $RESULTS, a summary (steps.txt) last.
# Every step has a timeout; a step that does not fit what is left is skipped
# and says so.
#   RESULTS=dir bash tools/gpu/close.sh
# 1. issue 19, alone on the GPU: Nsight Compute on the two misses that have
#    no profile. GQA (Hkv 8) B = 1, 128k keys: split-tc (96% of read) against
#    cuDNN through SDPA (98%); and B = 1, 32k keys: split-tc-paged at P = 64
#    (0.935 of split-tc) beside split-tc. Same sections and raw metrics for
#    each (DRAM bytes, issue activity, warps active, stall reasons).
# 2. then side by side (nothing timed):
#    issue 21: racecheck of test_softmax's three cluster tests at sanitizer
#      size (STF_TEST_SMALL=1: merge-persist's clusters loop over 40 rows),
#      one process each;
#    issue 17: the row glue shared by stages 05b and 05c (tc_ladder_t) on
#      the GPU: test_attention_tc, test_hopper, test_gqa, and checked runs of
#      05b_tensor_cores, 05c_hopper and 06_gqa_attention (prefill on h3).
set -u
. "$(dirname "$0")/round.sh"
gpu_round close
gpu_steps 480 58
# step NAME ESTIMATE_S LOG CMD...: runs alone when the estimate fits, with a timeout of 3x it at most
step() {
    local name=$1 est=$2 lg=$3; shift 3
    local l; l=$(left)
    if [ "$l" -lt "$est" ]; then log_step "$name" "skipped: ${l} s left, needs ~${est} s"; return; fi
    local t=$SECONDS to=$((l < 3 * est ? l : 3 * est))
    timeout "$to" "$@" >"$R/$lg" 2>&1
    log_step "$name" "rc=$? ($((SECONDS - t)) s)"
}
# job NAME LOG TIMEOUT CMD...: in the background (phase 2), rc and seconds noted
pids=()
job() {
    local name=$1 lg=$2 to=$3; shift 3
    ( t=$SECONDS; timeout "$to" "$@" >"$R/$lg" 2>&1; rc=$?
      log_step "$name" "rc=$rc ($((SECONDS - t)) s); $(grep -h -E 'RACECHECK SUMMARY|ERROR SUMMARY|PASSED|FAILED' "$R/$lg" | tr '\n' ' ' | cut -c1-160)" ) &
    pids+=($!)
}

# ---- 1. Nsight Compute, alone
ncu_section_args
MET='dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum'
STALL='regex:^smsp__average_warps_issue_stalled_[a-z_]+_per_issue_active'
D=(--device gpu --dim 128 --dtype bf16 --heads 32 --kv-heads 8 --iters 1 --warmup 0)
OURS=(--kernel-name 'regex:decode_tc|combine' --launch-count 2)
CK=(--nvtx --nvtx-include "sdpa/" --launch-count 3) # every kernel of the timed call
for what in sections metrics stalls; do
    case $what in sections) X=("${NCU_SEC[@]}") ;; metrics) X=(--metrics "$MET") ;; stalls) X=(--metrics "$STALL") ;; esac
    step "ncu $what split-tc GQA B=1 128k" 25 ncu_${what}_gqa_b1.log env STF_NO_HWC=1 ncu "${OURS[@]}" "${X[@]}" \
        $B/07_split_kv_decode "${D[@]}" --batch 1 --seq-kv 131072 --kernel split-tc
    step "ncu $what cuDNN GQA B=1 128k" 35 ncu_${what}_cudnn_b1.log ncu "${CK[@]}" "${X[@]}" \
        python3 tools/torch_attention.py --profile-decode 1,8,131072
    for k in split-tc split-tc-paged; do
        step "ncu $what $k B=1 32k P=64" 25 ncu_${what}_${k}_b1_32k.log env STF_NO_HWC=1 ncu \
            --kernel-name 'regex:decode_tc|combine' --launch-count 2 "${X[@]}" \
            $B/07_split_kv_decode "${D[@]}" --batch 1 --seq-kv 32768 --page-size 64 --kernel $k
    done
done

# ---- 2. checks, side by side
l=$(left)
[ "$l" -gt 30 ] || { log_step "checks" "skipped: ${l} s left"; l=0; }
if [ "$l" -gt 0 ]; then
    for t in test_split_counts_gpu test_cluster_sizes_gpu test_persist_loops_gpu; do
        job "racecheck test_softmax $t (small)" rc_$t.log "$l" env STF_TEST_SMALL=1 STF_NO_HWC=1 STF_TEST_FILTER=$t \
            compute-sanitizer --error-exitcode 1 --tool racecheck $B/test_softmax
    done
    for t in test_attention_tc test_hopper test_gqa; do
        job "$t (small)" $t.log "$l" env STF_TEST_SMALL=1 STF_NO_HWC=1 $B/$t
    done
    A=(--device gpu --dtype bf16 --iters 2 --warmup 1 --seq 1000 --heads 8 --dim 128)
    job "05b_tensor_cores checked run" p05b.log "$l" $B/05b_tensor_cores "${A[@]}"
    job "05c_hopper checked run" p05c.log "$l" $B/05c_hopper "${A[@]}"
    job "06_gqa_attention prefill checked run" p06.log "$l" $B/06_gqa_attention "${A[@]}" --kv-heads 2
    for p in "${pids[@]}"; do wait "$p"; done
fi
echo "== close.sh ($((SECONDS - T0)) s)"
cat "$STEPS"
