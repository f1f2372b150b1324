# Sourced by the plots/draw_*.sh scripts (not named draw_*.sh, so that
# plots/draw.sh does not run it as one of them):
#   source "$HERE/plot_lib.sh"
#
# gp PNG GNUPLOT-ARGS...: draws, and prints PNG if gnuplot wrote it. The
# warning for a line with no points (measured bytes on a CPU run) is dropped.
gp() {
    local png=$1; shift; rm -f "$png"
    { gnuplot "$@" 2>&1 1>&3 | { grep -v 'Skipping data file with no valid points' || true; } >&2; } 3>&1
    if [ -s "$png" ]; then echo "$png"; fi
}

# col CSV NAME: the column number of NAME, from the CSV's header.
col() { head -1 "$1" | tr ',' '\n' | grep -n -x "$2" | cut -d: -f1; }
