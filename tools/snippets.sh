#!/usr/bin/env bash
# Code shown in the notes is copied from marked regions of the source, so it
# cannot drift from what runs.
#
#   bash tools/snippets.sh --check    exit 1, listing each stale snippet with a diff
#   bash tools/snippets.sh --update   rewrite the notes' code blocks (make snippets)
#
# In a source file (C, CUDA, shell: any comment style), a region is the lines
# strictly between two marker lines:
#     /* [snippet:NAME] */        (or // [snippet:NAME], # [snippet:NAME])
#     ...
#     /* [/snippet] */
# NAME is letters, digits, '-' and '_', unique within its file. Marker lines
# of other snippets inside a region are left out, and the region is dedented
# by its common leading whitespace (lines starting with '#', such as
# #pragma, are not dedented and do not count).
# In a note (README.md, notes/**/*.md), the fenced block right after
#     <!-- snippet: path/from/repo/root.c NAME -->
# holds that region; the fence line itself (```c, ```cuda) is kept.
# Written for POSIX awk (mawk on Debian): CI has no python.
set -euo pipefail
mode=${1:-}
case $mode in --check | --update) ;; *) echo "usage: $0 --check|--update" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."

files=$(find README.md notes -name "*.md" -type f | LC_ALL=C sort)
status=0
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for f in $files; do
    grep -q '<!-- snippet:' "$f" || continue
    awk -v note="$f" '
    function fail(msg) { printf "%s:%d: %s\n", note, FNR, msg > "/dev/stderr"; bad = 1 }
    # region(path, name): the dedented lines of the region, in out[1..n]; returns n, or -1
    function region(path, name,    line, inside, n, found, i, ind, min, k) {
        n = 0; inside = 0; found = 0
        while ((getline line < path) > 0) {
            if (line ~ /\[\/snippet\]/) { if (inside) { inside = 0; continue } }
            if (line ~ /\[snippet:[A-Za-z0-9_-]+\]/) {
                if (index(line, "[snippet:" name "]")) {
                    if (found) { close(path); fail("snippet " name " is marked twice in " path); return -1 }
                    found = 1; inside = 1; continue
                }
                if (inside) continue
            }
            if (inside) out[++n] = line
        }
        close(path)
        if (!found) { fail("no marker [snippet:" name "] in " path); return -1 }
        if (inside) { fail("snippet " name " in " path " has no [/snippet] end marker"); return -1 }
        # dedent; preprocessor lines (#pragma at column 0) do not count
        min = -1
        for (i = 1; i <= n; i++) {
            if (out[i] ~ /^[ \t]*$/ || out[i] ~ /^#/) continue
            match(out[i], /^[ \t]*/); ind = RLENGTH
            if (min < 0 || ind < min) min = ind
        }
        for (i = 1; i <= n; i++) {
            if (out[i] ~ /^[ \t]*$/) { out[i] = ""; continue }
            match(out[i], /^[ \t]*/); k = (RLENGTH < min) ? RLENGTH : min
            if (k > 0) out[i] = substr(out[i], k + 1)
        }
        return n
    }
    state == 0 && /^<!-- snippet: [^ ]+ [A-Za-z0-9_-]+ -->[ \t]*$/ {
        print
        split($0, w, " "); path = w[3]; name = w[4]
        if ((getline test < path) < 0) { fail("snippet source " path " does not exist"); state = 0; next }
        close(path)
        state = 1; next
    }
    state == 0 && /<!-- snippet:/ { fail("malformed snippet line (want <!-- snippet: PATH NAME -->)"); print; next }
    state == 1 {
        if ($0 !~ /^```/) { fail("the snippet line must be followed by a fenced code block"); state = 0; print; next }
        print; fence = $0; sub(/[^`].*/, "", fence)
        n = region(path, name)
        if (n < 0) { state = 3; next }   # keep the old block as it is
        for (i = 1; i <= n; i++) print out[i]
        state = 2; next
    }
    state == 2 || state == 3 {
        if (index($0, fence) == 1 && $0 ~ /^`+[ \t]*$/) { print; state = 0; next }
        if (state == 3) print
        next
    }
    { print }
    END {
        if (state != 0) fail("unterminated code block")
        exit bad
    }' "$f" >"$tmp" || status=1
    if ! cmp -s "$f" "$tmp"; then
        if [ "$mode" = --check ]; then
            echo "stale snippet in $f (the source changed; run 'make snippets'):"
            { diff -u "$f" "$tmp" || true; } | sed -n '3,$p' | sed 's/^/    /'
            status=1
        else
            cp "$tmp" "$f"
            echo "updated $f"
        fi
    fi
done
if [ "$mode" = --check ] && [ $status = 0 ]; then echo "snippets: every code block matches its source"; fi
exit $status
