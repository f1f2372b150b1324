#!/usr/bin/env bash
# The Hopper ladder's plot from round A's hop.bench: TFLOP/s of stage 05b's two
# best rungs, the six 05c rungs and PyTorch SDPA (flash, cuDNN) at N = 16384,
# not causal, d = 64, 128, 256 (ladder.csv and torch.csv of the same session).
#   bash notes/data/h200-2026-12-02-r2/A/ladder_plot.sh notes/figures/h200_hopper_ladder.png
# Needs gnuplot and python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1 N=${N:-16384}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
python3 - "$here/hop.bench/ladder.csv" "$here/hop.bench/torch.csv" "$N" >"$tmp" <<'PY'
import csv, sys
lad, tor, n = sys.argv[1], sys.argv[2], sys.argv[3]
tab, order = {}, []
for r in csv.DictReader(open(lad)):
    if r['seq'] != n or r['causal'] != 'no': continue
    if r['impl'] not in tab: tab[r['impl']] = {}; order.append(r['impl'])
    if r['ok'] == 'yes' and r['tflops']: tab[r['impl']][r['dim']] = r['tflops']
for r in csv.DictReader(open(tor)):
    if r['seq_q'] != n or r['causal'] != '0' or r['backend'] not in ('flash', 'cudnn'): continue
    name = 'SDPA ' + r['backend']
    if name not in tab: tab[name] = {}; order.append(name)
    tab[name][r['dim']] = r['tflops']
for i in order:
    print('"%s" %s' % (i, ' '.join(tab[i].get(d, 'NaN') for d in ('64', '128', '256'))))
PY
gnuplot <<GP
set terminal pngcairo noenhanced size 1100,520 font ",11"
set output "$out"
load "$(cd "$here/../../../.." && pwd)/plots/histogram_style.gp"
set ylabel "TFLOP/s (bf16)"
set yrange [0:*]
set xtics rotate by -35 scale 0
set key top left
set grid ytics
set title "Hopper ladder, H200, bf16, N = $N, H d = 2048, not causal (2026-12-02, commit ab1e306)"
plot "$tmp" using 2:xtic(1) title "d = 64", "" using 3 title "d = 128", "" using 4 title "d = 256"
GP
