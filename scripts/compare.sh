#!/usr/bin/env bash
# Reproduces the threads-vs-async comparison table by measurement (issues 6 and 13): starts
# each server on a free port, drives it with bin/loadgen, N rounds with the models interleaved,
# and writes the raw JSON, env.json, summary.md (medians and spreads) and PNG plots into one
# results directory. docs/compare.md explains every row; results/README.md the layout.
# It also runs bin/switch-cost (the price of a switch, issue 15), scripts/sweep.sh (latency
# against offered load, issue 20), with --scale scripts/scale.sh (past one process, issue 14),
# and with --rtt-ms the echo and hold ramps through scripts/cluster.sh (issue 19).
#
# Usage: scripts/compare.sh [--quick] [--rounds N] [--python] [--[no-]rerun] [--models A,B]
#                           [--out DIR] [--no-build] [--p99-bound-ms MS] [--rtt-ms MS]
#                           [--scale [--scale-max N] [--raise-limits]] [--[no-]sweep] [--help]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/compare.sh [--quick] [--rounds N] [--python] [--[no-]rerun] [--models A,B]
                          [--out DIR] [--no-build] [--p99-bound-ms MS] [--rtt-ms MS]
                          [--scale [--scale-max N] [--raise-limits]] [--[no-]sweep]

