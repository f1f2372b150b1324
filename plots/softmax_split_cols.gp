# Stage 03, every path: effective bandwidth against the row length at a
# fixed rows x cols, with the copy ceiling. Where the row fits one SM the
# on-chip variants hold it (2 accesses); beyond, the cluster does, up to 16
# blocks (merge-cluster one row a cluster, merge-persist with persistent
# clusters); past that only the multi-sweep kernels run.
# Input: dir, dt, dev; data from draw_softmax_split.sh (x gbps copy_gbps).
set terminal pngcairo size 900,560 font ",11"
set output dir.'/softmax_split_cols_'.dt.'.png'
set title "Softmax paths of stage 03, GB/s against row length, ".dt."\n".dev
set logscale x 2
set format x "2^{%L}"
set xlabel "cols (row length); rows x cols fixed"
set ylabel "GB/s (read once + write once)"
set yrange [0:*]
set grid
set key outside right font ",10"
f(i) = dir.'/split_cols_'.dt.'_'.i.'.dat'
plot f('safe') using 1:3 with lines lw 2 dt 2 lc rgb "black" title "copy ceiling", \
     f('safe') using 1:($3*2/3) with lines lw 1 dt 3 lc rgb "black" title "copy x 2/3 (3 accesses)", \
     f('safe') using 1:2 with linespoints lw 2 lc rgb "#ee7733" title "safe (4 acc)", \
     f('online') using 1:2 with linespoints lw 2 lc rgb "#0077bb" title "online (3 acc)", \
     f('safe-onchip') using 1:2 with linespoints lw 2 dt 4 lc rgb "#aa3377" title "safe-onchip (2 acc)", \
     f('merge-onchip') using 1:2 with linespoints lw 2 lc rgb "#33bbee" title "merge-onchip (2 acc)", \
     f('online-split') using 1:2 with points pt 7 ps 1.5 lc rgb "#cc3311" title "online-split", \
     f('merge-wave') using 1:2 with points pt 5 ps 1.5 lc rgb "#ee3377" title "merge-wave (2 acc)", \
     f('merge-cluster') using 1:2 with linespoints lw 3 lc rgb "#009988" title "merge-cluster (2 acc)", \
     f('merge-persist') using 1:2 with linespoints lw 3 dt 1 pt 9 lc rgb "#117733" title "merge-persist (2 acc)"
