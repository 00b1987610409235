#!/bin/sh
# Installs the Debian packages tvsa needs, only those missing; silent when all are present.
# Usage: scripts/install-deps.sh [--check] [--fuzz]
#   --check  report what is missing, install nothing
#   --fuzz   also what `make fuzz` needs (clang and its libFuzzer runtime)
set -eu

# gnuplot: plots; python3: the summary; nc: the README's examples; dig (dnsutils): test_dns
# checks our DNS servers with a real resolver client too; dnsperf: the DNS load peer (make bench,
# test_dns); pdsh and iproute2: scripts/cluster.sh (hosts, or network namespaces here);
# libboost-context-dev: the coroutine runtime's stack switch (async/lib/coro.c); strace: lab 3
# counts the system calls of each kind of switch.
PACKAGES="build-essential pkg-config libevent-dev libjansson-dev libcmocka-dev gnuplot-nox python3 netcat-openbsd procps dnsutils dnsperf pdsh iproute2 valgrind libboost-context-dev strace"
check_only=0
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        --fuzz) PACKAGES="$PACKAGES clang libclang-rt-14-dev" ;;
        *) echo "install-deps: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

missing=""
for pkg in $PACKAGES; do
    # dpkg-query prints "install ok installed" only for a fully installed package.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $pkg" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$check_only" -eq 1 ]; then
    echo "install-deps: missing packages:$missing" >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages:$missing" >&2
    echo "install-deps: run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi

echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists; update once, quietly.
apt-get update -qq >/dev/null
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done" >&2