Runs every server model of the model table (threaded --pool 50, threaded one thread per
connection, async; async coroutines, Python threads and Python asyncio once they are built)
through the loadgen scenarios (echo ramp, hold ramp, churn, fixed load, CPU-bound), N rounds
with the models interleaved in each scenario (A B C A B C), and writes DIR (default
results/<UTC stamp>/): rN/{loadgen,servers,logs}/ and rN/runs.jsonl for each round, env.json,
plan.json, complexity.json, summary.md (every figure the median and min-max over the rounds)
and plots/*.png.

  --quick            smaller steps and shorter durations, 1 round, no Python columns
                     (under 3 minutes on 2 cores)
  --rounds N         rounds (default 3; 1 with --quick)
  --python           the Python columns in a --quick run too (a full run has them)
  --no-rerun         do not rerun a noisy run once (the default with --quick)
  --rerun            rerun a noisy run once (the default of a full run)
  --models A,B,...   only these columns of the model table (labels; default every one)
  --out DIR          results directory (created; must be empty or absent)
  --no-build         do not run make for the binaries
  --p99-bound-ms MS  tail-latency bound of the "concurrent connections" row (default 500)
  --rtt-ms MS        the echo and hold ramps through scripts/cluster.sh --local 1 --rtt-ms MS
                     (a server namespace and a client namespace, netem delay: root, pdsh,
                     sch_netem); every other row stays on loopback. Without netem (or root,
                     or pdsh) it stops before measuring anything, exit 2
  --scale            also scripts/scale.sh (issue 14): the held-connection ramp past one
                     process, as the "Past one process" section (minutes; --quick: small)
  --scale-max N      passed to scale.sh: ramp up to N held connections (default 100000)
  --raise-limits     passed to scale.sh: as root, raise pid_max and max_map_count for the
                     scale run and restore them
  --sweep            scripts/sweep.sh (issue 20): latency against offered load, the row
                     "Latency at 80% of capacity" (the default; --quick runs its short version)
  --no-sweep         no sweep
  --help             this text

Progress goes to stderr, one line per step. Every server started is stopped on exit and on
Ctrl-C.
EOF
}

QUICK=0
OUT=
BUILD=1
P99_BOUND_MS=500
ROUNDS=
PYTHON=
RERUN_NOISY=
ONLY_MODELS=
RTT_MS=
SCALE=0
SCALE_ARGS=()
SWEEP=
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --rounds) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; ROUNDS=$2; shift ;;
        --rounds=*) ROUNDS=${1#--rounds=} ;;
        --python) PYTHON=1 ;;
        --no-rerun) RERUN_NOISY=0 ;;
        --rerun) RERUN_NOISY=1 ;;
        --models) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; ONLY_MODELS=$2; shift ;;
        --models=*) ONLY_MODELS=${1#--models=} ;;
        --out) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; OUT=$2; shift ;;
        --out=*) OUT=${1#--out=} ;;
        --no-build) BUILD=0 ;;
        --p99-bound-ms) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; P99_BOUND_MS=$2; shift ;;
        --p99-bound-ms=*) P99_BOUND_MS=${1#--p99-bound-ms=} ;;
        --rtt-ms) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; RTT_MS=$2; shift ;;
        --rtt-ms=*) RTT_MS=${1#--rtt-ms=} ;;
        --scale) SCALE=1 ;;
        --scale-max) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; SCALE_ARGS+=(--scale-max "$2"); shift ;;
        --scale-max=*) SCALE_ARGS+=(--scale-max "${1#--scale-max=}") ;;
        --raise-limits) SCALE_ARGS+=(--raise-limits) ;;
        --sweep) SWEEP=1 ;;
        --no-sweep) SWEEP=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $P99_BOUND_MS =~ ^[1-9][0-9]*$ ]] || { echo "compare: --p99-bound-ms: positive integer" >&2; exit 2; }
[[ -z $RTT_MS || $RTT_MS =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "compare: --rtt-ms: a number of milliseconds" >&2; exit 2; }
if [[ ${#SCALE_ARGS[@]} -gt 0 && $SCALE -eq 0 ]]; then
    echo "compare: --scale-max and --raise-limits go with --scale" >&2; exit 2
fi
[[ -z $ROUNDS ]] && ROUNDS=$(( QUICK ? 1 : 3 ))
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "compare: --rounds: 1 to 99" >&2; exit 2; }
[[ -z $PYTHON ]] && PYTHON=$(( QUICK ? 0 : 1 ))
# The sweep runs in both (its --quick version took 28 s on a busy 2-core machine; --quick
# stays under its 3 minutes with it: docs/compare.md, Budget).
[[ -z $SWEEP ]] && SWEEP=1
# A quick run is a smoke test: rerunning its noisy runs would only spend its 3-minute budget.
[[ -z $RERUN_NOISY ]] && RERUN_NOISY=$(( QUICK ? 0 : 1 ))
# --out is relative to where we were called from; everything else to the repository.
[[ -n $OUT && $OUT != /* ]] && OUT=$PWD/$OUT
cd "$(dirname "$0")/.."
REPO=$PWD
JSONPY=(python3 "$REPO/scripts/tvsa_json.py")

log() { echo "compare: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs the rest)"
done

# ---------------------------------------------------------------------------------------------
# The plan: every figure below is written to plan.json so summary.md can state it.
NCPU=$(getconf _NPROCESSORS_ONLN)
# Each process may raise its soft fd limit to the hard one; children inherit it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
if [[ $FD_LIMIT == unlimited ]]; then FD_LIMIT=1048576; fi

# Durations are short so that 3 rounds of 6 columns fit in 30 minutes (docs/compare.md, Budget):
# loadgen's histograms need ~10^5 requests for a stable p99.9, which 2 s at 10^4-10^5 req/s give.
if [[ $QUICK -eq 1 ]]; then
    ECHO_STEPS=10,100,1000
    HOLD_STEPS=100,1000
    ECHO_DURATION=1 HOLD_DURATION=1 CHURN_DURATION=1 FIXED_DURATION=2 CPU_DURATION=1
else
    ECHO_STEPS=10,50,100,200,500,1000,2000,5000,10000
    HOLD_STEPS=10,100,1000,2000,5000,10000
    ECHO_DURATION=2 HOLD_DURATION=2 CHURN_DURATION=3 FIXED_DURATION=3 CPU_DURATION=3
    # "Up to 10,000, or more if the fd limit allows": each side needs one fd per connection
    # plus a few hundred for itself.
    if (( FD_LIMIT >= 20000 + 512 )); then
        ECHO_STEPS+=,20000
        HOLD_STEPS+=,20000
    fi
fi
# Each side needs one fd per connection plus a few hundred of its own: drop the steps the fd
# limit cannot hold (a machine with the usual 1,024 stops at 500).
fit_fd_limit() {
    local kept="" v
    for v in ${1//,/ }; do
        if (( v + 256 <= FD_LIMIT )); then kept+=${kept:+,}$v; else log "fd limit $FD_LIMIT: no $v-connection step"; fi
    done
    echo "${kept:-10}"
}
ECHO_STEPS=$(fit_fd_limit "$ECHO_STEPS")
HOLD_STEPS=$(fit_fd_limit "$HOLD_STEPS")
MSG_SIZE=64
STEP_SLACK_S=30                         # watchdog: a step's connects and probes beyond --duration
# A request waiting longer than this is a timeout, not a sample. It must be well inside a step:
# a connection nobody serves (beyond a pool's size) only shows up as a timeout.
REQ_TIMEOUT_MS=$((P99_BOUND_MS * 2))
if (( REQ_TIMEOUT_MS > ECHO_DURATION * 500 )); then REQ_TIMEOUT_MS=$((ECHO_DURATION * 500)); fi
CHURN_CONNS=50
FIXED_CONNS=50                          # at most the pool size: every model serves them all
FIXED_RATE=20000                        # requests/s, open loop; every C model sustains it
CPU_CONNS=50
CPU_WORK_US=200                         # CPU burnt per message: at most 5,000 req/s per core
# "Everything else" (other programs) above this many cores marks a run noisy (and reruns it
# once unless --no-rerun).
NOISY_CORES=0.3
# Server on CPU 0, loadgen on CPU 1; the CPU-bound run gives the server every CPU.
if (( NCPU >= 2 )); then
    SERVER_CPUS=0 LOADGEN_CPUS=1 ALL_CPUS=0-$((NCPU - 1))
else
    SERVER_CPUS=0 LOADGEN_CPUS=0 ALL_CPUS=0
    log "only one CPU: server and loadgen share it (figures will say so)"
fi
BIN=${TVSA_BIN:-$REPO/bin}
# Built before the model table, which asks the binaries what they support.
if [[ $BUILD -eq 1 ]]; then
    if ! make --no-print-directory -s bin/threaded-echo bin/async-echo bin/loadgen >&2; then
        log "make failed; using the binaries already in $BIN if they exist"
    fi
fi
for b in threaded-echo async-echo loadgen; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing (run make)"
done

# ---------------------------------------------------------------------------------------------
# The model table: one line per column of summary.md, in order.
#   label | column title | command (bin/ is $BIN) | needs
# needs: empty (always), "help:WORD" (the binary's --help mentions WORD), "python" (a Python
# column: full runs and --python). A column whose needs are not met is skipped with a
# "not built" note in summary.md.
# shellcheck disable=SC2016 # the backquotes are markdown, not a command
MODEL_TABLE=(
    'threaded-pool50|threaded `--pool 50`|bin/threaded-echo --pool 50|'
    'threaded-tpc|threaded, 1 thread/conn (8 MiB stacks)|bin/threaded-echo|'
    'async|async (1 thread, libevent)|bin/async-echo --api bufferevent|'
    'async-coro|async, coroutines (1 thread)|bin/async-echo --api coro|help:coro'
    'python-threads|Python threads|python3 bench/python/threaded_echo.py|python'
    'python-asyncio|Python asyncio|python3 bench/python/async_echo.py|python'
)
MODELS=()                               # the columns that run
declare -A MODEL_CMD=() MODEL_TITLE=() MODEL_SKIP=()
MODEL_ORDER=()
for line in "${MODEL_TABLE[@]}"; do
    IFS='|' read -r label title cmd needs <<<"$line"
    cmd=${cmd//bin\//$BIN/}
    MODEL_ORDER+=("$label") MODEL_TITLE[$label]=$title MODEL_CMD[$label]=$cmd
    read -r exe _ <<<"$cmd"
    case $needs in
        help:*)
            help=
            [[ -x $exe ]] && help=$("$exe" --help 2>&1 || true)
            if ! grep -q -- "${needs#help:}" <<<"$help"; then
                MODEL_SKIP[$label]="not built: \`bin/${exe#"$BIN"/} --help\` does not offer ${needs#help:}"
            fi ;;
        python)
            rest=${cmd#python3 }
            read -r script _ <<<"$rest"
            if [[ $PYTHON -eq 0 ]]; then
                MODEL_SKIP[$label]="left out of --quick (add --python)"
            elif [[ ! -f $REPO/$script ]]; then
                MODEL_SKIP[$label]="not built: $script is missing"
            fi
            MODEL_CMD[$label]="python3 $REPO/$rest" ;;
    esac
    if [[ -n $ONLY_MODELS && ,$ONLY_MODELS, != *,$label,* ]]; then
        MODEL_SKIP[$label]="not asked for (--models $ONLY_MODELS)"
    fi
    if [[ -n ${MODEL_SKIP[$label]:-} ]]; then
        log "column '$title': ${MODEL_SKIP[$label]}"
    else
        MODELS+=("$label")
    fi
done
if [[ -n $ONLY_MODELS ]]; then
    for label in ${ONLY_MODELS//,/ }; do
        [[ -n ${MODEL_TITLE[$label]:-} ]] || die "--models: no column '$label' (labels: ${MODEL_ORDER[*]})"
    done
fi
(( ${#MODELS[@]} > 0 )) || die "no column to run"
server_of() { echo "${MODEL_CMD[$1]}"; }
# Python servers sustain a few thousand requests/s: the fixed load offered to them is lower
# (stated in summary.md), so that the row compares switching, not overload.
PY_FIXED_RATE=2000
fixed_rate_of() { [[ $1 == python-* ]] && echo "$PY_FIXED_RATE" || echo "$FIXED_RATE"; }

# ---------------------------------------------------------------------------------------------
# --rtt-ms: the echo and hold ramps go through a local cluster (issue 19). Checked before
# anything is measured: a machine that cannot add the delay (no netem, no root, no pdsh) stops
# the run here, exit 2, rather than after the loopback rows.
RTT_SCENARIOS=()
if [[ -n $RTT_MS ]]; then
    RTT_SCENARIOS=(echo hold)
    [[ -x $REPO/scripts/cluster.sh ]] || { log "--rtt-ms needs scripts/cluster.sh, which is missing"; exit 2; }
    rtt_check=$(mktemp -d /tmp/tvsa-compare-rtt.XXXXXX)
    rtt_rc=0
    "$REPO/scripts/cluster.sh" --local 1 --rtt-ms "$RTT_MS" --out "$rtt_check/cluster" \
        --server "$BIN/async-echo" -- --connections 1 --duration 1 --size "$MSG_SIZE" \
        </dev/null >/dev/null 2>"$rtt_check/stderr" || rtt_rc=$?
    if [[ $rtt_rc -ne 0 ]]; then
        why=$(grep -v '^cluster: local cluster:' "$rtt_check/stderr" | sed 's/^cluster: //' | head -n 3 | awk 'NR > 1 { printf "; " } { printf "%s", $0 }')
        rm -rf "$rtt_check"
        if [[ $rtt_rc -eq 2 ]]; then
            log "--rtt-ms $RTT_MS: scripts/cluster.sh cannot add a round-trip time on this machine (${why:-exit 2}); nothing was measured"
            exit 2
        fi
        die "--rtt-ms $RTT_MS: the check run through scripts/cluster.sh failed (exit $rtt_rc: ${why:-no message})"
    fi
    rm -rf "$rtt_check"
    log "--rtt-ms $RTT_MS: the echo and hold ramps run through scripts/cluster.sh --local 1"
fi
uses_rtt() { [[ -n $RTT_MS && " ${RTT_SCENARIOS[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# Output directory.
if [[ -z $OUT ]]; then
    OUT=$REPO/results/$(date -u +%Y%m%dT%H%M%SZ)
fi
if [[ -d $OUT ]] && [[ -n $(ls -A "$OUT") ]]; then
    die "$OUT exists and is not empty"
fi
mkdir -p "$OUT"
for ((r = 1; r <= ROUNDS; r++)); do mkdir -p "$OUT/r$r"/loadgen "$OUT/r$r"/servers "$OUT/r$r"/logs; done
OUT=$(cd "$OUT" && pwd)

LOADGEN_HELP=$("$BIN"/loadgen --help 2>&1 || true)
has_flag() { grep -q -- "$1" <<<"$LOADGEN_HELP"; }

# The other servers (issue 6: "chat, udp and dns once they exist"): threaded and async with
# their default flags, once per round, when both binaries exist and loadgen has the scenario.
EXTRA_SCENARIOS=()
for s in chat udp dns; do
    if grep -qE "^ +$s +" <<<"$LOADGEN_HELP" && [[ -x $BIN/threaded-$s && -x $BIN/async-$s ]]; then
        EXTRA_SCENARIOS+=("$s")
    fi
done
if [[ $QUICK -eq 1 ]]; then EXTRA_STEPS=100; else EXTRA_STEPS=100,1000; fi

# One abuse row (issue 7): slowloris clients hold connections open while a few well-behaved echo
# clients measure service. A pool of 50 workers is the model it hurts.
ABUSE_KIND=
if grep -qE "^ +abuse +" <<<"$LOADGEN_HELP"; then ABUSE_KIND=slowloris; fi
ABUSE_ABUSERS=200
ABUSE_GOOD=4
if [[ $QUICK -eq 1 ]]; then ABUSE_DURATION=2; else ABUSE_DURATION=3; fi
EXTRA_DURATION=$ECHO_DURATION

# ---------------------------------------------------------------------------------------------
# Process bookkeeping: every server and loadgen started is stopped on exit, error or Ctrl-C.
# shellcheck source=scripts/lib/servers.sh
source "$REPO/scripts/lib/servers.sh"    # TVSA_LIVE: every server started and not stopped
LOADGEN_PID=

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    trap '' PIPE    # stderr may be a closed pipe by now: cleaning up matters more than saying so
    if [[ -n $LOADGEN_PID ]] && kill -0 "$LOADGEN_PID" 2>/dev/null; then
        kill -TERM "$LOADGEN_PID" 2>/dev/null || true
        wait "$LOADGEN_PID" 2>/dev/null || true
    fi
    tvsa_stop_all
    [[ $rc -ne 0 ]] && log "stopped early (exit $rc); partial results in $OUT"
    exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM
trap 'exit 141' PIPE    # e.g. `compare.sh 2>&1 | head`: stop, but stop the servers first

# start_server DIR TAG CPUS BINARY ARGS...: starts it on port 0 with stdout/stderr in DIR,
# waits for the listening line and sets SERVER_PID and SERVER_PORT.
start_server() {
    local tag=$2
    if ! tvsa_server_start "$@"; then
        log "$tag: no listening line from ${*:4} (see $(basename "$(dirname "$1")")/servers/$tag.stderr)"
        return 1
    fi
    SERVER_PID=$TVSA_SERVER_PID
    SERVER_PORT=$TVSA_SERVER_PORT
}

# stop_server PID: stops it, keeps servers/TAG.stopped.json. Returns the server's exit status.
stop_server() {
    local tag=${TVSA_LIVE[$1]} dir=${TVSA_LIVE_DIR[$1]} rc=0
    tvsa_server_stop "$1" || rc=$?
    [[ -f $dir/$tag.stopped.json ]] || log "$tag: no stopped line"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Progress: one line per loadgen step, numbered over the whole plan.
steps_in() { local s=$1; echo $(( $(tr -cd , <<<"$s" | wc -c) + 1 )); }
TOTAL_STEPS=0
for m in "${MODELS[@]}"; do
    TOTAL_STEPS=$((TOTAL_STEPS + $(steps_in "$ECHO_STEPS") + $(steps_in "$HOLD_STEPS") + 3))
    [[ -n $ABUSE_KIND ]] && TOTAL_STEPS=$((TOTAL_STEPS + 1))
done
for s in "${EXTRA_SCENARIOS[@]}"; do
    TOTAL_STEPS=$((TOTAL_STEPS + 2 * $(steps_in "$EXTRA_STEPS")))
done
TOTAL_STEPS=$((TOTAL_STEPS * ROUNDS))
STEP_NO=0

# Prints one progress line per step of a loadgen JSON file.
report_steps() {
    local model=$1 scenario=$2 file=$3 expected=$4 rnd=$5
    local lines n=0 line
    lines=$("${JSONPY[@]}" report-steps "$file" "$model" "$scenario" 2>/dev/null || true)
    while IFS= read -r line; do
        [[ -z $line ]] && continue
        STEP_NO=$((STEP_NO + 1)); n=$((n + 1))
        echo "[$STEP_NO/$TOTAL_STEPS] r$rnd $line" >&2
    done <<<"$lines"
    while (( n < expected )); do    # steps that produced no figures still count
        STEP_NO=$((STEP_NO + 1)); n=$((n + 1))
        echo "[$STEP_NO/$TOTAL_STEPS] r$rnd $model $scenario: step missing (see r$rnd/logs/$scenario-$model.loadgen.log)" >&2
    done
}

# run ROUND MODEL SCENARIO SERVER_CPUS LOADGEN_CPUS STEPS "SERVER_BINARY ARGS" -- LOADGEN_ARGS...
# One fresh server per (round, scenario, model): its memory baseline and rusage belong to this
# run. A run whose "everything else" CPU is above NOISY_CORES is rerun once (the first attempt
# kept as TAG.noisy.*), unless --no-rerun.
run() {
    local rnd=$1 model=$2 scenario=$3
    local tag=$scenario-$model rd=$OUT/r$rnd other
    run_once "$@"
    other=$("${JSONPY[@]}" run-noise "$rd" "$tag" 2>/dev/null || echo 0)
    if [[ $RERUN_NOISY -eq 1 ]] && awk -v o="$other" -v t="$NOISY_CORES" 'BEGIN { exit !(o > t) }'; then
        log "r$rnd $tag: other programs used $other cores: noisy, running it once more"
        local f
        for f in "$rd/loadgen/$tag.json" "$rd/servers/$tag".*.json "$rd/servers/$tag".std*; do
            [[ -f $f ]] && mv "$f" "${f/$tag./$tag.noisy.}"
        done
        # The rerun's progress lines take the same numbers again.
        STEP_NO=$((STEP_NO - $(steps_in "$6")))
        RERUN_OF=$other
        run_once "$@"
        RERUN_OF=
    fi
}

run_once() {
    local rnd=$1 model=$2 scenario=$3 steps=$6
    local tag=$scenario-$model rd=$OUT/r$rnd
    # The machine's CPU time over the run: what neither the server nor loadgen used is noise.
    local stat0 t0 stat1 t1
    stat0=$(head -n1 /proc/stat)
    t0=$(date +%s.%N)
    local started=$SECONDS
    # A watchdog: connects and probes take seconds, not minutes; a stuck run must not hang
    # the whole comparison (timeout sends SIGTERM: loadgen still writes what it measured).
    local dur=10 a prev=
    for a in "${@:9}"; do [[ $prev == --duration ]] && dur=$a; prev=$a; done
    WATCHDOG_S=$(( $(steps_in "$steps") * (${dur%.*} + STEP_SLACK_S) + 60 ))
    # loadgen's whole CPU time (connects included), from the shell's children rusage: `times`
    # before and after waiting for it (nothing else is waited for in between).
    local c0 c1
    children_cpu_s
    c0=$CHILDREN_CPU
    RUN_CMD= LOADGEN_RC=0 SERVER_RC=0 SERVER_CPU_S=0
    if uses_rtt "$scenario"; then
        drive_cluster "$@" || return 0
    else
        drive_loopback "$@" || return 0
    fi
    children_cpu_s
    c1=$CHILDREN_CPU
    stat1=$(head -n1 /proc/stat)
    t1=$(date +%s.%N)
    if [[ $LOADGEN_RC -eq 124 ]]; then
        log "r$rnd $tag: loadgen stopped by the watchdog after $WATCHDOG_S s (see r$rnd/logs/$tag.loadgen.log)"
    elif [[ $LOADGEN_RC -ne 0 ]]; then
        log "r$rnd $tag: loadgen exited $LOADGEN_RC (see r$rnd/logs/$tag.loadgen.log)"
    fi
    [[ $SERVER_RC -ne 0 ]] && log "r$rnd $tag: server exited $SERVER_RC (see r$rnd/servers/$tag.stderr)"
    # The server is a child too (started by this shell, or by cluster.sh): its own rusage is
    # not loadgen's.
    record_run "$rd" "$rnd" "$tag" "$model" "$scenario" "$RUN_CMD" "$LOADGEN_RC" "$SERVER_RC" \
        $((SECONDS - started)) "$stat0" "$stat1" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" \
        "$(awk -v a="$c0" -v b="$c1" -v s="$SERVER_CPU_S" 'BEGIN { d = b - a - s; printf "%.3f", d < 0 ? 0 : d }')"
    report_steps "$model" "$scenario" "$rd/loadgen/$tag.json" "$(steps_in "$steps")" "$rnd"
}

# drive ROUND_DIR TAG CMD...: runs the load command (logged as logs/TAG.loadgen.cmd, stderr in
# logs/TAG.loadgen.log), stoppable by the exit trap; sets RUN_CMD and LOADGEN_RC.
drive() {
    local rd=$1 tag=$2
    shift 2
    RUN_CMD="$*"
    echo "$RUN_CMD" >"$rd/logs/$tag.loadgen.cmd"
    "$@" </dev/null >/dev/null 2>"$rd/logs/$tag.loadgen.log" &
    LOADGEN_PID=$!
    wait "$LOADGEN_PID" || LOADGEN_RC=$?
    LOADGEN_PID=
}

# drive_loopback RUN_ARGS...: the server on 127.0.0.1 and loadgen beside it (pinned apart).
# Sets RUN_CMD, LOADGEN_RC and SERVER_RC; returns 1 (the run recorded as failed) when the
# server did not start.
drive_loopback() {
    local rnd=$1 model=$2 scenario=$3 scpus=$4 lcpus=$5 steps=$6 sbin sargs
    read -r sbin sargs <<<"$7"
    shift 8
    local tag=$scenario-$model rd=$OUT/r$rnd
    # shellcheck disable=SC2086 # sargs is a word list
    if ! start_server "$rd/servers" "$tag" "$scpus" "$sbin" $sargs; then
        record_run "$rd" "$rnd" "$tag" "$model" "$scenario" "" 1 1 0 "" "" 0
        report_steps "$model" "$scenario" /dev/null "$(steps_in "$steps")" "$rnd"
        return 1
    fi
    # STEPS "-": the scenario opens its own connections (abuse), so no --connections.
    local conns=(--connections "$steps")
    [[ $steps == - ]] && conns=()
    # One loadgen thread pinned to its CPU: measured to saturate a server on the other core
    # (docs/metrics.md, make bench); it uses the CPUs of its mask, never more threads than that.
    local lthreads
    lthreads=$(taskset -c "$lcpus" nproc)
    local cmd=(timeout -k 10 "$WATCHDOG_S" taskset -c "$lcpus" "$BIN/loadgen" --target "127.0.0.1:$SERVER_PORT"
               "${conns[@]}" --threads "$lthreads" --server-pid "$SERVER_PID"
               --json "$rd/loadgen/$tag.json" --quiet "$@")
    drive "$rd" "$tag" "${cmd[@]}"
    # The window ends after the server's exit, so it holds the whole life the server's rusage
    # covers (a thread-per-connection server's shutdown included).
    stop_server "$SERVER_PID" || SERVER_RC=$?
    # The server is this shell's child as well: once waited for, its CPU is in `times` too.
    SERVER_CPU_S=$(server_rusage_s "$rd/servers/$tag.stopped.json")
}

# server_rusage_s STOPPED_JSON: the server's user + sys CPU seconds from its stopped line (0
# when there is none: a crashed server's CPU then stays in loadgen's figure).
server_rusage_s() {
    local u s
    u=$("${JSONPY[@]}" get "$1" rusage.user_s 2>/dev/null) || true
    s=$("${JSONPY[@]}" get "$1" rusage.sys_s 2>/dev/null) || true
    awk -v u="${u:-0}" -v s="${s:-0}" 'BEGIN { printf "%.3f", u + s }'
}

# drive_cluster RUN_ARGS...: --rtt-ms: the same run through scripts/cluster.sh --local 1 (the
# server in a namespace on CPU 0, loadgen in another on the other CPUs, netem on the link);
# its merged.json becomes the run's loadgen JSON and its server's lines the run's.
drive_cluster() {
    local rnd=$1 model=$2 scenario=$3 steps=$6 sbin sargs
    read -r sbin sargs <<<"$7"
    shift 8
    local tag=$scenario-$model rd=$OUT/r$rnd
    local cdir=$rd/cluster/$tag
    # A noisy run's rerun: cluster.sh wants a fresh directory; the first attempt's is kept.
    if [[ -e $cdir ]]; then rm -rf "$cdir.noisy"; mv "$cdir" "$cdir.noisy"; fi
    [[ $sbin == */* ]] || sbin=$(command -v "$sbin")    # python3: cluster.sh wants a path
    # shellcheck disable=SC2086 # sargs is a word list
    local cmd=(timeout -k 10 "$WATCHDOG_S" "$REPO/scripts/cluster.sh" --local 1 --rtt-ms "$RTT_MS"
               --out "$cdir" --server "$sbin" $sargs -- --connections "$steps" --threads 1 "$@")
    drive "$rd" "$tag" "${cmd[@]}"
    [[ -f $cdir/merged.json ]] && cp "$cdir/merged.json" "$rd/loadgen/$tag.json"
    local base f
    base=$cdir/server/$(basename "$sbin")
    for f in listening.json stopped.json stdout stderr; do
        [[ -f $base.$f ]] && cp "$base.$f" "$rd/servers/$tag.$f"
    done
    [[ -f $rd/servers/$tag.stopped.json ]] || { log "$tag: no stopped line"; SERVER_RC=1; }
    SERVER_CPU_S=$(server_rusage_s "$rd/servers/$tag.stopped.json")
}

