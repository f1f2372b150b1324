#!/usr/bin/env bash
# `make sanitize`, after the AddressSanitizer + UBSan build of everything into
# $SAN_BUILD (CPU-only; why: the Makefile's comment at `sanitize`). Runs the
# tests, then every stage program found in $SAN_BUILD/bin on a small shape
# (with --csv, --save-npy, then --load-npy of what it saved), and bad-input
# runs that must exit 2 (a missing --load-npy directory, a cut .npy file, an
# unwritable --csv, a CSV of another layout). A stage none of whose own
# implementations runs on the CPU (the tensor-core ladder) must say so and
# exit 2. Any sanitizer report (leaks included) fails. Logs: $SAN_BUILD/sanitize/.
#   SAN_BUILD=build-san bash tools/sanitize.sh
set -uo pipefail
B=${SAN_BUILD:-build-san}
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
L=$B/sanitize
rm -rf "$L"
mkdir -p "$L"
fail=0 n=0
# san WANT_RC LOGNAME COMMAND...
san() {
    local want=$1 log=$L/$2 rc
    shift 2
    n=$((n + 1))
    "$@" >"$log.out" 2>"$log.err"
    rc=$?
    if grep -qE 'ERROR: [A-Za-z]+Sanitizer|runtime error:|SUMMARY: [A-Za-z]+Sanitizer' "$log.err" "$log.out"; then
        echo "FAIL (sanitizer report): $*"
        grep -hE -A30 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$log.err" "$log.out" | head -40
        fail=1
    elif [ "$rc" != "$want" ]; then
        echo "FAIL (exit $rc, expected $want): $*"
        tail -n 15 "$log.err"
        fail=1
    else
        echo "ok  $*"
    fi
}
for t in "$B"/bin/test_*; do
    case $t in *.so*) continue ;; esac
    san 0 "$(basename "$t")" env STF_BIN_DIR="$B/bin" "$t"
done
printf 'a,b,c\n1,2,3\n' >"$L/foreign.csv"
progs=$(ls "$B/bin" | grep -E '^[0-9][0-9][a-z]?_' | sort)
[ -n "$progs" ] || { echo "FAIL: no stage programs in $B/bin"; fail=1; }
cut_from=
for p in $progs; do
    P=$B/bin/$p
    h=$("$P" --help)
    case "$h" in
        *--seq*) shape="--batch 1 --heads 2 --seq 33 --dim 32"; in=q ;;
        *) shape="--rows 5 --cols 1000"; in=x ;;
    esac
    # a decode stage (07) runs nothing of its own in prefill: then its decode shape
    nothing() {
        ! "$P" --device cpu $shape --iters 1 --warmup 0 >/dev/null 2>"$L/$p.probe" &&
            grep -q "none of this stage's own implementations ran" "$L/$p.probe"
    }
    if [ $in = q ] && nothing; then shape="--batch 1 --heads 2 --seq-q 1 --seq-kv 33 --dim 32"; fi
    # a stage with nothing on the CPU (05b): exit 2 with the reasons, and no files left
    if ! nothing; then
        san 0 "$p" "$P" --device cpu $shape --iters 1 --warmup 0 --csv "$L/$p.csv" --save-npy "$L/$p.npy"
        san 0 "$p.load" "$P" --device cpu --iters 1 --warmup 0 --load-npy "$L/$p.npy"
        cut_from=$L/$p.npy/$in.npy
    else
        san 2 "$p.nothing-ran" "$P" --device cpu $shape --iters 1 --warmup 0 --save-npy "$L/$p.npy"
        [ -z "$(ls -A "$L/$p.npy" 2>/dev/null)" ] || { echo "FAIL: $p left files in $L/$p.npy after exit 2"; fail=1; }
    fi
    san 2 "$p.missing" "$P" --iters 1 --warmup 0 --load-npy "$L/no-such-dir"
    if [ -n "$cut_from" ] && [ -f "$L/$p.npy/$in.npy" ]; then
        mkdir -p "$L/$p.cut" && head -c 200 "$L/$p.npy/$in.npy" >"$L/$p.cut/$in.npy"
        san 2 "$p.cut" "$P" --iters 1 --warmup 0 --load-npy "$L/$p.cut"
    fi
    san 2 "$p.csv-dir" "$P" $shape --iters 1 --warmup 0 --csv "$L/no-such-dir/a.csv"
    san 2 "$p.csv-layout" "$P" $shape --iters 1 --warmup 0 --csv "$L/foreign.csv"
    san 2 "$p.unknown-option" "$P" --iters 1 --warmup 0 --frobnicate 3
done
if [ $fail = 0 ]; then
    echo "sanitize: $n runs, no sanitizer report"
else
    echo "sanitize: FAILED (logs in $L)"
    exit 1
fi
