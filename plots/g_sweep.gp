# Stage 07: K/V GB/s against the group size g = Hq / Hkv: the CUDA-core
# split (stage 06's kernel) and split-tc (tensor cores), the measured
# read-only ceiling of each shape, PyTorch's SDPA flash and cuDNN where the
# round timed them (g = 1, 4, 32 of issue 19's table), and the CUDA-core FMA
# bound 67e12 / (2 g / es) bytes/s (an H200: 132 SMs x 128 fp32 lanes x
# 2 FLOPs x 1.98 GHz; each K/V element of es bytes feeds g FMAs).
#   gnuplot -e "dir='build/bench'; info='...'; es=2" plots/g_sweep.gp
if (!exists("dir")) dir = 'build/bench'
if (!exists("info")) info = ''
if (!exists("es")) es = 2
set terminal pngcairo size 900,560 font ",11"
set output dir.'/g_sweep.png'
set title "Decode: K/V GB/s against the group size g\n(".info.")"
set logscale x 2
set grid
set key bottom left
set xlabel "g = Hq / Hkv (query heads per K/V head)"
set ylabel "GB/s of K/V read (each byte once)"
set xrange [0.8:40]
set yrange [0:6000]
fma(g) = 67e12 / (2.0 * g / es) / 1e9
plot dir.'/gsweep_ceiling.dat' using 1:2 with lines lw 2 dt 2 lc rgb "black" title "read-only ceiling", \
     dir.'/gsweep_split.dat' using 1:2 with linespoints lw 2 pt 7 title "07 split (CUDA cores)", \
     dir.'/gsweep_split-tc.dat' using 1:2 with linespoints lw 2 pt 7 title "07 split-tc (tensor cores)", \
     dir.'/gsweep_flash.dat' using 1:2 with points pt 6 ps 1.5 lw 2 lc rgb "dark-orange" title "torch flash (FA2)", \
     dir.'/gsweep_cudnn.dat' using 1:2 with points pt 4 ps 1.5 lw 2 lc rgb "dark-violet" title "torch cuDNN", \
     (x >= 4 ? fma(x) : 1/0) with lines lw 1 dt 3 lc rgb "red" title "CUDA-core FMA bound (2g/es FLOP per byte)"
