#!/usr/bin/env bash
# `make profile STAGE=NN [ARGS="--dtype fp16 --cols 65536"]`: runs stage NN
# once (one warm-up-free timed run) under Nsight Compute with the memory
# workload sections and DRAM byte counters, and saves the report in
# build/profile/ (open it with ncu-ui, or read the .txt beside it).
# Only the stages' kernels are profiled (KERNELS, a regex, to change it; the
# default names every stage's kernels and leaves out the input generator's
# fill_* and the checker's count_nonfinite), at most COUNT launches; pick one
# implementation with ARGS="--kernel tc6_m32 ...".
set -euo pipefail
BUILD=${BUILD:-build}
bin=$(ls "$BUILD"/bin/"${STAGE}"_* 2>/dev/null | head -n 1 || true)
[ -x "$bin" ] || { echo "no stage program $BUILD/bin/${STAGE}_*"; exit 2; }
command -v ncu >/dev/null || { echo "ncu (Nsight Compute) is not on PATH; it ships with the CUDA toolkit"; exit 2; }
mkdir -p "$BUILD/profile"
out=$BUILD/profile/stage$STAGE
# STF_NO_HWC: the program's own counter reads would compete with ncu's.
STF_NO_HWC=1 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum,lts__t_sectors_srcunit_tex_op_read.sum \
    --kernel-name "regex:${KERNELS:-copy|naive|safe|online|onchip|cluster|split|one_pass|gemm|mask|fa1|fa2|tc[0-9]|repeat_kv|decode|combine|read_only}" \
    --launch-count "${COUNT:-12}" -f -o "$out" "$bin" --device gpu --iters 1 --warmup 0 ${ARGS:-}
ncu --import "$out.ncu-rep" --page details >"$out.txt"
echo "report: $out.ncu-rep (details in $out.txt)"
