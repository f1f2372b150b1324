#!/usr/bin/env bash
# Stage 08's plots (run by plots/draw.sh with DIR and HERE exported; by hand:
# DIR=build/bench HERE=plots bash plots/draw_backward.sh). Draws only what has
# a CSV in $DIR:
#   backward_io.csv -> backward_traffic_cpu.png   backward HBM bytes (model and
#                      ledger) and peak memory against N, standard against
#                      FlashAttention-2, CPU (B = H = 1, d = 64, fp32)
#   backward.csv    -> backward_traffic_gpu.png   the same from the GPU sweep
#                      (bf16, B N = 16384, d = 64): model and DRAM counters
set -euo pipefail
DIR=${DIR:-${BENCH_DIR:-build/bench}}
HERE=${HERE:-$(cd "$(dirname "$0")" && pwd)}
source "$HERE/plot_lib.sh" # gp, col
drawn=0

# extract CSV IMPL DEV TAG: "N model_bytes counted_bytes peak_bytes peak_meas_bytes" per N, one row per N
# (CPU: the ledger; GPU: the DRAM counters), d = 64, not causal; on the GPU bf16 at B N = 16384
extract() {
    local f=$1 impl=$2 dev=$3 out=$4
    awk -F, -v impl="$impl" -v dev="$dev" -v I="$(col "$f" impl)" -v S="$(col "$f" seq)" -v B="$(col "$f" batch)" \
        -v Dm="$(col "$f" dim)" -v Ca="$(col "$f" causal)" -v Dv="$(col "$f" device)" -v Ty="$(col "$f" dtype)" \
        -v Mo="$(col "$f" model_bytes)" -v Le="$(col "$f" ledger_bytes)" -v Me="$(col "$f" measured_bytes)" \
        -v Pk="$(col "$f" peak_bytes)" -v T="$(col "$f" tiles)" -v Pm="$(col "$f" peak_meas_bytes)" -v Ok="$(col "$f" ok)" '
        FNR > 1 && $I == impl && $Dv == dev && $Dm == 64 && ($T == "-" || $T == "64x64" || dev == "gpu") && $Ca == "no" && $Ok != "n/a" &&
        (dev == "cpu" || ($Ty == "bf16" && $B * $S == 16384)) && !seen[$S]++ {
            c = (dev == "gpu") ? $Me : $Le
            printf "%s %s %s %s %s\n", $S, $Mo, (c ~ /^[0-9]+$/) ? c : "NaN", $Pk, ($Pm ~ /^[0-9]+$/) ? $Pm : "NaN"
        }' "$f" | sort -n >"$out"
}

for pair in "backward_io.csv cpu bwd-fa2" "backward.csv gpu bwd-tc-atomic"; do
    read -r csv dev fa <<<"$pair"
    f=$DIR/$csv
    [ -s "$f" ] || continue
    extract "$f" bwd-standard "$dev" "$DIR/backward_${dev}_standard.dat"
    extract "$f" "$fa" "$dev" "$DIR/backward_${dev}_fa.dat"
    [ -s "$DIR/backward_${dev}_standard.dat" ] && [ -s "$DIR/backward_${dev}_fa.dat" ] || continue
    desc=$(awk -F, -v N="$(col "$f" device_name)" -v D="$(col "$f" date)" 'NR == 2 { print $N ", " substr($D, 1, 10) }' "$f")
    gp "$DIR/backward_traffic_$dev.png" -e "dir='$DIR'; dev='$dev'; fa='$fa'; desc='$desc'" "$HERE/backward_traffic.gp" &&
        drawn=$((drawn + 1))
done

if [ "$drawn" = 0 ]; then
    echo "draw_backward: no backward_io.csv or backward.csv sweep in $DIR: nothing drawn"
else
    echo "draw_backward: $drawn plot(s) in $DIR"
fi
