#!/usr/bin/env bash
# Latency against offered load (issue 20, lab 9): for each echo model, a closed-loop run measures
# its capacity, then an open-loop sweep of loadgen --rate from 10% to 110% of it records p50, p99
# and p99.9 (coordinated-omission corrected) per offered load: the hockey stick.
#
# With --rtt-ms every run goes through scripts/cluster.sh --local 1 (a netem round trip).
#
# Usage: scripts/sweep.sh --out DIR [--quick] [--models LIST] [--cpus S,C] [...]  (--help)
set -euo pipefail

# One block, so bash parses the whole script before running it (editing it mid-run is safe).
{
usage() {
    cat <<'EOF'
Usage: scripts/sweep.sh --out DIR [--quick] [--models LIST] [--cpus S,C] [--connections N]
                        [--points PCTS] [--duration SEC] [--rounds N] [--rtt-ms MS]
                        [--no-build]

For each model: capacity = requests/s of a closed-loop echo run at --connections, server
pinned to CPU S and loadgen (--threads 1) to CPU C; then one open-loop run
(loadgen --rate R) per point, R = point% x capacity, models interleaved at each point.
Writes DIR/sweep/:
  capacity-MODEL-rN.json   loadgen JSON of each capacity run (round N)
  MODEL-PCT-rN.json        loadgen JSON of each open-loop point (round N)
  sweep.json               per model: capacity, points (p50/p99/p99.9, achieved, timeouts)
  cells.json               the "latency at 80% of capacity" cell of each model
  latency.png              p50/p99/p99.9 against offered load (% of capacity), log y
  runs.tsv                 every run in order: what ran, load average, CPU pressure
  data/MODEL.tsv           the plotted figures
  servers/, logs/          servers' JSON lines and stderr, loadgen's stderr, gnuplot's

  --models LIST     comma-separated: threaded-tpc (or tpc), threaded-pool50 (or pool),
                    async (default: all three)
  --cpus S,C        server CPU(s) and loadgen CPU(s) for taskset (default 0,1)
  --connections N   connections of every run (default 50: the pool's size, so the pool
                    serves every connection and the sweep shows queueing, not starvation)
  --points PCTS     offered loads in % of capacity (default 10,30,50,70,80,90,100,110;
                    quick 10,50,80,110)
  --duration SEC    seconds per run (default 3; quick 1)
  --rounds N        capacity runs and passes over the points (default 2; quick 1); a
                    point's figures are the median over rounds, sweep.json keeps each
  --rtt-ms MS       a real round trip: every run (capacity and points) through
                    scripts/cluster.sh --local 1 --rtt-ms MS, the server started afresh
                    in a server namespace (CPU 0) for each run, loadgen in a client
                    namespace, netem delay MS/2 on each end of the link (--cpus is then
                    cluster.sh's: server CPU 0, loadgen the others). Root, pdsh and netem
                    in the kernel; without them exit 2 before anything is measured.
                    Each run's cluster.sh directory is kept in cluster/.
  --quick           a check that everything works, about 30 s: not for figures
  --no-build        do not run make
EOF
}

CALLER=$PWD    # --out is relative to where the script was called from
cd "$(dirname "$0")/.."
REPO=$PWD
log() { echo "sweep: $*" >&2; }
die() { log "$*"; exit 1; }
bad() { log "$*"; usage >&2; exit 2; }

OUT='' QUICK=0 MODELS_ARG='' CPUS='' CONNS=50 POINTS='' DURATION='' ROUNDS='' BUILD=1 RTT_MS=''
while [[ $# -gt 0 ]]; do
    case $1 in
        --out|--models|--cpus|--connections|--points|--duration|--rounds|--rtt-ms)
            [[ $# -ge 2 ]] || bad "$1 needs a value"
            case $1 in
                --out) OUT=$2 ;; --models) MODELS_ARG=$2 ;; --cpus) CPUS=$2 ;;
                --connections) CONNS=$2 ;; --points) POINTS=$2 ;;
                --duration) DURATION=$2 ;; --rounds) ROUNDS=$2 ;; --rtt-ms) RTT_MS=$2 ;;
            esac
            shift ;;
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) bad "unknown argument: $1" ;;
    esac
    shift