# record_run ROUND_DIR ROUND TAG ...: one line in ROUND_DIR/runs.jsonl: what ran, how it ended,
# and the machine's busy CPU seconds (all CPUs, /proc/stat) from the server's start to its
# exit. RERUN_OF (the noisy first attempt's "everything else") marks a rerun.
record_run() {
    local rd=$1 rnd=$2 a=("${@:3}")
    # TAG MODEL SCENARIO CMD LOADGEN_EXIT SERVER_EXIT ELAPSED STAT0 STAT1 WALL [LOADGEN_CPU]
    "${JSONPY[@]}" record-run "$rd/runs.jsonl" "${a[@]:0:10}" "${a[10]:-}" "$rnd" "${RERUN_OF:-}"
}

# children_cpu_s: sets CHILDREN_CPU to the user + sys seconds of every child this shell has
# waited for (bash `times`, second line). Not in $(...): a subshell's counters start at 0.
children_cpu_s() {
    times >"$OUT/.times"
    CHILDREN_CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] }
                                   printf "%.3f", s }' "$OUT/.times")
}

# ---------------------------------------------------------------------------------------------
# env.json and plan.json before anything runs.
write_env() {
    local git_rev git_dirty
    git_rev=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo none)
    git_dirty=$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l)
    ENV_GIT_REV=$git_rev ENV_GIT_DIRTY=$git_dirty \
    ENV_LIBEVENT=$(pkg-config --modversion libevent 2>/dev/null || echo unknown) \
    ENV_JANSSON=$(pkg-config --modversion jansson 2>/dev/null || echo unknown) \
    ENV_CMOCKA=$(pkg-config --modversion cmocka 2>/dev/null || echo unknown) \
    ENV_GNUPLOT=$(gnuplot --version 2>/dev/null || echo none) \
    ENV_CC=$(${CC:-cc} --version 2>/dev/null | head -n1) \
    ENV_FD_SOFT=$(ulimit -Sn) ENV_FD_HARD=$(ulimit -Hn) \
    "${JSONPY[@]}" env "$OUT/env.json"
}

