#!/usr/bin/env bash
# Exits 0 when gnuplot is on PATH, installing gnuplot-nox with apt-get first
# if it is missing (as root, or through passwordless sudo). Exits 1, with the
# reason, when it is missing and cannot be installed: no apt-get, no root, no
# network (the apt-get calls are time-limited), or NO_INSTALL=1.
set -uo pipefail
command -v gnuplot >/dev/null && exit 0
if [ "${NO_INSTALL:-0}" = 1 ]; then
    echo "gnuplot is missing (NO_INSTALL=1: not installing it)"
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "gnuplot is missing and apt-get is not available"
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "gnuplot is missing, and installing it needs root: sudo apt-get install -y gnuplot-nox"
    exit 1
fi
echo "gnuplot is missing: installing it with '${sudo[*]}${sudo:+ }apt-get install -y gnuplot-nox'"
export DEBIAN_FRONTEND=noninteractive
apt_rc=0
timeout 300 "${sudo[@]}" apt-get install -y gnuplot-nox >/dev/null 2>&1 ||
    { timeout 120 "${sudo[@]}" apt-get update >/dev/null 2>&1 &&
      timeout 300 "${sudo[@]}" apt-get install -y gnuplot-nox >/dev/null 2>&1; } || apt_rc=$?
hash -r
command -v gnuplot >/dev/null && exit 0
if [ $apt_rc != 0 ]; then
    echo "could not install gnuplot-nox: apt-get failed (exit $apt_rc; no network or no package source?)"
else
    echo "apt-get installed gnuplot-nox, but gnuplot is still not on PATH"
fi
exit 1
