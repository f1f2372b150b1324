#!/usr/bin/env bash
# The change one rung of the tensor-core ladder makes: the diff of its kernel
# file against the previous rung's, with each file's own prefix (tc4_, TC4_,
# tc5a_ ...) written as tcN_ / TCN_ so that only the real change shows.
#
#   bash tools/ladder_diff.sh 5            rung 5 (tc5a_kouter) against rung 4
#   bash tools/ladder_diff.sh tc5d_lazy    the same by name
#   bash tools/ladder_diff.sh --list       the rungs, numbered, with their change
#   bash tools/ladder_diff.sh --stat       changed lines of every step
#
# The order is TC_VERSIONS in stages/05b_tensor_cores/tc_impls.c (the ladder
# the program runs); rung N's file is stages/05b_tensor_cores/<name>.cu.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=stages/05b_tensor_cores
mapfile -t names < <(sed -n 's/^ *{ "\(tc[0-9a-z]*_[a-z0-9]*\)", ".*/\1/p' "$dir/tc_impls.c")
mapfile -t whats < <(sed -n 's/^ *{ "tc[0-9a-z]*_[a-z0-9]*", "\(.*\)" },$/\1/p' "$dir/tc_impls.c")
[ "${#names[@]}" -gt 1 ] || { echo "ladder_diff: no ladder found in $dir/tc_impls.c" >&2; exit 2; }

usage() { echo "usage: $0 N|NAME|--list|--stat   (N = 2 .. ${#names[@]})" >&2; exit 2; }
[ $# -eq 1 ] || usage

# The file with its prefix normalised: tc5a_kernel -> tcN_kernel, TC5A_BQ -> TCN_BQ.
norm() {
    local name=$1 p P
    p=${name%%_*}
    P=$(printf '%s' "$p" | tr '[:lower:]' '[:upper:]')
    sed -e "s/\b${p}_/tcN_/g" -e "s/\b${P}_/TCN_/g" "$dir/$name.cu"
}
step_diff() { # step_diff I (0-based, I >= 1): rung I against rung I - 1
    local a=${names[$(($1 - 1))]} b=${names[$1]}
    diff -u --label "$dir/$a.cu" --label "$dir/$b.cu" <(norm "$a") <(norm "$b") || true
}

case $1 in
--list)
    for i in "${!names[@]}"; do printf '%2d  %-14s %s\n' $((i + 1)) "${names[$i]}" "${whats[$i]:-}"; done
    exit 0 ;;
--stat)
    for ((i = 1; i < ${#names[@]}; i++)); do
        n=$(step_diff "$i" | grep -c '^[-+][^-+]' || true)
        printf '%-14s -> %-14s %4d changed lines\n' "${names[$((i - 1))]}" "${names[$i]}" "$n"
    done
    exit 0 ;;
[0-9]*)
    [[ $1 =~ ^[0-9]+$ ]] || usage
    i=$(($1 - 1)) ;;
*)
    i=-1
    for j in "${!names[@]}"; do [ "${names[$j]}" = "$1" ] && i=$j; done
    [ "$i" -ge 0 ] || { echo "ladder_diff: no rung named $1 (--list shows them)" >&2; exit 2; } ;;
esac
[ "$i" -ge 1 ] && [ "$i" -lt "${#names[@]}" ] || usage
echo "# rung $((i + 1)): ${names[$i]}: ${whats[$i]:-}"
step_diff "$i"
