# Stage 07: K/V GB/s against the cache length, B = 1 (left) and B = 8 (right):
# stage 06's packed decode (one block per (batch, K/V-head group)), stage 07's
# split-KV decode, PyTorch's SDPA flash and cuDNN backends on the same shapes
# in the same session, and the read-only ceiling measured on the same byte
# counts. Data: the .dat tables plots/draw_gqa.sh cuts from split_kv.csv and
# torch_decode.csv (Nk, GB/s).
#   gnuplot -e "dir='build/bench'; info='...'" plots/split_kv_bandwidth.gp
if (!exists("dir")) dir = 'build/bench'
if (!exists("info")) info = ''
set terminal pngcairo size 1400,560 font ",11"
set output dir.'/split_kv_bandwidth.png'
set multiplot layout 1,2 title "Decode: K/V GB/s against the cache length (".info.")"
set logscale x 2
set grid
set key bottom right
set xlabel "K/V length Nk (keys per sequence)"
set ylabel "GB/s of K/V read (each byte once)"
set yrange [0:*]
do for [b in "1 8"] {
    set title "B = ".b
    plot dir.'/splitkv_b'.b.'_ceiling.dat' using 1:2 with lines lw 2 dt 2 lc rgb "black" title "read-only ceiling", \
         dir.'/splitkv_b'.b.'_split.dat' using 1:2 with linespoints lw 2 title "07 split-KV", \
         dir.'/splitkv_b'.b.'_packed.dat' using 1:2 with linespoints lw 2 title "06 packed (no split)", \
         dir.'/splitkv_b'.b.'_flash.dat' using 1:2 with linespoints lw 1 title "torch flash (FA2)", \
         dir.'/splitkv_b'.b.'_cudnn.dat' using 1:2 with linespoints lw 1 title "torch cuDNN"
}
unset multiplot