write_plan() {
    local m
    PLAN_QUICK=$QUICK PLAN_ROUNDS=$ROUNDS PLAN_ECHO_STEPS=$ECHO_STEPS PLAN_HOLD_STEPS=$HOLD_STEPS \
    PLAN_ECHO_DURATION=$ECHO_DURATION PLAN_HOLD_DURATION=$HOLD_DURATION \
    PLAN_CHURN_DURATION=$CHURN_DURATION PLAN_FIXED_DURATION=$FIXED_DURATION \
    PLAN_CPU_DURATION=$CPU_DURATION PLAN_MSG_SIZE=$MSG_SIZE PLAN_TIMEOUT=$REQ_TIMEOUT_MS \
    PLAN_BOUND=$P99_BOUND_MS PLAN_CHURN_CONNS=$CHURN_CONNS PLAN_FIXED_CONNS=$FIXED_CONNS \
    PLAN_FIXED_RATE=$FIXED_RATE PLAN_PY_FIXED_RATE=$PY_FIXED_RATE PLAN_FIXED_MODE=$FIXED_MODE \
    PLAN_CPU_CONNS=$CPU_CONNS PLAN_NOISY_CORES=$NOISY_CORES \
    PLAN_CPU_WORK=$CPU_WORK_US PLAN_SERVER_CPUS=$SERVER_CPUS PLAN_LOADGEN_CPUS=$LOADGEN_CPUS \
    PLAN_ALL_CPUS=$ALL_CPUS PLAN_EXTRA="${EXTRA_SCENARIOS[*]}" PLAN_EXTRA_STEPS=$EXTRA_STEPS \
    PLAN_EXTRA_DURATION=$EXTRA_DURATION PLAN_ABUSE_KIND=$ABUSE_KIND \
    PLAN_ABUSE_ABUSERS=$ABUSE_ABUSERS PLAN_ABUSE_GOOD=$ABUSE_GOOD \
    PLAN_ABUSE_DURATION=$ABUSE_DURATION \
    PLAN_RTT_MS=$RTT_MS PLAN_RTT_SCENARIOS="${RTT_SCENARIOS[*]}" \
    PLAN_SWEEP=$SWEEP PLAN_SWEEP_SCRIPT=$([[ -x scripts/sweep.sh ]] && echo 1 || echo 0) \
    PLAN_SCALE=$SCALE PLAN_SCALE_SCRIPT=$([[ -x scripts/scale.sh ]] && echo 1 || echo 0) \
    PLAN_SCALE_ARGS="${SCALE_ARGS[*]}" \
    PLAN_MODELS="$(for m in "${MODEL_ORDER[@]}"; do
        printf '%s\t%s\t%s\t%s\n' "$m" "${MODEL_TITLE[$m]}" "${MODEL_CMD[$m]}" "${MODEL_SKIP[$m]:-}"
    done)" \
    "${JSONPY[@]}" plan "$OUT/plan.json"
}

