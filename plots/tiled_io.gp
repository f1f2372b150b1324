# Stage 05: the IO-complexity experiment. HBM bytes counted by the CPU ledger
# against the simulated on-chip memory M (--sram), log-log, for one head of
# length N and head dimension d: standard and one-pass attention do not depend
# on M (flat lines); the tiled orders fall like 1/M, parallel to Dao et al.'s
# Theorem 2 curve N^2 d^2 / M, until one tile holds the whole sequence and only
# Q, K, V, O are left to move.
# Input (plots/draw_tiled.sh): dir with tiled_io_fa1.dat, tiled_io_fa2.dat
# ("M bytes tiles"), and std, op (bytes), n, d, dev.
set terminal pngcairo size 900,600 font ",11"
set output dir.'/tiled_io.png'
set logscale xy
set format x "%.0s%cB"
set format y "10^{%L}"
set xlabel "on-chip memory M (bytes, --sram)"
set ylabel "HBM bytes read + written (counted)"
set title sprintf("Counted HBM traffic against on-chip memory M\nN = %d, d = %d, one head, fp32 (%s)", n, d, dev)
set grid
set key top right
floor = 4.0 * 4 * n * d
thm(M) = 16.0 * n * n * d * d / M
plot std with lines lw 2 lc rgb "#cc3311" title "standard (S and P in HBM)", \
     op with lines lw 2 lc rgb "#0077bb" title "one-pass (K, V re-read per query row)", \
     dir.'/tiled_io_fa1.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb "#009988" title "FA1 order (K/V outer; O, l, m in HBM)", \
     dir.'/tiled_io_fa2.dat' using 1:2 with linespoints lw 2 pt 5 lc rgb "#ee7733" title "FA2 order (Q outer)", \
     thm(x) with lines dt 2 lw 2 lc rgb "#555555" title "N^2 d^2 / M  (M in fp32 words, x 4 bytes)", \
     floor with lines dt 3 lw 2 lc rgb "#999999" title "Q, K, V, O once"
