#!/usr/bin/env bash
# Stage 04 (contract: plots/draw.sh). From $DIR/attention.csv:
# attention_traffic_d64.png and attention_traffic_d128.png (bytes moved and
# peak footprint against N, standard vs one-pass), where the CSV has rows
# for that head dimension.
set -euo pipefail
: "${DIR:?}" "${HERE:?}"
source "$HERE/plot_lib.sh" # gp, col
f=$DIR/attention.csv
[ -s "$f" ] || exit 0
dcol=$(col "$f" dim)
for d in 64 128; do
    awk -F, -v c="$dcol" -v d="$d" 'NR > 1 && $c == d { found = 1 } END { exit !found }' "$f" || continue
    gp "$DIR/attention_traffic_d$d.png" -e "csv='$f'; out='$DIR/attention_traffic_d$d.png'; dim=$d" "$HERE/attention_traffic.gp"
done