# The fixed load is open loop (--rate) when loadgen has it; else closed loop with a think time
# that gives about the same rate.
if has_flag --rate; then FIXED_MODE=rate; else FIXED_MODE=think; fi
fixed_args() {
    local rate
    rate=$(fixed_rate_of "$1")
    if [[ $FIXED_MODE == rate ]]; then echo "--rate $rate"; else echo "--think-ms $((FIXED_CONNS * 1000 / rate))"; fi
}

write_env
write_plan
log "writing $OUT ($([[ $QUICK -eq 1 ]] && echo quick || echo full) run, $ROUNDS round(s), ${#MODELS[@]} columns, $TOTAL_STEPS steps)"
RUN_START=$SECONDS

# ---------------------------------------------------------------------------------------------
# The runs. Scenario by scenario; in each, round after round, every model in turn (A B C A B C),
# so a slow drift of the machine spreads over every model instead of landing on one.
each() {    # each SCENARIO SCPUS LCPUS STEPS SERVER_SUFFIX -- LOADGEN_ARGS (FIXED: model's rate)
    local scenario=$1 scpus=$2 lcpus=$3 steps=$4 suffix=$5 r m extra
    shift 6
    for ((r = 1; r <= ROUNDS; r++)); do
        for m in "${MODELS[@]}"; do
            extra=()
            # shellcheck disable=SC2207 # two words
            [[ $scenario == fixed ]] && extra=($(fixed_args "$m"))
            run "$r" "$m" "$scenario" "$scpus" "$lcpus" "$steps" "$(server_of "$m")$suffix" -- "$@" "${extra[@]}"
        done
    done
}
COMMON=(--duration "$ECHO_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS")
each echo "$SERVER_CPUS" "$LOADGEN_CPUS" "$ECHO_STEPS" "" -- --scenario echo "${COMMON[@]}"
each hold "$SERVER_CPUS" "$LOADGEN_CPUS" "$HOLD_STEPS" "" -- --scenario hold \
    --duration "$HOLD_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
