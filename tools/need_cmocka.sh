#!/usr/bin/env bash
# Exits 0 when cmocka's header is installed, installing libcmocka-dev with
# apt-get first if it is missing (as root, or through passwordless sudo).
# Exits 1 with the exact command to run when it cannot. (make check-cmocka)
set -uo pipefail
[ -f /usr/include/cmocka.h ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "cmocka is missing: installing it with 'apt-get install -y libcmocka-dev'"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y libcmocka-dev >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && apt-get install -y libcmocka-dev >/dev/null; } ||
        { echo "error: could not install libcmocka-dev; run: sudo apt-get install -y libcmocka-dev"; exit 1; }
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "cmocka is missing: installing it with 'sudo apt-get install -y libcmocka-dev'"
    sudo apt-get install -y libcmocka-dev >/dev/null || { echo "error: run: sudo apt-get install -y libcmocka-dev"; exit 1; }
else
    echo "error: the tests need cmocka. Install it with: sudo apt-get install -y libcmocka-dev"
    exit 1
fi
