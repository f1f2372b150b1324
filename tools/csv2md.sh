#!/usr/bin/env bash
# Prints rows of a results CSV as a GitHub Markdown table, so the tables in
# notes/ are copied from runs, never typed.
#   tools/csv2md.sh FILE 'awk condition' col1,col2,...
# The condition uses c["name"] for column indices, e.g.
#   tools/csv2md.sh build/bench/softmax.csv '$c["dtype"]=="fp32"' impl,rows,cols,time_ms,gbps
set -euo pipefail
file=$1 cond=${2:-1} cols=${3:-}
awk -F, -v cols="$cols" '
NR == 1 {
    for (i = 1; i <= NF; i++) c[$i] = i
    n = split(cols, want, ",")
    if (n == 0) { n = NF; for (i = 1; i <= NF; i++) want[i] = $i }
    line = "|"; sep = "|"
    for (i = 1; i <= n; i++) { line = line " " want[i] " |"; sep = sep "---|" }
    print line; print sep; next
}
('"$cond"') {
    line = "|"
    for (i = 1; i <= n; i++) line = line " " $(c[want[i]]) " |"
    print line
}' "$file"