each churn "$SERVER_CPUS" "$LOADGEN_CPUS" "$CHURN_CONNS" "" -- --scenario churn \
    --duration "$CHURN_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
each fixed "$SERVER_CPUS" "$LOADGEN_CPUS" "$FIXED_CONNS" "" -- --scenario echo \
    --duration "$FIXED_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
# CPU-bound: the server may use every CPU (threads can, one event loop cannot); loadgen shares.
each cpu "$ALL_CPUS" "$ALL_CPUS" "$CPU_CONNS" " --work-us $CPU_WORK_US" -- --scenario echo \
    --duration "$CPU_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
if [[ -n $ABUSE_KIND ]]; then
    each abuse "$SERVER_CPUS" "$LOADGEN_CPUS" - "" -- --scenario abuse --kind "$ABUSE_KIND" \
        --abusers "$ABUSE_ABUSERS" --good "$ABUSE_GOOD" --duration "$ABUSE_DURATION" \
        --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
fi
for s in "${EXTRA_SCENARIOS[@]}"; do
    for ((r = 1; r <= ROUNDS; r++)); do
        for m in threaded async; do
            run "$r" "$m" "$s" "$SERVER_CPUS" "$LOADGEN_CPUS" "$EXTRA_STEPS" "$BIN/$m-$s" -- \
                --scenario "$s" --duration "$EXTRA_DURATION" --timeout "$REQ_TIMEOUT_MS"
        done
    done
