#!/usr/bin/env bash
# Stage 07 sweep: K/V GB/s against the cache length, split-KV (and split-tc,
# on tensor cores, in 16-bit types) vs stage 06's packed decode, for B = 1 and
# B = 8 (Hq = 32, Hkv = 8), into $OUT/split_kv.csv; on a GPU also the g sweep
# (K/V GB/s against g at fixed K/V bytes) into $OUT/g_sweep.csv (drawn by plots/draw_gqa.sh with the libraries from
# $OUT/torch_decode.csv when tools/torch_attention.py --decode made it).
# Contract as stages/06_gqa_attention/bench.sh (BIN, OUT, DEVICE, QUICK).
#   GPU: bf16, d = 128, Nk = 1k ... 128k; MHA and MQA at the target shapes; --varlen.
#   CPU: fp32, d = 64, Hq = 8, Hkv = 2, Nk = 1k ... 16k.
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
# shellcheck disable=SC1091
source tools/bench_lib.sh # run; a failed run makes the script exit 1
CSV=$OUT/split_kv.csv
rm -f "$CSV"

dev=$(bench_device)
P=$BIN/07_split_kv_decode
if [ "$QUICK" = 1 ]; then
    # on a GPU the GPU kernels in bf16 (tools/gpu_check.sh runs these under compute-sanitizer)
    A=(--device "$dev" --dim 64 --heads 8 --kv-heads 2 --decode --iters 1 --warmup 0 --csv "$CSV")
    [ "$dev" = gpu ] && A+=(--dtype bf16)
    for b in 1 8; do for n in 256 1024; do run "$P" "${A[@]}" --batch $b --seq-kv $n; done; done
    run "$P" "${A[@]}" --batch 4 --seq-kv 500 --varlen
elif [ "$dev" = gpu ]; then
    A=(--device gpu --dim 128 --dtype bf16 --decode --iters 30 --csv "$CSV")
    for b in 1 8; do
        for n in 1024 2048 4096 8192 16384 32768 65536 131072; do
            run "$P" "${A[@]}" --heads 32 --kv-heads 8 --batch $b --seq-kv $n
        done
    done
    for kv in 32 1; do
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 8 --seq-kv 32768
        run "$P" "${A[@]}" --heads 32 --kv-heads $kv --batch 1 --seq-kv 131072
    done
    run "$P" "${A[@]}" --heads 32 --kv-heads 8 --batch 8 --seq-kv 32768 --varlen
    run "$P" "${A[@]}" --heads 32 --kv-heads 8 --batch 8 --seq-kv 32768 --dtype fp16
    # the crossover in g at fixed K/V bytes (B = 8, Hkv = 8, 8192 keys): plots/draw_dec.sh
    rm -f "$OUT/g_sweep.csv"
    for g in 1 2 4 8 16 32; do
        run "$P" --device gpu --dim 128 --dtype bf16 --iters 30 --kernel split,split-tc --csv "$OUT/g_sweep.csv" \
            --heads $((8 * g)) --kv-heads 8 --batch 8 --seq-kv 8192
    done
else
    A=(--device cpu --dim 64 --heads 8 --kv-heads 2 --decode --iters 3 --warmup 1 --csv "$CSV")
    for b in 1 8; do for n in 1024 2048 4096 8192 16384; do run "$P" "${A[@]}" --batch $b --seq-kv $n; done; done
    run "$P" "${A[@]}" --batch 8 --seq-kv 4096 --varlen
fi
