# Sourced by the GPU round scripts beside it (not run on its own):
#   . "$(dirname "$0")/round.sh"; gpu_round NAME
# leaves them in the repository root with $RESULTS an absolute folder
# (default build/gpu-NAME), the CUDA libraries and the stages' programs
# ($STF_BIN_DIR, $B) on their paths, and T0 for the seconds spent.
gpu_round() {
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
    RESULTS=${RESULTS:-build/gpu-$1}
    mkdir -p "$RESULTS" || exit 2
    RESULTS=$(cd "$RESULTS" && pwd) || exit 2
    export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64
    export STF_BIN_DIR=$PWD/build/bin
    B=build/bin
    T0=$SECONDS
}

# After gpu_round, for a round of timed steps (close.sh, vs_cudnn.sh):
#   gpu_steps BUDGET_S WIDTH
# sets R (= $RESULTS) and STEPS ($R/steps.txt, emptied), writes env.txt
# (device, ncu, commit, date); then left (the seconds of BUDGET_S, or of
# $BUDGET, still to spend) and log_step NAME TEXT (a line of steps.txt,
# NAME padded to WIDTH, echoed) serve the steps. ncu_section_args fills the
# array NCU_SEC with the --section arguments of the sections the rounds read
# that this ncu lists (its list in $R/ncu_sections.txt).
gpu_steps() {
    R=$RESULTS
    BUDGET=${BUDGET:-$1}
    STEP_W=$2
    STEPS=$R/steps.txt
    : >"$STEPS"
    { nvidia-smi -L; ncu --version 2>&1 | tail -n 1; git log --oneline -1 2>/dev/null; date -u; } >"$R/env.txt" 2>&1
}
left() { echo $((BUDGET - (SECONDS - T0))); }
log_step() { printf "%-${STEP_W}s %s\n" "$1" "$2" | tee -a "$STEPS"; }
ncu_section_args() {
    ncu --list-sections >"$R/ncu_sections.txt" 2>&1
    NCU_SEC=()
    local s
    for s in SpeedOfLight MemoryWorkloadAnalysis ComputeWorkloadAnalysis Occupancy LaunchStats SchedulerStats \
             WarpStateStats; do
        awk '{print $1}' "$R/ncu_sections.txt" | grep -qx "$s" && NCU_SEC+=(--section "$s")
    done
}
