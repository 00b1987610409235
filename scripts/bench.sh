#!/usr/bin/env bash
# make bench: the project's performance bar, measured side by side (docs/metrics.md).
# At 1,000 closed-loop connections, 64-byte messages, BENCH_SECONDS (5) per point, server and
# client pinned to different cores:
#   async-echo (both --api variants) vs bench/bare-epoll-echo, threaded-echo vs
#   bench/bare-thread-echo (goal >= 0.90),
#   loadgen vs bench/epoll-client on the same server (goal: loadgen >= epoll-client),
#   loadgen CPU per request vs the server's (goal: loadgen <= server),
#   async-echo at 10,000 connections from one loadgen process.
# req/s ratios need the server to be the bottleneck; the CPU-per-request ratios (printed too)
# hold even when the client or a busy machine is. Both want a quiet machine.
# Env: BENCH_SECONDS, BENCH_REPEAT (2: best of N runs per point), BENCH_CONNECTIONS (1000),
#      BENCH_BIG (10000), BENCH_SERVER_CPU (0),
#      BENCH_CLIENT_CPU (1), BENCH_DIR (results/bench: every JSON kept there).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-5}
REPEAT=${BENCH_REPEAT:-2}
CONNS=${BENCH_CONNECTIONS:-1000}
BIG=${BENCH_BIG:-10000}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}
DIR=${BENCH_DIR:-results/bench}
mkdir -p "$DIR"

for b in bin/loadgen bin/async-echo bin/threaded-echo bin/bench/bare-epoll-echo \
         bin/bench/bare-thread-echo bin/bench/epoll-client; do
    [[ -x $b ]] || { echo "bench: $b missing (run make first)" >&2; exit 1; }
done

PIN_S=() PIN_C=()
if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
    PIN_S=(taskset -c "$SCPU") PIN_C=(taskset -c "$CCPU")
else
    echo "bench: taskset or a second CPU missing: running unpinned" >&2
fi

SERVER_PID="" SERVER_PORT=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# start_server BIN [ARGS...]: starts it pinned, on a free port; sets SERVER_PID, SERVER_PORT.
start_server() {
    local bin=$1; shift
    local out="$DIR/$(basename "$bin").out"
    "${PIN_S[@]}" "$bin" --port 0 "$@" >"$out" 2>"$DIR/$(basename "$bin").err" &
    SERVER_PID=$!
    for _ in $(seq 100); do
        SERVER_PORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$out" | head -1)
        [[ -n $SERVER_PORT ]] && return 0
        sleep 0.05
    done
    echo "bench: $bin did not print its listening line" >&2
    exit 1
}

# jget FILE EXPR: a value of the loadgen JSON (EXPR in Python, d = the document, s = step 0).
jget() {
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d.get("steps",[{}])[0]; print(eval(sys.argv[2]))' "$1" "$2"
}

# better A B: true if JSON file A has a higher per_sec than B (B missing counts as 0).
better() {
    python3 -c 'import json,sys
def r(f):
    try:
        d = json.load(open(f))
        return d["steps"][0]["requests"]["per_sec"] if "steps" in d else d["per_sec"]
    except Exception:
        return -1
sys.exit(0 if r(sys.argv[1]) > r(sys.argv[2]) else 1)' "$1" "$2"
}

# bad_of FILE: errors + mismatches + timeouts of one run's JSON (loadgen or epoll-client); a
# run that wrote no JSON counts as 1.
bad_of() {
    python3 -c 'import json,sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print(1); sys.exit(0)
if "steps" in d:
    r = d["steps"][0]["requests"]
    print(r["errors"] + r["mismatches"] + r["timeouts"])
else:
    print(d["errors"] + d["mismatches"])' "$1"
}

# loadgen_run NAME CONNS [ARGS...]: drives the running server BENCH_REPEAT times, keeps the
# best run's JSON in $DIR/NAME.json (a shared machine only ever makes a run slower), and the
# bad outcomes of *every* run summed in $DIR/NAME.bad: best-of-N must not hide a failing run.
loadgen_run() {
    local name=$1 conns=$2 bad=0; shift 2
    rm -f "$DIR/$name.json"
    for _ in $(seq "$REPEAT"); do
        rm -f "$DIR/$name.try.json"
        "${PIN_C[@]}" bin/loadgen --target "127.0.0.1:$SERVER_PORT" --connections "$conns" \
            --duration "$SECS" --size 64 --threads 1 --server-pid "$SERVER_PID" --quiet \
            --json "$DIR/$name.try.json" "$@" 2>"$DIR/$name.err"
        bad=$((bad + $(bad_of "$DIR/$name.try.json")))
        if better "$DIR/$name.try.json" "$DIR/$name.json"; then
            mv "$DIR/$name.try.json" "$DIR/$name.json"
        fi
    done
    rm -f "$DIR/$name.try.json"
    echo "$bad" >"$DIR/$name.bad"
}

# epoll_client_run CONNS: the bare client against the running server, best of BENCH_REPEAT.
epoll_client_run() {
    local bad=0
    rm -f "$DIR/epoll-client.json"
    for _ in $(seq "$REPEAT"); do
        "${PIN_C[@]}" bin/bench/epoll-client --port "$SERVER_PORT" --connections "$1" \
            --duration "$SECS" --size 64 >"$DIR/epoll-client.try.json"
        bad=$((bad + $(bad_of "$DIR/epoll-client.try.json")))
        if better "$DIR/epoll-client.try.json" "$DIR/epoll-client.json"; then
            mv "$DIR/epoll-client.try.json" "$DIR/epoll-client.json"
        fi
    done
    rm -f "$DIR/epoll-client.try.json"
    echo "$bad" >"$DIR/epoll-client.bad"
}

