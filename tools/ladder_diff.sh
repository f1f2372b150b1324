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
# the program runs). A rung with a file of its own (stages/05b_tensor_cores/
# <name>.cu: tc1 ... tc4, tc6) is diffed against the previous rung's file;
# the tc5 rungs are one kernel, tc5_kernel in tc5_steps.cuh, each change an
# `if constexpr` block on a flag named after the rung (tc5b_tree: TREE,
# tc5_tuned: TUNED), so their change is printed as the flag's description and
# every line and block of the kernel on that flag (with line numbers).
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
steps=$dir/tc5_steps.cuh
# The rung's kernel source: its own file, or tc5_steps.cuh for the tc5 rungs.
src() { if [ -f "$dir/$1.cu" ] && grep -q '__global__' "$dir/$1.cu"; then echo "$1"; else echo tc5_steps; fi; }
norm_src() { # norm_src NAME: the file of rung NAME with its prefix normalised
    local f; f=$(src "$1")
    # tc5_steps.cuh without its header (the flags' descriptions)
    if [ "$f" = tc5_steps ]; then sed -n '/^#ifndef/,$p' "$steps" | sed -e 's/\btc5_/tcN_/g' -e 's/\bTC5_/TCN_/g'; else norm "$1"; fi
}
# flag_blocks FLAG: the header paragraph on FLAG, then every line of the
# kernel that names FLAG, an `if constexpr` on it with its whole block
# (else branch included), numbered as in the file.
flag_blocks() {
    awk -v f="$1" '
    function names(line) { return line ~ ("(^|[^A-Za-z0-9_])" f "([^A-Za-z0-9_]|$)") }
    function opens(line,    t) { t = line; gsub(/"[^"]*"/, "", t); sub(/\/\/.*/, "", t); return gsub(/{/, "{", t) - gsub(/}/, "}", t) }
    /^ \*   [A-Z]+ / { para = ($2 == f) } /^ \*$/ { para = 0 } /^ \*\// { para = 0 }
    para { printf "%5d  %s\n", FNR, $0; next }
    !inkernel && /__global__/ { inkernel = 1 }
    !inkernel { next }
    depth > 0 {
        printf "%5d  %s\n", FNR, $0; depth += opens($0)
        if (depth <= 0) { depth = 0; print "" }
        next
    }
    names($0) && !/= F & TC5_/ {
        if (!shown++) print ""
        printf "%5d  %s\n", FNR, $0
        if ($0 ~ /if constexpr/) { depth = opens($0); if (depth <= 0) depth = 0; else next }
        print ""
    }' "$steps"
}
step_diff() { # step_diff I (0-based, I >= 1): rung I against rung I - 1
    local a=${names[$(($1 - 1))]} b=${names[$1]}
    if [ "$(src "$b")" = tc5_steps ]; then
        local flag=${b#*_}
        flag=$(printf '%s' "$flag" | tr '[:lower:]' '[:upper:]')
        echo "# $steps: $b is $a plus the flag $flag (tc5_kernel's blocks on it):"
        flag_blocks "$flag"
        if [ "$flag" = TUNED ]; then
            echo "# with QREG = 0 (d = 256: Q re-read at every k-step), the blocks on QREG:"
            flag_blocks QREG
            echo "# and the tile shape per head dim, $dir/$b.cu:"
            grep -n '^template <> struct' "$dir/$b.cu"
        fi
        return 0
    fi
    diff -u --label "$dir/$(src "$a").cu$([ "$(src "$a")" = tc5_steps ] && echo "h (all flags: $a)")" \
        --label "$dir/$b.cu" <(norm_src "$a") <(norm_src "$b") || true
}

case $1 in
--list)
    for i in "${!names[@]}"; do printf '%2d  %-14s %s\n' $((i + 1)) "${names[$i]}" "${whats[$i]:-}"; done
    exit 0 ;;
--stat)
    for ((i = 1; i < ${#names[@]}; i++)); do
        n=$(step_diff "$i" | grep -c '^[-+][^-+]\|^ *[0-9][0-9]*  ' || true)
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
