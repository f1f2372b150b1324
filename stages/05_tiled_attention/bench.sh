#!/usr/bin/env bash
# Stage 05's benchmarks alone: its lines of tools/bench_shapes.tsv and bench_io.sh, through
# tools/bench.sh (BIN, OUT, DEVICE, QUICK as there); `make bench` runs every stage's.
exec bash "$(dirname "$0")/../../tools/bench.sh" 05_tiled_attention
