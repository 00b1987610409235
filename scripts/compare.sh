#!/usr/bin/env bash
# Reproduces the threads-vs-async comparison table by measurement (issue 6): starts each server
# on a free port, drives it with bin/loadgen, and writes the raw JSON, env.json, summary.md and
# PNG plots into one results directory. docs/compare.md explains every row; results/README.md
# the directory layout.
#
# Usage: scripts/compare.sh [--quick] [--out DIR] [--no-build] [--p99-bound-ms MS] [--help]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/compare.sh [--quick] [--out DIR] [--no-build] [--p99-bound-ms MS]

Runs every server model (threaded --pool 50, threaded one thread per connection, async)
through the loadgen scenarios (echo ramp, hold ramp, churn, fixed load, CPU-bound) and writes
DIR (default results/<UTC stamp>/): loadgen/*.json, servers/*.json, env.json, plan.json,
complexity.json, summary.md and plots/*.png.

  --quick            smaller steps and shorter durations (under 3 minutes on 2 cores)
  --out DIR          results directory (created; must be empty or absent)
  --no-build         do not run make for the binaries
  --p99-bound-ms MS  p99 bound of the "concurrent connections" row (default 500)
  --help             this text

Progress goes to stderr, one line per step. Every server started is stopped on exit and on
Ctrl-C.
EOF
}

QUICK=0
OUT=
BUILD=1
P99_BOUND_MS=500
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --out) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; OUT=$2; shift ;;
        --out=*) OUT=${1#--out=} ;;
        --no-build) BUILD=0 ;;
        --p99-bound-ms) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; P99_BOUND_MS=$2; shift ;;
        --p99-bound-ms=*) P99_BOUND_MS=${1#--p99-bound-ms=} ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $P99_BOUND_MS =~ ^[1-9][0-9]*$ ]] || { echo "compare: --p99-bound-ms: positive integer" >&2; exit 2; }
# --out is relative to where we were called from; everything else to the repository.
[[ -n $OUT && $OUT != /* ]] && OUT=$PWD/$OUT
cd "$(dirname "$0")/.."
REPO=$PWD

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

if [[ $QUICK -eq 1 ]]; then
    ECHO_STEPS=10,50,100,500,1000
    HOLD_STEPS=100,1000
    ECHO_DURATION=2 HOLD_DURATION=1 CHURN_DURATION=2 FIXED_DURATION=2 CPU_DURATION=2
else
    ECHO_STEPS=10,50,100,200,500,1000,2000,5000,10000
    HOLD_STEPS=10,100,1000,2000,5000,10000
    ECHO_DURATION=5 HOLD_DURATION=3 CHURN_DURATION=5 FIXED_DURATION=5 CPU_DURATION=5
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
FIXED_RATE=20000                        # requests/s, open loop; every model sustains it
CPU_CONNS=50
CPU_WORK_US=200                         # CPU burnt per message: at most 5,000 req/s per core
# Server on CPU 0, loadgen on CPU 1; the CPU-bound run gives the server every CPU.
if (( NCPU >= 2 )); then
    SERVER_CPUS=0 LOADGEN_CPUS=1 ALL_CPUS=0-$((NCPU - 1))
else
    SERVER_CPUS=0 LOADGEN_CPUS=0 ALL_CPUS=0
    log "only one CPU: server and loadgen share it (figures will say so)"
fi

# Models: label -> server binary and flags.
MODELS=(threaded-pool50 threaded-tpc async)
declare -A MODEL_BIN=([threaded-pool50]=threaded-echo [threaded-tpc]=threaded-echo [async]=async-echo)
declare -A MODEL_ARGS=([threaded-pool50]="--pool 50" [threaded-tpc]="" [async]="--api bufferevent")
server_of() { echo "${MODEL_BIN[$1]} ${MODEL_ARGS[$1]}"; }

# ---------------------------------------------------------------------------------------------
# Build and output directory.
BIN=${TVSA_BIN:-$REPO/bin}
if [[ $BUILD -eq 1 ]]; then
    if ! make --no-print-directory -s bin/threaded-echo bin/async-echo bin/loadgen >&2; then
        log "make failed; using the binaries already in $BIN if they exist"
    fi
fi
for b in threaded-echo async-echo loadgen; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing (run make)"
done

if [[ -z $OUT ]]; then
    OUT=$REPO/results/$(date -u +%Y%m%dT%H%M%SZ)
fi
if [[ -d $OUT ]] && [[ -n $(ls -A "$OUT") ]]; then
    die "$OUT exists and is not empty"
fi
mkdir -p "$OUT"/loadgen "$OUT"/servers "$OUT"/logs
OUT=$(cd "$OUT" && pwd)

LOADGEN_HELP=$("$BIN"/loadgen --help 2>&1 || true)
has_flag() { grep -q -- "$1" <<<"$LOADGEN_HELP"; }

# The other servers (issue 6: "chat, udp and dns once they exist"): each is run once, threaded
# and async with their default flags, when both binaries exist and loadgen has the scenario.
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
if [[ $QUICK -eq 1 ]]; then ABUSE_DURATION=2; else ABUSE_DURATION=5; fi
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

# Prints the value of KEY (a dotted path) of the one JSON object in FILE, or nothing.
json_get() {
    python3 - "$1" "$2" <<'PY'
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for k in sys.argv[2].split("."):
        v = v[k]
    print(v)
except Exception:
    pass
PY
}

# start_server TAG CPUS BINARY ARGS...: starts it on port 0 with stdout/stderr in servers/,
# waits for the listening line and sets SERVER_PID and SERVER_PORT.
start_server() {
    local tag=$1
    if ! tvsa_server_start "$OUT/servers" "$@"; then
        log "$tag: no listening line from ${*:3} (see servers/$tag.stderr)"
        return 1
    fi
    SERVER_PID=$TVSA_SERVER_PID
    SERVER_PORT=$TVSA_SERVER_PORT
}

# stop_server PID: stops it, keeps servers/TAG.stopped.json. Returns the server's exit status.
stop_server() {
    local tag=${TVSA_LIVE[$1]} rc=0
    tvsa_server_stop "$1" || rc=$?
    [[ -f $OUT/servers/$tag.stopped.json ]] || log "$tag: no stopped line"
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
STEP_NO=0

# Prints one progress line per step of a loadgen JSON file.
report_steps() {
    local model=$1 scenario=$2 file=$3 expected=$4
    local lines
    lines=$(python3 - "$file" "$model" "$scenario" <<'PY' || true
import json, sys
path, model, scenario = sys.argv[1:4]
try:
    doc = json.load(open(path))
except Exception as e:
    sys.exit(0)
for st in doc.get("steps", []):
    c = st.get("connections", {})
    r = st.get("requests", {})
    lat = st.get("latency_us", {})
    p99 = lat.get("p99")
    p99s = "p99 %.2f ms" % (p99 / 1000.0) if isinstance(p99, (int, float)) else "p99 n/a"
    extra = []
    if c.get("established") != c.get("target"):
        extra.append("established %s" % c.get("established"))
    for k in ("errors", "timeouts", "mismatches"):
        if r.get(k):
            extra.append("%s %s" % (k, r[k]))
    print("%s %s %s conns: %.0f req/s %s%s" % (model, scenario, c.get("target"),
          r.get("per_sec") or 0, p99s, (" (" + ", ".join(extra) + ")") if extra else ""))
PY
)
    local n=0 line
    while IFS= read -r line; do
        [[ -z $line ]] && continue
        STEP_NO=$((STEP_NO + 1)); n=$((n + 1))
        echo "[$STEP_NO/$TOTAL_STEPS] $line" >&2
    done <<<"$lines"
    while (( n < expected )); do    # steps that produced no figures still count
        STEP_NO=$((STEP_NO + 1)); n=$((n + 1))
        echo "[$STEP_NO/$TOTAL_STEPS] $model $scenario: step missing (see logs/$scenario-$model.loadgen.log)" >&2
    done
}

# run MODEL SCENARIO SERVER_CPUS LOADGEN_CPUS STEPS "SERVER_BINARY ARGS" -- LOADGEN_ARGS...
# One fresh server per (scenario, model): its memory baseline and rusage belong to this run.
run() {
    local model=$1 scenario=$2 scpus=$3 lcpus=$4 steps=$5 sbin sargs
    read -r sbin sargs <<<"$6"
    shift 7
    local tag=$scenario-$model
    local json=$OUT/loadgen/$tag.json
    local lthreads
    lthreads=$(taskset -c "$lcpus" nproc)
    # The machine's CPU time over the run: what neither the server nor loadgen used is noise.
    local stat0 t0 stat1 t1
    stat0=$(head -n1 /proc/stat)
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086 # sargs is a word list
    if ! start_server "$tag" "$scpus" "$BIN/$sbin" $sargs; then
        record_run "$tag" "$model" "$scenario" "" 1 1 0 "" "" 0
        report_steps "$model" "$scenario" /dev/null "$(steps_in "$steps")"
        return 0
    fi
    local started=$SECONDS lrc=0 src=0
    # A watchdog: connects and probes take seconds, not minutes; a stuck run must not hang
    # the whole comparison (timeout sends SIGTERM: loadgen still writes what it measured).
    local dur=10 a prev=
    for a in "$@"; do [[ $prev == --duration ]] && dur=$a; prev=$a; done
    local limit=$(( $(steps_in "$steps") * (${dur%.*} + STEP_SLACK_S) + 60 ))
    # STEPS "-": the scenario opens its own connections (abuse), so no --connections.
    local conns=(--connections "$steps")
    [[ $steps == - ]] && conns=()
    local cmd=(timeout -k 10 "$limit" taskset -c "$lcpus" "$BIN/loadgen" --target "127.0.0.1:$SERVER_PORT"
               "${conns[@]}" --threads "$lthreads" --server-pid "$SERVER_PID"
               --json "$json" --quiet "$@")
    echo "${cmd[*]}" >"$OUT/logs/$tag.loadgen.cmd"
    "${cmd[@]}" </dev/null >/dev/null 2>"$OUT/logs/$tag.loadgen.log" &
    LOADGEN_PID=$!
    wait "$LOADGEN_PID" || lrc=$?
    LOADGEN_PID=
    stat1=$(head -n1 /proc/stat)
    t1=$(date +%s.%N)
    stop_server "$SERVER_PID" || src=$?
    if [[ $lrc -eq 124 ]]; then
        log "$tag: loadgen stopped by the watchdog after $limit s (see logs/$tag.loadgen.log)"
    elif [[ $lrc -ne 0 ]]; then
        log "$tag: loadgen exited $lrc (see logs/$tag.loadgen.log)"
    fi
    [[ $src -ne 0 ]] && log "$tag: server exited $src (see servers/$tag.stderr)"
    record_run "$tag" "$model" "$scenario" "${cmd[*]}" "$lrc" "$src" $((SECONDS - started)) \
        "$stat0" "$stat1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    report_steps "$model" "$scenario" "$json" "$(steps_in "$steps")"
}

# Appends one line per run to runs.jsonl: what ran, how it ended, and the machine's busy CPU
# seconds (all CPUs, from /proc/stat) between the server's start and loadgen's end.
record_run() {
    python3 - "$OUT/runs.jsonl" "$@" <<'PY'
import json, os, sys
out, tag, model, scenario, cmd, lrc, src, elapsed, stat0, stat1, wall = sys.argv[1:12]

def busy(line):
    # cpu user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    v = [int(x) for x in line.split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

rec = {"tag": tag, "model": model, "scenario": scenario, "loadgen_cmd": cmd,
       "loadgen_exit": int(lrc), "server_exit": int(src), "elapsed_s": int(elapsed),
       "json": "loadgen/%s.json" % tag}
if stat0 and stat1:
    rec["machine_busy_cpu_s"] = round(busy(stat1) - busy(stat0), 3)
    rec["measured_wall_s"] = float(wall)
with open(out, "a") as f:
    f.write(json.dumps(rec) + "\n")
PY
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
    python3 - "$OUT/env.json" <<'PY'
import json, os, platform, sys, time

def read(path):
    try:
        return open(path).read().strip()
    except OSError:
        return None

cpu_model = None
for line in (read("/proc/cpuinfo") or "").splitlines():
    if line.startswith("model name"):
        cpu_model = line.split(":", 1)[1].strip()
        break
mem_kib = None
for line in (read("/proc/meminfo") or "").splitlines():
    if line.startswith("MemTotal:"):
        mem_kib = int(line.split()[1])
e = os.environ
env = {
    "schema": "tvsa-env/1",
    "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
    "kernel_version": read("/proc/version"),
    "cpu_model": cpu_model,
    "cores_online": os.cpu_count(),
    "cores_usable": len(os.sched_getaffinity(0)),
    "memory_total_kib": mem_kib,
    "loadavg_at_start": read("/proc/loadavg"),
    "libraries": {"libevent": e["ENV_LIBEVENT"], "jansson": e["ENV_JANSSON"],
                  "cmocka": e["ENV_CMOCKA"]},
    "gnuplot": e["ENV_GNUPLOT"],
    "python": platform.python_version(),
    "compiler": e["ENV_CC"],
    "fd_limit": {"soft": e["ENV_FD_SOFT"], "hard": e["ENV_FD_HARD"]},
    "git_revision": e["ENV_GIT_REV"],
    "git_uncommitted_files": int(e["ENV_GIT_DIRTY"]),
    "sysctl": {k: read("/proc/sys/" + k.replace(".", "/")) for k in (
        "vm.overcommit_memory", "kernel.pid_max", "kernel.threads-max",
        "net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse")},
}
json.dump(env, open(sys.argv[1], "w"), indent=2)
PY
}

write_plan() {
    PLAN_QUICK=$QUICK PLAN_ECHO_STEPS=$ECHO_STEPS PLAN_HOLD_STEPS=$HOLD_STEPS \
    PLAN_ECHO_DURATION=$ECHO_DURATION PLAN_HOLD_DURATION=$HOLD_DURATION \
    PLAN_CHURN_DURATION=$CHURN_DURATION PLAN_FIXED_DURATION=$FIXED_DURATION \
    PLAN_CPU_DURATION=$CPU_DURATION PLAN_MSG_SIZE=$MSG_SIZE PLAN_TIMEOUT=$REQ_TIMEOUT_MS \
    PLAN_BOUND=$P99_BOUND_MS PLAN_CHURN_CONNS=$CHURN_CONNS PLAN_FIXED_CONNS=$FIXED_CONNS \
    PLAN_FIXED_RATE=$FIXED_RATE PLAN_FIXED_MODE=$FIXED_MODE PLAN_CPU_CONNS=$CPU_CONNS \
    PLAN_CPU_WORK=$CPU_WORK_US PLAN_SERVER_CPUS=$SERVER_CPUS PLAN_LOADGEN_CPUS=$LOADGEN_CPUS \
    PLAN_ALL_CPUS=$ALL_CPUS PLAN_EXTRA="${EXTRA_SCENARIOS[*]}" PLAN_EXTRA_STEPS=$EXTRA_STEPS \
    PLAN_EXTRA_DURATION=$EXTRA_DURATION PLAN_ABUSE_KIND=$ABUSE_KIND \
    PLAN_ABUSE_ABUSERS=$ABUSE_ABUSERS PLAN_ABUSE_GOOD=$ABUSE_GOOD \
    PLAN_ABUSE_DURATION=$ABUSE_DURATION \
    PLAN_MODELS="$(for m in "${MODELS[@]}"; do echo "$m ${MODEL_BIN[$m]} ${MODEL_ARGS[$m]}"; done)" \
    python3 - "$OUT/plan.json" <<'PY'
import json, os, sys
e = os.environ
steps = lambda s: [int(x) for x in s.split(",")]
models = []
for line in e["PLAN_MODELS"].splitlines():
    label, binary, *args = line.split()
    models.append({"label": label, "binary": binary, "args": args})
plan = {
    "schema": "tvsa-compare-plan/1",
    "quick": e["PLAN_QUICK"] == "1",
    "models": models,
    "pinning": {"server_cpus": e["PLAN_SERVER_CPUS"], "loadgen_cpus": e["PLAN_LOADGEN_CPUS"],
                "cpu_bound_server_cpus": e["PLAN_ALL_CPUS"],
                "cpu_bound_loadgen_cpus": e["PLAN_ALL_CPUS"]},
    "message_size": int(e["PLAN_MSG_SIZE"]),
    "request_timeout_ms": int(e["PLAN_TIMEOUT"]),
    "p99_bound_ms": int(e["PLAN_BOUND"]),
    "scenarios": {
        "echo": {"connections": steps(e["PLAN_ECHO_STEPS"]),
                 "duration_s": float(e["PLAN_ECHO_DURATION"])},
        "hold": {"connections": steps(e["PLAN_HOLD_STEPS"]),
                 "duration_s": float(e["PLAN_HOLD_DURATION"])},
        "churn": {"connections": int(e["PLAN_CHURN_CONNS"]),
                  "duration_s": float(e["PLAN_CHURN_DURATION"])},
        "fixed": {"connections": int(e["PLAN_FIXED_CONNS"]), "rate": int(e["PLAN_FIXED_RATE"]),
                  "mode": e["PLAN_FIXED_MODE"], "duration_s": float(e["PLAN_FIXED_DURATION"])},
        "cpu": {"connections": int(e["PLAN_CPU_CONNS"]), "work_us": int(e["PLAN_CPU_WORK"]),
                "duration_s": float(e["PLAN_CPU_DURATION"])},
    },
    "abuse": {"kind": e["PLAN_ABUSE_KIND"] or None, "abusers": int(e["PLAN_ABUSE_ABUSERS"]),
              "good": int(e["PLAN_ABUSE_GOOD"]), "duration_s": float(e["PLAN_ABUSE_DURATION"])},
    "extra": {"scenarios": e["PLAN_EXTRA"].split(), "connections": steps(e["PLAN_EXTRA_STEPS"]),
              "duration_s": float(e["PLAN_EXTRA_DURATION"]),
              "models": {"threaded": "threaded-NAME", "async": "async-NAME"}},
}
json.dump(plan, open(sys.argv[1], "w"), indent=2)
PY
}

# The fixed load is open loop (--rate) when loadgen has it; else closed loop with a think time
# that gives about the same rate.
if has_flag --rate; then
    FIXED_MODE=rate
    FIXED_ARGS=(--rate "$FIXED_RATE")
else
    FIXED_MODE=think
    FIXED_ARGS=(--think-ms $((FIXED_CONNS * 1000 / FIXED_RATE)))
fi

write_env
write_plan
log "writing $OUT ($([[ $QUICK -eq 1 ]] && echo quick || echo full) run, $TOTAL_STEPS steps)"
RUN_START=$SECONDS

# ---------------------------------------------------------------------------------------------
# The runs. Order: scenario by scenario, each model in turn, so a stopped run still has every
# model for the scenarios it finished.
ECHO_ARGS=(--scenario echo --duration "$ECHO_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS")
for m in "${MODELS[@]}"; do
    run "$m" echo "$SERVER_CPUS" "$LOADGEN_CPUS" "$ECHO_STEPS" "$(server_of "$m")" -- "${ECHO_ARGS[@]}"
done
for m in "${MODELS[@]}"; do
    run "$m" hold "$SERVER_CPUS" "$LOADGEN_CPUS" "$HOLD_STEPS" "$(server_of "$m")" -- \
        --scenario hold --duration "$HOLD_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
done
for m in "${MODELS[@]}"; do
    run "$m" churn "$SERVER_CPUS" "$LOADGEN_CPUS" "$CHURN_CONNS" "$(server_of "$m")" -- \
        --scenario churn --duration "$CHURN_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
done
for m in "${MODELS[@]}"; do
    run "$m" fixed "$SERVER_CPUS" "$LOADGEN_CPUS" "$FIXED_CONNS" "$(server_of "$m")" -- \
        --scenario echo --duration "$FIXED_DURATION" --size "$MSG_SIZE" \
        --timeout "$REQ_TIMEOUT_MS" "${FIXED_ARGS[@]}"
done
# CPU-bound: the server may use every CPU (threads can, one event loop cannot); loadgen shares.
for m in "${MODELS[@]}"; do
    run "$m" cpu "$ALL_CPUS" "$ALL_CPUS" "$CPU_CONNS" "$(server_of "$m") --work-us $CPU_WORK_US" -- \
        --scenario echo --duration "$CPU_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
done

if [[ -n $ABUSE_KIND ]]; then
    for m in "${MODELS[@]}"; do
        run "$m" abuse "$SERVER_CPUS" "$LOADGEN_CPUS" - "$(server_of "$m")" -- \
            --scenario abuse --kind "$ABUSE_KIND" --abusers "$ABUSE_ABUSERS" --good "$ABUSE_GOOD" \
            --duration "$ABUSE_DURATION" --size "$MSG_SIZE" --timeout "$REQ_TIMEOUT_MS"
    done
fi

for s in "${EXTRA_SCENARIOS[@]}"; do
    run threaded "$s" "$SERVER_CPUS" "$LOADGEN_CPUS" "$EXTRA_STEPS" "threaded-$s" -- \
        --scenario "$s" --duration "$EXTRA_DURATION" --timeout "$REQ_TIMEOUT_MS"
    run async "$s" "$SERVER_CPUS" "$LOADGEN_CPUS" "$EXTRA_STEPS" "async-$s" -- \
        --scenario "$s" --duration "$EXTRA_DURATION" --timeout "$REQ_TIMEOUT_MS"
done

# ---------------------------------------------------------------------------------------------
# Complexity, summary and plots.
scripts/complexity.sh "$REPO" >"$OUT/complexity.json" || log "complexity.sh failed"
python3 scripts/summarize.py "$OUT" || die "summarize.py failed"
if command -v gnuplot >/dev/null; then
    scripts/plots.sh "$OUT" || log "some plots failed (see above)"
else
    log "gnuplot not found: no plots (scripts/install-deps.sh installs it)"
fi
log "done in $((SECONDS - RUN_START)) s: $OUT/summary.md"
