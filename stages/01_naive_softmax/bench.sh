#!/usr/bin/env bash
# Stage 01's benchmarks, run by `make bench` (contract: tools/bench.sh):
#   softmax.csv, softmax_sweep.csv  the default shape and the cols sweep, fp32
#                                   and fp16 (softmax_stage_runs, tools/bench_lib.sh)
set -euo pipefail
source tools/bench_lib.sh
softmax_stage_runs "$BIN/01_naive_softmax"
