#!/usr/bin/env bash
# The comparison's statistics and the bench's saturation rule (issue 13), the machine CPU
# accounting (issue 20) and the coroutine column's verdicts (issue 15):
# tests/py/test_scripts_stats.py under python3 unittest, on synthetic JSON (no server runs, a
# second or two). Then `compare.sh --rtt-ms` on a machine that cannot add the delay (issue 19):
# it must stop before measuring anything, exit 2, and say why. Ends with "N passed, N failed".
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

# compare.sh's new flags refuse bad usage with exit 2 before anything runs.
usage_case() {
    local want=$1 rc=0 err
    shift
    err=$(scripts/compare.sh "$@" --no-build --out /tmp/tvsa-never-made.$$ </dev/null 2>&1 >/dev/null) || rc=$?
    if [[ $rc -eq 2 && $err == *"$want"* && ! -e /tmp/tvsa-never-made.$$ ]]; then
        echo "ok compare $*: exit 2 ($want)"; passed=$((passed + 1))
    else
        echo "FAIL compare $*: exit $rc, wanted 2 and '$want': $err"; failed=$((failed + 1))
        rm -rf "/tmp/tvsa-never-made.$$"
    fi
}
usage_case "--scale-max and --raise-limits go with --scale" --scale-max 5000
usage_case "--scale-max and --raise-limits go with --scale" --raise-limits
usage_case "--rtt-ms: a number of milliseconds" --rtt-ms 20ms

# compare.sh --rtt-ms where scripts/cluster.sh cannot add it (no netem here, or no root/pdsh):
# the same check cluster.sh makes decides whether this machine is such a one.
BIN=${TVSA_BIN:-bin}
if [[ ! -x $BIN/async-echo || ! -x $BIN/loadgen ]]; then
    echo "SKIPPED compare --rtt-ms: $BIN/async-echo or $BIN/loadgen not built"
else
    tmp=$(mktemp -d /tmp/tvsa-rtt-test.XXXXXX)
    crc=0
    scripts/cluster.sh --local 1 --rtt-ms 20 --out "$tmp/cluster" --server "$BIN/async-echo" -- \
        --connections 1 --duration 1 </dev/null >/dev/null 2>"$tmp/cluster.err" || crc=$?
    if [[ $crc -ne 2 ]]; then
        echo "SKIPPED compare --rtt-ms exit 2: cluster.sh can add a round-trip time here (exit $crc)"
    else
        start=$SECONDS
        rrc=0
        scripts/compare.sh --rtt-ms 20 --quick --no-build --out "$tmp/run" </dev/null \
            >/dev/null 2>"$tmp/compare.err" || rrc=$?
        problems=()
        [[ $rrc -eq 2 ]] || problems+=("exit $rrc, not 2")
        grep -q 'compare: --rtt-ms 20: scripts/cluster.sh cannot add a round-trip time on this machine (.\+); nothing was measured' \
            "$tmp/compare.err" || problems+=("no clear message")
        # "At once": nothing ran, not even the output directory was made.
        [[ ! -e $tmp/run ]] || problems+=("it made $tmp/run")
        grep -q '^\[[0-9]*/' "$tmp/compare.err" && problems+=("it ran steps")
        if [[ ${#problems[@]} -eq 0 ]]; then
            echo "ok compare --rtt-ms without netem: exit 2 in $((SECONDS - start)) s: $(grep -m1 'rtt-ms 20' "$tmp/compare.err")"
            passed=$((passed + 1))
        else
            echo "FAIL compare --rtt-ms without netem: ${problems[*]}"; sed 's/^/    /' "$tmp/compare.err"
            failed=$((failed + 1))
        fi
    fi
    rm -rf "$tmp"
fi
echo "scripts_stats: $passed passed, $failed failed"
[[ $rc -eq 0 && $failed -eq 0 ]]
