#!/usr/bin/env bash
# Stage 08's benchmarks alone: its lines of tools/bench_shapes.tsv, through
# tools/bench.sh (BIN, OUT, DEVICE, QUICK as there); `make bench` runs every stage's.
exec bash "$(dirname "$0")/../../tools/bench.sh" 08_backward
