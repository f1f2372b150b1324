# Stage 07's paged K/V cache: against the page size P, on one shape, each
# paged kernel beside its contiguous twin timed in the same run. Left: K/V
# GB/s. Middle: paged / contiguous, with issue 19's targets (0.95 for
# P >= 64, 0.85 at P = 16). Right: the DRAM bytes the counters measured per
# byte of K/V held (1 = each byte read once). Data: page_*.dat cut by
# plots/draw_dec.sh (columns: P, GB/s, contiguous GB/s, measured MB, K/V MB).
#   gnuplot -e "dir='build/bench'; info='...'" plots/page_size.gp
if (!exists("dir")) dir = 'build/bench'
if (!exists("info")) info = ''
set terminal pngcairo size 1500,520 font ",11"
set output dir.'/page_size.png'
set multiplot layout 1,3 title "Paged K/V cache against the page size (".info.")"
set logscale x 2
set xrange [12:340]
set xtics ("16" 16, "32" 32, "64" 64, "128" 128, "256" 256)
set grid
set xlabel "page size P (tokens per page)"
set key bottom right
set title "K/V GB/s"
set ylabel "GB/s of K/V read (each byte once)"
set yrange [0:*]
plot dir.'/page_split-paged.dat' using 1:3 with lines lw 1 dt 2 lc 1 title "07 split (contiguous)", \
     dir.'/page_split-paged.dat' using 1:2 with linespoints lw 2 pt 7 lc 1 title "07 split-paged", \
     dir.'/page_split-paged-lanes.dat' using 1:2 with linespoints lw 2 pt 5 lc 3 title "07 split-paged-lanes", \
     dir.'/page_split-tc-paged.dat' using 1:3 with lines lw 1 dt 2 lc 2 title "07 split-tc (contiguous)", \
     dir.'/page_split-tc-paged.dat' using 1:2 with linespoints lw 2 pt 7 lc 2 title "07 split-tc-paged"
set title "paged / contiguous (same run)"
set ylabel "ratio"
set yrange [0.5:1.1]
set arrow 1 from 64, 0.95 to 340, 0.95 nohead dt 3 lc rgb "red"
set arrow 2 from 12, 0.85 to 20, 0.85 nohead dt 3 lc rgb "red"
plot dir.'/page_split-paged.dat' using 1:($2 / $3) with linespoints lw 2 pt 7 lc 1 title "split-paged / split", \
     dir.'/page_split-paged-lanes.dat' using 1:($2 / $3) with linespoints lw 2 pt 5 lc 3 title "split-paged-lanes / split", \
     dir.'/page_split-tc-paged.dat' using 1:($2 / $3) with linespoints lw 2 pt 7 lc 2 title "split-tc-paged / split-tc"
unset arrow 1
unset arrow 2
set title "DRAM bytes measured / K/V bytes"
set ylabel "bytes read per K/V byte"
set yrange [0:*]
plot dir.'/page_split-paged.dat' using 1:($4 / $5) with linespoints lw 2 pt 7 lc 1 title "split-paged", \
     dir.'/page_split-paged-lanes.dat' using 1:($4 / $5) with linespoints lw 2 pt 5 lc 3 title "split-paged-lanes", \
     dir.'/page_split-tc-paged.dat' using 1:($4 / $5) with linespoints lw 2 pt 7 lc 2 title "split-tc-paged", \
     1 with lines lw 1 dt 2 lc rgb "black" title "each byte once"
unset multiplot
