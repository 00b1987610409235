#!/usr/bin/env bash
# Runs the experiment of one coursework lab (issue 8; handouts in docs/labs/) and writes its raw
# JSON, a summary table and gnuplot PNGs into one directory.
#
# Usage: scripts/lab.sh N [--quick] [--out DIR] [--cpus S,L] [--no-build] [--help]
set -euo pipefail

# The whole script is one block, so bash parses it before running it: editing the file while a
# lab runs cannot change the running script.
{
usage() {
    cat <<'EOF'
Usage: scripts/lab.sh N [--quick] [--out DIR] [--cpus S,L] [--no-build]

Runs lab N (1-7) of docs/labs/ and writes DIR (default results/lab-N/):
  lab.json       what ran: lab, title, quick or full, date, load average, seconds, every command
  summary.tsv    the figures the handout asks about, one row per measurement
  summary.txt    the same as an aligned table (also printed on stderr at the end)
  *.png          the plots named in the handout
  json/*.json    every loadgen / dnsq JSON document
  servers/*      each server's stdout (listening and stopped lines) and stderr
  logs/*         loadgen's and dnsq's stderr per run, gnuplot warnings
  commands.txt   every server, loadgen and dnsq command that ran, in order

  1  thread per connection vs one event loop: echo ramp, throughput and p99
  2  what a connection costs: hold ramp, RSS vs VSZ, --stack-kb
  3  context switches per request at fixed offered rates
  4  CPU-bound handlers: --work-us on one core and on two
  5  broadcast and slow consumers: chat, --broadcast naive vs queued
  6  datagrams and timeouts: UDP loss (default and small --rcvbuf), dnsq timeouts and
     retries, 1,000 names
  7  the pool of 50: queueing when connections outnumber workers

  --quick      small steps, about 20 s a lab (what make test runs)
  --out DIR    results directory (replaced if it holds an earlier lab.sh run)
  --cpus S,L   the server on CPU S, loadgen on CPU L (default 0,1; lab 4's two-core runs
               use both): pick two real cores, not two SMT siblings (docs/labs/README.md)
  --no-build   do not run make for the binaries
  --help       this text

Servers are started on free ports (--port 0) and stopped on exit and on Ctrl-C.
EOF
}

cd "$(dirname "$0")/.."
REPO=$PWD

LAB= QUICK=0 OUT= BUILD=1 CPUS=
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --out) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; OUT=$2; shift ;;
        --out=*) OUT=${1#--out=} ;;
        --cpus) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; CPUS=$2; shift ;;
        --cpus=*) CPUS=${1#--cpus=} ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        [1-7]) [[ -z $LAB ]] || { usage >&2; exit 2; }; LAB=$1 ;;
        *) echo "lab: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ -n $LAB ]] || { echo "lab: which lab? (1-7)" >&2; usage >&2; exit 2; }

log() { echo "lab $LAB: $*" >&2; }
die() { log "$*"; exit 1; }
for tool in python3 taskset gnuplot; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NCPU=$(getconf _NPROCESSORS_ONLN)
if [[ -n $CPUS ]]; then
    [[ $CPUS =~ ^([0-9]+),([0-9]+)$ ]] || { log "--cpus takes two CPU numbers, S,L (e.g. 0,2): got '$CPUS'"; exit 2; }
    SERVER_CPUS=${BASH_REMATCH[1]} LOADGEN_CPUS=${BASH_REMATCH[2]}
    [[ $SERVER_CPUS != "$LOADGEN_CPUS" ]] || { log "--cpus $CPUS: the server and loadgen need two different CPUs"; exit 2; }
    for c in "$SERVER_CPUS" "$LOADGEN_CPUS"; do
        taskset -c "$c" true 2>/dev/null || { log "--cpus $CPUS: CPU $c is not online or not allowed here"; exit 2; }
    done
    ALL_CPUS=$SERVER_CPUS,$LOADGEN_CPUS
elif (( NCPU >= 2 )); then
    SERVER_CPUS=0 LOADGEN_CPUS=1 ALL_CPUS=0-1
else
    SERVER_CPUS=0 LOADGEN_CPUS=0 ALL_CPUS=0
fi
BIN=${TVSA_BIN:-$REPO/bin}

# ---------------------------------------------------------------------------------------------
# Output directory: an earlier run of this script (it has lab.json) is replaced, anything else
# is left alone.
OUT=${OUT:-$REPO/results/lab-$LAB}
if [[ -d $OUT && -n $(ls -A "$OUT") ]]; then
    [[ -f $OUT/lab.json ]] || die "$OUT is not empty and is not a lab.sh run; choose another --out"
    rm -rf "${OUT:?}"/*
fi
mkdir -p "$OUT"/json "$OUT"/servers "$OUT"/logs
OUT=$(cd "$OUT" && pwd)
: >"$OUT/commands.txt"
# Marks the directory as lab.sh's at once (so a rerun may replace it); rewritten at the end.
printf '{"schema": "tvsa-lab/1", "lab": %d, "complete": false}\n' "$LAB" >"$OUT/lab.json"
TSV=$OUT/summary.tsv

# ---------------------------------------------------------------------------------------------
# Processes: every server and client started is stopped on exit, error or Ctrl-C.
# shellcheck source=scripts/lib/servers.sh
source "$REPO/scripts/lib/servers.sh"    # TVSA_LIVE: every server started and not stopped
on_exit() {
    local rc=$? pid
    trap - EXIT INT TERM
    if [[ -n ${LOADGEN_PID:-} ]]; then
        kill -TERM "$LOADGEN_PID" 2>/dev/null || true
        wait "$LOADGEN_PID" 2>/dev/null || true
    fi
    tvsa_stop_all >/dev/null 2>&1
    [[ $rc -ne 0 ]] && log "stopped early (exit $rc); partial results in $OUT"
    exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM

# start_server TAG CPUS BINARY ARGS...: starts it on port 0, waits for its listening line, sets
# PID and PORT; dies if the server does not come up.
start_server() {
    local tag=$1 cpus=$2; shift 2
    echo "taskset -c $cpus $* --port 0" >>"$OUT/commands.txt"
    tvsa_server_start "$OUT/servers" "$tag" "$cpus" "$@" ||
        die "$tag: no listening line (see $OUT/servers/$tag.stderr)"
    PID=$TVSA_SERVER_PID
    PORT=$TVSA_SERVER_PORT
}

# stop_server PID: SIGTERM, up to 10 s, then SIGKILL; returns the exit status.
stop_server() {
    tvsa_server_stop "$1"
}

# loadgen TAG CPUS ARGS...: one loadgen run against 127.0.0.1:$PORT, sampling $PID, JSON in
# json/TAG.json. A watchdog stops a stuck run (loadgen still writes what it measured). It runs
# in the background so that a signal reaches our trap at once; loadgen_start and loadgen_wait
# let a lab look at the server while the load runs.
LOADGEN_PID=
LOADGEN_TAG=
loadgen_start() {
    local tag=$1 cpus=$2; shift 2
    local cmd=(timeout -k 5 240 taskset -c "$cpus" "$BIN/loadgen" --target "127.0.0.1:$PORT"
               --threads 1 --server-pid "$PID" --quiet --json "$OUT/json/$tag.json" "$@")
    echo "${cmd[*]:4}" >>"$OUT/commands.txt"
    "${cmd[@]}" </dev/null >/dev/null 2>"$OUT/logs/$tag.log" &
    LOADGEN_PID=$! LOADGEN_TAG=$tag
}
loadgen_wait() {
    local rc=0
    wait "$LOADGEN_PID" || rc=$?
    LOADGEN_PID=
    [[ $rc -eq 0 ]] || log "$LOADGEN_TAG: loadgen exited $rc (see logs/$LOADGEN_TAG.log)"
    kill -0 "$PID" 2>/dev/null ||
        log "$LOADGEN_TAG: the server (pid $PID) is gone: it crashed or something else stopped it"
    sed 's/^/    /' "$OUT/logs/$LOADGEN_TAG.log" >&2
}
loadgen() {
    loadgen_start "$@"
    loadgen_wait
}

# steps_tsv LABEL JSON COLUMN=PATH...: appends one row per step of a loadgen JSON to
# summary.tsv (header first if new): label, then each dotted PATH of the step ("NaN" if absent).
# Computed columns: bad = errors + timeouts + mismatches + failed connects; PATH/PATH divides.
steps_tsv() {
    python3 "$REPO/scripts/tvsa_json.py" steps-tsv "$TSV" "$@"
}

# Rows of $TSV, by their first column (run), into data/RUN.tsv for gnuplot (header dropped), so
# a plot's column numbers are those of $TSV.
split_tsv() {
    mkdir -p "$OUT/data"
    awk -F'\t' -v d="$OUT/data" 'NR > 1 { print > (d "/" $1 ".tsv") }' "$TSV"
}

# plot NAME GNUPLOT-BODY: draws NAME.png; column numbers refer to $TSV (see split_tsv).
QTAG=""
[[ $QUICK -eq 1 ]] && QTAG=" (quick run)"
plot() {
    local name=$1 body=$2
    if ! gnuplot 2>"$OUT/logs/$name.gnuplot.log" <<EOF
set terminal pngcairo size 960,600 noenhanced font "sans,11"
set output '$OUT/$name.png'
set datafile separator '\t'
set datafile missing 'NaN'
set grid lc rgb '#dddddd'
set offsets graph 0.03, graph 0.03, graph 0.05, 0
set key top left
set linetype 1 lc rgb '#7570b3' lw 2 pt 5 ps 1.2
set linetype 2 lc rgb '#1b9e77' lw 2 pt 9 ps 1.4
set linetype 3 lc rgb '#d95f02' lw 2 pt 7 ps 1.2
set linetype 4 lc rgb '#e7298a' lw 2 pt 11 ps 1.2
D = '$OUT/data'
$body
EOF
    then
        log "$name.png failed: $(tr '\n' ' ' <"$OUT/logs/$name.gnuplot.log")"
        return 1
    fi
}

# lab.json: what ran, for the record.
write_meta() {
    local title=$1
    python3 "$REPO/scripts/tvsa_json.py" lab-meta "$OUT" "$LAB" "$title" "$QUICK" "$SERVER_CPUS" \
        "$LOADGEN_CPUS" "$SECONDS"
}

# align FILE: a TSV as aligned columns (column(1) is not everywhere).
align() {
    python3 "$REPO/scripts/tvsa_json.py" align "$1"
}

# summary.txt: every table of the lab (summary.tsv, then any other *.tsv), aligned.
finish() {
    local t
    : >"$OUT/summary.txt"
    for t in "$OUT"/*.tsv; do
        [[ $t == "$OUT/summary.tsv" ]] && continue
        { echo "== $(basename "$t")"; align "$t"; echo; } >>"$OUT/summary.txt"
    done
    { align "$OUT/summary.tsv"; echo; cat "$OUT/summary.txt"; } >"$OUT/summary.tmp"
    mv "$OUT/summary.tmp" "$OUT/summary.txt"
    write_meta "$1"
    cat "$OUT/summary.txt" >&2
    log "done in $SECONDS s: $OUT"
}

need() {
    local b
    for b in "$@"; do [[ -x $BIN/$b ]] || return 1; done
}

if [[ $BUILD -eq 1 ]]; then
    targets=(bin/threaded-echo bin/async-echo bin/loadgen)
    case $LAB in
        5) targets+=(bin/threaded-chat bin/async-chat) ;;
        6) targets+=(bin/threaded-udp bin/async-udp bin/async-dns bin/dnsq) ;;
    esac
    make --no-print-directory -s "${targets[@]}" >&2 || log "make failed; using the binaries in $BIN"
fi
need threaded-echo async-echo loadgen || die "bin/threaded-echo, bin/async-echo or bin/loadgen missing (run make)"
ECHO_COLS=(conns=connections.target established=connections.established
           req_per_s=requests.per_sec p50_us=latency_us.p50 p99_us=latency_us.p99
           bad=bad timeouts=requests.timeouts threads=server.threads
           srv_cpu_us_per_req=server.cpu_us_per_request
           ctx_per_req=server.ctx_switches_per_request
           ctx_incomplete=server.ctx_switches_incomplete
           server_cores=server_cores loadgen_cores=loadgen_cores)

# ---------------------------------------------------------------------------------------------
# Lab 1: echo ramp, one thread per connection vs one event loop.
lab1() {
    local steps=10,50,100,200,500,1000,2000,5000 dur=5
    [[ $QUICK -eq 1 ]] && steps=10,100,1000 dur=1
    local m
    for m in threaded async; do
        start_server "$m" "$SERVER_CPUS" "$BIN/$m-echo"
        loadgen "echo-$m" "$LOADGEN_CPUS" --scenario echo --connections "$steps" \
            --duration "$dur" --size 64 --timeout 2000
        stop_server "$PID" || log "$m-echo exited $?"
        steps_tsv "$m" "$OUT/json/echo-$m.json" "${ECHO_COLS[@]}"
    done
    split_tsv
    plot throughput "
set title 'Lab 1: echo throughput vs concurrent connections (64 B, closed loop)$QTAG'
set xlabel 'concurrent connections (log scale)'
set ylabel 'requests per second (req/s)'
set logscale x; set yrange [0:*]; set key bottom left
plot D.'/threaded.tsv' using 2:4 with linespoints lt 1 title 'threaded-echo (1 thread per connection)', \
     D.'/async.tsv' using 2:4 with linespoints lt 2 title 'async-echo (1 thread, libevent loop)'"
    plot p99 "
set title 'Lab 1: p99 latency vs concurrent connections$QTAG'
set xlabel 'concurrent connections (log scale)'
set ylabel 'p99 latency (ms, log scale)'
set logscale xy
plot D.'/threaded.tsv' using 2:(\$6/1000.0) with linespoints lt 1 title 'threaded-echo (1 thread per connection)', \
     D.'/async.tsv' using 2:(\$6/1000.0) with linespoints lt 2 title 'async-echo (1 thread, libevent loop)'"
    finish "Thread per connection versus one event loop"
}

# Lab 2: hold ramp, memory per idle connection.
lab2() {
    local steps=100,1000,5000 dur=2
    [[ $QUICK -eq 1 ]] && steps=100,1000 dur=1
    local cols=(conns=connections.target established=connections.established alive=alive
                threads=server.threads rss_kib=server.rss_kib vsz_kib=server.vsz_kib
                rss_per_conn_b=server.rss_per_conn_bytes vsz_per_conn_b=server.vsz_per_conn_bytes
                kstack_per_conn_b=server.kernel_per_conn_bytes.kernel_stack)
    local m
    for m in threaded-8m threaded-64k async; do
        case $m in
            threaded-8m) start_server "$m" "$SERVER_CPUS" "$BIN/threaded-echo" ;;
            threaded-64k) start_server "$m" "$SERVER_CPUS" "$BIN/threaded-echo" --stack-kb 64 ;;
            async) start_server "$m" "$SERVER_CPUS" "$BIN/async-echo" ;;
        esac
        loadgen "hold-$m" "$LOADGEN_CPUS" --scenario hold --connections "$steps" \
            --duration "$dur" --timeout 2000
        stop_server "$PID" || log "$m exited $?"
        steps_tsv "$m" "$OUT/json/hold-$m.json" "${cols[@]}"
    done
    split_tsv
    local lines="plot D.'/threaded-8m.tsv' using 2:(\$C > 0 ? \$C/1024.0 : NaN) with linespoints lt 1 title 'threaded-echo (default 8 MiB stacks)', \
     D.'/threaded-64k.tsv' using 2:(\$C > 0 ? \$C/1024.0 : NaN) with linespoints lt 3 dt 2 title 'threaded-echo --stack-kb 64', \
     D.'/async.tsv' using 2:(\$C > 0 ? \$C/1024.0 : NaN) with linespoints lt 2 title 'async-echo'"
    plot rss_per_conn "
set title 'Lab 2: resident memory (RSS) per idle connection$QTAG'
set xlabel 'connections held (log scale)'
set ylabel 'RSS per connection (KiB, log scale)'
set logscale xy; set key top right
${lines//\$C/\$8}"
    plot vsz_per_conn "
set title 'Lab 2: virtual memory (VSZ) per idle connection$QTAG'
set xlabel 'connections held (log scale)'
set ylabel 'VSZ per connection (KiB, log scale)'
set logscale xy; set key bottom left
set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05
set arrow from graph 0, first 8192 to graph 1, first 8192 nohead dt 2 lc rgb '#888888'
set label '8 MiB = 8192 KiB (default stack)' at graph 0.5, first 8192 offset 0,-1 tc rgb '#666666'
${lines//\$C/\$9}"
    finish "What a connection costs"
}

# Lab 3: context switches per request at fixed offered rates (open loop).
lab3() {
    local rates=(1000 5000 20000 50000) conns=50 dur=3
    [[ $QUICK -eq 1 ]] && rates=(2000 30000) dur=1
    local cols=(rate=rate.target achieved=rate.achieved conns=connections.target
                threads=server.threads vol=server.ctx_switches.voluntary
                invol=server.ctx_switches.involuntary ctx_per_req=server.ctx_switches_per_request
                ctx_per_s=server.ctx_switches_per_sec srv_cpu_us_per_req=server.cpu_us_per_request
                p99_us=latency_us.p99 bad=bad ctx_incomplete=server.ctx_switches_incomplete
                server_cores=server_cores loadgen_cores=loadgen_cores)
    local m r
    for m in threaded pool50 async; do
        case $m in
            threaded) start_server "$m" "$SERVER_CPUS" "$BIN/threaded-echo" ;;
            pool50) start_server "$m" "$SERVER_CPUS" "$BIN/threaded-echo" --pool 50 ;;
            async) start_server "$m" "$SERVER_CPUS" "$BIN/async-echo" ;;
        esac
        for r in "${rates[@]}"; do
            loadgen_start "rate$r-$m" "$LOADGEN_CPUS" --scenario echo --connections "$conns" \
                --duration "$dur" --rate "$r" --timeout 2000
            # What the student would read by hand: every thread's switch counters, under load
            # (at the end of the step's measurement, while connections are still open).
            sleep "$dur"
            grep -H ctxt_switches /proc/"$PID"/task/*/status >"$OUT/$m-task-status.txt" 2>/dev/null || true
            loadgen_wait
            steps_tsv "$m" "$OUT/json/rate$r-$m.json" "${cols[@]}"
        done
        stop_server "$PID" || log "$m exited $?"
    done
    split_tsv
    plot ctx_per_request "
set title 'Lab 3: server context switches per request, $conns connections, open loop$QTAG'
set xlabel 'offered load (requests/s, log scale)'
set ylabel 'context switches per request (log scale)'
set logscale xy; set key top right
set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05
# A step whose threads changed between loadgen's two samples (ctx_incomplete, column 13) has
# an undercount: it is left out.
ok(c) = (c > 0 && column(13) == 0) ? c : NaN
plot D.'/threaded.tsv' using 2:(ok(\$8)) with linespoints lt 1 title 'threaded-echo (1 thread per connection)', \
     D.'/pool50.tsv' using 2:(ok(\$8)) with linespoints lt 3 dt 2 title 'threaded-echo --pool 50', \
     D.'/async.tsv' using 2:(ok(\$8)) with linespoints lt 2 title 'async-echo'"
    finish "Context switches"
}

# Lab 4: CPU-bound handlers on one core and on two.
lab4() {
    local steps=1,10,50 dur=3 work=200
    [[ $QUICK -eq 1 ]] && dur=1
    local m c
    for c in 1 2; do
        for m in threaded async; do
            local scpus=$SERVER_CPUS lcpus=$LOADGEN_CPUS
            [[ $c -eq 2 ]] && scpus=$ALL_CPUS lcpus=$ALL_CPUS
            start_server "$m-${c}core" "$scpus" "$BIN/$m-echo" --work-us "$work"
            loadgen "cpu-$m-${c}core" "$lcpus" --scenario echo --connections "$steps" \
                --duration "$dur" --timeout 5000
            stop_server "$PID" || log "$m exited $?"
            steps_tsv "$m-${c}core" "$OUT/json/cpu-$m-${c}core.json" "${ECHO_COLS[@]}" \
                srv_cpu_s=server.cpu_s.user
        done
    done
    split_tsv
    local ideal=$((1000000 / work))
    plot throughput "
set title 'Lab 4: CPU-bound echo, --work-us $work per message$QTAG'
set xlabel 'concurrent connections (log scale)'
set ylabel 'requests per second (req/s)'
set logscale x; set yrange [0:*]; set key top left
set arrow from graph 0, first $ideal to graph 1, first $ideal nohead dt 2 lc rgb '#888888'
set label 'one core: 1,000,000 us / $work us = $ideal req/s' at graph 0.98, first $ideal right offset 0,0.7 tc rgb '#666666'
plot D.'/threaded-1core.tsv' using 2:4 with linespoints lt 1 dt 2 title 'threaded-echo, server on 1 core', \
     D.'/threaded-2core.tsv' using 2:4 with linespoints lt 1 title 'threaded-echo, 2 cores', \
     D.'/async-1core.tsv' using 2:4 with linespoints lt 2 dt 2 title 'async-echo, server on 1 core', \
     D.'/async-2core.tsv' using 2:4 with linespoints lt 2 title 'async-echo, 2 cores'"
    plot latency "
set title 'Lab 4: median latency of CPU-bound echo, --work-us $work$QTAG'
set xlabel 'concurrent connections (log scale)'
set ylabel 'p50 latency (ms, log scale)'
set logscale xy; set key top left
set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05
plot D.'/threaded-1core.tsv' using 2:(\$5/1000.0) with linespoints lt 1 dt 2 title 'threaded-echo, 1 core', \
     D.'/threaded-2core.tsv' using 2:(\$5/1000.0) with linespoints lt 1 title 'threaded-echo, 2 cores', \
     D.'/async-1core.tsv' using 2:(\$5/1000.0) with linespoints lt 2 dt 2 title 'async-echo, 1 core', \
     D.'/async-2core.tsv' using 2:(\$5/1000.0) with linespoints lt 2 title 'async-echo, 2 cores', \
     x * $work / 1000.0 with lines dt 3 lw 2 lc rgb '#555555' title 'N x $work us: the whole queue on one core', \
     x * $work / 2000.0 with lines dt 4 lw 2 lc rgb '#999999' title 'N x $work us / 2: the queue shared by two cores'"
    finish "CPU-bound handlers"
}

# Lab 7: the pool of 50, persistent connections (starvation) and short ones (queueing).
lab7() {
    local steps=25,50,75,100,200 churn=25,50,100,200 dur=3 timeout=1000
    [[ $QUICK -eq 1 ]] && steps=25,50,100 churn=50,200 dur=1 timeout=500
    local m
    for m in pool50 async; do
        case $m in
            pool50) start_server "$m" "$SERVER_CPUS" "$BIN/threaded-echo" --pool 50 ;;
            async) start_server "$m" "$SERVER_CPUS" "$BIN/async-echo" ;;
        esac
        loadgen "echo-$m" "$LOADGEN_CPUS" --scenario echo --connections "$steps" \
            --duration "$dur" --timeout "$timeout"
        loadgen "churn-$m" "$LOADGEN_CPUS" --scenario churn --connections "$churn" \
            --duration "$dur" --timeout "$timeout"
        stop_server "$PID" || log "$m exited $?"
        steps_tsv "echo-$m" "$OUT/json/echo-$m.json" "${ECHO_COLS[@]}"
        steps_tsv "churn-$m" "$OUT/json/churn-$m.json" "${ECHO_COLS[@]}"
    done
    split_tsv
    plot starvation "
