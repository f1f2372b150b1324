# Clustered bars, one cluster a shape or kernel: the style the notes' bar
# charts share (loaded by the plot scripts kept beside their data in
# notes/data, after they set the terminal and output).
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
