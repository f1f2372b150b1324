#!/usr/bin/env bash
# Stage 07's benchmarks alone: its lines of tools/bench_shapes.tsv, through
# tools/bench.sh (BIN, OUT, DEVICE, QUICK as there); `make bench` runs every stage's.
exec bash "$(dirname "$0")/../../tools/bench.sh" 07_split_kv_decode
