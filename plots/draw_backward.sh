#!/usr/bin/env bash
# Stage 08's plots (run by plots/draw.sh with DIR and HERE exported; by hand:
# DIR=build/bench HERE=plots bash plots/draw_backward.sh). Draws only what has
# a CSV in $DIR:
#   backward_io.csv -> backward_traffic_cpu.png   backward HBM bytes (model and
#                      ledger) and peak memory against N, standard against
#                      FlashAttention-2, CPU (B = H = 1, d = 64, fp32)
#   backward.csv    -> backward_traffic_gpu.png   the same from the GPU sweep
#                      (bf16, B N = 16384, d = 64): model and DRAM counters
#   bench_kernels.csv + torch_backward.csv -> backward_speed_gpu.png: TFLOP/s
#                      of the tensor-core kernels (best configuration) against
#                      SDPA's flash (FA-2) and cuDNN backends, one session
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

# speed: the kernel bench (tools/gpu/s08.sh writes bench_kernels.csv) against PyTorch's backends, same session
kb=$DIR/bench_kernels.csv tb=$DIR/torch_backward.csv
if [ -s "$kb" ] && [ -s "$tb" ]; then
    awk -F, -v K="$(col "$kb" kernel)" -v S="$(col "$kb" seq)" -v D="$(col "$kb" dim)" -v C="$(col "$kb" causal)" \
        -v T="$(col "$kb" tflops)" -v tB="$(col "$tb" backend)" -v tP="$(col "$tb" pass)" -v tS="$(col "$tb" seq)" \
        -v tD="$(col "$tb" dim)" -v tC="$(col "$tb" causal)" -v tT="$(col "$tb" tflops)" '
        FNR == 1 { f++; next }
        f == 1 { k = $D " " $S " " $C; if ($T > best[k, $K]) best[k, $K] = $T; seen[k] = 1 }
        f == 2 && $tP == "bwd" { lib[$tD " " $tS " " $tC, $tB] = $tT }
        function v(x) { return x == "" ? "NaN" : x }
        END {
            n = split("64 4096 0,64 4096 1,64 16384 0,64 16384 1,128 4096 0,128 4096 1,128 16384 0,128 16384 1", sh, ",")
            for (i = 1; i <= n; i++) {
                k = sh[i]; if (!(k in seen)) continue
                split(k, a, " ")
                printf "\"d%s %dk%s\" %s %s %s %s %s\n", a[1], a[2] / 1024, a[3] ? " c" : "", v(best[k, "bwd-tc-atomic"]),
                    v(best[k, "bwd-tc-det"]), v(best[k, "bwd-tc-k32"]), v(lib[k, "flash"]), v(lib[k, "cudnn"])
            }
        }' "$kb" "$tb" >"$DIR/backward_speed.dat"
    desc=$(awk -F, -v N="$(col "$tb" device_name)" -v D="$(col "$tb" date)" -v V="$(col "$tb" torch)" \
        'NR == 2 { print $N ", " $D ", PyTorch " $V }' "$tb")
    if [ -s "$DIR/backward_speed.dat" ]; then
        k32=$(awk '$(NF - 2) != "NaN" { n++ } END { print (n > 0 ? 1 : 0) }' "$DIR/backward_speed.dat")
        gp "$DIR/backward_speed_gpu.png" -e "dir='$DIR'; desc='$desc'; k32=$k32" "$HERE/backward_speed.gp" &&
            drawn=$((drawn + 1))
    fi
fi

if [ "$drawn" = 0 ]; then
    echo "draw_backward: no backward_io.csv, backward.csv sweep or bench_kernels.csv with torch_backward.csv in $DIR: nothing drawn"
else
    echo "draw_backward: $drawn plot(s) in $DIR"
fi
