# Stage 05: the stage's sweep (B N fixed, fp32) for one head dimension d.
# Left: TFLOP/s against N. Middle: HBM bytes against N, the model (dashed)
# and what was measured (GPU DRAM counters) or counted (CPU ledger) (solid).
# Right: bytes against the tile size at one shape: FA1 order against Bc,
# FA2 order against Br, model and measured: the model falls like 1/tile, the
# L2 keeps the measured bytes below it.
# Input (plots/draw_tiled.sh): dir, d, dev; tiled_sweep_<d>_<impl>.dat
# ("N tflops model measured") and tiled_tiles_<d>_<impl>.dat ("tile model measured").
set terminal pngcairo size 1500,500 font ",10"
set output sprintf("%s/tiled_sweep_d%d.png", dir, d)
set multiplot layout 1,3 title sprintf("Stage 05, fp32, d = %d (%s)", d, dev)
impls = "standard one-pass fa1 fa2 fa2-regtile fa2-regtile-br128"
colors = "#cc3311 #0077bb #009988 #ee7733 #aa3377 #000000"
f(i) = sprintf("%s/tiled_sweep_%d_%s.dat", dir, d, word(impls, i))
ok(i) = system(sprintf("test -s %s && echo 1 || echo 0", f(i))) + 0
set logscale x 2
set xlabel "sequence length N (B N fixed)"
# one N only (QUICK's runs): a range around it, not gnuplot's "empty x range" warning
xs = system(sprintf("cat %s/tiled_sweep_%d_*.dat 2>/dev/null | awk 'NR == 1 { a = b = $1 } $1 < a { a = $1 } $1 > b { b = $1 } END { print a + 0, b + 0 }'", dir, d))
if (word(xs, 1) + 0 > 0 && word(xs, 1) + 0 == word(xs, 2) + 0) set xrange [word(xs, 1) / 2.0 : word(xs, 1) * 2.0]
set grid
set key top left font ",9"
set title "speed"
set ylabel "TFLOP/s (4 d per visible pair)"
plot for [i=1:6] (ok(i) ? f(i) : '/dev/null') using 1:2 with linespoints lw 2 pt 7 lc rgb word(colors, i) title word(impls, i)
set logscale y
set format y "10^{%L}"
set title "HBM bytes: model (dashed), measured or counted (solid)"
set ylabel "bytes"
plot for [i=1:6] (ok(i) ? f(i) : '/dev/null') using 1:3 with lines dt 2 lw 1 lc rgb word(colors, i) notitle, \
     for [i=1:6] (ok(i) ? f(i) : '/dev/null') using 1:4 with linespoints lw 2 pt 7 lc rgb word(colors, i) title word(impls, i)
set autoscale x
g(i) = sprintf("%s/tiled_tiles_%d_%s.dat", dir, d, i == 1 ? "fa1" : "fa2")
okg(i) = system(sprintf("test -s %s && echo 1 || echo 0", g(i))) + 0
set xlabel "tile size (fa1: Bc with Br = 64; fa2: Br with Bc = 64)"
set title "bytes against the tile size"
if (okg(1) + okg(2) == 0) {
    unset logscale
    set format y "%g"
    unset ytics
    set label 1 "no tile-size runs in this CSV" at graph 0.5, 0.5 center
    plot [0:1] [0:1] NaN notitle
} else {
plot for [i=1:2] (okg(i) ? g(i) : '/dev/null') using 1:2 with linespoints dt 2 lw 2 pt 6 lc rgb word(colors, i + 2) title word("fa1 fa2", i)." model", \
     for [i=1:2] (okg(i) ? g(i) : '/dev/null') using 1:3 with linespoints lw 2 pt 7 lc rgb word(colors, i + 2) title word("fa1 fa2", i)." measured"
}
unset multiplot
