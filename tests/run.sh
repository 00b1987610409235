#!/usr/bin/env bash
# Runs every test: each bin/tests/test_* (cmocka) and each tests/*.sh, then a summary line.
# Usage: tests/run.sh [PATTERN]   (only tests whose name contains PATTERN)
# TVSA_BIN: directory of the binaries under test (default bin; make check points it elsewhere).
set -u
cd "$(dirname "$0")/.."
export TVSA_BIN=${TVSA_BIN:-$PWD/bin}
pattern=${1:-}
passed=0 failed=0 failed_names=()

run_one() {
    local name=$1; shift
    [[ -n $pattern && $name != *"$pattern"* ]] && return
    local start=$SECONDS
    echo "=== $name"
    if "$@"; then
        passed=$((passed + 1))
        echo "=== $name: ok ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1)); failed_names+=("$name")
        echo "=== $name: FAILED ($((SECONDS - start)) s)"
    fi
}

for t in "$TVSA_BIN"/tests/test_*; do
    [[ -x $t ]] && run_one "$(basename "$t")" "$t"
done
for t in tests/*.sh; do
    [[ $t == tests/run.sh || ! -f $t ]] && continue
    run_one "$(basename "$t")" bash "$t"
done

echo
[[ $failed -gt 0 ]] && echo "failed: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
