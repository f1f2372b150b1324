#!/usr/bin/env bash
# Stages 06-07 plots, from the CSV files their bench scripts write in DIR
# (plots/draw.sh exports DIR and HERE; default build/bench and this folder):
#   gqa_groups.png          from gqa.csv: bytes and time against the group size
#                           g = Hq / Hkv for replicated, indexed, packed; prefill
#                           and decode (GPU: DRAM bytes from the counters; CPU:
#                           the ledger; dashed: the model)
#   split_kv_bandwidth.png  from split_kv.csv (+ torch_decode.csv when present):
#                           K/V GB/s against the cache length for B = 1 and
#                           B = 8, stage 06 packed, stage 07 split, the
#                           libraries, the measured read-only ceiling
# Draws only what has a CSV; exits 0 when there is nothing to draw.
set -euo pipefail
DIR=${DIR:-${BENCH_DIR:-build/bench}}
HERE=${HERE:-$(cd "$(dirname "$0")" && pwd)}
source "$HERE/plot_lib.sh" # gp, col
num='^[0-9.eE+-]+$'

if [ -s "$DIR/gqa.csv" ]; then
    f=$DIR/gqa.csv
    for impl in replicated indexed packed; do
        for regime in prefill decode; do
            # prefill: the first prefill shape (non-causal) of the sweep, decode: seq_q = 1
            awk -F, -v impl="$impl" -v regime="$regime" -v I="$(col "$f" impl)" -v H="$(col "$f" heads)" \
                -v K="$(col "$f" kv_heads)" -v Q="$(col "$f" seq)" -v C="$(col "$f" causal)" \
                -v B="$(col "$f" batch)" -v DEV="$(col "$f" device)" -v MB="$(col "$f" measured_bytes)" \
                -v LB="$(col "$f" ledger_bytes)" -v MO="$(col "$f" model_bytes)" -v T="$(col "$f" time_ms)" \
                -v OK="$(col "$f" ok)" -v num="$num" '
                NR == 1 { next }
                $C != "no" || $OK !~ /^yes/ { next }
                regime == "decode" && $Q != 1 { next }
                regime == "prefill" && ($Q == 1 || (shape != "" && shape != $B "x" $Q)) { next }
                regime == "prefill" && shape == "" { shape = $B "x" $Q }
                $I == impl && !seen[$H "/" $K]++ {
                    meas = ($DEV == "gpu") ? $MB : $LB
                    printf "%g %s %s %s\n", $H / $K, (meas ~ num) ? meas : "NaN", $MO, $T
                }' "$f" | sort -n >"$DIR/gqa_${regime}_$impl.dat"
        done
    done
    info=$(awk -F, -v D="$(col "$f" device)" -v N="$(col "$f" device_name)" -v T="$(col "$f" date)" \
               -v DT="$(col "$f" dtype)" -v d="$(col "$f" dim)" -v H="$(col "$f" heads)" -v B="$(col "$f" batch)" \
               -v Q="$(col "$f" seq)" -v K="$(col "$f" seq_kv)" '
        NR > 1 && !p && $Q > 1 { pre = "prefill B=" $B " N=" $Q; p = 1 }
        NR > 1 && !dd && $Q == 1 { dec = "decode B=" $B " Nk=" $K; dd = 1 }
        NR == 2 { n = $N; t = substr($T, 1, 10); dt = $DT; dim = $d; h = $H; dev = $D }
        END { printf "%s, %s, %s d=%s Hq=%s; %s; %s", n, t, dt, dim, h, pre, dec }' "$f")
    meas=$(awk -F, -v D="$(col "$f" device)" 'NR == 2 { print ($D == "gpu") ? "DRAM bytes (counters)" : "bytes (ledger)" }' "$f")
    gp "$DIR/gqa_groups.png" -e "dir='$DIR'; info='$info'; meas='$meas'" "$HERE/gqa_groups.gp"
fi

if [ -s "$DIR/split_kv.csv" ]; then
    f=$DIR/split_kv.csv
    for b in 1 8; do
        for impl in packed split ceiling; do
            awk -F, -v impl="$impl" -v want="$b" -v I="$(col "$f" impl)" -v B="$(col "$f" batch)" \
                -v H="$(col "$f" heads)" -v K="$(col "$f" kv_heads)" -v N="$(col "$f" seq_kv)" \
                -v G="$(col "$f" kv_gbps)" -v CE="$(col "$f" ceiling_gbps)" -v V="$(col "$f" varlen)" \
                -v DT="$(col "$f" dtype)" -v OK="$(col "$f" ok)" -v num="$num" '
                NR == 1 { next }
                NR == 2 { h = $H; k = $K; dt = $DT }
                $B != want || $H != h || $K != k || $DT != dt || (V && $V == "yes") || $OK !~ /^yes/ { next }
                impl == "ceiling" && $CE ~ num && !seen[$N]++ { print $N, $CE; next }
                impl != "ceiling" && $I == impl && $G ~ num && !seen[$N]++ { print $N, $G }' "$f" |
                sort -n >"$DIR/splitkv_b${b}_$impl.dat"
        done
        for be in flash cudnn; do
            : >"$DIR/splitkv_b${b}_$be.dat"
            [ -s "$DIR/torch_decode.csv" ] || continue
            t=$DIR/torch_decode.csv
            awk -F, -v be="$be" -v want="$b" -v BE="$(col "$t" backend)" -v M="$(col "$t" method)" \
                -v B="$(col "$t" batch)" -v K="$(col "$t" kv_heads)" -v N="$(col "$t" seq_kv)" -v G="$(col "$t" kv_gbps)" \
                -v k="$(awk -F, -v K="$(col "$f" kv_heads)" 'NR == 2 { print $K }' "$f")" '
                NR > 1 && $BE == be && $M == "native" && $B == want && $K == k { print $N, $G }' "$t" |
                sort -n >"$DIR/splitkv_b${b}_$be.dat"
        done
    done
    info=$(awk -F, -v N="$(col "$f" device_name)" -v T="$(col "$f" date)" -v DT="$(col "$f" dtype)" \
               -v d="$(col "$f" dim)" -v H="$(col "$f" heads)" -v K="$(col "$f" kv_heads)" '
        NR == 2 { printf "%s, %s, %s d=%s Hq=%s Hkv=%s", $N, substr($T, 1, 10), $DT, $d, $H, $K }' "$f")
    gp "$DIR/split_kv_bandwidth.png" -e "dir='$DIR'; info='$info'" "$HERE/split_kv_bandwidth.gp"
fi
exit 0
