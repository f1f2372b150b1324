# Stage 06: bytes and time against the group size g = Hq / Hkv for the three
# ways of serving grouped K/V heads, prefill (top) and decode (bottom).
# Data: the .dat tables plots/draw_gqa.sh cuts from gqa.csv (g, measured or
# counted bytes, model bytes, time in ms).
#   gnuplot -e "dir='build/bench'; info='...'; meas='...'" plots/gqa_groups.gp
# What to look for: in decode, packed's bytes stay at the K/V size whatever g
# (each tile loaded once per group), indexed's model grows like g while its
# DRAM bytes stay near packed's where the L2 serves the repeats, replicated
# pays the copy; in prefill the three coincide in time (the kernel is
# compute-bound) and replicated alone moves more bytes.
if (!exists("dir")) dir = 'build/bench'
if (!exists("info")) info = ''
if (!exists("meas")) meas = 'bytes'
set terminal pngcairo size 1400,1000 font ",11"
set output dir.'/gqa_groups.png'
set multiplot layout 2,2 title "Stage 06: MQA/GQA three ways (".info.")"
set logscale x 2
set xrange [0.8:40]
set xtics (1, 2, 4, 8, 16, 32)
set grid
set key top left
set logscale y
set xlabel "group size g = Hq / Hkv"
do for [regime in "prefill decode"] {
    set ylabel meas." (points) and model (dashed), MB"
    set title regime.": bytes moved"
    plot for [m in "replicated indexed packed"] dir.'/gqa_'.regime.'_'.m.'.dat' using 1:($2/1e6) with linespoints lw 2 title m, \
         for [m in "replicated indexed packed"] dir.'/gqa_'.regime.'_'.m.'.dat' using 1:($3/1e6) with lines dt 2 lw 1 notitle
    set ylabel "time, ms (median)"
    set title regime.": time"
    plot for [m in "replicated indexed packed"] dir.'/gqa_'.regime.'_'.m.'.dat' using 1:4 with linespoints lw 2 title m
}
unset multiplot
