#!/usr/bin/env bash
# Stage 06's three methods under Nsight Compute's DRAM and L2 counters: where
# indexed GQA's repeated K/V reads are served. For each method and shape one
# program run (--iters 1 --warmup 0) is profiled, every launch of the
# stage's kernels (repeat_kv, the tensor-core kernel, the decode kernel);
# ncu flushes the caches before each launch (its default), as the stage's
# timing flushes the L2 before each run.
#   DRAM read    dram__bytes_read.sum: what the HBM delivered
#   L2 -> SM     lts__t_sectors_srcunit_tex_op_read.sum x 32 B: what the SMs
#                asked of the L2 (loads and cp.async, through L1/TEX)
#   L2 hit       lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum / the above
# Output: $OUT/gqa_counters.log (ncu's CSV) and a table on stdout and in
# $OUT/gqa_counters.txt, one row per kernel launch.
#   BIN=build/bin OUT=build/bench bash tools/gqa_counters.sh
set -uo pipefail
BIN=${BIN:-build/bin}
OUT=${OUT:-build/bench}
mkdir -p "$OUT"
command -v ncu >/dev/null || { echo "gqa_counters: ncu (Nsight Compute) is not on PATH" >&2; exit 2; }
log=$OUT/gqa_counters.log
txt=$OUT/gqa_counters.txt
: >"$log"
M=dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum
A=(--device gpu --dim 128 --dtype bf16 --heads 32 --iters 1 --warmup 0)
rc=0
printf '%-28s %-10s %-34s %-14s %10s %10s %10s %6s\n' case method kernel grid "DRAM rd MB" "DRAM wr MB" "L2->SM MB" "L2 hit" | tee "$txt"
for c in "decode g=4:--kv-heads 8 --batch 8 --decode --seq-kv 32768" \
         "decode g=32:--kv-heads 1 --batch 8 --decode --seq-kv 32768" \
         "prefill g=4 N=4096:--kv-heads 8 --batch 4 --seq 4096"; do
    name=${c%%:*}
    for m in replicated indexed packed; do
        csv=$(STF_NO_HWC=1 timeout 300 ncu --clock-control none --print-units base --csv --metrics "$M" \
            --kernel-name "regex:tc[0-9]|decode|repeat_kv" --launch-count 8 \
            "$BIN/06_gqa_attention" "${A[@]}" ${c#*:} --kernel "$m" 2>>"$log")
        r=$?
        echo "### $name $m (exit $r)" >>"$log"
        echo "$csv" >>"$log"
        [ $r = 0 ] || { rc=1; echo "gqa_counters: ncu failed on $name $m (exit $r; see $log)" | tee -a "$txt"; continue; }
        # ncu --csv: one line per (launch, metric); "ID","Process ID",...,"Kernel Name",...,"Grid Size",...,"Metric Name","Metric Unit","Metric Value"
        echo "$csv" | awk -F'","' -v name="$name" -v m="$m" '
            /^"ID"/ { for (i = 1; i <= NF; i++) { h = $i; gsub(/"/, "", h); col[h] = i }; next }
            /^"[0-9]/ {
                id = $col["ID"]; gsub(/"/, "", id)
                k = $col["Kernel Name"]; sub(/[<(].*/, "", k); sub(/^void /, "", k)
                kern[id] = k; grid[id] = $col["Grid Size"]
                v = $col["Metric Value"]; gsub(/[",]/, "", v)
                val[id, $col["Metric Name"]] = v
                if (!(id in seen)) { seen[id] = 1; ids[++n] = id }
            }
            END {
                for (j = 1; j <= n; j++) {
                    id = ids[j]
                    l2 = val[id, "lts__t_sectors_srcunit_tex_op_read.sum"]
                    hit = val[id, "lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum"]
                    printf "%-28s %-10s %-34s %-14s %10.1f %10.1f %10.1f %5.1f%%\n", name, m, kern[id], grid[id],
                        val[id, "dram__bytes_read.sum"] / 1e6, val[id, "dram__bytes_write.sum"] / 1e6,
                        l2 * 32 / 1e6, (l2 > 0 ? 100 * hit / l2 : 0)
                }
            }' | tee -a "$txt"
    done
done
exit $rc
