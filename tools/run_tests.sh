#!/usr/bin/env bash
# `make test`: every test program given (the build's bin/test_*), then the
# notes' code snippets and relative links. Exit 1 if anything failed, after
# running everything.
#   BUILD=build bash tools/run_tests.sh build/bin/test_a build/bin/test_b ...
set -uo pipefail
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
fail=0
failed=()
for t in "$@"; do
    echo "== $t"
    STF_BIN_DIR=$BUILD/bin "$t" || { fail=1; failed+=("$t"); }
done
echo "== notes: code snippets and links"
bash tools/snippets.sh --check || { fail=1; failed+=("tools/snippets.sh --check"); }
bash tools/check_links.sh || { fail=1; failed+=("tools/check_links.sh"); }
if [ $fail = 0 ]; then
    echo "all test programs passed"
else
    echo "some tests FAILED: ${failed[*]}"
    exit 1
fi