set title 'Lab 7: persistent connections vs a pool of 50 workers (timeout $timeout ms)$QTAG'
set xlabel 'concurrent connections'
set ylabel 'requests per second (req/s)'
set y2label 'timed-out requests in the step'
set y2tics; set ytics nomirror; set yrange [0:*]; set y2range [0:*]; set key bottom right
set arrow from 50, graph 0 to 50, graph 1 nohead dt 2 lc rgb '#888888'
set label '50 workers' at 50, graph 0.95 offset 0.5,0 tc rgb '#666666'
plot D.'/echo-pool50.tsv' using 2:4 with linespoints lt 3 title 'pool50: req/s', \
     D.'/echo-async.tsv' using 2:4 with linespoints lt 2 title 'async: req/s', \
     D.'/echo-pool50.tsv' using 2:8 axes x1y2 with linespoints lt 3 dt 2 title 'pool50: timeouts (right axis)', \
     D.'/echo-async.tsv' using 2:8 axes x1y2 with linespoints lt 2 dt 2 title 'async: timeouts (right axis)'"
    plot queueing "
set title 'Lab 7: connect-request-close (churn) latency vs concurrent clients$QTAG'
set xlabel 'concurrent clients (log scale)'
set ylabel 'latency (ms, log scale)'
set logscale xy; set key top left
plot D.'/churn-pool50.tsv' using 2:(\$5/1000.0) with linespoints lt 3 dt 2 title 'pool50: p50', \
     D.'/churn-pool50.tsv' using 2:(\$6/1000.0) with linespoints lt 3 title 'pool50: p99', \
     D.'/churn-async.tsv' using 2:(\$5/1000.0) with linespoints lt 2 dt 2 title 'async: p50', \
     D.'/churn-async.tsv' using 2:(\$6/1000.0) with linespoints lt 2 title 'async: p99'"
    finish "The pool of 50"
}

