#!/usr/bin/env bash
# make bench: the project's performance bar, measured side by side (docs/metrics.md).
# At 1,000 closed-loop connections, 64-byte messages, BENCH_SECONDS (5) per point, server and
# client pinned to different cores, BENCH_REPEAT (2) interleaved rounds (every point once per
# round, best round kept):
#   async-echo (both --api variants) vs bench/bare-epoll-echo, threaded-echo vs
#   bench/bare-thread-echo (goal >= 0.90),
#   loadgen vs bench/epoll-client on the same server (goal: loadgen >= epoll-client),
#   loadgen CPU per request vs the server's (goal: loadgen <= server),
#   loadgen --scenario dns vs dnsperf against threaded-dns and async-dns (goal: loadgen's
#   queries/s >= dnsperf's at no more CPU per query; dnsperf loses nothing),
#   async-echo at 10,000 connections from one loadgen process.
# Every point reports the server's and the client's CPU utilisation (cores). A req/s ratio is a
# verdict only when both servers were saturated (>= 0.95 of their core) and the clients were
# not; otherwise the line says "client-bound: no verdict" and gives the CPU-per-request ratio.
# The client is `loadgen --threads 1` pinned to the other CPU: one thread on one core, which
# saturates a server pinned to one core (docs/metrics.md has the measurement).
# Env: BENCH_SECONDS, BENCH_REPEAT, BENCH_CONNECTIONS (1000), BENCH_BIG (10000),
#      BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_DIR (results/bench: every JSON kept),
#      BENCH_DNS (1; 0 skips the DNS points).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
JSONPY=(python3 "$REPO/scripts/tvsa_json.py")

SECS=${BENCH_SECONDS:-5}
REPEAT=${BENCH_REPEAT:-2}
CONNS=${BENCH_CONNECTIONS:-1000}
BIG=${BENCH_BIG:-10000}
SCPU=${BENCH_SERVER_CPU:-0}
CCPU=${BENCH_CLIENT_CPU:-1}
DIR=${BENCH_DIR:-results/bench}
DNS=${BENCH_DNS:-1}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

for b in bin/loadgen bin/async-echo bin/threaded-echo bin/bench/bare-epoll-echo \
         bin/bench/bare-thread-echo bin/bench/epoll-client; do
    [[ -x $b ]] || { echo "bench: $b missing (run make first)" >&2; exit 1; }
done
DNS_SERVERS=()
if [[ $DNS -eq 1 ]]; then
    if ! command -v dnsperf >/dev/null; then
        echo "bench: dnsperf not found (scripts/install-deps.sh installs it): no DNS points" >&2
    else
        for s in threaded-dns async-dns; do [[ -x bin/$s ]] && DNS_SERVERS+=("$s"); done
    fi
fi

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

# proc_cpu_s PID: user + sys CPU seconds of PID so far (/proc/PID/stat fields 14 and 15).
proc_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# children_cpu_s: sets CHILDREN_CPU to the CPU seconds of every child waited for so far (bash
# `times`, second line; not in $(...): a subshell's counters start at 0).
children_cpu_s() {
    times >"$DIR/.times"
    CHILDREN_CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] }
                                   printf "%.3f", s }' "$DIR/.times")
}

# sidecar FILE SERVER_CPU0 CLIENT_CPU0 T0: the server's and the client's CPU seconds and the wall
# time since the given starting values, as JSON (for clients that do not sample the server).
sidecar() {
    local file=$1 s0=$2 c0=$3 t0=$4 s1 t1
    s1=$(proc_cpu_s "$SERVER_PID")
    t1=$(date +%s.%N)
    children_cpu_s
    awk -v s0="$s0" -v s1="$s1" -v c0="$c0" -v c1="$CHILDREN_CPU" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "{\"server_cpu_s\": %.3f, \"client_cpu_s\": %.3f, \"wall_s\": %.3f}\n", s1 - s0, c1 - c0, t1 - t0 }' >"$file"
}

