#!/usr/bin/env bash
# The Python servers beside the C ones, with the same load generator (issue 18): rounds of
# interleaved runs (A/B/C/D, A/B/C/D, ...) so a noisy machine hits every server alike.
#   echo: 64-byte echo, closed loop, server on CPU 0, loadgen on CPU 1:
#         req/s, p50/p99, server CPU us per request
#   cpu:  the same with --work-us W, server and loadgen both on CPUs 0-1: cores the server used
#         (CPU s / wall s) and cores of work done (req/s x W us); the GIL should hold Python
#         threads to about one core
# Usage: bench/python/measure.sh [--rounds N] [--duration SEC] [--conns N] [--work-us W]
#                                [--only echo|cpu] [--out DIR]
# Prints a table per round and the per-server spread (min..max over rounds) on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROUNDS=3 DURATION=3 CONNS=50 WORK_US=200 ONLY="" OUT=""
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --work-us) WORK_US=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "measure: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for n in "$ROUNDS" "$DURATION" "$CONNS" "$WORK_US"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "measure: not a number: $n" >&2; exit 2; }
done
[[ -x bin/loadgen && -x bin/async-echo && -x bin/threaded-echo ]] ||
    { echo "measure: build first (make all)" >&2; exit 1; }
OUT=${OUT:-$(mktemp -d /tmp/tvsa-python-measure.XXXXXX)}
mkdir -p "$OUT"
PY=bench/python
SERVERS=("c-async|bin/async-echo" "py-async|python3 $PY/async_echo.py"
         "c-threaded|bin/threaded-echo" "py-threaded|python3 $PY/threaded_echo.py"
         "c-pool50|bin/threaded-echo --pool 50" "py-pool50|python3 $PY/threaded_echo.py --pool 50")

# run TAG SERVER_CPUS LOADGEN_CPUS SERVER_CMD...: one server, one loadgen step, the server
# stopped by the pid its listening line gives (python3 may be a wrapper that forks).
run() {
    local tag=$1 scpus=$2 lcpus=$3; shift 3
    taskset -c "$scpus" "$@" --port 0 >"$OUT/$tag.server" 2>"$OUT/$tag.stderr" &
    local wrapper=$! line="" pid port
    for _ in $(seq 100); do
        line=$(head -n1 "$OUT/$tag.server" 2>/dev/null || true)
        [[ -n $line ]] && break
        sleep 0.05
    done
    [[ -n $line ]] || { echo "measure: $tag did not start" >&2; kill "$wrapper"; return 1; }
    read -r pid port < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["pid"], d["port"])' "$line")
    taskset -c "$lcpus" bin/loadgen --target "127.0.0.1:$port" --scenario echo \
        --connections "$CONNS" --duration "$DURATION" --threads 1 --server-pid "$pid" \
        --quiet --json "$OUT/$tag.json" 2>>"$OUT/$tag.stderr"
    kill "$pid"
    wait "$wrapper"
}

for r in $(seq "$ROUNDS"); do
    for s in "${SERVERS[@]}"; do
        name=${s%%|*}; read -r -a cmd <<<"${s#*|}"
        [[ $ONLY == cpu ]] || run "echo-$name-r$r" 0 1 "${cmd[@]}"
        [[ $ONLY == echo ]] || run "cpu-$name-r$r" 0-1 0-1 "${cmd[@]}" --work-us "$WORK_US"
    done
done

python3 - "$OUT" "$WORK_US" "$(cat /proc/loadavg)" <<'PY'
import glob, json, os, re, sys
out, work_us, loadavg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    kind, name, r = re.match(r"(echo|cpu)-(.*)-r(\d+)\.json", os.path.basename(path)).groups()
    s = json.load(open(path))["steps"][0]
    cpu = s["server"]["cpu_s"]["user"] + s["server"]["cpu_s"]["sys"]
    rps = s["requests"]["per_sec"]
    rows.setdefault((kind, name), []).append(dict(
        rps=rps, p50=s["latency_us"]["p50"], p99=s["latency_us"]["p99"],
        us_req=cpu * 1e6 / max(1, s["requests"]["completed"]), cores=cpu / s["duration_s"],
        work=rps * work_us / 1e6, threads=s["server"]["threads"],
        errors=s["requests"]["errors"] + s["requests"]["timeouts"] + s["requests"]["mismatches"]))
span = lambda xs, f: ("%s..%s" % (f % min(xs), f % max(xs))) if len(xs) > 1 else f % xs[0]
print("results in %s; load average at the end: %s" % (out, loadavg))
for kind in ("echo", "cpu"):
    names = [n for k, n in rows if k == kind]
    if not names:
        continue
    print("\n%s (min..max over %d rounds)" % (
        "64-byte echo, server on CPU 0, loadgen on CPU 1" if kind == "echo" else
        "--work-us %d, server and loadgen on CPUs 0-1" % work_us, len(rows[kind, names[0]])))
    cols = ["rps", "p50", "p99", "us_req"] if kind == "echo" else ["rps", "cores", "work", "threads"]
    fmt = {"rps": "%.0f", "p50": "%d", "p99": "%d", "us_req": "%.1f", "cores": "%.2f",
           "work": "%.2f", "threads": "%d"}
    head = {"rps": "req/s", "p50": "p50 us", "p99": "p99 us", "us_req": "srv CPU us/req",
            "cores": "srv cores used", "work": "cores of work", "threads": "threads"}
    print("%-12s" % "server" + "".join("%20s" % head[c] for c in cols) + "%8s" % "errors")
    for n in names:
        rs = rows[kind, n]
        print("%-12s" % n + "".join("%20s" % span([x[c] for x in rs], fmt[c]) for c in cols)
              + "%8d" % sum(x["errors"] for x in rs))
PY
