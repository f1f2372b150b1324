# Stage 07: K/V GB/s against the cache length, B = 1 (left) and B = 8 (right):
# the kernels named in `series` (default: stage 06's packed decode and stage
# 07's split-KV), PyTorch's SDPA flash and cuDNN backends on the same shapes
# in the same session, and the read-only ceiling measured on the same byte
# counts. Data: .dat tables (Nk, GB/s) named TAG_bB_SERIES.dat, cut from the
# CSVs by plots/draw_gqa.sh (split_kv.csv, tag splitkv) or plots/draw_dec.sh
# (the GPU round's dec.csv, tag declen, with split-tc and the paged kernel).
#   gnuplot -e "dir='build/bench'; info='...'" plots/split_kv_bandwidth.gp
if (!exists("dir")) dir = 'build/bench'
if (!exists("info")) info = ''
if (!exists("tag")) tag = 'splitkv'
if (!exists("out")) out = dir.'/split_kv_bandwidth.png'
if (!exists("series")) series = 'split packed flash cudnn'
name(s) = s eq 'split' ? '07 split-KV (CUDA cores)' : s eq 'packed' ? '06 packed (no split)' : \
          s eq 'split-tc' ? '07 split-tc (tensor cores)' : s eq 'split-tc-paged' ? '07 split-tc-paged (P = 64)' : \
          s eq 'split-paged' ? '07 split-paged (P = 64)' : s eq 'flash' ? 'torch flash (FA2)' : \
          s eq 'cudnn' ? 'torch cuDNN' : s
lib(s) = (s eq 'flash' || s eq 'cudnn')
set terminal pngcairo size 1400,560 font ",11"
set output out
set multiplot layout 1,2 title "Decode: K/V GB/s against the cache length (".info.")"
set logscale x 2
set grid
set key bottom right
set xlabel "K/V length Nk (keys per sequence)"
set ylabel "GB/s of K/V read (each byte once)"
set yrange [0:*]
do for [b in "1 8"] {
    set title "B = ".b
    plot dir.'/'.tag.'_b'.b.'_ceiling.dat' using 1:2 with lines lw 2 dt 2 lc rgb "black" title "read-only ceiling", \
         for [s in series] dir.'/'.tag.'_b'.b.'_'.s.'.dat' using 1:2 with linespoints \
             lw (lib(s) ? 1 : 2) pt (lib(s) ? 6 : 7) title name(s)
}
unset multiplot