# loadgen_point NAME ROUND CONNS [ARGS...]: loadgen against the running server, JSON in
# $DIR/NAME.rROUND.json.
loadgen_point() {
    local name=$1 rnd=$2 conns=$3; shift 3
    rm -f "$DIR/$name.r$rnd.json"
    "${PIN_C[@]}" bin/loadgen --target "127.0.0.1:$SERVER_PORT" --connections "$conns" \
        --duration "$SECS" --size 64 --threads 1 --server-pid "$SERVER_PID" --quiet \
        --json "$DIR/$name.r$rnd.json" "$@" 2>"$DIR/$name.err" || true
}

# epoll_client_point ROUND: the bare client against the running server.
epoll_client_point() {
    local rnd=$1 s0 c0 t0
    s0=$(proc_cpu_s "$SERVER_PID"); children_cpu_s; c0=$CHILDREN_CPU; t0=$(date +%s.%N)
    "${PIN_C[@]}" bin/bench/epoll-client --port "$SERVER_PORT" --connections "$CONNS" \
        --duration "$SECS" --size 64 >"$DIR/epoll-client.r$rnd.json" || true
    sidecar "$DIR/epoll-client.r$rnd.cpu.json" "$s0" "$c0" "$t0"
}

# dnsperf_point NAME ROUND: dnsperf against the running DNS server: the same names as loadgen's
# dns point, 100 UDP sockets with 100 queries in flight (loadgen: 100 sockets, one each).
dnsperf_point() {
    local name=$1 rnd=$2 s0 c0 t0
    s0=$(proc_cpu_s "$SERVER_PID"); children_cpu_s; c0=$CHILDREN_CPU; t0=$(date +%s.%N)
    "${PIN_C[@]}" dnsperf -s 127.0.0.1 -p "$SERVER_PORT" -d "$DIR/dnsperf-queries.txt" \
        -l "$SECS" -c 100 -q 100 -T 1 >"$DIR/$name.r$rnd.txt" 2>&1 || true
    sidecar "$DIR/$name.r$rnd.cpu.json" "$s0" "$c0" "$t0"
}

# The DNS names both tools ask for: the sample zone's, without big.example.test (its answer is
# truncated over UDP, which dnsperf does not follow up over TCP).
grep -v '^#' data/sample.zone | awk 'NF { print $1 }' | sort -u | grep -v '^big\.' >"$DIR/dns-names.txt"
awk '{ print $1 " A" }' "$DIR/dns-names.txt" >"$DIR/dnsperf-queries.txt"

echo "bench: ${SECS}s per point, $REPEAT interleaved rounds (best kept), $CONNS connections, 64-byte" \
     "messages, server on CPU $SCPU, client (loadgen --threads 1) on CPU $CCPU; JSON in $DIR" >&2

for ((r = 1; r <= REPEAT; r++)); do
    start_server bin/async-echo
    loadgen_point async-echo "$r" "$CONNS"
    epoll_client_point "$r"          # the same server driven by the bare client
    cleanup
    start_server bin/bench/bare-epoll-echo
    loadgen_point bare-epoll-echo "$r" "$CONNS"
    cleanup
    # The raw-event variant of the same server, beside the default bufferevent one.
    start_server bin/async-echo --api event
    loadgen_point async-echo-api-event "$r" "$CONNS"
    cleanup
    start_server bin/threaded-echo
    loadgen_point threaded-echo "$r" "$CONNS"
    cleanup
    start_server bin/bench/bare-thread-echo
    loadgen_point bare-thread-echo "$r" "$CONNS"
    cleanup
    for s in "${DNS_SERVERS[@]}"; do
        start_server "bin/$s"
        loadgen_point "$s-loadgen" "$r" 100 --scenario dns --opt names="$DIR/dns-names.txt" \
            --opt zone=data/sample.zone
        dnsperf_point "$s-dnsperf" "$r"
        cleanup
    done
done

start_server bin/async-echo
loadgen_point "async-echo-$BIG" 1 "$BIG" --source-ips 127.0.0.1-127.0.0.8 --connect-timeout 5000
cleanup

echo
rm -f "$DIR/.times"
"${JSONPY[@]}" bench-report "$DIR" "$REPEAT" "$CONNS" "$BIG" "${DNS_SERVERS[*]}"
