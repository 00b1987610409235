#!/usr/bin/env bash
# Smoke test of the whole comparison pipeline (issue 6): one `scripts/compare.sh --quick` run
# into a temporary directory, then checks that every file, every step's progress line and every
# row of the summary table exist, and that no server is left running. Figures are not checked.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

tmp=$(mktemp -d /tmp/tvsa-compare-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
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
models = ["threaded-pool50", "threaded-tpc", "async"]
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
cx = load("complexity.json")
if cx is not None:
    for m in ("threaded", "async"):
        if "total" not in cx.get("models", {}).get(m, {}):
            print("complexity.json: no totals for %s" % m)
for s in scenarios:
    for m in models:
        doc = load("loadgen/%s-%s.json" % (s, m))
        if doc is not None:
            if doc.get("schema") != "tvsa-loadgen/1":
                print("loadgen/%s-%s.json: schema %r" % (s, m, doc.get("schema")))
            if not doc.get("steps"):
                print("loadgen/%s-%s.json: no steps" % (s, m))
        for kind in ("listening", "stopped"):
            line = load("servers/%s-%s.%s.json" % (s, m, kind))
            if line is not None and line.get("event") != kind:
                print("servers/%s-%s.%s.json: event %r" % (s, m, kind, line.get("event")))
        stopped = load("servers/%s-%s.stopped.json" % (s, m)) or {}
        if "rusage" not in stopped:
            print("servers/%s-%s.stopped.json: no rusage" % (s, m))
        listening = load("servers/%s-%s.listening.json" % (s, m)) or {}
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
    with open(os.path.join(out, "runs.jsonl")) as f:
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
if ((plan or {}).get("abuse") or {}).get("kind"):
    for m in models:
        load("loadgen/abuse-%s.json" % m)
for s in extra:            # the other servers: their files exist (load prints what is missing)
    for m in ("threaded", "async"):
        load("loadgen/%s-%s.json" % (s, m))
        load("servers/%s-%s.stopped.json" % (s, m))
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

# Progress: one "[k/n] model scenario ..." line per step, the last one [n/n].
progress=$(grep -E '^\[[0-9]+/[0-9]+\] ' "$tmp/stderr" || true)
count=$(grep -c . <<<"$progress")
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