ROWS=()
# row NAME: one table line from $DIR/NAME.json (the best run); `bad` is summed over all runs.
row() {
    local f="$DIR/$1.json" bad
    bad=$(cat "$DIR/$1.bad" 2>/dev/null || echo 1)
    ROWS+=("$(jget "$f" '"%-28s %7d %10.0f %8d %9.2f %9.2f %6.2f %5d" % ("'"$1"'",
        s["connections"]["established"], s["requests"]["per_sec"], s["latency_us"]["p99"],
        s["loadgen"]["cpu_us_per_request"], s["server"]["cpu_us_per_request"],
        (s["loadgen"]["cpu_s"]["user"]+s["loadgen"]["cpu_s"]["sys"])/s["duration_s"],
        '"$bad"')')")
}

echo "bench: ${SECS}s per point (best of $REPEAT), $CONNS connections, 64-byte messages, server on CPU $SCPU," \
     "client on CPU $CCPU; JSON in $DIR" >&2

for pair in "async-echo bench/bare-epoll-echo" "threaded-echo bench/bare-thread-echo"; do
    for srv in $pair; do
        name=$(basename "$srv")
        start_server "bin/$srv"
        loadgen_run "$name" "$CONNS"
        if [[ $srv == async-echo ]]; then
            # The same server driven by the bare client, for loadgen's own bar.
            epoll_client_run "$CONNS"
        fi
        cleanup
        row "$name"
    done
done

# The raw-event variant of the same server (--api event), beside the default bufferevent one:
# bufferevents cost an ioctl(FIONREAD) and readv per read that a hand-written loop does not.
start_server bin/async-echo --api event
loadgen_run "async-echo-api-event" "$CONNS"
cleanup
row "async-echo-api-event"

start_server bin/async-echo
REPEAT=1 loadgen_run "async-echo-$BIG" "$BIG" --source-ips 127.0.0.1-127.0.0.8 --connect-timeout 5000
cleanup
row "async-echo-$BIG"

rps() { jget "$DIR/$1.json" 's["requests"]["per_sec"]'; }
ratio() { python3 -c 'import sys; a,b=map(float,sys.argv[1:3]); g=float(sys.argv[3]); r=a/b if b else 0; print("%.3f  %s" % (r, "ok" if r>=g else "MISSED"))' "$@"; }

echo
printf '%-28s %7s %10s %8s %9s %9s %6s %5s\n' "run (loadgen -> server)" conns "req/s" "p99 us" \
    "lg us/req" "srv us/req" "lg cpu" "bad"
for r in "${ROWS[@]}"; do echo "$r"; done
ec_rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["per_sec"])' "$DIR/epoll-client.json")
ec_cpu=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cpu_us_per_request"])' "$DIR/epoll-client.json")
printf '%-28s %7d %10.0f %8s %9.2f %9s %6s %5s\n' "epoll-client -> async-echo" "$CONNS" "$ec_rps" "-" \
    "$ec_cpu" "-" "-" "$(cat "$DIR/epoll-client.bad" 2>/dev/null || echo 1)"
echo
srvcpu() { jget "$DIR/$1.json" 's["server"]["cpu_us_per_request"]'; }
echo "async-echo / bare-epoll-echo      $(ratio "$(rps async-echo)" "$(rps bare-epoll-echo)" 0.90)   (goal >= 0.90, req/s)"
echo "  same, by server CPU per request $(ratio "$(srvcpu bare-epoll-echo)" "$(srvcpu async-echo)" 0.90)   (bare us/req / real us/req)"
echo "async-echo --api event / bare     $(ratio "$(rps async-echo-api-event)" "$(rps bare-epoll-echo)" 0.90)   (goal >= 0.90, req/s)"
echo "  same, by server CPU per request $(ratio "$(srvcpu bare-epoll-echo)" "$(srvcpu async-echo-api-event)" 0.90)   (bare us/req / real us/req)"
echo "threaded-echo / bare-thread-echo  $(ratio "$(rps threaded-echo)" "$(rps bare-thread-echo)" 0.90)   (goal >= 0.90, req/s)"
echo "  same, by server CPU per request $(ratio "$(srvcpu bare-thread-echo)" "$(srvcpu threaded-echo)" 0.90)   (bare us/req / real us/req)"
echo "loadgen / epoll-client req/s      $(ratio "$(rps async-echo)" "$ec_rps" 1.0)   (goal >= 1.00, same server)"
lg=$(jget "$DIR/async-echo.json" 's["loadgen"]["cpu_us_per_request"]')
sv=$(jget "$DIR/async-echo.json" 's["server"]["cpu_us_per_request"]')
echo "server / loadgen CPU per request  $(ratio "$sv" "$lg" 1.0)   (goal >= 1.00: loadgen ${lg} us, server ${sv} us)"
echo "async-echo at $BIG connections: $(jget "$DIR/async-echo-$BIG.json" '"%d established, %.0f req/s, p99 %d us, server RSS/conn %.0f B" % (s["connections"]["established"], s["requests"]["per_sec"], s["latency_us"]["p99"], s["server"]["rss_per_conn_bytes"])')"