done

# The price of a switch (issue 15), once: bin/switch-cost --json when it exists.
if [[ -x $BIN/switch-cost ]]; then
    taskset -c "$SERVER_CPUS" timeout 120 "$BIN/switch-cost" --json >"$OUT/switch-cost.json" \
        2>"$OUT/r1/logs/switch-cost.log" || log "switch-cost failed (see r1/logs/switch-cost.log)"
fi

# Latency against offered load (issue 20): scripts/sweep.sh's open-loop --rate sweep of the C
# models, pinned as above, into OUT/sweep/ (its cells.json is the summary's row).
SWEEP_MODELS=
for m in "${MODELS[@]}"; do
    case $m in threaded-tpc|threaded-pool50|async) SWEEP_MODELS+=${SWEEP_MODELS:+,}$m ;; esac
done
if [[ $SWEEP -eq 1 && -n $SWEEP_MODELS ]]; then
    if [[ -x scripts/sweep.sh ]]; then
        sweep_args=(--out "$OUT" --no-build --models "$SWEEP_MODELS" --cpus "$SERVER_CPUS,$LOADGEN_CPUS")
        # --quick checks the pipeline: the one point the summary's row reads is enough.
        [[ $QUICK -eq 1 ]] && sweep_args+=(--quick --points 80)
        log "latency against offered load: scripts/sweep.sh ${sweep_args[*]} (log: r1/logs/sweep.log)"
        scripts/sweep.sh "${sweep_args[@]}" </dev/null >"$OUT/r1/logs/sweep.log" 2>&1 ||
            log "sweep.sh failed (see r1/logs/sweep.log)"
    else
        log "scripts/sweep.sh is not in this tree: no 'Latency at 80% of capacity' row"
    fi
