# Measured DRAM accesses per element (GPU counters, or the CPU ledger) against
# the row length: where the model's re-reads are served by the L2 the
# measured line falls below the model's step. Input: dir, dt, dev.
set terminal pngcairo size 900,560 font ",11"
set output dir.'/softmax_traffic_'.dt.'.png'
set title "DRAM accesses per element, measured (solid) vs model (dashed), ".dt."\n".dev
set logscale x 2
set format x "2^{%L}"
set xlabel "cols (row length); rows x cols fixed"
set ylabel "bytes moved / (elements x element size)"
set yrange [0:5]
set grid
set key outside right
f(i) = dir.'/sweep_'.dt.'_'.i.'.dat'
# an implementation draw.sh does not list yet: no curve, no error
g(i) = '< cat '.f(i).' 2>/dev/null || true'
plot f('copy') using 1:5 with linespoints lw 2 lc rgb "black" title "copy", \
     f('naive') using 1:5 with linespoints lw 2 lc rgb "#cc3311" title "naive", \
     f('naive') using 1:4 with lines dt 2 lc rgb "#cc3311" notitle, \
     f('safe') using 1:5 with linespoints lw 2 lc rgb "#ee7733" title "safe", \
     f('safe') using 1:4 with lines dt 2 lc rgb "#ee7733" notitle, \
     f('online') using 1:5 with linespoints lw 2 lc rgb "#0077bb" title "online", \
     f('online') using 1:4 with lines dt 2 lc rgb "#0077bb" notitle, \
     g('merge-onchip') using 1:5 with linespoints lw 2 lc rgb "#009988" title "merge, row on chip", \
     g('merge-onchip') using 1:4 with lines dt 2 lc rgb "#009988" notitle
