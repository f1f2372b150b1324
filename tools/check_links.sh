#!/usr/bin/env bash
# Checks the relative links of the Markdown files (README.md, notes/**/*.md):
# every [text](path) and ![alt](path) and every src="..."/href="..." must
# name a file or folder that exists, and every #anchor must be a heading of
# the target file (GitHub's rule: lower case, punctuation dropped, spaces to
# '-', a repeated heading gets -1, -2, ...). Links to http(s) and mailto are
# not followed. Exit 1 listing each broken link. POSIX awk (mawk).
set -uo pipefail
cd "$(dirname "$0")/.."
files=$(find README.md notes -name "*.md" -type f | LC_ALL=C sort)

# slugs FILE: the anchors GitHub makes for the headings of FILE, one a line.
slugs() {
    awk '
    /^(```|~~~)/ { code = !code; next }
    code || !/^#+ / { next }
    {
        h = $0; sub(/^#+ +/, "", h); sub(/ +#+ *$/, "", h)
        gsub(/<[^>]*>/, "", h)             # inline HTML
        h = tolower(h)
        # punctuation and symbols GitHub drops (ASCII, then common UTF-8 ones)
        gsub(/[]!"#$%&'"'"'()*+,.\/:;<=>?@[\\^`{|}~]/, "", h)
        n = split("· × − – — → ← ≤ ≥ ≈ … ， ： ； ？ ！ （ ） 、 。 “ ” ‘ ’", sym, " ")
        for (i = 1; i <= n; i++) while ((p = index(h, sym[i])) > 0) h = substr(h, 1, p - 1) substr(h, p + length(sym[i]))
        gsub(/ /, "-", h)
        if (h in seen) { seen[h]++; print h "-" seen[h] } else { seen[h] = 0; print h }
    }' "$1"
}

bad=0
for f in $files; do
    dir=$(dirname "$f")
    # FILE:LINE TARGET for every link outside code blocks and code spans
    links=$(awk '
        /^(```|~~~)/ { code = !code; next }
        code { next }
        {
            line = $0; gsub(/`[^`]*`/, "", line)
            while (match(line, /\]\([^) ]+( "[^"]*")?\)/)) {
                t = substr(line, RSTART + 2, RLENGTH - 3); sub(/ ".*/, "", t)
                print FNR " " t; line = substr(line, RSTART + RLENGTH)
            }
            while (match(line, /(src|href)="[^"]+"/)) {
                t = substr(line, RSTART, RLENGTH); sub(/^[a-z]+="/, "", t); sub(/"$/, "", t)
                print FNR " " t; line = substr(line, RSTART + RLENGTH)
            }
        }' "$f")
    [ -n "$links" ] || continue
    while read -r ln target; do
        case $target in http://* | https://* | mailto:*) continue ;; esac
        path=${target%%#*}
        anchor=
        [ "$path" != "$target" ] && anchor=${target#*#}
        if [ -z "$path" ]; then dest=$f; else dest=$dir/$path; fi
        if [ ! -e "$dest" ]; then
            echo "$f:$ln: broken link: $target ($dest does not exist)"
            bad=1
            continue
        fi
        if [ -n "$anchor" ]; then
            case $dest in
            *.md)
                if ! slugs "$dest" | grep -qx -- "$anchor"; then
                    echo "$f:$ln: broken anchor: $target (no heading '#$anchor' in $dest)"
                    bad=1
                fi
                ;;
            esac
        fi
    done <<<"$links"
done
if [ $bad = 0 ]; then echo "links: every relative link and anchor resolves ($(echo $files | wc -w) files)"; fi
exit $bad