fi

# Past one process (issue 14): scripts/scale.sh's held-connection ramp into OUT/scale/.
SCALE_S=0
if [[ $SCALE -eq 1 ]]; then
    if [[ -x scripts/scale.sh ]]; then
        scale_args=(--out "$OUT" --no-build "${SCALE_ARGS[@]}")
        [[ $QUICK -eq 1 ]] && scale_args+=(--quick)
        log "past one process: scripts/scale.sh ${scale_args[*]} (log: r1/logs/scale.log)"
        scale_start=$SECONDS
        scripts/scale.sh "${scale_args[@]}" </dev/null >"$OUT/r1/logs/scale.log" 2>&1 ||
            log "scale.sh failed (see r1/logs/scale.log)"
        SCALE_S=$((SECONDS - scale_start))
        log "scale.sh took $SCALE_S s (outside the budget)"
    else
        log "--scale: scripts/scale.sh is not in this tree: no 'Past one process' section"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Complexity, summary and plots.
scripts/complexity.sh "$REPO" >"$OUT/complexity.json" || log "complexity.sh failed"
python3 scripts/summarize.py "$OUT" || die "summarize.py failed"
if command -v gnuplot >/dev/null; then
    scripts/plots.sh "$OUT" || log "some plots failed (see above)"
else
    log "gnuplot not found: no plots (scripts/install-deps.sh installs it)"
fi
rm -f "$OUT/.times"
BUDGET_S=$(( QUICK ? 180 : 1800 ))      # docs/compare.md, Budget
if (( SECONDS - RUN_START - SCALE_S > BUDGET_S )); then
    log "over budget: $((SECONDS - RUN_START - SCALE_S)) s against $BUDGET_S s (a busy machine, or reruns of noisy runs)"
fi
log "done in $((SECONDS - RUN_START)) s: $OUT/summary.md"
