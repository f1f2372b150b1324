#!/usr/bin/env bash
# compute-sanitizer around one program, for tools/gpu_check.sh:
#   bash tools/sanitize_gpu.sh SANITIZER-OPTIONS... -- PROGRAM ARGS...
# Exit status: the sanitizer's (1 on any error it reports, via
# --error-exitcode 1), or the program's own. A program that makes no CUDA
# call (a test binary whose cases are all CPU cases, a stage run with
# --device cpu) leaves the sanitizer nothing to check, and compute-sanitizer
# then exits 255 ("terminated before first instrumented API call") whatever
# the program did; such a program is run again without the sanitizer and its
# own exit status is returned, so that a CPU-only run neither fails the check
# nor hides a failure.
set -uo pipefail
san=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do san+=("$1"); shift; done
[ "${1:-}" = -- ] && [ $# -ge 2 ] || { echo "usage: sanitize_gpu.sh SANITIZER-OPTIONS... -- PROGRAM ARGS..." >&2; exit 2; }
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
compute-sanitizer --error-exitcode 1 "${san[@]}" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ] && grep -q 'terminated before first instrumented API call' "$log"; then
    "$@" >/dev/null 2>&1
    rc=$?
    echo "sanitize_gpu: no CUDA call, nothing for compute-sanitizer to check; the program alone exits $rc"
fi
exit "$rc"