done
[[ -n $OUT ]] || bad "--out DIR is required"
[[ $OUT == /* ]] || OUT=$CALLER/$OUT
if [[ $QUICK -eq 1 ]]; then
    : "${POINTS:=10,50,80,110}" "${DURATION:=1}" "${ROUNDS:=1}"
else
    : "${POINTS:=10,30,50,70,80,90,100,110}" "${DURATION:=3}" "${ROUNDS:=2}"
fi
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || bad "--connections: a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || bad "--duration: whole seconds, at least 1"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || bad "--rounds: a positive integer"
[[ $POINTS =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || bad "--points: percentages like 10,50,80"
[[ -z $RTT_MS || $RTT_MS =~ ^[0-9]+([.][0-9]+)?$ ]] || bad "--rtt-ms: a number of milliseconds"
[[ -z $RTT_MS || -z $CPUS ]] || bad "--cpus and --rtt-ms: cluster.sh pins the server to CPU 0"
IFS=, read -r -a PCTS <<<"$POINTS"

# Models: name -> server binary and flags (compare.sh's labels, so cells.json's keys are its).
declare -A MODEL_BIN=([threaded-tpc]=threaded-echo [threaded-pool50]=threaded-echo [async]=async-echo)
declare -A MODEL_ARGS=([threaded-tpc]="" [threaded-pool50]="--pool 50" [async]="--api bufferevent")
MODELS=()
IFS=, read -r -a wanted <<<"${MODELS_ARG:-threaded-tpc,threaded-pool50,async}"
for m in "${wanted[@]}"; do
    case $m in tpc) m=threaded-tpc ;; pool|pool50) m=threaded-pool50 ;; esac
    [[ -n ${MODEL_BIN[$m]:-} ]] || bad "--models: unknown model '$m'"
    [[ " ${MODELS[*]} " == *" $m "* ]] || MODELS+=("$m")
done

NCPU=$(getconf _NPROCESSORS_ONLN)
if [[ -n $RTT_MS ]]; then
    # cluster.sh's pinning, written down as the runs' (runs.tsv, sweep.json).
    SERVER_CPUS=0 LOADGEN_CPUS=0
    (( NCPU >= 2 )) && LOADGEN_CPUS=1-$((NCPU - 1))
elif [[ -n $CPUS ]]; then
    [[ $CPUS =~ ^([0-9,-]+),([0-9-]+)$ ]] || bad "--cpus S,C: e.g. 0,1"
    SERVER_CPUS=${BASH_REMATCH[1]} LOADGEN_CPUS=${BASH_REMATCH[2]}
elif (( NCPU >= 2 )); then
    SERVER_CPUS=0 LOADGEN_CPUS=1
else
    SERVER_CPUS=0 LOADGEN_CPUS=0
    log "only one CPU: server and loadgen share it"
fi
for tool in python3 taskset gnuplot timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs it)"
done

BIN=${TVSA_BIN:-$REPO/bin}
if [[ $BUILD -eq 1 ]]; then
    make --no-print-directory -s bin/threaded-echo bin/async-echo bin/loadgen >&2 ||
        log "make failed; using the binaries in $BIN"
fi
for b in threaded-echo async-echo loadgen; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing (run make)"
done

# Output: DIR/sweep/, replaced if it holds an earlier sweep.sh run (runs.tsv), else refused.
SW=$OUT/sweep
if [[ -d $SW && -n $(ls -A "$SW") ]]; then
    [[ -f $SW/runs.tsv ]] || die "$SW is not empty and is not a sweep.sh run; choose another --out"
    rm -rf "${SW:?}"/*
fi
mkdir -p "$SW"/servers "$SW"/logs "$SW"/data
SW=$(cd "$SW" && pwd)
RUNS=$SW/runs.tsv
printf 'kind\tmodel\tround\tpct\trate\tfile\tloadgen_exit\tloadavg\tcpu_some_avg10\tcpu_some_run\n' >"$RUNS"
START_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)
START_LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Processes: every server and loadgen started is stopped on exit, error or Ctrl-C.
# shellcheck source=scripts/lib/servers.sh
source "$REPO/scripts/lib/servers.sh"
tvsa_cleanup_on_exit log "$SW"

# One server per model, started once and kept for the whole sweep so that the models can take
# turns at every point (the machine's load drifts; interleaving spreads it over all of them).
# With --rtt-ms cluster.sh starts one in its server namespace for every run instead.
declare -A PID_OF=() PORT_OF=()
[[ -n $RTT_MS ]] && mkdir -p "$SW/cluster"
for m in "${MODELS[@]}"; do
    [[ -z $RTT_MS ]] || break
    read -r -a args <<<"${MODEL_ARGS[$m]}"
    tvsa_server_start "$SW/servers" "$m" "$SERVER_CPUS" "$BIN/${MODEL_BIN[$m]}" "${args[@]}" ||
        die "$m: no listening line (see $SW/servers/$m.stderr)"
    PID_OF[$m]=$TVSA_SERVER_PID PORT_OF[$m]=$TVSA_SERVER_PORT
done

# cpu_some: the share of the last 10 s in which some runnable task waited for a CPU (PSI),
# "NaN" where the kernel has no /proc/pressure.
cpu_some() {
    sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null | grep . || echo NaN
}

# cpu_some_stamp: "MICROSECONDS_NOW SOME_TOTAL_US" (PSI's cumulative stall time), or "NaN NaN";
# two stamps give the share of a run in which some task waited for a CPU (cpu_some_pct).
cpu_some_stamp() {
    local total
    total=$(sed -n 's/^some .*total=\([0-9]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null)
    if [[ -n $total ]]; then echo "$(date +%s%6N) $total"; else echo "NaN NaN"; fi
}
cpu_some_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ")
        if (x[1] == "NaN" || y[1] == "NaN" || y[1] <= x[1]) print "NaN"
        else printf "%.1f", 100 * (y[2] - x[2]) / (y[1] - x[1]) }'
}

# run_loadgen KIND MODEL ROUND PCT RATE FILE LOADGEN-ARGS...: one loadgen run against MODEL's
# server, JSON in FILE, a line in runs.tsv. A watchdog stops a stuck run (loadgen still writes
# what it measured); the run goes in the background so that Ctrl-C reaches the trap at once.
run_loadgen() {
    local kind=$1 m=$2 round=$3 pct=$4 rate=$5 file=$6; shift 6
    local rc=0 la psi s0 cdir='' f
    la=$(cut -d' ' -f1 /proc/loadavg) psi=$(cpu_some) s0=$(cpu_some_stamp)
    if [[ -n $RTT_MS ]]; then
        local sargs
        read -r -a sargs <<<"${MODEL_ARGS[$m]}"
        cdir=$SW/cluster/${file%.json}
        timeout -k 10 $((DURATION + 90)) "$REPO/scripts/cluster.sh" --local 1 --rtt-ms "$RTT_MS" \
            --out "$cdir" --start-delay 1 --server "$BIN/${MODEL_BIN[$m]}" "${sargs[@]}" -- \
            --threads 1 --connections "$CONNS" --duration "$DURATION" --quiet "$@" \
            </dev/null >/dev/null 2>"$SW/logs/${file%.json}.log" &
    else
        timeout -k 5 $((DURATION + 60)) taskset -c "$LOADGEN_CPUS" "$BIN/loadgen" \
            --target "127.0.0.1:${PORT_OF[$m]}" --server-pid "${PID_OF[$m]}" --threads 1 \
            --connections "$CONNS" --duration "$DURATION" --quiet --json "$SW/$file" "$@" \
            </dev/null >/dev/null 2>"$SW/logs/${file%.json}.log" &
    fi
    TVSA_LOADGEN_PID=$!
    wait "$TVSA_LOADGEN_PID" || rc=$?
    TVSA_LOADGEN_PID=
    if [[ -n $RTT_MS ]]; then
        # cluster.sh exits 2 when it cannot add the delay (no root, pdsh or netem): nothing
        # can be measured, so stop at the first run.
        if [[ $rc -eq 2 ]]; then
            log "--rtt-ms $RTT_MS: scripts/cluster.sh cannot add a round-trip time here:" \
                "$(grep -v '^cluster: local cluster:' "$SW/logs/${file%.json}.log" |
                   sed 's/^cluster: //' | head -n 2 | paste -sd';' - | sed 's/;/; /g');" \
                "nothing was measured"
            exit 2
        fi
        [[ -f $cdir/merged.json ]] && cp "$cdir/merged.json" "$SW/$file"
        for f in listening.json stopped.json stdout stderr; do
            [[ -f $cdir/server/${MODEL_BIN[$m]}.$f ]] &&
                cp "$cdir/server/${MODEL_BIN[$m]}.$f" "$SW/servers/${file%.json}.$f"
        done
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$m" "$round" "$pct" "$rate" "$file" \
        "$rc" "$la" "$psi" "$(cpu_some_pct "$s0" "$(cpu_some_stamp)")" >>"$RUNS"
    [[ $rc -eq 0 ]] || log "$file: loadgen exited $rc (see logs/${file%.json}.log)"
    [[ -n $RTT_MS ]] || kill -0 "${PID_OF[$m]}" 2>/dev/null ||
        die "$m: the server (pid ${PID_OF[$m]}) is gone"
}

# json_num FILE PATH: a number of loadgen's first step (dotted PATH), or nothing.
json_num() {
    python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))["steps"][0]
for k in sys.argv[2].split("."): v = v[k]
print("%.0f" % v)' "$1" "$2" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# 1. Capacity: closed loop at --connections, ROUNDS runs per model, models in turn; the median
# is the 100% of the sweep.
declare -A CAPACITY=()
for ((r = 1; r <= ROUNDS; r++)); do
    for m in "${MODELS[@]}"; do
        f=capacity-$m-r$r.json
        run_loadgen capacity "$m" "$r" NaN 0 "$f" --timeout 2000
        log "capacity $m round $r: $(json_num "$SW/$f" requests.per_sec) req/s"
    done
done
for m in "${MODELS[@]}"; do
    CAPACITY[$m]=$(python3 - "$SW" "$m" "$ROUNDS" <<'PY'
import json, statistics, sys
sw, m, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
v = []
for r in range(1, rounds + 1):
    try:
        v.append(json.load(open("%s/capacity-%s-r%d.json" % (sw, m, r)))["steps"][0]["requests"]["per_sec"])
    except (OSError, ValueError, KeyError, IndexError):
        pass
print("%.0f" % statistics.median(v) if v else 0)
PY
)
    [[ ${CAPACITY[$m]} -gt 0 ]] || die "$m: no capacity measured (see logs/capacity-$m-r*.log)"
    log "capacity $m: ${CAPACITY[$m]} req/s (median of $ROUNDS)"
done

# 2. The open-loop sweep: at each point every model in turn, the order rotated from point to
# point so that no model always runs first. Timeout 2 s: far above any queueing delay below
# capacity, short enough that a stalled connection shows within a run.
for ((r = 1; r <= ROUNDS; r++)); do
    i=0
    for pct in "${PCTS[@]}"; do
        n=${#MODELS[@]}
        for ((k = 0; k < n; k++)); do
            m=${MODELS[$(((k + i) % n))]}
            rate=$(( (CAPACITY[$m] * pct + 50) / 100 ))
            (( rate > 0 )) || rate=1
            f=$m-$pct-r$r.json
            run_loadgen point "$m" "$r" "$pct" "$rate" "$f" --rate "$rate" --timeout 2000
            log "$m $pct% ($rate req/s) round $r: $(json_num "$SW/$f" rate.achieved) req/s," \
                "p99 $(json_num "$SW/$f" latency_us.p99) us"
        done
        i=$((i + 1))
    done
done

for m in "${MODELS[@]}"; do
    [[ -z $RTT_MS ]] || break
    tvsa_server_stop "${PID_OF[$m]}" || log "$m exited $?"
done

# 3. sweep.json, cells.json and the plot's data, then the plot.
python3 "$REPO/scripts/sweep.py" "$SW" --connections "$CONNS" --duration "$DURATION" \
    --rounds "$ROUNDS" --quick "$QUICK" --cpus "$SERVER_CPUS,$LOADGEN_CPUS" \
    ${RTT_MS:+--rtt-ms "$RTT_MS"} \
    --start "$START_UTC" --start-loadavg "$START_LOADAVG" || die "sweep.py failed"

QTAG=
[[ $QUICK -eq 1 ]] && QTAG=" (quick run)"
NET=loopback
[[ -n $RTT_MS ]] && NET="RTT $RTT_MS ms (netem)"
plot_lines=()
declare -A COLOUR=([threaded-pool50]='#d95f02' [threaded-tpc]='#7570b3' [async]='#1b9e77')
declare -A TITLE=([threaded-pool50]='threaded --pool 50' [threaded-tpc]='threaded, 1 thread/conn'
                  [async]='async (1 thread, libevent)')
for m in "${MODELS[@]}"; do
    c=${COLOUR[$m]} d="'$SW/data/$m.tsv'"
    plot_lines+=("$d using 1:4 with linespoints lw 2 dt 1 pt 7 lc rgb '$c' title '${TITLE[$m]} p50'"
                 "$d using 1:5 with linespoints lw 2 dt 2 pt 5 lc rgb '$c' title '${TITLE[$m]} p99'"
                 "$d using 1:6 with linespoints lw 2 dt 3 pt 9 lc rgb '$c' title '${TITLE[$m]} p99.9'")
    if [[ $ROUNDS -gt 1 ]]; then
        plot_lines+=("'$SW/data/$m.rounds.tsv' using 1:2 with points pt 4 ps 0.8 lc rgb '$c' notitle")
    fi
done
if [[ $ROUNDS -gt 1 ]]; then
    plot_lines+=("keyentry with points pt 4 ps 0.8 lc rgb '#666666' title 'p99 of each round'")
fi
joined=$(IFS=,; echo "${plot_lines[*]}")
if ! gnuplot 2>"$SW/logs/latency.gnuplot.log" <<EOF
set terminal pngcairo size 1080,680 noenhanced font "sans,11"
set output '$SW/latency.png'
set datafile separator '\t'
set datafile missing 'NaN'
set grid xtics ytics mytics lc rgb '#dddddd'
set key outside bottom center horizontal maxrows 3
set title "Latency against offered load, open loop, $CONNS connections, 64 B, $NET$QTAG\ncorrected for coordinated omission (from each request's intended send time); median of $ROUNDS round(s)"
set xlabel 'offered load (% of the model''s closed-loop capacity)'
set ylabel 'latency (ms, log scale)'
set logscale y 10
set xrange [0:*]
set arrow from 100, graph 0 to 100, graph 1 nohead dt 2 lc rgb '#888888'
plot $joined
EOF
then
    die "latency.png failed: $(tr '\n' ' ' <"$SW/logs/latency.gnuplot.log")"
fi
python3 "$REPO/scripts/sweep.py" "$SW" --table >&2
log "done in $SECONDS s: $SW"
# Never read past the block: a file edited during the run would go on from the old offset.
exit 0
}
