#!/usr/bin/env bash
# A softmax sweep CSV as one Markdown table per dtype: rows are row lengths,
# columns implementations, each cell "% of copy (measured accesses/element)".
#   tools/sweep2md.sh build/bench/softmax_sweep.csv fp32
set -euo pipefail
awk -F, -v dt="${2:-fp32}" '
NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
$c["dtype"] == dt && (substr($c["run_by"], 1, 2) == $c["stage"] || $c["stage"] == "00") {
    col = $c["cols"]; im = $c["impl"]; es = dt == "fp32" ? 4 : 2
    meas = ($c["device"] == "gpu") ? $c["measured_mb"] : $c["counted_mb"]
    acc = (meas ~ /^[0-9.]+$/) ? sprintf(" (%.2f)", meas * 1e6 / ($c["rows"] * col) / es) : ""
    cell[col, im] = ($c["pct_copy"] ~ /^[0-9.]+$/) ? $c["pct_copy"] "%" acc : "n/a"
    if (!(col in seen)) { seen[col] = 1; cols[++n] = col }
}
END {
    split("copy naive safe online safe-onchip merge-onchip", ims, " ")
    print "| cols | copy | naive (3) | safe (4) | online (3) | safe, row on chip (2) | merge, row on chip (2) |"
    print "|---|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) {
        line = "| " cols[i] " |"
        for (k = 1; k <= 6; k++) line = line " " ((cols[i], ims[k]) in cell ? cell[cols[i], ims[k]] : "-") " |"
        print line
    }
}' "$1"
