# Stage 08: backward TFLOP/s of the tensor-core kernels against PyTorch's
# SDPA backends (FlashAttention-2 = "flash", cuDNN) at the issue's shapes
# (bf16, B N = 16384 tokens, H d = 2048; backward counted as 2.5 forward
# FLOPs), one session. Input (plots/draw_backward.sh): dir, desc;
# backward_speed.dat with "label ours-atomic ours-det ours-k32 fa2 cudnn"
# (the best configuration of each kernel; NaN where it did not run), k32.
set terminal pngcairo size 1200,520 font ",11"
set output dir.'/backward_speed_gpu.png'
set title sprintf("Backward TFLOP/s, bf16, B N = 16384, H d = 2048 (d, N, causal)\n%s", desc)
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set yrange [0:*]
set ylabel "TFLOP/s (2.5 x forward FLOPs / backward time)"
set key top left
set xtics rotate by -30
# k32 (1 or 0): whether bwd-tc-k32 has a value (an all-NaN column stops a histogram)
if (k32) {
plot dir.'/backward_speed.dat' using 2:xtic(1) title "bwd-tc-atomic" lc rgb "#0077bb", \
     ''                       using 3 title "bwd-tc-det" lc rgb "#33bbee", \
     ''                       using 4 title "bwd-tc-k32 (d = 64)" lc rgb "#009988", \
     ''                       using 5 title "FA-2 (SDPA flash)" lc rgb "#ee7733", \
     ''                       using 6 title "cuDNN" lc rgb "#cc3311"
} else {
plot dir.'/backward_speed.dat' using 2:xtic(1) title "bwd-tc-atomic" lc rgb "#0077bb", \
     ''                       using 3 title "bwd-tc-det" lc rgb "#33bbee", \
     ''                       using 5 title "FA-2 (SDPA flash)" lc rgb "#ee7733", \
     ''                       using 6 title "cuDNN" lc rgb "#cc3311"
}