# Lab 5: broadcast and slow consumers. Each chat server, queued (default) and --broadcast naive,
# with no stalled client and with K clients that join and never read.
lab5() {
    need threaded-chat async-chat || {
        log "skipped: bin/threaded-chat or bin/async-chat missing"
        echo "skipped" >"$OUT/summary.tsv"; finish "Broadcast and slow consumers (skipped)"; return 0; }
    grep -qE '^ +chat ' <<<"$("$BIN/loadgen" --help 2>&1)" || {
        log "skipped: bin/loadgen has no chat scenario"
        echo "skipped" >"$OUT/summary.tsv"; finish "Broadcast and slow consumers (skipped)"; return 0; }
    local conns=20 dur=5 stalled=2 size=1000 rate=4000 senders=5
    [[ $QUICK -eq 1 ]] && dur=1
    local cols=(stalled=chat.stalled clients=connections.established lines_sent=chat.lines_sent
                sent_per_s=chat.lines_sent/duration_s lines_not_sent=chat.lines_not_sent delivered_per_s=requests.per_sec
                delivered_ratio=chat.delivered_ratio lost=chat.lost p50_us=latency_us.p50
                p99_us=latency_us.p99 max_us=latency_us.max rss_kib=server.rss_kib
                threads=server.threads server_cores=server_cores loadgen_cores=loadgen_cores)
    local m b k
    printf 'run\tstalled\tlines_broadcast\tdropped_backlog\tdropped_stalled\tmaxrss_kib\texit\n' >"$OUT/stopped.tsv"
    for m in threaded async; do
        for b in queued naive; do
            for k in 0 "$stalled"; do
                local tag=$m-$b-s$k rc=0
                start_server "$tag" "$SERVER_CPUS" "$BIN/$m-chat" --broadcast "$b"
                loadgen "chat-$tag" "$LOADGEN_CPUS" --scenario chat --connections "$conns" \
                    --duration "$dur" --size "$size" --opt senders="$senders" \
                    --opt rate="$rate" --opt stalled="$k"
                stop_server "$PID" || rc=$?
                steps_tsv "$m-$b" "$OUT/json/chat-$tag.json" "${cols[@]}"
                python3 "$REPO/scripts/tvsa_json.py" chat-stopped-row "$OUT/stopped.tsv" "$m-$b" "$k" \
                    "$OUT/servers/$tag.stdout" "$rc"
            done
        done
    done
    # A bigger room: 100 and 1,000 clients, one sender at loadgen's default 100 lines/s,
    # 64-byte lines, queued broadcast: the fan-out each model sustains and its latency
    # (compare.sh's chat run). Its own table, room.tsv.
    local room=100,1000 rdur=3
    [[ $QUICK -eq 1 ]] && rdur=1
    for m in threaded async; do
        start_server "room-$m" "$SERVER_CPUS" "$BIN/$m-chat"
        loadgen "room-$m" "$LOADGEN_CPUS" --scenario chat --connections "$room" \
            --duration "$rdur" --size 64
        stop_server "$PID" || log "room-$m exited $?"
        TSV=$OUT/room.tsv steps_tsv "$m" "$OUT/json/room-$m.json" conns=connections.target \
            clients=connections.established delivered_per_s=requests.per_sec \
            delivered_ratio=chat.delivered_ratio lost=chat.lost p50_us=latency_us.p50 \
            p99_us=latency_us.p99 max_us=latency_us.max threads=server.threads \
            rss_kib=server.rss_kib server_cores=server_cores loadgen_cores=loadgen_cores
    done
    # One row per server: delivered/s and p99 with no stalled client, then with K.
    mkdir -p "$OUT/data"
    python3 "$REPO/scripts/tvsa_json.py" chat-plot "$TSV" "$OUT/data/chat-plot.tsv" "$stalled"
    plot chat_rate "
set title 'Lab 5: chat, $conns clients, $senders senders, $rate lines/s of $size B in all$QTAG'
set ylabel 'lines delivered, % of (lines sent x other clients)'
set xlabel 'server and --broadcast mode'
set style data histograms; set style histogram clustered gap 1
set style fill solid 0.8 border -1; set yrange [0:110]; set key below
plot D.'/chat-plot.tsv' using (100*\$2):xtic(1) lt 2 title 'no stalled client', '' using (100*\$3) lt 3 title '$stalled stalled clients (join, never read)'"
    plot chat_latency "
set title 'Lab 5: chat fan-out latency (send to receipt) of the lines delivered, p99$QTAG'
set ylabel 'p99 latency (ms, log scale)'
set xlabel 'server and --broadcast mode'
set style data histograms; set style histogram clustered gap 1
set style fill solid 0.8 border -1; set logscale y; set yrange [0.01:*]; set key below
plot D.'/chat-plot.tsv' using (\$4/1000.0):xtic(1) lt 2 title 'no stalled client', '' using (\$5/1000.0) lt 3 title '$stalled stalled clients'"
    finish "Broadcast and slow consumers"
}

