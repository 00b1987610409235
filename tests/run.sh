#!/usr/bin/env bash
# Runs every test: each bin/tests/test_* (cmocka) and each tests/*.sh, then a summary line.
# Usage: tests/run.sh [PATTERN...]   (only tests whose name contains one of the PATTERNs)
# TVSA_BIN: directory of the binaries under test (default bin; make check points it elsewhere).
# TVSA_ONLY_C=1: only the cmocka binaries, not the tests/*.sh pipelines (make check uses it:
# the pipelines re-measure, they find nothing new under a sanitizer).
set -u
cd "$(dirname "$0")/.."
export TVSA_BIN=${TVSA_BIN:-$PWD/bin}
# A version manager's python3 may be a shell script (pyenv's shim: ~0.8 s a call here, against
# 0.09 s for the interpreter) and the pipelines call python3 thousands of times: the suite puts
# the interpreter that python3 resolves to first in PATH, so it runs the same Python, faster.
if py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) && [[ -x $py ]] &&
        [[ $(realpath "$py") != $(realpath "$(command -v python3)") ]]; then
    mkdir -p build/python-bin && ln -sfn "$py" build/python-bin/python3 &&
        export PATH=$PWD/build/python-bin:$PATH
fi
patterns=("$@")
passed=0 failed=0 failed_names=()

run_one() {
    local name=$1; shift
    if [[ ${#patterns[@]} -gt 0 ]]; then
        local p hit=0
        for p in "${patterns[@]}"; do [[ $name == *"$p"* ]] && hit=1; done
        [[ $hit == 1 ]] || return 0
    fi
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
    [[ $t == tests/run.sh || ! -f $t || ${TVSA_ONLY_C:-0} == 1 ]] && continue
    run_one "$(basename "$t")" bash "$t"
done

echo
[[ $failed -gt 0 ]] && echo "failed: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
