#!/usr/bin/env bash
# Stages 01-03 (contract: plots/draw.sh). From $DIR/softmax.csv:
# softmax_bytes.png (accesses per element, model vs counted/measured); from
# $DIR/softmax_sweep.csv: softmax_bandwidth_<dt>.png and
# softmax_traffic_<dt>.png. awk cuts the CSV into small tables, gnuplot draws.
set -euo pipefail
: "${DIR:?}" "${HERE:?}"
source "$HERE/plot_lib.sh" # gp, col

if [ -s "$DIR/softmax.csv" ]; then
    f=$DIR/softmax.csv
    # bytes per element of each implementation, from the run of the stage that owns it
    for dt in fp32 fp16; do
        awk -F, -v dt="$dt" -v P="$(col "$f" run_by)" -v S="$(col "$f" stage)" -v I="$(col "$f" impl)" \
            -v D="$(col "$f" dtype)" -v R="$(col "$f" rows)" -v C="$(col "$f" cols)" -v M="$(col "$f" model_mb)" \
            -v L="$(col "$f" counted_mb)" -v H="$(col "$f" measured_mb)" -v DEV="$(col "$f" device)" '
            NR > 1 && $D == dt && (substr($P, 1, 2) == $S || $S == "00") && !seen[$I]++ {
                n = $R * $C; es = (dt == "fp32") ? 4 : 2
                meas = ($DEV == "gpu") ? $H : $L
                printf "%s %.3f %s\n", $I, $M * 1e6 / n / es, (meas ~ /^[0-9.]+$/) ? sprintf("%.3f", meas * 1e6 / n / es) : "NaN"
                dev = $DEV; shape = $R "x" $C
            }
            END { printf "# %s %s\n", dev, shape > "/dev/stderr" }' "$f" >"$DIR/bytes_$dt.dat" 2>"$DIR/bytes_$dt.info"
    done
    gp "$DIR/softmax_bytes.png" -e "dir='$DIR'" "$HERE/softmax_bytes.gp"
fi

if [ -s "$DIR/softmax_sweep.csv" ]; then
    f=$DIR/softmax_sweep.csv
    for dt in fp32 fp16; do
        for impl in copy naive safe online safe-onchip merge-onchip; do
            awk -F, -v dt="$dt" -v impl="$impl" -v P="$(col "$f" run_by)" -v S="$(col "$f" stage)" \
                -v I="$(col "$f" impl)" -v D="$(col "$f" dtype)" -v C="$(col "$f" cols)" -v R="$(col "$f" rows)" \
                -v G="$(col "$f" gbps)" -v CP="$(col "$f" copy_gbps)" -v H="$(col "$f" measured_mb)" \
                -v L="$(col "$f" counted_mb)" -v A="$(col "$f" acc_per_elem)" -v DEV="$(col "$f" device)" '
                NR > 1 && $D == dt && $I == impl && (substr($P, 1, 2) == $S || $S == "00") && !seen[$C]++ {
                    es = (dt == "fp32") ? 4 : 2; n = $R * $C
                    meas = ($DEV == "gpu") ? $H : $L
                    printf "%s %s %s %s %s\n", $C, ($G ~ /^[0-9.]+$/) ? $G : "NaN", $CP, $A,
                        (meas ~ /^[0-9.]+$/) ? sprintf("%.3f", meas * 1e6 / n / es) : "NaN"
                }' "$f" >"$DIR/sweep_${dt}_$impl.dat"
        done
    done
    dev=$(awk -F, -v N="$(col "$f" device_name)" -v D="$(col "$f" date)" 'NR == 2 { print $N ", " substr($D, 1, 10) }' "$f")
    for dt in fp32 fp16; do
        gp "$DIR/softmax_bandwidth_$dt.png" -e "dir='$DIR'; dt='$dt'; dev='$dev'" "$HERE/softmax_bandwidth.gp"
        gp "$DIR/softmax_traffic_$dt.png" -e "dir='$DIR'; dt='$dt'; dev='$dev'" "$HERE/softmax_traffic.gp"
    done
fi
