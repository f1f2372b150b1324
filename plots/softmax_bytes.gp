# Bytes per element moved by each softmax implementation: the model (loads +
# stores per element) beside what was counted (CPU ledger) or measured (GPU
# DRAM counters). Input: dir, holding bytes_fp32.dat / bytes_fp16.dat
# ("impl model measured", in elements of the storage type).
set terminal pngcairo size 1000,460 font ",11"
set output dir.'/softmax_bytes.png'
set multiplot layout 1,2 title "Memory accesses per element: model vs counted/measured"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:5]
set ylabel "accesses per element (bytes / element size)"
set grid ytics
set key top right
set xtics rotate by -20
do for [dt in "fp32 fp16"] {
    info = system("cat ".dir."/bytes_".dt.".info 2>/dev/null")
    set title dt." ".info
    plot dir.'/bytes_'.dt.'.dat' using 2:xtic(1) title "model" lc rgb "#4477aa", \
         '' using 3 title "counted / measured" lc rgb "#ee6677"
}
unset multiplot
