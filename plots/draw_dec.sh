#!/usr/bin/env bash
# Stage 07's decode plots from the CSVs in DIR: tools/gpu/bench3.sh's dec.csv
# (every run of its bench round) or stages/07_split_kv_decode/bench.sh's
# g_sweep.csv, tools/gpu/page.sh's paged.csv; torch_decode.csv beside them
# (tools/torch_attention.py --decode) adds the libraries.
#   g_sweep.png     K/V GB/s against g = Hq / Hkv, split and split-tc, at the
#                   batch and length of the CSV's first B = 8 row (plots/g_sweep.gp)
#   page_size.png   paged against contiguous against the page size P, on the
#                   shape of the first paged row (plots/page_size.gp)
#   dec_length.png  K/V GB/s against the cache length, Hkv = 8: split,
#                   split-tc, split-tc-paged (P = 64) (plots/split_kv_bandwidth.gp)
# Draws only what has a CSV; exits 0 when there is nothing to draw.
set -euo pipefail
DIR=${DIR:-${BENCH_DIR:-build/bench}}
HERE=${HERE:-$(cd "$(dirname "$0")" && pwd)}
source "$HERE/plot_lib.sh" # gp, col
num='^[0-9.eE+-]+$'
t=$DIR/torch_decode.csv
[ -s "$t" ] || t=

