# Stage 08: the backward pass's HBM traffic (left) and peak memory (right)
# against N, the standard backward (P, dP, dS in HBM, N x N) against
# FlashAttention-2's (P recomputed from Q, K, L). Lines: the closed forms
# (backward_impls.c); points: what was counted (CPU ledger) or measured (GPU
# DRAM counters; peak: the drop of free device memory).
# Input (plots/draw_backward.sh): dir, dev (cpu|gpu), fa (the FA kernel's
# name), desc; backward_<dev>_standard.dat and backward_<dev>_fa.dat with
# "N model counted peak peak_measured".
set terminal pngcairo size 1200,520 font ",11"
set output dir.'/backward_traffic_'.dev.'.png'
set multiplot layout 1,2 title sprintf("Backward pass: standard (P stored) against FlashAttention-2 (P recomputed), %s\n%s", \
    dev eq 'gpu' ? "bf16, B N = 16384 tokens, H = 16, d = 64" : "fp32, B = H = 1, d = 64", desc)
set logscale xy
set grid
set xlabel "sequence length N"
set key top left
cnt = dev eq 'gpu' ? "DRAM counters" : "ledger"
set ylabel "HBM bytes read + written, backward"
plot dir.'/backward_'.dev.'_standard.dat' using 1:2 with lines lw 2 lc rgb "#cc3311" title "standard, model", \
     ''                                   using 1:3 with points pt 7 ps 1.3 lc rgb "#cc3311" title "standard, ".cnt, \
     dir.'/backward_'.dev.'_fa.dat'       using 1:2 with lines lw 2 lc rgb "#0077bb" title fa.", model", \
     ''                                   using 1:3 with points pt 5 ps 1.3 lc rgb "#0077bb" title fa.", ".cnt
set ylabel "peak memory, bytes (inputs, outputs, workspace)"
plot dir.'/backward_'.dev.'_standard.dat' using 1:4 with linespoints lw 2 pt 7 lc rgb "#cc3311" title "standard, allocated", \
     ''                                   using 1:5 with points pt 6 ps 1.5 lc rgb "#cc3311" title "standard, measured (GPU)", \
     dir.'/backward_'.dev.'_fa.dat'       using 1:4 with linespoints lw 2 pt 5 lc rgb "#0077bb" title fa.", allocated", \
     ''                                   using 1:5 with points pt 4 ps 1.5 lc rgb "#0077bb" title fa.", measured (GPU)"
unset multiplot
