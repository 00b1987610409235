#!/usr/bin/env bash
# The scale ramp of issue 14 ("past one process"): per server model, held connections at
# 10,000, 20,000, 50,000, 100,000 (--scale-max: further), each step on a fresh server with
# enough --procs workers for the fd limit, driven by loadgen --procs over several source
# addresses: open (paced), hold idle, probe every connection (scenario hold), then an open loop
# of a modest total rate (scenario echo --rate) for its p99. Finds, per model, the largest step
# served fully and the first one not, and why. Threaded servers run inside a pids cgroup so the
# thread wall is the cgroup's, never the machine's. scripts/compare.sh --scale calls it;
# docs/compare.md "Past one process" explains the figures.
#
# Usage: scripts/scale.sh --out DIR [--quick] [--scale-max N] [--raise-limits] [--models LIST]
#                         [--threaded-max N] [--pids-max N] [--no-build]
# The whole script is one block, read before it runs: editing the file during a long run
# cannot change what the run does.
{
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/scale.sh --out DIR [--quick] [--scale-max N] [--raise-limits] [--models LIST]
                        [--threaded-max N] [--pids-max N] [--no-build]

Writes DIR/scale/: per step TAG.hold.json and TAG.rate.json (loadgen), TAG.listening.json,
TAG.stopped.json, TAG.stderr (server), TAG.kbase.json/TAG.kpeak.json (kernel memory),
TAG.step.json; env-limits.json, plan.json, summary.json, scale.md ("Past one process"),
cells.json (the concurrent-connections cell) and scale-rss.png.

  --out DIR          results directory (DIR/scale must be empty or absent)
  --quick            small ramp (async 5,000 and 25,000 on two processes, threads at most
                     2,000), under ~90 s: for tests/scale_quick.sh
  --scale-max N      ramp 10,000, 20,000, 50,000, 100,000, ... up to N (default 100000)
  --models LIST      comma-separated, default async,async-event,threaded-tpc,threaded-pool50
                     (--quick: async,threaded-tpc,threaded-pool50)
  --threaded-max N   do not run threaded steps above N connections (default: none, the
                     cgroup contains them; --quick: 2000; no pids cgroup: 3000)
  --pids-max N       the threaded servers' cgroup pids.max (default: kernel.pid_max - tasks in
                     use - 2,000; --quick: at most 3,000); a small one shows the wall early
  --raise-limits     as root: raise kernel.pid_max and vm.max_map_count for the run and
                     restore them afterwards (the only sysctls this script ever changes)
  --no-build         do not run make for the binaries
  --help             this text
EOF
}

OUT='' QUICK=0 SCALE_MAX=100000 RAISE=0 MODELS_ARG='' THREADED_MAX='' PIDS_MAX='' BUILD=1
need() { [[ $2 -ge 2 ]] || { usage >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) need "$1" $#; OUT=$2; shift ;;
        --quick) QUICK=1 ;;
        --scale-max) need "$1" $#; SCALE_MAX=$2; shift ;;
        --raise-limits) RAISE=1 ;;
        --models) need "$1" $#; MODELS_ARG=$2; shift ;;
        --threaded-max) need "$1" $#; THREADED_MAX=$2; shift ;;
        --pids-max) need "$1" $#; PIDS_MAX=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "scale: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ -n $OUT ]] || { echo "scale: --out DIR is required" >&2; usage >&2; exit 2; }
[[ $SCALE_MAX =~ ^[1-9][0-9]*$ ]] || { echo "scale: --scale-max: positive integer" >&2; exit 2; }
[[ -z $THREADED_MAX || $THREADED_MAX =~ ^[1-9][0-9]*$ ]] ||
    { echo "scale: --threaded-max: positive integer" >&2; exit 2; }
[[ -z $PIDS_MAX || $PIDS_MAX =~ ^[1-9][0-9]*$ ]] ||
    { echo "scale: --pids-max: positive integer" >&2; exit 2; }
