#!/usr/bin/env bash
# `make profile STAGE=NN [ARGS="--dtype fp16 --cols 65536"]`: runs stage NN
# once (one warm-up-free timed run) under Nsight Compute with the memory
# workload sections and DRAM byte counters, and saves the report in
# build/profile/ (open it with ncu-ui, or read the .txt beside it).
# Only the stage's own kernels are profiled (KERNELS, a regex, to change it;
# the input generator's fill kernels are left out), at most COUNT launches.
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
    --kernel-name "regex:${KERNELS:-copy16|naive|safe|online|onchip|one_pass|gemm|mask}" \
    --launch-count "${COUNT:-12}" -f -o "$out" "$bin" --device gpu --iters 1 --warmup 0 ${ARGS:-}
ncu --import "$out.ncu-rep" --page details >"$out.txt"
echo "report: $out.ncu-rep (details in $out.txt)"