# Lab 6: datagrams and timeouts. (a) UDP echo ramp: lost and late datagrams; (b) dnsq against a
# server that never answers: time spent per retry; (c) 1,000 names, threaded vs async dnsq.
lab6() {
    need threaded-udp async-udp async-dns dnsq || {
        log "skipped: bin/threaded-udp, bin/async-udp, bin/async-dns or bin/dnsq missing"
        echo "skipped" >"$OUT/summary.tsv"; finish "Datagrams and timeouts (skipped)"; return 0; }
    local steps=10,100,1000,5000 dur=3 retries=(0 1 2 3) tmo=200
    [[ $QUICK -eq 1 ]] && steps=100,1000 dur=1 retries=(0 1 2) tmo=100
    local cols=(sockets=connections.target req_per_s=requests.per_sec sent=datagrams.sent
                received=datagrams.received lost=datagrams.lost late=datagrams.late
                p50_us=latency_us.p50 p99_us=latency_us.p99 threads=server.threads
                server_cores=server_cores loadgen_cores=loadgen_cores)
    local m buf small=16384
    # (a) UDP, each server with its default 4 MiB receive buffer and with a small one
    # (--rcvbuf $small). Loss on loopback is the receiver's socket buffer overflowing: the kernel
    # counts it per socket (the drops column of /proc/net/udp, read just before the server
    # stops) and system-wide (/proc/net/snmp Udp RcvbufErrors, before and after each run).
    printf 'run\trcvbuf_granted\tsocket_drops\trcvbuf_errors_before\tafter\tdropped_system_wide\n' >"$OUT/rcvbuf.tsv"
    for buf in default small; do
        for m in threaded async; do
            local run=$m args=()
            [[ $buf == small ]] && run=$m-small args=(--rcvbuf "$small")
            start_server "udp-$run" "$SERVER_CPUS" "$BIN/$m-udp" "${args[@]}"
            local before after granted drops
            granted=$(python3 "$REPO/scripts/tvsa_json.py" get "$OUT/servers/udp-$run.stdout" rcvbuf 2>/dev/null) || true
            [[ -n $granted ]] || granted=NaN
            before=$(snmp_rcvbuf)
            loadgen "udp-$run" "$LOADGEN_CPUS" --scenario udp --connections "$steps" \
                --duration "$dur" --size 64 --timeout 200
            after=$(snmp_rcvbuf)
            drops=$(udp_socket_drops "$PORT")
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$granted" "$drops" "$before" "$after" \
                $((after - before)) >>"$OUT/rcvbuf.tsv"
            stop_server "$PID" || log "$m-udp exited $?"
            steps_tsv "$run" "$OUT/json/udp-$run.json" "${cols[@]}"
        done
    done
    split_tsv
    plot udp "
set title 'Lab 6: UDP uppercase echo, one datagram in flight per socket, timeout 200 ms$QTAG'
set xlabel 'UDP sockets (log scale)'
set ylabel 'replies per second'
set y2label 'datagrams lost (no reply within 200 ms, % of sent)'
set logscale x; set yrange [0:*]; set y2range [0:*]; set y2tics; set ytics nomirror
set key top right
plot D.'/threaded.tsv' using 2:3 with linespoints lt 1 title 'threaded-udp: replies/s', \
     D.'/async.tsv' using 2:3 with linespoints lt 2 title 'async-udp: replies/s', \
     D.'/threaded.tsv' using 2:(100.0*\$6/\$4) axes x1y2 with linespoints lt 1 dt 2 title 'threaded-udp: % lost (right axis)', \
     D.'/async.tsv' using 2:(100.0*\$6/\$4) axes x1y2 with linespoints lt 2 dt 2 title 'async-udp: % lost (right axis)'"
    plot udp_loss "
set title 'Lab 6: UDP datagrams lost and late, default 4 MiB receive buffer and --rcvbuf $small$QTAG'
set xlabel 'UDP sockets (log scale)'
set ylabel 'datagrams, % of sent'
set logscale x; set yrange [0:*]; set key top left
plot D.'/threaded.tsv' using 2:(100.0*\$6/\$4) with linespoints lt 1 dt 2 title 'threaded-udp, default buffer: lost', \
     D.'/async.tsv' using 2:(100.0*\$6/\$4) with linespoints lt 2 dt 2 title 'async-udp, default buffer: lost', \
     D.'/threaded-small.tsv' using 2:(100.0*\$6/\$4) with linespoints lt 1 title 'threaded-udp --rcvbuf $small: lost', \
     D.'/async-small.tsv' using 2:(100.0*\$6/\$4) with linespoints lt 2 title 'async-udp --rcvbuf $small: lost', \
     D.'/threaded-small.tsv' using 2:(100.0*\$7/\$4) with linespoints lt 3 dt 3 title 'threaded-udp --rcvbuf $small: late', \
     D.'/async-small.tsv' using 2:(100.0*\$7/\$4) with linespoints lt 4 dt 3 title 'async-udp --rcvbuf $small: late'"

    # (b) A server that takes queries and never answers (UDP and TCP on one port).
    python3 -c '
import socket, sys, time
for attempt in range(50):   # the UDP port may be taken for TCP: try another
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", u.getsockname()[1]))
        break
    except OSError:
        u.close(); t.close()
t.listen(1024)
print(u.getsockname()[1], flush=True)
time.sleep(120)' >"$OUT/servers/silent.stdout" 2>"$OUT/servers/silent.stderr" </dev/null &
    PID=$!
    TVSA_LIVE[$PID]=silent
    TVSA_LIVE_DIR[$PID]=$OUT/servers
    local i
    for ((i = 0; i < 300; i++)); do
        [[ -s $OUT/servers/silent.stdout ]] && break
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    local silent
    silent=$(head -n1 "$OUT/servers/silent.stdout")
    [[ -n $silent ]] || die "the silent server did not start"
    local silent_pid=$PID r
    TSV=$OUT/timeouts.tsv
    printf 'case\tretries\ttimeout_ms\ttries\telapsed_ms\tstatus\terror\n' >"$TSV"
    for r in "${retries[@]}"; do
        dnsq "silent-r$r" --server "127.0.0.1:$silent" --timeout "$tmo" --retries "$r" www.example.test
        dnsq_row silent "$r" "$OUT/json/silent-r$r.json"
    done
    # A port where nothing listens: the ICMP "port unreachable" comes back at once.
    dnsq refused --server 127.0.0.1:"$(free_udp_port)" --timeout "$tmo" --retries 2 www.example.test
    dnsq_row refused 2 "$OUT/json/refused.json"
    split_tsv
    plot timeouts "
set title 'Lab 6: dnsq against a server that never answers, --timeout $tmo ms$QTAG'
set xlabel '--retries'
set ylabel 'time until dnsq gives up (ms)'
set xrange [-0.5:*]; set yrange [0:*]; set xtics 1; set key top left
plot D.'/silent.tsv' using 2:5 with linespoints lt 1 title 'measured (elapsed_ms)', \
     D.'/silent.tsv' using 2:((\$2 + 1) * $tmo) with lines dt 2 lc rgb '#888888' title '(retries + 1) x timeout', \
     D.'/refused.tsv' using 2:5 with points lt 3 ps 2 title 'nothing listening (ICMP refused)'"

    # (c) 1,000 names, threaded vs async dnsq, against async-dns and against the silent server.
    python3 -c '
zone = ["www.example.test", "api.example.test", "mail.example.test", "example.test"]
for i in range(1000):
    print(zone[i % 4] if i % 5 else "missing-%d.example.test" % i)' >"$OUT/names.txt"
    start_server dns "$SERVER_CPUS" "$BIN/async-dns"
    TSV=$OUT/names.tsv
    printf 'case\tserver\tmodel\tnames\tok\tfailed\telapsed_ms\tmax_rss_kib\n' >"$TSV"
    local target
    for target in dns silent; do
        local port=$PORT tm=1000 rt=2
        [[ $target == silent ]] && port=$silent tm=$tmo rt=0
        for m in async threaded; do
            dnsq "names-$target-$m" --server "127.0.0.1:$port" --model "$m" --timeout "$tm" \
                --retries "$rt" --file "$OUT/names.txt"
            names_row "$target-$m" "$target" "$m" "$OUT/json/names-$target-$m.json" \
                "$OUT/logs/names-$target-$m.time"
        done
    done
    stop_server "$PID" || log "async-dns exited $?"
    stop_server "$silent_pid" || true
    split_tsv
    # One row per target: async and threaded wall time, then their peak RSS.
    awk -F'\t' 'NR > 1 { t[$2 "," $3] = $7; r[$2 "," $3] = $8 }
        END { printf "answered\t%s\t%s\t%s\t%s\n", t["dns,async"], t["dns,threaded"], r["dns,async"], r["dns,threaded"]
              printf "no answer\t%s\t%s\t%s\t%s\n", t["silent,async"], t["silent,threaded"], r["silent,async"], r["silent,threaded"] }' \
        "$TSV" >"$OUT/data/names-plot.tsv"
    plot names "
set multiplot layout 1,2 title 'Lab 6: dnsq resolving 1,000 names at once (800 in the zone, 200 NXDOMAIN)$QTAG'
set style data histograms; set style histogram clustered gap 1
set style fill solid 0.8 border -1; set yrange [0:*]; set key below
set xlabel 'server (no answer: --timeout $tmo --retries 0)'
set title 'wall time'
set ylabel 'wall time until every name is done (ms)'
plot D.'/names-plot.tsv' using 2:xtic(1) lt 2 title '--model async (1 loop)', '' using 3 lt 1 title '--model threaded (1 thread a name)'
set title 'memory'
set ylabel 'peak RSS of dnsq (MiB)'
plot D.'/names-plot.tsv' using (\$4/1024.0):xtic(1) lt 2 title '--model async', '' using (\$5/1024.0) lt 1 title '--model threaded'
unset multiplot"
    finish "Datagrams and timeouts"
}

