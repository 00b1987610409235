#!/usr/bin/env bash
# make check: the whole suite again with sanitizers.
#   1. every binary built with -fsanitize=address,undefined, every test run against them;
#   2. everything built with -fsanitize=thread, the servers' integration tests run against
#      them (the threaded servers are the ones with shared state; the async ones ride along).
#   3. every server under valgrind memcheck (scripts/valgrind.sh).
# Any sanitizer report fails the run (halt_on_error / exitcode), so a race or a leak is red.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

san_flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
echo "=== check: ASan+UBSan build"
make --no-print-directory -j"$jobs" BIN=bin/asan BUILD=build/asan \
    CFLAGS="$san_flags" LDFLAGS="-fsanitize=address,undefined" binaries >/dev/null
# detect_leaks: every process must free what it allocated by exit.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=66:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=67
export TVSA_SANITIZED=asan TVSA_ONLY_C=1
TVSA_BIN=$PWD/bin/asan tests/run.sh

tsan_flags="-O1 -g -fno-omit-frame-pointer -fsanitize=thread"
echo "=== check: TSan build"
make --no-print-directory -j"$jobs" BIN=bin/tsan BUILD=build/tsan \
    CFLAGS="$tsan_flags" LDFLAGS="-fsanitize=thread" binaries >/dev/null
unset ASAN_OPTIONS
export TSAN_OPTIONS=halt_on_error=1:exitcode=68:second_deadlock_stack=1
export TVSA_SANITIZED=tsan
TVSA_BIN=$PWD/bin/tsan tests/run.sh test_echo test_faults test_chat test_udp test_dns test_abuse

# 3. every server under valgrind memcheck through a short load and a SIGTERM: no byte lost,
#    no invalid access (scripts/valgrind.sh builds what it needs in bin/).
echo "=== check: valgrind"
scripts/valgrind.sh
