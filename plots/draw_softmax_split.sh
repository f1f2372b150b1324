#!/usr/bin/env bash
# Draws stage 03's "beyond one SM" plots from the CSV files of
# tools/bench_shapes.tsv (stage 03), into $DIR:
#   softmax_split_rows.png        GB/s against rows at cols = 262144 (fp32)
#   softmax_split_cols_<dt>.png   GB/s against cols (rows x cols fixed), every
#                                 path of stage 03 with the copy ceiling
# Called by plots/draw.sh with DIR (the bench folder) and HERE (the plots
# folder) exported; draws only what has a CSV in $DIR. Runs alone too:
#   DIR=build/bench HERE=plots bash plots/draw_softmax_split.sh
set -euo pipefail
DIR=${DIR:-${BENCH_DIR:-build/bench}}
HERE=${HERE:-$(cd "$(dirname "$0")" && pwd)}

source "$HERE/plot_lib.sh" # gp, col
# x gbps copy_gbps for one implementation of one program, sorted by x
cut_series() { # file prog impl dtype xcol out
    local f=$1
    awk -F, -v prog="$2" -v impl="$3" -v dt="$4" -v X="$(col "$f" "$5")" -v P="$(col "$f" run_by)" \
        -v I="$(col "$f" impl)" -v D="$(col "$f" dtype)" -v G="$(col "$f" gbps)" -v CP="$(col "$f" copy_gbps)" '
        NR > 1 && $P == prog && $I == impl && $D == dt && $G ~ /^[0-9.]+$/ && !seen[$X]++ { print $X, $G, $CP }' "$f" |
        sort -n >"$6"
}
stamp() { awk -F, -v N="$(col "$1" device_name)" -v D="$(col "$1" date)" 'NR == 2 { print $N ", " substr($D, 1, 10) }' "$1"; }
# "rows x cols = 2^k" when every row of the CSV has the same product (a --sweep), else nothing
elems() {
    awk -F, -v R="$(col "$1" rows)" -v C="$(col "$1" cols)" 'NR > 1 { p = $R * $C; if (n == "") n = p; else if (p != n) bad = 1 }
        END { if (n != "" && !bad) { k = log(n) / log(2); if (k == int(k)) printf "rows x cols = 2^{%d}, ", k; else printf "rows x cols = %d, ", n } }' "$1"
}

drawn=0
if [ -s "$DIR/softmax_rows.csv" ]; then
    f=$DIR/softmax_rows.csv
    cut_series "$f" 01_naive_softmax copy fp32 rows "$DIR/split_rows_copy.dat"
    for impl in safe online online-split merge-wave merge-cluster merge-persist; do
        cut_series "$f" 03_online_softmax "$impl" fp32 rows "$DIR/split_rows_$impl.dat"
    done
    cols=$(awk -F, -v C="$(col "$f" cols)" 'NR == 2 { print $C }' "$f")
    gp "$DIR/softmax_split_rows.png" -e "dir='$DIR'; dev='$(stamp "$f")'; cols='$cols'" "$HERE/softmax_split_rows.gp"
    drawn=$((drawn + 1))
fi
if [ -s "$DIR/softmax_cluster_sweep.csv" ]; then
    f=$DIR/softmax_cluster_sweep.csv
    for dt in fp32 fp16; do
        grep -q ",$dt," "$f" || continue
        for impl in safe online safe-onchip merge-onchip online-split merge-wave merge-cluster merge-persist; do
            cut_series "$f" 03_online_softmax "$impl" "$dt" cols "$DIR/split_cols_${dt}_$impl.dat"
        done
        gp "$DIR/softmax_split_cols_$dt.png" -e "dir='$DIR'; dt='$dt'; dev='$(elems "$f")$(stamp "$f")'" "$HERE/softmax_split_cols.gp"
        drawn=$((drawn + 1))
    done
fi
exit 0 # the PNGs drawn are printed by gp; no CSV: nothing printed (plots/draw.sh's contract)