# The Udp RcvbufErrors counter of /proc/net/snmp (datagrams dropped: receive buffer full).
snmp_rcvbuf() {
    awk '/^Udp:/ { if (seen) { print $col; exit }
                   for (i = 2; i <= NF; i++) if ($i == "RcvbufErrors") col = i; seen = 1 }' /proc/net/snmp
}

# udp_socket_drops PORT: the drops column of /proc/net/udp summed over the sockets bound to
# 127.0.0.1:PORT (one, or one per --procs worker).
udp_socket_drops() {
    awk -v addr="$(printf '0100007F:%04X' "$1")" '$2 == addr { d += $NF; n++ }
        END { if (n) print d; else print "NaN" }' /proc/net/udp
}

# A UDP port nobody listens on (bound, read, closed: free for a moment).
free_udp_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# dnsq TAG ARGS...: one dnsq run on the loadgen CPU, JSON in json/TAG.json, its peak RSS and
# wall time in logs/TAG.time. dnsq exits 1 when a name fails, which is expected here.
dnsq() {
    local tag=$1; shift
    echo "dnsq --json $*" >>"$OUT/commands.txt"
    local timer=()
    [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f '%e %M' -o "$OUT/logs/$tag.time")
    "${timer[@]}" taskset -c "$LOADGEN_CPUS" timeout 60 "$BIN/dnsq" --json "$@" \
        >"$OUT/json/$tag.json" 2>"$OUT/logs/$tag.log" </dev/null || true
}

dnsq_row() {
    python3 "$REPO/scripts/tvsa_json.py" dnsq-row "$TSV" "$@"
}

names_row() {
    python3 "$REPO/scripts/tvsa_json.py" names-row "$TSV" "$@"
}


log "writing $OUT ($([[ $QUICK -eq 1 ]] && echo quick || echo full) run)"
"lab$LAB"
exit
}
