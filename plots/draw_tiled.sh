#!/usr/bin/env bash
# Stage 05's plots (run by plots/draw.sh with DIR and HERE exported; by hand:
# DIR=build/bench HERE=plots bash plots/draw_tiled.sh). Draws only what has a
# CSV in $DIR:
#   tiled_io.csv -> tiled_io.png         counted HBM bytes against the on-chip
#                                         memory M (Theorem 2, Dao et al. 2022)
#   tiled.csv    -> tiled_sweep_d64.png,  TFLOP/s and HBM bytes against N for
#                   tiled_sweep_d128.png  every implementation, and bytes
#                                         against the tile size (fa1, fa2)
set -euo pipefail
DIR=${DIR:-${BENCH_DIR:-build/bench}}
HERE=${HERE:-$(cd "$(dirname "$0")" && pwd)}
source "$HERE/plot_lib.sh" # gp, col
drawn=0

if [ -s "$DIR/tiled_io.csv" ]; then
    f=$DIR/tiled_io.csv
    for impl in fa1 fa2; do
        awk -F, -v impl=$impl -v I="$(col "$f" impl)" -v L="$(col "$f" ledger_bytes)" -v M="$(col "$f" sram_bytes)" \
            -v T="$(col "$f" tiles)" 'NR > 1 && $I == impl { print $M, $L, $T }' "$f" | sort -n >"$DIR/tiled_io_$impl.dat"
    done
    # standard, one-pass (no tiles: one value each), N, d, device, date
    read -r std op n d < <(awk -F, -v I="$(col "$f" impl)" -v L="$(col "$f" ledger_bytes)" -v S="$(col "$f" seq)" \
        -v D="$(col "$f" dim)" 'NR > 1 && $I == "standard" { s = $L; n = $S; d = $D } NR > 1 && $I == "one-pass" { o = $L }
        END { print s, o, n, d }' "$f")
    dev=$(awk -F, -v N="$(col "$f" device_name)" -v D="$(col "$f" date)" 'NR == 2 { print $N ", " substr($D, 1, 10) }' "$f")
    gp "$DIR/tiled_io.png" -e "dir='$DIR'; std=$std; op=$op; n=$n; d=$d; dev='$dev'" "$HERE/tiled_io.gp" && drawn=$((drawn + 1))
fi

if [ -s "$DIR/tiled.csv" ]; then
    f=$DIR/tiled.csv
    I=$(col "$f" impl); S=$(col "$f" seq); B=$(col "$f" batch); Dm=$(col "$f" dim); Ca=$(col "$f" causal)
    Ty=$(col "$f" dtype); Tf=$(col "$f" tflops); Mo=$(col "$f" model_bytes); Me=$(col "$f" measured_bytes)
    Le=$(col "$f" ledger_bytes); Ti=$(col "$f" tiles); Dv=$(col "$f" device)
    for d in 64 128; do
        found=0
        for impl in standard one-pass fa1 fa2 fa2-regtile fa2-regtile-br128; do
            # the sweep: B N fixed (the largest B N in the file), not causal, fp32; first row per N
            awk -F, -v impl=$impl -v d=$d -v I=$I -v S=$S -v B=$B -v Dm=$Dm -v Ca=$Ca -v Ty=$Ty -v Tf=$Tf -v Mo=$Mo \
                -v Me=$Me -v Le=$Le -v Dv=$Dv '
                NR == FNR { if (FNR > 1 && $B * $S > tok) tok = $B * $S; next }
                FNR > 1 && $I == impl && $Dm == d && $Ca == "no" && $Ty == "fp32" && $B * $S == tok && !seen[$S]++ {
                    meas = ($Dv == "gpu") ? $Me : $Le
                    printf "%s %s %s %s\n", $S, ($Tf ~ /^[0-9.e+-]+$/) ? $Tf : "NaN", $Mo, (meas ~ /^[0-9]+$/) ? meas : "NaN"
                }' "$f" "$f" | sort -n >"$DIR/tiled_sweep_${d}_$impl.dat"
            [ -s "$DIR/tiled_sweep_${d}_$impl.dat" ] && found=1
        done
        [ $found = 1 ] || continue
        # bytes against the tile size: fa1 (Br = 64, Bc varies), fa2 (Br varies, Bc = 64), at one shape
        for impl in fa1 fa2; do
            awk -F, -v impl=$impl -v d=$d -v I=$I -v S=$S -v Dm=$Dm -v Ca=$Ca -v Ti=$Ti -v Mo=$Mo -v Me=$Me -v Le=$Le \
                -v Dv=$Dv -v Ty=$Ty '
                FNR > 1 && $I == impl && $Dm == d && $Ca == "no" && $Ty == "fp32" && $S == (($Dv == "gpu") ? 4096 : 512) {
                    split($Ti, t, "x"); x = (impl == "fa1") ? t[2] : t[1]
                    if ((impl == "fa1" && t[1] != 64) || (impl == "fa2" && t[2] != 64) || seen[x]++) next
                    meas = ($Dv == "gpu") ? $Me : $Le
                    printf "%s %s %s\n", x, $Mo, (meas ~ /^[0-9]+$/) ? meas : "NaN"
                }' "$f" | sort -n >"$DIR/tiled_tiles_${d}_$impl.dat"
        done
        dev=$(awk -F, -v N="$(col "$f" device_name)" -v D="$(col "$f" date)" 'NR == 2 { print $N ", " substr($D, 1, 10) }' "$f")
        gp "$DIR/tiled_sweep_d$d.png" -e "dir='$DIR'; d=$d; dev='$dev'" "$HERE/tiled_sweep.gp" && drawn=$((drawn + 1))
    done
fi

exit 0 # the PNGs drawn are printed by gp; no CSV: nothing printed (plots/draw.sh's contract)
