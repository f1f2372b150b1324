# Stage 03 beyond one SM: effective bandwidth (the matrix read once and
# written once, over the time) against the number of rows, at a fixed row
# length. One block per row (safe, online) leaves SMs idle until there are
# rows for all of them; online-split cuts few rows across blocks, merge-wave
# cuts them to one wave of blocks that hold their chunks in registers;
# merge-cluster holds each row in a cluster's registers (2 accesses),
# merge-persist with clusters that stay resident and loop over rows.
# Input: dir, dev, cols; data from draw_softmax_split.sh (x gbps copy_gbps).
set terminal pngcairo size 900,560 font ",11"
set output dir.'/softmax_split_rows.png'
set title "Softmax, few long rows: GB/s against rows, cols = ".cols." fp32\n".dev
set logscale x 2
set logscale y 2
set xlabel "rows"
set ylabel "GB/s (read once + write once)"
set grid
set key outside right font ",10"
f(i) = dir.'/split_rows_'.i.'.dat'
plot f('copy') using 1:3 with lines lw 2 dt 2 lc rgb "black" title "copy ceiling (cudaMemcpy, 1 GiB)", \
     f('copy') using 1:2 with linespoints lw 2 lc rgb "#777777" title "copy kernel, same shape", \
     f('safe') using 1:2 with linespoints lw 2 lc rgb "#ee7733" title "safe (4 acc)", \
     f('online') using 1:2 with linespoints lw 2 lc rgb "#0077bb" title "online (3 acc)", \
     f('online-split') using 1:2 with linespoints lw 2 lc rgb "#cc3311" title "online-split (3 acc + partials)", \
     f('merge-wave') using 1:2 with linespoints lw 2 lc rgb "#ee3377" title "merge-wave (2 acc + partials, one wave)", \
     f('merge-cluster') using 1:2 with linespoints lw 2 lc rgb "#009988" title "merge-cluster (2 acc)", \
     f('merge-persist') using 1:2 with linespoints lw 2 lc rgb "#117733" title "merge-persist (2 acc, persistent clusters)"
