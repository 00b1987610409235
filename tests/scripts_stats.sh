#!/usr/bin/env bash
# The comparison's statistics and the bench's saturation rule (issue 13), and the machine CPU
# accounting (issue 20): tests/py/test_scripts_stats.py under python3 unittest, on synthetic
# JSON (no server runs, a second or two). Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=$(python3 -m unittest -v tests/py/test_scripts_stats.py 2>&1)
rc=$?
echo "$out"
# unittest's own summary: "Ran N tests" and, on failure, "FAILED (failures=F, errors=E)".
ran=$(sed -n 's/^Ran \([0-9]*\) tests\?.*/\1/p' <<<"$out")
failed=$(grep -oE '(failures|errors)=[0-9]+' <<<"$out" | awk -F= '{ s += $2 } END { print s + 0 }')
passed=$(( ${ran:-0} - failed ))
# A crash before any test ran still fails the suite.
if [[ $rc -ne 0 && $failed -eq 0 ]]; then failed=1; fi
echo "scripts_stats: $passed passed, $failed failed"
[[ $rc -eq 0 && $failed -eq 0 ]]
