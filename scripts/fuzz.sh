#!/usr/bin/env bash
# Builds each libFuzzer harness in tests/fuzz/ with clang (address + undefined sanitizers) and
# runs it for FUZZ_SECONDS (default 60) from its seed corpus in tests/fuzz/corpus/NAME/.
# Fails if any harness crashes; the input that crashed is kept as build/fuzz/crash-NAME-*.
# Usage: scripts/fuzz.sh [NAME...]     (default: every tests/fuzz/fuzz_*.c)
# New inputs found are kept in build/fuzz/corpus/NAME, not in the tree; copy a good one into
# tests/fuzz/corpus/NAME/ by hand, and turn any crash into a unit test.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-$(command -v clang || command -v clang-14 || true)}
SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=build/fuzz
# The pure sources each harness needs (no libevent, no jansson: the parsers are pure).
declare -A SOURCES=(
    [fuzz_dnswire]="common/dnswire.c common/zone.c common/zone_sample.c"
    [fuzz_zone]="common/dnswire.c common/zone.c common/zone_sample.c"
    [fuzz_frame]="common/frame.c"
    [fuzz_opts]="common/opts.c"
)

if [[ -z $CLANG ]]; then
    echo "fuzz: clang not found (apt-get install clang)" >&2
    exit 1
fi
if [[ $# -gt 0 ]]; then
    names=("$@")
else
    names=()
    for f in tests/fuzz/fuzz_*.c; do names+=("$(basename "$f" .c)"); done
fi

mkdir -p "$OUT"
failed=()
for name in "${names[@]}"; do
    src=tests/fuzz/$name.c
    if [[ ! -f $src || -z ${SOURCES[$name]:-} ]]; then
        echo "fuzz: no harness or source list for '$name' (edit SOURCES in $0)" >&2
        exit 2
    fi
    echo "=== fuzz $name: building"
    # shellcheck disable=SC2086 # the source list is meant to split
    "$CLANG" -std=c11 -D_GNU_SOURCE -g -O1 -Icommon \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -o "$OUT/$name" "$src" ${SOURCES[$name]}
    corpus=$OUT/corpus/$name
    mkdir -p "$corpus"
    echo "=== fuzz $name: ${SECONDS_EACH} s from tests/fuzz/corpus/$name"
    # First directory: where new inputs go; the second: the seeds, read only.
    if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$OUT/$name" -max_total_time="$SECONDS_EACH" -timeout=10 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$OUT/crash-$name-" \
        "$corpus" "tests/fuzz/corpus/$name" 2>"$OUT/$name.log"; then
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)' \
            "$OUT/$name.log" | sed "s/^/    /" || true
        echo "=== fuzz $name: ok"
    else
        tail -n 40 "$OUT/$name.log" >&2
        echo "=== fuzz $name: CRASH (log $OUT/$name.log, input $OUT/crash-$name-*)" >&2
        failed+=("$name")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#names[@]} harnesses ran ${SECONDS_EACH} s without a crash"
