#!/usr/bin/env bash
# Nsight Compute on stage 07's split-tc against cuDNN's decode (PyTorch SDPA)
# at the three shapes of issue 19's table where split-tc trails cuDNN by
# 1.4-1.7% and has no profile yet: MHA (Hkv 32) B = 8, 32k keys; MHA B = 1,
# 128k; GQA (Hkv 8) B = 8, 32k (bf16, d = 128, Hq = 32). GQA B = 1, 128k was
# profiled the same way on 2026-12-03 (tools/gpu/close.sh). Alone on the GPU,
# from the repository root after `make -j16 all tests`; about 3 minutes.
#   RESULTS=dir bash tools/gpu/vs_cudnn.sh
# Per shape and side, one ncu run with the sections, the DRAM and issue
# metrics and the stall reasons (several replay passes of one call):
# ncu_<shape>_ours.log (split-tc's decode kernel and its combine, the first
# call) and ncu_<shape>_cudnn.log (every kernel of one SDPA call after a
# warm-up: tools/torch_attention.py --profile-decode). A summary of each
# kernel's duration, DRAM throughput, issue activity and top stalls last.
set -u
. "$(dirname "$0")/round.sh"
gpu_round vs_cudnn
gpu_steps 240 44
ncu_section_args
X=("${NCU_SEC[@]}" --metrics 'dram__bytes_read.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,regex:^smsp__average_warps_issue_stalled_[a-z_]+_per_issue_active')
for shape in "8 32 32768" "1 32 131072" "8 8 32768"; do
    set -- $shape
    tag="b$1_hkv$2_nk$3"
    for side in ours cudnn; do
        l=$(left)
        if [ "$l" -lt 25 ]; then log_step "ncu $side B=$1 Hkv=$2 Nk=$3" "skipped: ${l} s left"; continue; fi
        t=$SECONDS
        if [ $side = ours ]; then
            timeout "$l" env STF_NO_HWC=1 ncu --kernel-name 'regex:decode_tc|combine' --launch-count 2 "${X[@]}" \
                $B/07_split_kv_decode --device gpu --dim 128 --dtype bf16 --heads 32 --kv-heads "$2" --batch "$1" \
                --seq-kv "$3" --kernel split-tc --iters 1 --warmup 0 >"$R/ncu_${tag}_$side.log" 2>&1
        else
            timeout "$l" ncu --nvtx --nvtx-include "sdpa/" --launch-count 3 "${X[@]}" \
                python3 tools/torch_attention.py --profile-decode "$1,$2,$3" >"$R/ncu_${tag}_$side.log" 2>&1
        fi
        log_step "ncu $side B=$1 Hkv=$2 Nk=$3" "rc=$? ($((SECONDS - t)) s)"
    done
done
# the figures the note's comparison needs, kernel by kernel (a kernel's
# header is the line naming its Context and Stream), with its four largest
# stall reasons (warps per issued instruction; "selected", the issuing
# warp itself, left out)
for f in "$R"/ncu_*.log; do
    echo "== $(basename "$f")"
    awk 'function top() { delete st["selected"]; m = 0; for (k in st) m++
             if (!n || !m) { n = 0; return }
             printf "    top stalls:"; for (i = 0; i < 4; i++) { b = ""
             for (k in st) if (b == "" || st[k] > st[b]) b = k
             if (b == "") break; printf " %s %s", b, st[b]; delete st[b] } print ""; n = 0 }
         / Context [0-9]+, Stream / { top(); print; n = 1; next }
         /^    (Duration|DRAM Throughput|Registers Per Thread|Achieved Occupancy|Executed Ipc Active|Eligible Warps Per Scheduler|dram__bytes_read.sum|smsp__issue_active)/ { print }
         /smsp__average_warps_issue_stalled_[a-z_]+_per_issue_active.ratio/ {
             k = $1; sub("smsp__average_warps_issue_stalled_", "", k); sub("_per_issue_active.ratio", "", k); st[k] = $NF }
         END { top() }' "$f"
done >"$R/summary.txt"
echo "== vs_cudnn.sh ($((SECONDS - T0)) s)"
cat "$STEPS" "$R/summary.txt"
