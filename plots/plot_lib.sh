# Sourced by the plots/draw_*.sh scripts (not named draw_*.sh, so that
# plots/draw.sh does not run it as one of them):
#   source "$HERE/plot_lib.sh"
#
# gp PNG GNUPLOT-ARGS...: draws, and prints PNG if gnuplot wrote it (the
# only thing a draw script prints: plots/draw.sh counts these). gnuplot's
# "Skipping data file with no valid points" is expected where a series has no
# data in this run (the measured HBM bytes of a CPU run: no hardware counters;
# a kernel the shape did not run): it is replaced by one line that says so.
gp() {
    local png=$1 err; shift; rm -f "$png"
    err=$(gnuplot "$@" 2>&1 >/dev/null)
    if grep -q 'Skipping data file with no valid points' <<<"$err"; then
        echo "note: $(basename "$png"): $(grep -c 'Skipping data file with no valid points' <<<"$err") series without points in this run (no counters on a CPU, or a kernel that did not run this shape): left out" >&2
    fi
    grep -v -e 'Skipping data file with no valid points' -e '^ *$' -e '^ *\^ *$' -e '^ *".*", line [0-9]*: *$' <<<"$err" >&2 || true
    if [ -s "$png" ]; then echo "$png"; fi
}

# col CSV NAME: the column number of NAME, from the CSV's header.
col() { head -1 "$1" | tr ',' '\n' | grep -n -x "$2" | cut -d: -f1; }
