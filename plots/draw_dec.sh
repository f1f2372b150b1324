#!/usr/bin/env bash
# Stage 07's crossover in g, from g_sweep.csv in DIR (tools/gpu/dec.sh's
# bench, or stages/07_split_kv_decode/bench.sh): K/V GB/s against the group
# size g = Hq / Hkv at fixed K/V bytes, the CUDA-core split and split-tc, the
# measured read-only ceiling, and the FMA bound of CUDA cores (an H200's
# 67 TFLOP/s fp32 over 2 g / es FLOPs per byte).
#   g_sweep.png
# Draws only what has a CSV; exits 0 when there is nothing to draw.
set -euo pipefail
DIR=${DIR:-${BENCH_DIR:-build/bench}}
HERE=${HERE:-$(cd "$(dirname "$0")" && pwd)}
source "$HERE/plot_lib.sh" # gp, col
num='^[0-9.eE+-]+$'
f=$DIR/g_sweep.csv
[ -s "$f" ] || exit 0
for impl in split split-tc ceiling; do
    awk -F, -v impl="$impl" -v I="$(col "$f" impl)" -v H="$(col "$f" heads)" -v K="$(col "$f" kv_heads)" \
        -v G="$(col "$f" kv_gbps)" -v CE="$(col "$f" ceiling_gbps)" -v OK="$(col "$f" ok)" -v num="$num" '
        NR == 1 || $OK !~ /^yes/ { next }
        impl == "ceiling" && $CE ~ num && !seen[$H / $K]++ { print $H / $K, $CE; next }
        impl != "ceiling" && $I == impl && $G ~ num && !seen[$H / $K]++ { print $H / $K, $G }' "$f" |
        sort -n >"$DIR/gsweep_$impl.dat"
done
info=$(awk -F, -v N="$(col "$f" device_name)" -v T="$(col "$f" date)" -v DT="$(col "$f" dtype)" \
           -v d="$(col "$f" dim)" -v B="$(col "$f" batch)" -v K="$(col "$f" kv_heads)" -v S="$(col "$f" seq_kv)" '
    NR == 2 { printf "%s, %s, %s d=%s B=%s Hkv=%s Nk=%s", $N, substr($T, 1, 10), $DT, $d, $B, $K, $S }' "$f")
es=$(awk -F, -v DT="$(col "$f" dtype)" 'NR == 2 { print ($DT == "fp32") ? 4 : 2 }' "$f")
gp "$DIR/g_sweep.png" -e "dir='$DIR'; info='$info'; es=$es" "$HERE/g_sweep.gp"
exit 0
