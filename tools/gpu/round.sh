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