[[ $OUT != /* ]] && OUT=$PWD/$OUT
cd "$(dirname "$0")/.."
REPO=$PWD
BIN=${TVSA_BIN:-$REPO/bin}
PY=(python3 "$REPO/scripts/lib/scale.py")

log() { echo "scale: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# The plan.
declare -A MODEL_BIN=([async]=async-echo [async-event]=async-echo [threaded-tpc]=threaded-echo
                      [threaded-pool50]=threaded-echo)
declare -A MODEL_ARGS=([async]="--api bufferevent" [async-event]="--api event" [threaded-tpc]=""
                       [threaded-pool50]="--pool 50")
declare -A MODEL_LT=([async]=1 [async-event]=2 [threaded-tpc]=3 [threaded-pool50]=4)
if [[ $QUICK -eq 1 ]]; then
    MODELS=${MODELS_ARG:-async,threaded-tpc,threaded-pool50}
    ASYNC_STEPS=(5000 25000) TPC_STEPS=(1000 2000) POOL_STEPS=(50 1000)
    THREADED_MAX=${THREADED_MAX:-2000}
    HOLD_S=1 RATE=2000 RATE_S=2 CONNECT_RATE=25000 TIMEOUT_MS=2000 CONNECT_TIMEOUT_MS=5000
    PROBE_TIMEOUT_MS=10000
else
    MODELS=${MODELS_ARG:-async,async-event,threaded-tpc,threaded-pool50}
    ASYNC_STEPS=() v=10000
    # 1-2-5 series from 10,000 up to --scale-max, and --scale-max itself.
    while ((v <= SCALE_MAX)); do
        ASYNC_STEPS+=("$v")
        case ${v:0:1} in 1|5) v=$((v * 2)) ;; *) v=$((v * 5 / 2)) ;; esac
    done
    [[ ${ASYNC_STEPS[-1]:-0} -ne $SCALE_MAX ]] && ASYNC_STEPS+=("$SCALE_MAX")
    TPC_STEPS=("${ASYNC_STEPS[@]}") POOL_STEPS=(50 "${ASYNC_STEPS[@]}")
    # A connect may wait out a SYN retransmit (1 s, then 3 s) when a busy machine's accept
    # queue overflowed for a moment: that is pacing, not a wall.
    # The probe sends one request on every connection at once: it proves each is alive, its
    # latency is not the point, so it may take long on a busy machine.
    # Connects are paced at CONNECT_RATE in all: a busy 2-core machine completed fewer than
    # 2,000 a second at 100,000 (loadgen's set-up deadline, 2 x --connect-timeout + 1 ms a
    # connection + the paced time, cut it at ~93,000-95,000), and an accept queue that
    # overflows costs a SYN retransmit (1 s, 3 s, 7 s).
    HOLD_S=5 RATE=5000 RATE_S=10 CONNECT_RATE=5000 TIMEOUT_MS=5000 CONNECT_TIMEOUT_MS=20000
    PROBE_TIMEOUT_MS=20000
fi
for m in ${MODELS//,/ }; do
    [[ -n ${MODEL_BIN[$m]:-} ]] ||
        { log "unknown model $m (async, async-event, threaded-tpc, threaded-pool50)"; exit 2; }
done
# Not pinned (unlike compare.sh): what a step needs is connects and accepts by the hundred
# thousand, not a fair split of two cores, and on a busy machine one core each made loadgen's
# set-up miss its deadline at 50,000.
NCPU=$(getconf _NPROCESSORS_ONLN)
SERVER_CPUS=0-$((NCPU - 1)) LOADGEN_CPUS=0-$((NCPU - 1))

# Every process may raise its soft fd limit to the hard one; children inherit it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
[[ $FD_LIMIT == unlimited ]] && FD_LIMIT=1048576
PER_PROC=$((FD_LIMIT * 95 / 100 - 100))     # connections one process (server or loadgen) holds
read -r PORT_LO PORT_HI </proc/sys/net/ipv4/ip_local_port_range
# Connections one source address opens: a third of the port range. Linux's connect() searches
# half of the range first (one parity), so a source address past about half of it makes every
# further connect scan thousands of ports.
PER_IP=$(((PORT_HI - PORT_LO + 1) / 3))
ceil_div() { echo $((($1 + $2 - 1) / $2)); }

# ---------------------------------------------------------------------------------------------
# Binaries and the output directory.
if [[ $BUILD -eq 1 && -z ${TVSA_BIN:-} ]]; then
    make --no-print-directory -s bin/threaded-echo bin/async-echo bin/loadgen >&2 ||
        log "make failed; using the binaries already in $BIN if they exist"
fi
for b in threaded-echo async-echo loadgen; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing (run make)"
done
for b in async-echo threaded-echo loadgen; do
    [[ $("$BIN/$b" --help 2>&1 || true) == *--procs* ]] || die "$BIN/$b has no --procs"
done
D=$OUT/scale
if [[ -d $D ]] && [[ -n $(ls -A "$D") ]]; then die "$D exists and is not empty"; fi
mkdir -p "$D"
D=$(cd "$D" && pwd)

# ---------------------------------------------------------------------------------------------
# Clean-up: servers, loadgen, the watcher, the cgroup and any raised sysctl, also on Ctrl-C.
# shellcheck source=scripts/lib/servers.sh
source "$REPO/scripts/lib/servers.sh"
LOADGEN_PID='' WATCH_PID='' CG='' CG_VER='' CG_MAX=''
declare -A SAVED_SYSCTL=()

stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cgroup_remove() {
    [[ -n $CG && -d $CG ]] || return 0
    local i pid
    # Whatever is left in it was started by this script (the cgroup is ours alone).
    for ((i = 0; i < 50; i++)); do
        [[ -s $CG/cgroup.procs ]] || break
        while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$CG/cgroup.procs"
        sleep 0.1
    done
    rmdir "$CG" 2>/dev/null || log "could not remove the cgroup $CG"
}

restore_sysctls() {
    local k
    for k in "${!SAVED_SYSCTL[@]}"; do
        echo "${SAVED_SYSCTL[$k]}" >"/proc/sys/$k" 2>/dev/null && log "restored $k = ${SAVED_SYSCTL[$k]}" ||
            log "could not restore $k to ${SAVED_SYSCTL[$k]}"
    done
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    trap '' PIPE
    stop_pid "$LOADGEN_PID"
    stop_pid "$WATCH_PID"
    tvsa_stop_all
    cgroup_remove
    restore_sysctls
    [[ $rc -ne 0 ]] && log "stopped early (exit $rc); partial results in $D"
    exit "$rc"
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT TERM
trap 'exit 141' PIPE

# ---------------------------------------------------------------------------------------------
# Limits: optionally raised (--raise-limits), then recorded.
if [[ $RAISE -eq 1 ]]; then
    [[ $(id -u) -eq 0 ]] || die "--raise-limits needs root"
    for kv in kernel/pid_max=4194304 vm/max_map_count=1048576; do
        k=${kv%%=*} v=${kv#*=}
        was=$(cat "/proc/sys/$k")
        SAVED_SYSCTL[$k]=$was
        if ((v > was)); then
            echo "$v" >"/proc/sys/$k" || die "cannot raise $k"
            log "raised $k from $was to $v (restored at the end)"
        fi
    done
fi

# The pids cgroup for the threaded servers: nested in this script's own pids cgroup (so a
# limit it runs under still applies), pids.max = pid_max - tasks in use - a reserve of 2,000
# for everything else on the machine.
cgroup_create() {
    local pid_max used reserve=2000 rel parent name
    name=tvsa-scale-$$-$(date +%s)
    pid_max=$(cat /proc/sys/kernel/pid_max)
    used=$("${PY[@]}" tasks)
    CG_MAX=$((pid_max - used - reserve))
    CG_HOW="kernel.pid_max $pid_max - $used tasks in use - $reserve reserve"
    if [[ $QUICK -eq 1 ]] && ((CG_MAX > 3000)); then
        CG_MAX=3000 CG_HOW="--quick: 3,000"
    fi
    if [[ -n $PIDS_MAX ]] && ((PIDS_MAX < CG_MAX)); then
        CG_MAX=$PIDS_MAX CG_HOW="--pids-max $PIDS_MAX"
    fi
    ((CG_MAX > 100)) || { log "only $CG_MAX PIDs to spare: no threaded steps"; CG_MAX=0; return 1; }
    rel=$(awk -F: '$2 == "pids" { print $3 }' /proc/self/cgroup)
    if [[ -d /sys/fs/cgroup/pids && -n $rel ]]; then
        parent=/sys/fs/cgroup/pids${rel%/}
        CG_VER=1
    elif grep -qw pids /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        rel=$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
        parent=/sys/fs/cgroup${rel%/}
        CG_VER=2
        grep -qw pids "$parent/cgroup.subtree_control" 2>/dev/null ||
            echo +pids >"$parent/cgroup.subtree_control" 2>/dev/null ||
            { log "cgroup v2: cannot enable pids in $parent"; return 1; }
    else
        log "no pids cgroup controller (v1 /sys/fs/cgroup/pids or v2)"
        return 1
    fi
    mkdir "$parent/$name" 2>/dev/null || { log "cannot create $parent/$name"; return 1; }
    CG=$parent/$name
    echo "$CG_MAX" >"$CG/pids.max" || { log "cannot set $CG/pids.max"; return 1; }
    log "threaded servers run in the pids cgroup $CG (v$CG_VER), pids.max $CG_MAX ($CG_HOW)"
}
CG_HOW=
if [[ $MODELS == *threaded* ]] && ! cgroup_create; then
    cgroup_remove
    CG=
    log "threaded servers run without a pids cgroup: threaded steps above 3,000 are not run"
    if [[ -z $THREADED_MAX ]] || ((THREADED_MAX > 3000)); then THREADED_MAX=3000; fi
fi

raised=$(for k in "${!SAVED_SYSCTL[@]}"; do printf '"%s":{"before":%s,"during":%s},' \
    "$k" "${SAVED_SYSCTL[$k]}" "$(cat "/proc/sys/$k")"; done)
"${PY[@]}" env "$D/env-limits.json" "raised_limits={${raised%,}}" \
    "cgroup={\"version\":${CG_VER:-null},\"path\":\"$CG\",\"pids_max\":${CG_MAX:-null}}"

join() { local IFS=,; echo "$*"; }
cat >"$D/plan.json" <<EOF
{"quick": $([[ $QUICK -eq 1 ]] && echo true || echo false), "models": ["${MODELS//,/\",\"}"],
 "steps": {"async": [$(join "${ASYNC_STEPS[@]}")], "threaded-tpc": [$(join "${TPC_STEPS[@]}")],
           "threaded-pool50": [$(join "${POOL_STEPS[@]}")]},
 "threaded_max": ${THREADED_MAX:-null}, "hold_s": $HOLD_S, "rate": $RATE, "rate_s": $RATE_S,
 "connect_rate": $CONNECT_RATE, "connect_timeout_ms": $CONNECT_TIMEOUT_MS, "timeout_ms": $TIMEOUT_MS, "probe_timeout_ms": $PROBE_TIMEOUT_MS, "per_process_connections": $PER_PROC,
 "per_source_ip_connections": $PER_IP, "server_cpus": "$SERVER_CPUS",
 "loadgen_cpus": "$LOADGEN_CPUS",
 "cgroup": {"version": ${CG_VER:-null}, "path": "$CG", "pids_max": ${CG_MAX:-null},
            "how": "$CG_HOW"}}
EOF

# ---------------------------------------------------------------------------------------------
# One step. Sets STEP_SERVED (1/0).
cg_read() { [[ -n $CG && -f $CG/$1 ]] && cat "$CG/$1" || echo null; }
cg_max_events() { [[ -n $CG && -f $CG/pids.events ]] && awk '$1 == "max" { print $2 }' "$CG/pids.events" || echo null; }

# run_loadgen TAG KIND N ARGS...: loadgen pinned to the loadgen CPUs, bounded by a watchdog
# (SIGINT: loadgen writes what it has and exits 130). Sets LG_RC to its exit status. The hold
# run has a watcher beside it that keeps the kernel figures at the most sockets in use.
SRC_BLOCK=0
run_loadgen() {
    local tag=$1 kind=$2 n=$3; shift 3
    # Each run its own 127.0.X.0/24: the ports a run's connections leave in TIME_WAIT (60 s)
    # are not in the next run's way.
    local x=$((10 + SRC_BLOCK % 240))
    SRC_BLOCK=$((SRC_BLOCK + 1))
    src=127.0.$x.1-127.0.$x.$nips
    set -- "$@" --source-ips "$src"
    local limit=$((n / CONNECT_RATE * 3 + HOLD_S + RATE_S + PROBE_TIMEOUT_MS / 1000 + 90))
    LG_RC=0
    timeout -s INT -k 10 "$limit" taskset -c "$LOADGEN_CPUS" "$BIN"/loadgen "$@" --quiet \
        --json "$D/$tag.$kind.json" 2>"$D/$tag.$kind.stderr" &
    LOADGEN_PID=$!
    if [[ $kind == hold ]]; then
        SCALE_CGROUP=$CG "${PY[@]}" watch "$D/$tag.kpeak.json" "$LOADGEN_PID" &
        WATCH_PID=$!
    fi
    wait "$LOADGEN_PID" || LG_RC=$?
    LOADGEN_PID=
    if [[ -n $WATCH_PID ]]; then wait "$WATCH_PID" || true; WATCH_PID=; fi
}

run_step() {
    local model=$1 n=$2 tag=$1-$2 procs lgprocs nips src why=() rc_hold=null rc_rate=null srv_rc=null
    local threaded=0 t0=$SECONDS
    [[ $model == threaded-* ]] && threaded=1
    procs=$(ceil_div "$n" "$PER_PROC")
    [[ $QUICK -eq 1 ]] && procs=2
    [[ $model == threaded-pool50 ]] && procs=1     # the table's column: one pool of 50
    lgprocs=$(ceil_div "$n" "$PER_PROC")
    nips=$(ceil_div "$n" "$PER_IP")
    ((nips < lgprocs)) && nips=$lgprocs
    ((nips <= 250)) || die "$n connections need $nips source addresses (more than 250)"
    log "$tag: $procs server process(es), $lgprocs loadgen process(es), $nips source addresses"
    local -a cmd=("$BIN/${MODEL_BIN[$model]}")
    # shellcheck disable=SC2206 # flags are words
    cmd+=(${MODEL_ARGS[$model]} --procs "$procs")
    if [[ $threaded -eq 1 && -n $CG ]]; then
        cmd=(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "${cmd[@]}")
    fi
    "${PY[@]}" snap "$D/$tag.kbase.json"
    local events0; events0=$(cg_max_events)
    STEP_SERVED=0
    if ! tvsa_server_start "$D" "$tag" "$SERVER_CPUS" "${cmd[@]}"; then
        why+=("server did not start: $(tail -n 2 "$D/$tag.stderr" | tr '\n' ' ')")
        [[ -n ${TVSA_SERVER_PID:-} ]] && tvsa_server_stop "$TVSA_SERVER_PID" || true
    else
        local pid=$TVSA_SERVER_PID port=$TVSA_SERVER_PORT
        # loadgen --procs gives every worker the whole --connect-rate (it splits connections
        # and --rate, not the pace): each gets its share.
        local -a common=(--target "127.0.0.1:$port" --connections "$n" --procs "$lgprocs"
                         --connect-rate "$((CONNECT_RATE / lgprocs))"
                         --connect-timeout "$CONNECT_TIMEOUT_MS" --server-pid "$pid")
        run_loadgen "$tag" hold "$n" "${common[@]}" --scenario hold --duration "$HOLD_S" \
            --timeout "$PROBE_TIMEOUT_MS"
        rc_hold=$LG_RC
        [[ $rc_hold -eq 0 ]] || why+=("loadgen hold exit $rc_hold: $(tail -n 1 "$D/$tag.hold.stderr")")
        if [[ $rc_hold -ne 2 ]]; then
            run_loadgen "$tag" rate "$n" "${common[@]}" --scenario echo --rate "$RATE" \
                --duration "$RATE_S" --timeout "$TIMEOUT_MS"
            rc_rate=$LG_RC
            [[ $rc_rate -eq 0 ]] || why+=("loadgen open loop exit $rc_rate: $(tail -n 1 "$D/$tag.rate.stderr")")
        fi
        srv_rc=0
        tvsa_server_stop "$pid" || srv_rc=$?
        [[ $srv_rc -eq 0 ]] || why+=("server exit status $srv_rc")
        [[ -f $D/$tag.stopped.json ]] || why+=("server printed no stopped line")
    fi
    local whyjson; whyjson=$(printf '%s\n' "${why[@]}" | python3 -c \
        'import json,sys; print(json.dumps([l for l in sys.stdin.read().splitlines() if l]))')
    cat >"$D/$tag.step.json" <<EOF
{"model": "$model", "tag": "$tag", "connections": $n, "procs": $procs, "loadgen_procs": $lgprocs,
 "source_addresses": $nips, "source_ips_last": "${src:-}", "loadgen_hold_exit": $rc_hold, "loadgen_rate_exit": $rc_rate,
 "server_exit": $srv_rc, "seconds": $((SECONDS - t0)), "why": $whyjson,
 "cgroup_pids_max": $([[ $threaded -eq 1 ]] && cg_read pids.max || echo null),
 "cgroup_max_events": $(e=$(cg_max_events); [[ $threaded -eq 1 && $e != null ]] && echo $((e - events0)) || echo null)}
EOF
    if "${PY[@]}" served "$D" "$tag"; then STEP_SERVED=1; fi
    log "$tag: $([[ $STEP_SERVED -eq 1 ]] && echo served || echo 'NOT served') ($((SECONDS - t0)) s)"
}

skip_step() {
    cat >"$D/$1-$2.step.json" <<EOF
{"model": "$1", "tag": "$1-$2", "connections": $2, "skipped": "$3"}
EOF
}

# ---------------------------------------------------------------------------------------------
# The ramps: each model stops at its first step not served.
start=$SECONDS
for model in ${MODELS//,/ }; do
    case $model in
        async*) steps=("${ASYNC_STEPS[@]}") ;;
        threaded-tpc) steps=("${TPC_STEPS[@]}") ;;
        threaded-pool50) steps=("${POOL_STEPS[@]}") ;;
    esac
    stopped_at=
    for n in "${steps[@]}"; do
        if [[ -n $stopped_at ]]; then
            skip_step "$model" "$n" "not run: $stopped_at was not served"
        elif [[ $model == threaded-tpc && -n $THREADED_MAX ]] && ((n > THREADED_MAX)); then
            skip_step "$model" "$n" "not run: above --threaded-max $THREADED_MAX"
        else
            run_step "$model" "$n"
            [[ $STEP_SERVED -eq 1 ]] || stopped_at=$n
        fi
    done
done
log "ramps done in $((SECONDS - start)) s"

"${PY[@]}" report "$OUT" || die "scripts/lib/scale.py report failed"

# The plot: connections held vs RSS of the server's process tree, per model.
if command -v gnuplot >/dev/null; then
    if gnuplot -e 'set terminal pngcairo' 2>/dev/null; then
        term='set terminal pngcairo size 960,600 enhanced font "sans,11"'
    else
        term='set terminal png size 960,600'
    fi
    plotcmd=()
    for m in ${MODELS//,/ }; do
        [[ $(wc -l <"$D/data/rss-$m.tsv") -gt 1 ]] || continue
        plotcmd+=("'$D/data/rss-$m.tsv' using 1:2 with linespoints lt ${MODEL_LT[$m]} title '$m'")
        plotcmd+=("'$D/data/rss-$m.tsv' using 1:(\$5 == 0 ? \$2 : NaN) with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' notitle")
    done
    if [[ ${#plotcmd[@]} -gt 0 ]] && ! gnuplot >"$D/data/plot.log" 2>&1 <<EOF
$term
set output '$D/scale-rss.png'
set datafile separator '\t'
set datafile missing 'NaN'
set key top left
set grid xtics ytics mxtics mytics lc rgb '#dddddd'
set linetype 1 lc rgb '#1b9e77' lw 2 pt 9 ps 1.4
set linetype 2 lc rgb '#66a61e' lw 2 pt 11 ps 1.4
set linetype 3 lc rgb '#7570b3' lw 2 pt 5 ps 1.2
set linetype 4 lc rgb '#d95f02' lw 2 pt 7 ps 1.2
set title 'Connections held vs server RSS (whole process tree)$([[ $QUICK -eq 1 ]] && echo ' (quick run)')'
set xlabel 'connections held'
set ylabel 'RSS (MiB)'
set format x '%.0s%c'
set xrange [0:*]
set yrange [0:*]
plot $(join "${plotcmd[@]}"), keyentry with points pt 6 ps 2.6 lw 2 lc rgb '#e41a1c' title 'step not served'
EOF
    then
        log "plot failed: $(tr '\n' ' ' <"$D/data/plot.log")"
        rm -f "$D/scale-rss.png"
    fi
else
    log "gnuplot not found: no scale-rss.png"
fi
log "wrote $D/scale.md ($((SECONDS - start)) s in all)"
exit 0
}
