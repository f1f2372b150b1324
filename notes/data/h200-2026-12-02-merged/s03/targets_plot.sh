#!/usr/bin/env bash
# targets.png from s03_split.csv: GB/s of stage 01's copy kernel and stage 03's
# paths at the six target shapes of issue 21 (one bar group a shape; n/a paths
# left out). Needs gnuplot and python3:
#   bash notes/data/h200-2026-12-02-merged/s03/targets_plot.sh \
#       notes/data/h200-2026-12-02-merged/s03/s03_split.csv notes/figures/h200_softmax_second_pass.png
set -euo pipefail
csv=$1 out=$2
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
python3 - "$csv" >"$tmp" <<'PY'
import csv, sys
impls = ["copy", "online", "online-split", "merge-wave", "merge-cluster", "merge-persist"]
tab, order = {}, []
for r in csv.DictReader(open(sys.argv[1])):
    k = "%sx%s %s" % (r["rows"], r["cols"], r["dtype"])
    if k not in tab: tab[k] = {}; order.append(k)
    if r["impl"] in impls and r["ok"] == "yes" and r["gbps"]: tab[k][r["impl"]] = r["gbps"]
print("shape " + " ".join(impls))
for k in order:
    print('"%s" %s' % (k, " ".join(tab[k].get(i, "NaN") for i in impls)))
PY
gnuplot <<GP
set terminal pngcairo noenhanced size 1100,520 font ",11"
set output "$out"
load "$(cd "$(dirname "$0")/../../../.." && pwd)/plots/histogram_style.gp"
set ylabel "GB/s (one read + one write of the matrix)"
set key top left
set xtics scale 0
set grid ytics
set yrange [0:4500]
set title "Stage 03 beyond one SM, H200, 2026-12-02 (merged tree, commit 4c3f94a): the target shapes"
plot for [i=2:7] "$tmp" using i:xtic(1) title columnheader(i)
GP
echo "$out"
