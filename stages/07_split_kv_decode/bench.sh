#!/usr/bin/env bash
# Stage 07 sweep: K/V GB/s against the cache length, split-KV vs stage 06's
# packed decode, for B = 1 and B = 8 (Hq = 32, Hkv = 8), into
# $OUT/split_kv.csv (drawn by plots/draw_gqa.sh with the libraries from
# $OUT/torch_decode.csv when plots/torch_attention.py --decode made it).
# Contract as stages/06_gqa_attention/bench.sh (BIN, OUT, DEVICE, QUICK).
#   GPU: bf16, d = 128, Nk = 1k ... 128k; MHA and MQA at the target shapes; --varlen.
#   CPU: fp32, d = 64, Hq = 8, Hkv = 2, Nk = 1k ... 16k.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
DEVICE=${DEVICE:-auto}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
CSV=$OUT/split_kv.csv
rm -f "$CSV"
if [ -f plots/bench_lib.sh ]; then
    # shellcheck disable=SC1091
    source plots/bench_lib.sh
else
    failed=0
    run() { echo "+ $*"; "$@" || { echo "FAILED ($?): $*"; failed=1; }; }
fi
fails=0
go() { run "$@" || fails=1; }

dev=$DEVICE
if [ "$dev" = auto ]; then
    if "$BIN/07_split_kv_decode" --device gpu --help >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then dev=gpu; else dev=cpu; fi
fi
P=$BIN/07_split_kv_decode
if [ "$QUICK" = 1 ]; then
    A=(--device cpu --dim 64 --heads 8 --kv-heads 2 --decode --iters 1 --warmup 0 --csv "$CSV")
    for b in 1 8; do for n in 256 1024; do go "$P" "${A[@]}" --batch $b --seq-kv $n; done; done
    go "$P" "${A[@]}" --batch 4 --seq-kv 500 --varlen
elif [ "$dev" = gpu ]; then
    A=(--device gpu --dim 128 --dtype bf16 --decode --iters 30 --csv "$CSV")
    for b in 1 8; do
        for n in 1024 2048 4096 8192 16384 32768 65536 131072; do
            go "$P" "${A[@]}" --heads 32 --kv-heads 8 --batch $b --seq-kv $n
        done
    done
    for kv in 32 1; do
        go "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 8 --seq-kv 32768
        go "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 1 --seq-kv 131072
    done
    go "$P" "${A[@]}" --heads 32 --kv-heads 8 --batch 8 --seq-kv 32768 --varlen
    go "$P" "${A[@]}" --heads 32 --kv-heads 8 --batch 8 --seq-kv 32768 --dtype fp16
else
    A=(--device cpu --dim 64 --heads 8 --kv-heads 2 --decode --iters 3 --warmup 1 --csv "$CSV")
    for b in 1 8; do for n in 1024 2048 4096 8192 16384; do go "$P" "${A[@]}" --batch $b --seq-kv $n; done; done
    go "$P" "${A[@]}" --batch 8 --seq-kv 4096 --varlen
fi
[ "${failed:-0}" = 0 ] && [ "$fails" = 0 ]
