# Effective bandwidth (matrix read once + written once, over time) of each
# softmax implementation against the row length, with the measured copy
# bandwidth as the ceiling and, dashed, what each multi-pass kernel would
# reach if every access went to DRAM at copy speed (copy * 2 / accesses).
# Input: dir, dt, dev; data from draw.sh (sweep_<dt>_<impl>.dat:
# cols gbps copy_gbps accesses measured_accesses).
set terminal pngcairo size 900,560 font ",11"
set output dir.'/softmax_bandwidth_'.dt.'.png'
set title "Softmax effective bandwidth vs row length, ".dt."\n".dev
set logscale x 2
set format x "2^{%L}"
set xlabel "cols (row length); rows x cols fixed"
set ylabel "GB/s (read once + write once)"
set yrange [0:*]
set grid
set key outside right font ",10"
f(i) = dir.'/sweep_'.dt.'_'.i.'.dat'
# an implementation draw.sh does not list yet: no curve, no error
g(i) = '< cat '.f(i).' 2>/dev/null || true'
plot f('copy') using 1:3 with lines lw 2 dt 2 lc rgb "black" title "copy (ceiling)", \
     f('naive') using 1:2 with linespoints lw 2 lc rgb "#cc3311" title "naive (3 acc)", \
     f('naive') using 1:($3*2/$4) with lines dt 3 lw 2 lc rgb "#cc3311" title "copy x 2/3: 3 accesses, all to DRAM", \
     f('safe') using 1:2 with linespoints lw 2 lc rgb "#ee7733" title "safe (4 acc)", \
     f('safe') using 1:($3*2/$4) with lines dt 3 lw 2 lc rgb "#ee7733" title "copy x 2/4: 4 accesses, all to DRAM", \
     f('online') using 1:2 with linespoints lw 2 lc rgb "#0077bb" title "online (3 acc)", \
     g('merge-onchip') using 1:2 with linespoints lw 2 lc rgb "#009988" title "merge, row on chip (2 acc)"
