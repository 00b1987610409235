#!/usr/bin/env bash
# Smoke test of the whole comparison pipeline (issues 6 and 13): one `scripts/compare.sh --quick`
# run (one round, r1/) into a temporary directory, then checks that every file, every step's
# progress line, every row of the summary table and a note for every skipped column exist, and
# that no server is left running. Figures are not checked.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

tmp=$(mktemp -d /tmp/tvsa-compare-test.XXXXXX)
# TVSA_COMPARE_KEEP=DIR: copy the results there before removing them (to read a failure).
trap '[[ -n ${TVSA_COMPARE_KEEP:-} ]] && cp -r "$tmp/run" "$TVSA_COMPARE_KEEP"; rm -rf "$tmp"' EXIT
out=$tmp/run
failures=0
fail() { echo "compare_quick: FAIL: $*" >&2; failures=$((failures + 1)); }

start=$SECONDS
if ! scripts/compare.sh --quick --out "$out" 2>"$tmp/stderr"; then
    cat "$tmp/stderr" >&2
    fail "scripts/compare.sh --quick exited non-zero"
fi
echo "compare_quick: compare.sh --quick took $((SECONDS - start)) s"
[[ -d $out ]] || { fail "no results directory"; exit 1; }

# Files and their JSON, checked by python (stdlib only); prints one line per problem.
python3 - "$out" >"$tmp/problems" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
scenarios = ["echo", "hold", "churn", "fixed", "cpu"]

def load(rel):
    path = os.path.join(out, rel)
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        print("missing: %s" % rel)
    except ValueError as e:
        print("not JSON: %s (%s)" % (rel, e))
    return None

env = load("env.json")
if env is not None:
    for k in ("kernel", "cpu_model", "cores_online", "libraries", "fd_limit", "git_revision"):
        if env.get(k) in (None, ""):
            print("env.json: no %s" % k)
    if "libevent" not in (env.get("libraries") or {}):
        print("env.json: no libevent version")
plan = load("plan.json")
# The columns that ran (the model table's others carry a skip note); the three C ones always.
models = [m["label"] for m in (plan or {}).get("models", []) if not m.get("skipped")]
for m in ("threaded-pool50", "threaded-tpc", "async"):
    if m not in models:
        print("plan.json: no model %s" % m)
for m in (plan or {}).get("models", []):
    if m.get("skipped") is not None and not m["skipped"]:
        print("plan.json: %s skipped without a reason" % m["label"])
rounds = (plan or {}).get("rounds")
if rounds != 1:
    print("plan.json: rounds %r (a --quick run has 1)" % rounds)
cx = load("complexity.json")
if cx is not None:
    for m in ("threaded", "async"):
        if "total" not in cx.get("models", {}).get(m, {}):
            print("complexity.json: no totals for %s" % m)
for s in scenarios:
    for m in models:
        doc = load("r1/loadgen/%s-%s.json" % (s, m))
        if doc is not None:
            if doc.get("schema") != "tvsa-loadgen/1":
                print("r1/loadgen/%s-%s.json: schema %r" % (s, m, doc.get("schema")))
            if not doc.get("steps"):
                print("r1/loadgen/%s-%s.json: no steps" % (s, m))
        for kind in ("listening", "stopped"):
            line = load("r1/servers/%s-%s.%s.json" % (s, m, kind))
            if line is not None and line.get("event") != kind:
                print("r1/servers/%s-%s.%s.json: event %r" % (s, m, kind, line.get("event")))
        stopped = load("r1/servers/%s-%s.stopped.json" % (s, m)) or {}
        if "rusage" not in stopped:
            print("r1/servers/%s-%s.stopped.json: no rusage" % (s, m))
        listening = load("r1/servers/%s-%s.listening.json" % (s, m)) or {}
        pid = listening.get("pid")
        if isinstance(pid, int) and os.path.exists("/proc/%d" % pid):
            try:
                cmd = open("/proc/%d/cmdline" % pid).read()
            except OSError:
                cmd = ""
            if "echo" in cmd:
                print("server %s-%s (pid %d) still running" % (s, m, pid))
runs = []
try:
    with open(os.path.join(out, "r1", "runs.jsonl")) as f:
        runs = [json.loads(line) for line in f if line.strip()]
except (OSError, ValueError) as e:
    print("runs.jsonl: %s" % e)
extra = ((plan or {}).get("extra") or {}).get("scenarios") or []
expected = {"%s-%s" % (s, m) for s in scenarios for m in models}
expected |= {"%s-%s" % (s, m) for s in extra for m in ("threaded", "async")}
if ((plan or {}).get("abuse") or {}).get("kind"):    # the abuse row, one run per model
    expected |= {"abuse-%s" % m for m in models}
got = {r.get("tag") for r in runs}
for tag in sorted(expected - got):
    print("runs.jsonl: no run %s" % tag)
for tag in sorted(got - expected):
    print("runs.jsonl: unexpected run %s" % tag)
for r in runs:
    if r.get("tag") in expected and "machine_busy_cpu_s" not in r:
        print("runs.jsonl: %s has no machine CPU figure" % r.get("tag"))
    if r.get("tag") in expected and "loadgen_cpu_s" not in r:
        print("runs.jsonl: %s has no loadgen CPU figure" % r.get("tag"))
    # loadgen is pinned to one CPU in these scenarios, so its CPU cannot exceed the wall time:
    # more means the server's CPU (also a child of compare.sh) was counted as loadgen's.
    lg, wall = r.get("loadgen_cpu_s"), r.get("measured_wall_s")
    if r.get("scenario") in ("echo", "hold", "churn", "fixed") and lg is not None and wall \
            and lg > 1.05 * wall + 0.2:
        print("runs.jsonl: %s: loadgen_cpu_s %.2f over %.2f s of wall on one CPU" % (r["tag"], lg, wall))
