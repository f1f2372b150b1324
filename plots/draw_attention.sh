#!/usr/bin/env bash
# Stage 04 (contract: plots/draw.sh). From $DIR/attention.csv:
# attention_traffic_d64.png and attention_traffic_d128.png (bytes moved and
# peak footprint against N, standard vs one-pass), where the CSV has rows
# for that head dimension.
set -euo pipefail
: "${DIR:?}" "${HERE:?}"
# gp PNG GNUPLOT-ARGS...: draws, and prints PNG if gnuplot wrote it. The
# warning for a line with no points (measured bytes on a CPU run) is dropped.
gp() {
    local png=$1; shift; rm -f "$png"
    { gnuplot "$@" 2>&1 1>&3 | { grep -v 'Skipping data file with no valid points' || true; } >&2; } 3>&1
    if [ -s "$png" ]; then echo "$png"; fi
}
f=$DIR/attention.csv
[ -s "$f" ] || exit 0
dcol=$(head -1 "$f" | tr ',' '\n' | grep -n -x dim | cut -d: -f1)
for d in 64 128; do
    awk -F, -v c="$dcol" -v d="$d" 'NR > 1 && $c == d { found = 1 } END { exit !found }' "$f" || continue
    gp "$DIR/attention_traffic_d$d.png" -e "csv='$f'; out='$DIR/attention_traffic_d$d.png'; dim=$d" "$HERE/attention_traffic.gp"
done