# K/V heads and g sweep: g_sweep.csv (the stage's bench) or dec.csv (the GPU round)
f=$DIR/g_sweep.csv
[ -s "$f" ] || f=$DIR/dec.csv
if [ -s "$f" ]; then
    # the shape of the sweep: the first B = 8, unpaged row's length, heads' dim and dtype
    read -r nk dim dt < <(awk -F, -v B="$(col "$f" batch)" -v N="$(col "$f" seq_kv)" -v d="$(col "$f" dim)" \
        -v DT="$(col "$f" dtype)" -v TI="$(col "$f" tiles)" 'NR > 1 && $B == 8 && $TI !~ /:p/ { print $N, $d, $DT; exit }' "$f")
    for impl in split split-tc ceiling; do
        awk -F, -v impl="$impl" -v nk="$nk" -v dim="$dim" -v dt="$dt" -v I="$(col "$f" impl)" -v H="$(col "$f" heads)" \
            -v K="$(col "$f" kv_heads)" -v B="$(col "$f" batch)" -v N="$(col "$f" seq_kv)" -v d="$(col "$f" dim)" \
            -v DT="$(col "$f" dtype)" -v TI="$(col "$f" tiles)" -v V="$(col "$f" varlen)" -v G="$(col "$f" kv_gbps)" \
            -v CE="$(col "$f" ceiling_gbps)" -v OK="$(col "$f" ok)" -v num="$num" '
            NR == 1 || $OK !~ /^yes/ || $B != 8 || $N != nk || $d != dim || $DT != dt || $TI ~ /:p/ || $V == "yes" { next }
            impl == "ceiling" && $CE ~ num && !seen[$H / $K]++ { print $H / $K, $CE; next }
            impl != "ceiling" && $I == impl && $G ~ num && !seen[$H / $K]++ { print $H / $K, $G }' "$f" |
            sort -n >"$DIR/gsweep_$impl.dat"
    done
    for be in flash cudnn; do
        : >"$DIR/gsweep_$be.dat"
        [ -n "$t" ] || continue
        awk -F, -v be="$be" -v nk="$nk" -v BE="$(col "$t" backend)" -v M="$(col "$t" method)" -v B="$(col "$t" batch)" \
            -v H="$(col "$t" heads)" -v K="$(col "$t" kv_heads)" -v N="$(col "$t" seq_kv)" -v G="$(col "$t" kv_gbps)" '
            NR > 1 && $BE == be && $M == "native" && $B == 8 && $N == nk { print $H / $K, $G }' "$t" |
            sort -n >"$DIR/gsweep_$be.dat"
    done
    if [ -s "$DIR/gsweep_split-tc.dat" ] || [ -s "$DIR/gsweep_split.dat" ]; then
        info=$(awk -F, -v N="$(col "$f" device_name)" -v T="$(col "$f" date)" -v H="$(col "$f" heads)" \
                   -v C="$(col "$f" commit)" -v nk="$nk" -v dim="$dim" -v dt="$dt" '
            NR == 2 { printf "%s, %s, commit %s, %s d=%s B=8 Nk=%s", $N, substr($T, 1, 10), $C, dt, dim, nk }' "$f")
        es=$([ "$dt" = fp32 ] && echo 4 || echo 2)
        gp "$DIR/g_sweep.png" -e "dir='$DIR'; info='$info'; es=$es" "$HERE/g_sweep.gp"
    fi
fi

# page sizes: dec.csv (the GPU round) or paged.csv (tools/gpu/page.sh)
f=$DIR/dec.csv
[ -s "$f" ] || f=$DIR/paged.csv
if [ -s "$f" ] && grep -q -- '-paged,' "$f"; then
    # each paged row with the contiguous row of its own run (the nearest row before it of the same shape)
    shape=$(awk -F, -v I="$(col "$f" impl)" -v B="$(col "$f" batch)" -v K="$(col "$f" kv_heads)" \
        -v N="$(col "$f" seq_kv)" 'NR > 1 && $I ~ /-paged$/ { print $B, $K, $N; exit }' "$f")
    read -r pb pk pn <<<"${PAGE_SHAPE:-$shape}"
    for impl in split-paged split-paged-lanes split-tc-paged; do
        awk -F, -v impl="$impl" -v pb="$pb" -v pk="$pk" -v pn="$pn" -v I="$(col "$f" impl)" -v B="$(col "$f" batch)" \
            -v K="$(col "$f" kv_heads)" -v N="$(col "$f" seq_kv)" -v H="$(col "$f" heads)" -v TI="$(col "$f" tiles)" \
            -v G="$(col "$f" kv_gbps)" -v MS="$(col "$f" time_ms)" -v MB="$(col "$f" measured_mb)" \
            -v V="$(col "$f" varlen)" -v OK="$(col "$f" ok)" -v num="$num" '
            NR == 1 || $B != pb || $K != pk || $N != pn || $V == "yes" { next }
            $I == base { last = $G }
            $I == impl && $OK ~ /^yes/ && $G ~ num && last != "" {
                p = $TI; sub(/.*:p/, "", p)
                if (seen[p]++) next
                print p, $G, last, ($MB ~ num ? $MB : "NaN"), $G * $MS }
            BEGIN { base = impl; sub(/-paged(-lanes)?$/, "", base) }' "$f" | sort -n >"$DIR/page_$impl.dat"
    done
    info=$(awk -F, -v N="$(col "$f" device_name)" -v T="$(col "$f" date)" -v C="$(col "$f" commit)" \
               -v DT="$(col "$f" dtype)" -v d="$(col "$f" dim)" -v H="$(col "$f" heads)" -v pb="$pb" -v pk="$pk" -v pn="$pn" '
        NR == 2 { printf "%s, %s, commit %s, %s d=%s Hq=%s Hkv=%s B=%s Nk=%s", $N, substr($T, 1, 10), $C, $DT, $d, $H, pk, pb, pn }' "$f")
    gp "$DIR/page_size.png" -e "dir='$DIR'; info='$info'" "$HERE/page_size.gp"
fi

# the cache length, Hkv = 8 (the round's dec.csv: the six shapes, the page and length runs)
f=$DIR/dec.csv
if [ -s "$f" ]; then
    for b in 1 8; do
        for impl in split split-tc split-tc-paged ceiling; do
            awk -F, -v impl="$impl" -v want="$b" -v I="$(col "$f" impl)" -v B="$(col "$f" batch)" \
                -v H="$(col "$f" heads)" -v K="$(col "$f" kv_heads)" -v N="$(col "$f" seq_kv)" -v TI="$(col "$f" tiles)" \
                -v G="$(col "$f" kv_gbps)" -v CE="$(col "$f" ceiling_gbps)" -v V="$(col "$f" varlen)" \
                -v DT="$(col "$f" dtype)" -v OK="$(col "$f" ok)" -v num="$num" '
                NR == 1 || $B != want || $K != 8 || $H != 32 || $DT != "bf16" || $V == "yes" || $OK !~ /^yes/ { next }
                impl == "ceiling" && $CE ~ num && !seen[$N]++ { print $N, $CE; next }
                impl == "split-tc-paged" && $TI !~ /:p64$/ { next }
                impl != "ceiling" && $I == impl && $G ~ num && !seen[$N]++ { print $N, $G }' "$f" |
                sort -n >"$DIR/declen_b${b}_$impl.dat"
        done
        for be in flash cudnn; do
            : >"$DIR/declen_b${b}_$be.dat"
            [ -n "$t" ] || continue
            awk -F, -v be="$be" -v want="$b" -v BE="$(col "$t" backend)" -v M="$(col "$t" method)" \
                -v B="$(col "$t" batch)" -v K="$(col "$t" kv_heads)" -v H="$(col "$t" heads)" -v N="$(col "$t" seq_kv)" \
                -v G="$(col "$t" kv_gbps)" '
                NR > 1 && $BE == be && $M == "native" && $B == want && $K == 8 && $H == 32 { print $N, $G }' "$t" |
                sort -n >"$DIR/declen_b${b}_$be.dat"
        done
    done
    if [ -s "$DIR/declen_b8_split-tc.dat" ] || [ -s "$DIR/declen_b1_split-tc.dat" ]; then
        info=$(awk -F, -v N="$(col "$f" device_name)" -v T="$(col "$f" date)" -v C="$(col "$f" commit)" '
            NR == 2 { printf "%s, %s, commit %s, bf16 d=128 Hq=32 Hkv=8", $N, substr($T, 1, 10), $C }' "$f")
        gp "$DIR/dec_length.png" -e "dir='$DIR'; info='$info'; tag='declen'; out='$DIR/dec_length.png'; series='split split-tc split-tc-paged flash cudnn'" \
            "$HERE/split_kv_bandwidth.gp"
    fi
fi
exit 0
