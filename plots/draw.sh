#!/usr/bin/env bash
# Draws every plot from the CSV files in DIR (default $BENCH_DIR, default
# build/bench) into the same folder. Called by `make plots` and `make bench`.
#
# Contract (draw scripts are added against it; nothing here names a plot):
#   - Runs every plots/draw_*.sh, in sorted order (LC_ALL=C), with bash and
#     these variables exported:
#       DIR   the bench folder: the CSV files are read from it, the PNGs
#             (and any .dat files cut from the CSV) are written into it
#       HERE  the plots folder (absolute path): the .gp scripts live there
#   - A draw script draws its plots if its CSV exists, and prints the path
#     of each PNG it drew, one per line; if its CSV is missing it prints
#     nothing and exits 0. A non-zero exit means a plot failed.
#   - This script prints the PNGs drawn; it exits 1 if a draw script failed
#     or if nothing at all was drawn (no CSV: run `make bench` first).
# Needs gnuplot (5.4 or newer for the attention plot) and awk.
set -uo pipefail
DIR=${DIR:-${BENCH_DIR:-build/bench}}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -d "$DIR" ] || { echo "draw: no folder $DIR: run 'make bench' first"; exit 1; }
export DIR HERE
command -v gnuplot >/dev/null || { echo "draw: gnuplot is not installed (apt-get install gnuplot-nox)"; exit 1; }

pngs=() failed=()
for s in $(LC_ALL=C ls -1 "$HERE"/draw_*.sh | LC_ALL=C sort); do
    out=$(bash "$s")
    rc=$?
    [ $rc = 0 ] || failed+=("$(basename "$s") (exit $rc)")
    while IFS= read -r line; do
        case $line in *.png) pngs+=("$line") ;; ?*) echo "$line" ;; esac
    done <<<"$out"
done
if [ ${#pngs[@]} -gt 0 ]; then
    echo "drew ${#pngs[@]} plot(s) in $DIR:"
    printf '  %s\n' "${pngs[@]#"$DIR"/}"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "draw: FAILED: ${failed[*]}"
    exit 1
fi
if [ ${#pngs[@]} = 0 ]; then
    echo "draw: no CSV in $DIR to draw from: run 'make bench' first"
    exit 1
fi
