# Stage 04: memory traffic and memory footprint of standard and one-pass
# attention against the sequence length N, log-log, from the CSV that
# `04_one_pass_attention --sweep --csv FILE` appends to.
#
#   gnuplot -e "csv='build/bench/attention.csv'; out='build/bench/attention_traffic.png'" plots/attention_traffic.gp
#
# Optional: dim=128 (default 64), causal='yes' (default 'no'), dtype='bf16'
# (default: any; pick one when the CSV mixes types at the same dim).
# Needs gnuplot 5.4 (column names: set datafile columnheaders).
#
# What to look for. The sweep holds B * N fixed (16384 tokens on the GPU,
# 2048 on the CPU), so Q, K, V, O do not change size and a per-head N^2 term
# grows like N. Left: standard attention's model grows like N (S and P are
# written and read); one-pass's model grows like d N (K and V re-read by every
# query row, 2 N^2 d elements per head, above standard's at d = 64); the
# measured HBM bytes (GPU counters, where available) show how much of that the
# L1/L2 absorb. Right: the footprint. Standard attention needs S and P
# (2 B H N^2 elements); one-pass needs nothing beyond Q, K, V, O: its line is
# flat, the N^2 term is gone.
if (GPVAL_VERSION < 5.4) { print "attention_traffic.gp needs gnuplot 5.4 or newer"; exit }
if (!exists("csv")) { print "usage: gnuplot -e \"csv='FILE.csv'; out='FILE.png'\" plots/attention_traffic.gp"; exit }
if (!exists("out")) out = 'attention_traffic.png'
if (!exists("dim")) dim = 64
if (!exists("causal")) causal = 'no'
if (!exists("dtype")) dtype = ''

set datafile separator ","
set datafile columnheaders
keep(impl) = strcol('impl') eq impl && column('dim') == dim && strcol('causal') eq causal && \
             (dtype eq '' || strcol('dtype') eq dtype)
isnum(name) = strlen(strcol(name)) > 0 && strcol(name) ne '-' && strcol(name) ne 'n/a'

# Cut the CSV into small tables (N, value), one per line drawn.
set table $std_model
plot csv using (column('seq')):(column('model_bytes')) with table if (keep('standard'))
set table $op_model
plot csv using (column('seq')):(column('model_bytes')) with table if (keep('one-pass'))
set table $std_meas
plot csv using (column('seq')):(column('measured_bytes')) with table if (keep('standard') && isnum('measured_bytes'))
set table $op_meas
plot csv using (column('seq')):(column('measured_bytes')) with table if (keep('one-pass') && isnum('measured_bytes'))
set table $std_ledger
plot csv using (column('seq')):(column('ledger_bytes')) with table if (keep('standard') && isnum('ledger_bytes'))
set table $op_ledger
plot csv using (column('seq')):(column('ledger_bytes')) with table if (keep('one-pass') && isnum('ledger_bytes'))
set table $std_peak
plot csv using (column('seq')):(column('peak_bytes')) with table if (keep('standard'))
set table $op_peak
plot csv using (column('seq')):(column('peak_bytes')) with table if (keep('one-pass'))
set table $where
plot csv using (column('seq')):(column('heads')):(strcol('device_name').', '.strcol('dtype')) with table if (keep('one-pass'))
unset table
set datafile separator whitespace
unset datafile

if (|$std_model| + |$op_model| == 0) { print sprintf("no rows with dim=%d, causal=%s in %s", dim, causal, csv); exit }
# the device and dtype of the first row drawn, for the title
device = ''
if (|$where| > 0) {
    w = $where[1]; i = strlen(w)
    while (i > 1 && w[i:i] ne "\t") { i = i - 1 }
    device = w[i+1:]
}
stats (|$op_model| > 0 ? '$op_model' : '$std_model') using 1 nooutput
xlo = STATS_min / 1.3; xhi = STATS_max * 1.3

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 1400,580 font ",10"
} else {
    set terminal png size 1400,580
}
set output out
set multiplot layout 1,2 title sprintf("Standard vs one-pass attention, d = %d, %s: %s", dim, \
    causal eq 'yes' ? "causal" : "not causal", device)
set logscale xy
set xrange [xlo:xhi]
set format x "%.0f"
set format y "10^{%L}"
set xlabel "sequence length N (B x N fixed)"
set grid
set key top left
red = "#cc3311"; blue = "#0077bb"

set title "HBM traffic of one forward pass (bytes read + written)"
set ylabel "bytes"
# Measured and counted series only where the CSV has numbers for them.
cmd = 'plot $std_model using 1:2 with linespoints lw 2 pt 7 lc rgb red title "standard, model", ' . \
      '$op_model using 1:2 with linespoints lw 2 pt 7 lc rgb blue title "one-pass, model (K/V re-read per query row)"'
if (|$std_meas| > 0) cmd = cmd . ', $std_meas using 1:2 with linespoints dt 2 lw 2 pt 5 lc rgb red title "standard, measured (GPU counters)"'
if (|$op_meas| > 0) cmd = cmd . ', $op_meas using 1:2 with linespoints dt 2 lw 2 pt 5 lc rgb blue title "one-pass, measured (GPU counters)"'
if (|$std_ledger| > 0) cmd = cmd . ', $std_ledger using 1:2 with points pt 6 ps 2 lc rgb red title "standard, counted (CPU ledger)"'
if (|$op_ledger| > 0) cmd = cmd . ', $op_ledger using 1:2 with points pt 6 ps 2 lc rgb blue title "one-pass, counted (CPU ledger)"'
eval cmd

set title "Peak memory: Q, K, V, O + the N x N intermediates"
set ylabel "bytes"
plot $std_peak using 1:2 with linespoints lw 2 pt 7 lc rgb red title "standard (S and P: 2 B H N^2 elements)", \
     $op_peak using 1:2 with linespoints lw 2 pt 7 lc rgb blue title "one-pass (nothing of size N x N)"
unset multiplot
