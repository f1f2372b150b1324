#!/usr/bin/env bash
# ladder.png from ladder.csv: TFLOP/s of every rung at d = 64 and 128 (not causal)
#   bash notes/data/h200-2026-12-02/r05/ladder_plot.sh round1/ladder.csv ladder.png  (gnuplot, python3)
set -euo pipefail
csv=$1 out=$2
tmp=$(mktemp)
python3 - "$csv" >"$tmp" <<'PY'
import csv, sys
rows = list(csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith('#')))
tab, order = {}, []
for r in rows:
    if r['causal'] != 'no' or r['ok'] != 'yes' or not r['tflops']: continue
    if r['impl'] not in tab: tab[r['impl']] = {}; order.append(r['impl'])
    tab[r['impl']][r['dim']] = r['tflops']
for i in order:
    print('"%s" %s %s' % (i, tab[i].get('64', 'NaN'), tab[i].get('128', 'NaN')))
PY
gnuplot <<GP
set terminal pngcairo noenhanced size 1100,520 font ",11"
set output "$out"
load "$(cd "$(dirname "$0")/../../../.." && pwd)/plots/histogram_style.gp"
set ylabel "TFLOP/s (bf16)"
set xtics rotate by -35 scale 0
set key top left
set grid ytics
set title "Tensor-core ladder, H200, bf16, N = 4096, B N = 16384 tokens, H d = 2048, not causal (2026-12-02)"
$(if grep -q " NaN$" "$tmp"; then echo "plot \"$tmp\" using 2:xtic(1) title \"d = 64\""; else echo "plot \"$tmp\" using 2:xtic(1) title \"d = 64\", \"\" using 3 title \"d = 128\""; fi)
GP
rm -f "$tmp"