if ((plan or {}).get("abuse") or {}).get("kind"):
    for m in models:
        load("r1/loadgen/abuse-%s.json" % m)
for s in extra:            # the other servers: their files exist (load prints what is missing)
    for m in ("threaded", "async"):
        load("r1/loadgen/%s-%s.json" % (s, m))
        load("r1/servers/%s-%s.stopped.json" % (s, m))
PY
while IFS= read -r line; do fail "$line"; done <"$tmp/problems"

# summary.md: the three model columns and every row of the textbook table.
summary=$out/summary.md
if [[ -f $summary ]]; then
    header=$(grep -m1 '^| Metric |' "$summary" || true)
    # shellcheck disable=SC2016 # the backquotes are markdown, not a command
    for col in 'threaded `--pool 50`' 'threaded, 1 thread/conn' 'async' 'Textbook claim' 'Verdict'; do
        [[ $header == *"$col"* ]] || fail "summary.md: no column '$col'"
    done
    for row in 'Concurrent connections' 'Memory per connection' 'Context switching' \
               'CPU-bound work' 'Complexity'; do
        grep -q "^| $row |" "$summary" || fail "summary.md: no row '$row'"
    done
    grep -q 'except for the CPU-bound row' "$summary" || fail "summary.md: pinning not stated"
    # A column of the model table that did not run says why, in summary.md.
    while IFS= read -r title; do
        grep -qF -- "- Column *$title* skipped:" "$summary" || fail "summary.md: no skip note for '$title'"
    done < <(python3 -c 'import json, sys
for m in json.load(open(sys.argv[1])).get("models", []):
    if m.get("skipped"):
        print(m["title"])' "$out/plan.json")
    grep -q '^## Machine noise' "$summary" || fail "summary.md: no machine noise section"
    grep -q '^Every figure on loopback' "$summary" || fail "summary.md: the RTT of the figures not stated"
    # The coroutine column (issue 15): its user-level switches, and the verdict on the cost.
    if python3 -c 'import json, sys
sys.exit(0 if any(m["label"] == "async-coro" and not m.get("skipped")
                  for m in json.load(open(sys.argv[1])).get("models", [])) else 1)' "$out/plan.json"; then
        ctx=$(grep '^| Context switching |' "$summary" || true)
        [[ $ctx == *"user-level (coroutine) switches"* ]] || fail "summary.md: no user-level switches per request"
        grep -q 'coroutine stacks [0-9]* KiB' "$summary" || fail "summary.md: no coroutine stack size"
        if [[ -x ${TVSA_BIN:-bin}/switch-cost ]]; then
            [[ -s $out/switch-cost.json ]] || fail "missing: switch-cost.json"
            [[ $ctx == *"a kernel switch costs"*"a coroutine switch"* ]] ||
                fail "summary.md: the context-switching verdict does not price the switches"
        fi
    fi
    # Latency against offered load (issue 20), when scripts/sweep.sh exists (compare.sh runs
    # its --quick version).
    if [[ -x scripts/sweep.sh ]]; then
        [[ -s $out/sweep/cells.json ]] || fail "missing: sweep/cells.json"
        grep -q '^| Latency at 80% of capacity |' "$summary" || fail "summary.md: no row 'Latency at 80% of capacity'"
    fi
    if "${TVSA_BIN:-bin}/loadgen" --help 2>&1 | grep -qE '^ +abuse +'; then
        grep -q '^| Under slowloris' "$summary" || fail "summary.md: no abuse row"
    fi
else
    fail "missing: summary.md"
fi

# Plots (when gnuplot is installed): six non-empty PNG files.
if command -v gnuplot >/dev/null; then
    for p in throughput p99 rss_per_conn vsz_per_conn ctx_per_request cpu_bound; do
        png=$out/plots/$p.png
        if [[ ! -s $png ]]; then
            fail "missing plot: plots/$p.png"
        elif [[ $(head -c 4 "$png" | od -An -c | tr -d ' ') != '211PNG' ]]; then
            fail "plots/$p.png is not a PNG"
        fi
    done
fi

# Progress: one "[k/n] rR model scenario ..." line per step, the last one [n/n] (a noisy run that
# is rerun repeats its numbers: count the distinct ones).
progress=$(grep -E '^\[[0-9]+/[0-9]+\] r[0-9]+ ' "$tmp/stderr" || true)
count=$(sed -n 's/^\[\([0-9]*\)\/.*/\1/p' <<<"$progress" | sort -u | grep -c .)
last=$(tail -n1 <<<"$progress")
total=$(sed -n 's/^\[[0-9]*\/\([0-9]*\)\].*/\1/p' <<<"$last")
if [[ -z $total || $count -ne $total || $last != "[$total/$total]"* ]]; then
    fail "progress lines: $count lines, last '$last'"
fi

if [[ $failures -gt 0 ]]; then
    echo "compare_quick: $failures problems; compare.sh stderr:" >&2
    sed 's/^/    /' "$tmp/stderr" >&2
    exit 1
fi
echo "compare_quick: ok ($count steps, $(grep -c '^| ' "$summary") table lines)"
