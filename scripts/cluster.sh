#!/usr/bin/env bash
# Runs the same bin/loadgen on many client hosts at once through pdsh, collects each host's JSON
# over pdsh's own stdout channel and merges them with `loadgen merge` (issue 19). --local K builds
# the hosts here: K client network namespaces and a server namespace on a Linux bridge.
#
# Usage: scripts/cluster.sh --hosts FILE|LIST --target ADDR:PORT [options] [LOADGEN FLAGS...]
#        scripts/cluster.sh --local K [--rtt-ms MS] [--loss PCT] --server NAME [FLAGS...] -- \
#                           [options] [LOADGEN FLAGS...]
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    cat <<'EOF'
Usage: scripts/cluster.sh --hosts FILE|LIST --target ADDR:PORT [options] [LOADGEN FLAGS...]
       scripts/cluster.sh --local K [--rtt-ms MS] [--loss PCT] --server NAME [SERVER FLAGS...] --
                          [options] [LOADGEN FLAGS...]

Starts the same loadgen on every client host at once through pdsh, each with its share of the
connections (every --connections step divided among the hosts) and of --rate, all waiting for
one wall-clock instant (--start-at, a few seconds ahead); collects each host's JSON through
pdsh's stdout and merges them with `loadgen merge`. Every other loadgen flag goes to every host
as given (so --senders, --abusers, --good, --source-ips are per host).

Hosts:
  --hosts FILE|LIST   a file with one host a line (# comments), or a pdsh host list
                      ("a,b", "node[1-4]")
  --target ADDR:PORT  the server, as the client hosts reach it
  --rcmd ssh|exec     pdsh's remote command module (default $PDSH_RCMD_TYPE, else ssh);
                      exec runs every "host" here (for tests; targets on 127.0.0.0/8)
  --loadgen PATH      loadgen's path on the hosts (default: this repository's bin/loadgen,
                      so check the repository out at the same path on every host)

Local cluster (root, iproute2; traffic stays inside the namespaces it makes):
  --local K           K client namespaces (1-200) and a server namespace on a bridge,
                      addresses from 198.18.0.0/15 (server 198.18.0.1, clients .2 on)
  --rtt-ms MS         round-trip time added on each client link: netem delay MS/2 in each
                      direction (needs sch_netem in the kernel)
  --loss PCT          netem loss PCT% in each direction of each client link
  --server NAME ...   the server to start in the server namespace: bin/NAME (or a path) with
                      the flags up to a lone --; --bind 198.18.0.1 is added unless given,
                      --port 0 always (the port is read from its listening line);
                      the first client host samples it (--server-pid) unless you give
                      --server-pid yourself

Options:
  --out DIR           results directory (default results/<UTC stamp>/cluster)
  --start-delay SEC   the start instant is SEC seconds after the hosts answered (default 3)
  --timeout SEC       pdsh's limit on each host's command (default: none)
  --help              this text

Writes DIR/hosts/HOST.json (each host's loadgen JSON), DIR/env/HOST.json (each host's
environment and clock offset), DIR/merged.json (with a "cluster" object: the hosts it holds,
the failed ones, the start instant, the clock offsets, the shares), DIR/pdsh.log (every pdsh
command and its stderr). Exit 0 when every host succeeded, 1 when some failed (merged.json
then holds the others), 2 on bad usage or when pdsh, root or netem is missing.
EOF
}

die2() { echo "cluster: $*" >&2; exit 2; }
say() { echo "cluster: $*" >&2; }

# ---- arguments -------------------------------------------------------------------------------
HOSTS_SPEC='' TARGET='' LOCAL=0 RTT_MS='' LOSS='' OUT='' RCMD=${PDSH_RCMD_TYPE:-ssh} RCMD_SET=0
LOADGEN=$REPO/bin/loadgen START_DELAY=3 CMD_TIMEOUT=''
SERVER=() LG_ARGS=()
need() { [[ $2 -ge 2 ]] || { echo "cluster: $1 needs a value" >&2; usage >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --hosts) need "$1" $#; HOSTS_SPEC=$2; shift ;;
        --target) need "$1" $#; TARGET=$2; shift ;;
        --rcmd) need "$1" $#; RCMD=$2; RCMD_SET=1; shift ;;
        --loadgen) need "$1" $#; LOADGEN=$2; shift ;;
        --local) need "$1" $#; LOCAL=$2; shift ;;
        --rtt-ms) need "$1" $#; RTT_MS=$2; shift ;;
        --loss) need "$1" $#; LOSS=$2; shift ;;
        --out) need "$1" $#; OUT=$2; shift ;;
        --start-delay) need "$1" $#; START_DELAY=$2; shift ;;
        --timeout) need "$1" $#; CMD_TIMEOUT=$2; shift ;;
        --server)
            need "$1" $#; shift
            while [[ $# -gt 0 && $1 != -- ]]; do SERVER+=("$1"); shift; done
            [[ $# -gt 0 ]] || die2 "--server NAME [FLAGS...] must end with a lone --"
            ;;
        -h|--help) usage; exit 0 ;;
        --) shift; LG_ARGS+=("$@"); break ;;
        *) LG_ARGS+=("$1") ;;
    esac
    shift
done

isnum() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
[[ $LOCAL =~ ^[0-9]+$ ]] || die2 "--local needs a number of client hosts"
if [[ $LOCAL -gt 0 ]]; then
    [[ $LOCAL -le 200 ]] || die2 "--local: at most 200 client namespaces"
    [[ -z $HOSTS_SPEC ]] || die2 "--local and --hosts exclude each other"
    [[ -z $TARGET ]] || die2 "--local starts its own server: no --target"
    [[ ${#SERVER[@]} -gt 0 ]] || die2 "--local needs --server NAME [FLAGS...] --"
    [[ $RCMD_SET == 0 || $RCMD == exec ]] || die2 "--local runs through pdsh -R exec"
    RCMD='exec'
else
    [[ -n $HOSTS_SPEC ]] || { say "--hosts or --local is required"; usage >&2; exit 2; }
    [[ -n $TARGET ]] || die2 "--hosts needs --target ADDR:PORT"
    [[ -z $RTT_MS && -z $LOSS && ${#SERVER[@]} -eq 0 ]] ||
        die2 "--rtt-ms, --loss and --server go with --local"
fi
[[ -z $RTT_MS ]] || isnum "$RTT_MS" || die2 "--rtt-ms needs a number of milliseconds"
[[ -z $LOSS ]] || isnum "$LOSS" || die2 "--loss needs a percentage"
isnum "$START_DELAY" || die2 "--start-delay needs a number of seconds"
[[ -z $CMD_TIMEOUT || $CMD_TIMEOUT =~ ^[0-9]+$ ]] || die2 "--timeout needs whole seconds"
[[ $RCMD == ssh || $RCMD == exec ]] || die2 "--rcmd: ssh or exec"

# The script owns --json and --start-at; --connections and --rate are split among the hosts.
CONNS=100 RATE='' REST=() USER_SERVER_PID=0
i=0
while [[ $i -lt ${#LG_ARGS[@]} ]]; do
    a=${LG_ARGS[$i]} v=${LG_ARGS[$((i + 1))]:-}
    case $a in
        --json|--json=*|--start-at|--start-at=*) die2 "$a: the script sets it for every host" ;;
        --connections) CONNS=$v; i=$((i + 1)) ;;
        --connections=*) CONNS=${a#*=} ;;
        --rate) RATE=$v; i=$((i + 1)) ;;
        --rate=*) RATE=${a#*=} ;;
        --server-pid|--server-pid=*) USER_SERVER_PID=1; REST+=("$a")
                                     [[ $a == *=* ]] || { REST+=("$v"); i=$((i + 1)); } ;;
        --opt) [[ $v == rate=* ]] && die2 "--opt rate=R: give --rate R (the script splits it)"
               REST+=("$a" "$v"); i=$((i + 1)) ;;
        *) REST+=("$a") ;;
    esac
    i=$((i + 1))
done
[[ $CONNS =~ ^[0-9]+(,[0-9]+)*$ ]] || die2 "--connections: N[,N...]"
[[ -z $RATE ]] || isnum "$RATE" || die2 "--rate needs a number"

command -v pdsh >/dev/null || die2 "pdsh is not installed (scripts/install-deps.sh installs it)"
command -v python3 >/dev/null || die2 "python3 is needed to read the JSON"
[[ -x $REPO/bin/loadgen ]] || die2 "no $REPO/bin/loadgen here (make) for loadgen merge"
if [[ $LOCAL -gt 0 ]]; then
    [[ $(id -u) == 0 ]] || die2 "--local needs root (network namespaces, veth, bridge, tc)"
    command -v ip >/dev/null || die2 "--local needs iproute2 (ip)"
    [[ -z $RTT_MS$LOSS ]] || command -v tc >/dev/null || die2 "--rtt-ms/--loss need tc (iproute2)"
fi

[[ -n $OUT ]] || OUT=$REPO/results/$(date -u +%Y%m%dT%H%M%SZ)/cluster
mkdir -p "$OUT/hosts" "$OUT/env" || die2 "cannot create $OUT"
[[ -z $(ls -A "$OUT/hosts")$(ls -A "$OUT/env") ]] || die2 "$OUT already holds a run"
LOG=$OUT/pdsh.log
: >"$LOG"
TMP=$(mktemp -d /tmp/tvsa-cluster.XXXXXX) || die2 "mktemp failed"

# ---- clean-up: everything this run made, by name, in reverse ----------------------------------
PDSH_PIDS=()
MADE_NETNS=() MADE_LINKS=()
SERVER_PID=
# descendants PID...: the pids of every process below the given ones.
descendants() {
    local -A kids=()
    local pid ppid todo=("$@") out=()
    while read -r pid ppid; do kids[$ppid]+=" $pid"; done < <(ps -e -o pid= -o ppid=)
    while [[ ${#todo[@]} -gt 0 ]]; do
        pid=${todo[0]}
        todo=("${todo[@]:1}")
        for p in ${kids[$pid]:-}; do out+=("$p"); todo+=("$p"); done
    done
    echo "${out[@]}"
}

cleanup() {
    local pid ns l tree
    trap - INT TERM
    # pdsh leaves its children running when it is killed (exec: the hosts' commands here; ssh:
    # the ssh processes), so they go first, by pid.
    if [[ ${#PDSH_PIDS[@]} -gt 0 ]]; then
        tree=$(descendants "${PDSH_PIDS[@]}")
        # shellcheck disable=SC2086 # one pid a word
        kill -TERM "${PDSH_PIDS[@]}" $tree 2>/dev/null
    fi
    if [[ -n $SERVER_PID ]]; then
        tvsa_server_stop "$SERVER_PID" >/dev/null 2>&1
        SERVER_PID=
    fi
    # Whatever still runs inside our namespaces (a loadgen whose pdsh was killed) is ours:
    # SIGTERM first (loadgen stops, its shell removes the JSON file), SIGKILL after 3 s.
    local sig left tries
    for sig in TERM KILL; do
        for ((tries = 0; tries < 30; tries++)); do
            left=$(for ns in "${MADE_NETNS[@]}"; do ip netns pids "$ns" 2>/dev/null; done)
            [[ -n $left ]] || break
            # shellcheck disable=SC2086 # one pid a word
            [[ $tries == 0 ]] && kill -"$sig" $left 2>/dev/null
            sleep 0.1
        done
    done
    for pid in "${PDSH_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    # Deleting a namespace deletes the veth end inside it, its peer and their qdiscs.
    for ns in "${MADE_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    for l in "${MADE_LINKS[@]}"; do
        ip link show "$l" >/dev/null 2>&1 && ip link del "$l" 2>/dev/null
    done
    MADE_NETNS=() MADE_LINKS=()
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'say "interrupted: cleaning up"; exit 130' INT
trap 'say "terminated: cleaning up"; exit 143' TERM

# Single-quotes one word for a POSIX shell on the other side.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# ---- the local cluster -----------------------------------------------------------------------
SRV_ADDR=198.18.0.1
# netem ARGS for one direction of a client link, or nothing.
netem_args() {
    local a=()
    # --rtt-ms 0 and --loss 0 ask for no qdisc at all (the same run as without them).
    [[ -n $RTT_MS && $RTT_MS =~ [1-9] ]] && a+=(delay "$(python3 -c "print('%gms' % ($RTT_MS / 2.0))")")
    [[ -n $LOSS && $LOSS =~ [1-9] ]] && a+=(loss "$LOSS%")
    # The default 1000-packet queue would drop at a few thousand requests/s once delayed.
    [[ ${#a[@]} -gt 0 ]] && echo "${a[*]} limit 1000000"
}

local_up() {
    local p tries ns rootside addr netem i
    for ((tries = 0; tries < 20; tries++)); do
        p=tvsa$(printf '%04x%02x' $(($$ & 0xffff)) $((RANDOM & 0xff)))
        ip netns list | grep -q "^$p-" || ip -o link show | grep -q ": $p" || break
    done
    PREFIX=$p
    say "local cluster: $LOCAL client namespaces, names $PREFIX-*, rtt ${RTT_MS:-0} ms, loss ${LOSS:-0}%"
    ip link add "${p}br" type bridge || return 1
    MADE_LINKS+=("${p}br")
    ip link set "${p}br" addrgenmode none && ip link set "${p}br" up || return 1
    netem=$(netem_args)
    for ((i = 0; i <= LOCAL; i++)); do
        if [[ $i == 0 ]]; then ns=$p-s rootside=${p}s addr=$SRV_ADDR
        else ns=$p-c$i rootside=${p}h$i addr=198.18.0.$((i + 1)); fi
        ip netns add "$ns" || return 1
        MADE_NETNS+=("$ns")
        ip link add "$rootside" type veth peer name eth0 netns "$ns" || return 1
        MADE_LINKS+=("$rootside")
        ip link set "$rootside" addrgenmode none &&
            ip link set "$rootside" master "${p}br" up &&
            ip -n "$ns" addr add "$addr/24" dev eth0 &&
            ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || return 1
        if [[ $i -gt 0 && -n $netem ]]; then
            # shellcheck disable=SC2086 # netem holds several words
            if ! tc -n "$ns" qdisc add dev eth0 root netem $netem 2>"$TMP/tc.err" ||
                ! tc qdisc add dev "$rootside" root netem $netem 2>>"$TMP/tc.err"; then
                say "tc netem failed: $(head -n1 "$TMP/tc.err")"
                if zgrep -q '^# CONFIG_NET_SCH_NETEM is not set' /proc/config.gz 2>/dev/null; then
                    say "this kernel has no netem (CONFIG_NET_SCH_NETEM is not set): no --rtt-ms/--loss here"
                fi
                return 2
            fi
        fi
    done
}

# ---- the hosts -------------------------------------------------------------------------------
HOSTS=() NS_WRAP=() PIN=()
if [[ $LOCAL -gt 0 ]]; then
    # shellcheck source=scripts/lib/servers.sh
    . "$REPO/scripts/lib/servers.sh"
    local_up
    rc=$?
    [[ $rc == 0 ]] || { say "could not build the local cluster"; exit $((rc == 2 ? 2 : 1)); }
    for ((i = 1; i <= LOCAL; i++)); do HOSTS+=("$PREFIX-c$i"); done
    mkdir -p "$OUT/server"
    server_bin=${SERVER[0]}
    [[ $server_bin == */* ]] || server_bin=$REPO/bin/$server_bin
    server_args=("${SERVER[@]:1}")
    [[ " ${server_args[*]} " == *" --bind "* || " ${server_args[*]} " == *" --bind="* ]] ||
        server_args+=(--bind "$SRV_ADDR")
    cpus=0
    [[ $(nproc) -ge 2 ]] || cpus=0-$(($(nproc) - 1))
    if ! tvsa_server_start "$OUT/server" "$(basename "$server_bin")" "$cpus" \
            ip netns exec "$PREFIX-s" "$server_bin" "${server_args[@]}"; then
        SERVER_PID=${TVSA_SERVER_PID:-}
        say "the server did not start: $(tail -n 3 "$OUT/server/$(basename "$server_bin").stderr")"
        exit 1
    fi
    SERVER_PID=$TVSA_SERVER_PID
    TARGET=$SRV_ADDR:$TVSA_SERVER_PORT
    say "server $(basename "$server_bin") pid $SERVER_PID listening on $TARGET"
    # The server has CPU 0, the client hosts share the others (as in the labs).
    NS_WRAP=(ip netns exec %h)
    [[ $(nproc) -ge 2 ]] && PIN=(taskset -c 1-$(($(nproc) - 1)))
else
    if [[ -f $HOSTS_SPEC ]]; then
        mapfile -t HOSTS < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$HOSTS_SPEC" | grep -v '^$')
    else
        # pdsh expands its own host-list syntax; exec runs `echo` here, nothing is contacted.
        mapfile -t HOSTS < <(pdsh -R exec -w "$HOSTS_SPEC" echo %h 2>/dev/null |
                             sed 's/^[^:]*: //' | sort -V)
    fi
fi
[[ ${#HOSTS[@]} -gt 0 ]] || die2 "no hosts in $HOSTS_SPEC"
SERVER_SAMPLE=0
[[ $LOCAL -gt 0 && $USER_SERVER_PID == 0 ]] && SERVER_SAMPLE=1
say "${#HOSTS[@]} client hosts: ${HOSTS[*]}; target $TARGET"

# pdsh_cmd TIMEOUT HOSTLIST SCRIPT [WRAP...]: sets PDSH_ARGV to the pdsh command that runs
# SCRIPT (POSIX sh) on every host of HOSTLIST, under WRAP (exec only: e.g. ip netns exec %h),
# each cut off after TIMEOUT seconds (empty: none), and logs it. The fan-out is every host at
# once: pdsh's default (32) would start hosts beyond the 32nd only as the first ones finish.
pdsh_cmd() {
    local timeout=$1 hosts=$2 script=$3
    shift 3
    PDSH_ARGV=(pdsh -R "$RCMD" -f "${#HOSTS[@]}" -w "$hosts")
    [[ -n $timeout ]] && PDSH_ARGV+=(-u "$timeout")
    if [[ $RCMD == exec ]]; then
        # exec substitutes %h; a literal % is %%; @HOST@ stands for %h.
        script=${script//%/%%}
        PDSH_ARGV+=("$@" sh -c "${script//@HOST@/%h}")
    else
        PDSH_ARGV+=("$script")
    fi
    {
        printf '$'; printf ' %q' "${PDSH_ARGV[@]}"; echo
    } >>"$LOG"
}

# ---- 1. each host's environment and clock ------------------------------------------------------
LG_Q=$(shq "$LOADGEN")
ENV_SCRIPT="for i in 1 2 3; do echo \"clock \$(date +%s.%N)\"; sleep 0.2; done
echo \"env hostname \$(hostname)\"
echo \"env kernel \$(uname -r)\"
echo \"env nproc \$(nproc)\"
echo \"env mem_kib \$(awk '/^MemTotal/ {print \$2}' /proc/meminfo)\"
echo \"env fd_soft \$(ulimit -Sn)\"
echo \"env fd_hard \$(ulimit -Hn)\"
echo \"env somaxconn \$(cat /proc/sys/net/core/somaxconn)\"
echo \"env port_range \$(cat /proc/sys/net/ipv4/ip_local_port_range)\"
echo \"env pid_max \$(cat /proc/sys/kernel/pid_max)\"
echo \"env loadavg \$(cat /proc/loadavg)\"
if [ -x $LG_Q ]; then echo \"env loadgen found\"; else echo \"env loadgen missing\"; fi
$LG_Q --help 2>&1 | grep -q -- --start-at && echo \"env loadgen_start_at yes\"
$LG_Q --help 2>&1 | grep -q -- --host-name && echo \"env loadgen_host_name yes\"
command -v chronyc >/dev/null 2>&1 && echo \"env chrony \$(chronyc tracking 2>/dev/null | sed -n 's/^System time *: //p')\"
exit 0"
# A host that hangs (ssh waiting on something) is given up after 60 s.
pdsh_cmd 60 "$(IFS=,; echo "${HOSTS[*]}")" "$ENV_SCRIPT" "${NS_WRAP[@]}"
T_SEND=$EPOCHREALTIME
# Every line is stamped with this host's clock as it arrives: a host's clock sample minus its
# arrival time is a lower bound of that host's offset (the line took some time to come).
"${PDSH_ARGV[@]}" 2>>"$LOG" </dev/null |
    while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done >"$TMP/env.raw"

python3 - "$TMP/env.raw" "$T_SEND" "$OUT/env" "$LOADGEN" "${HOSTS[@]}" >"$TMP/env.ok" <<'PY'
import json, sys
raw, t_send, outdir, loadgen, hosts = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
env = {h: {"host": h, "clock_samples": []} for h in hosts}
for line in open(raw):
    stamp, _, rest = line.rstrip("\n").partition(" ")
    host, sep, text = rest.partition(": ")
    if not sep or host not in env:
        continue
    kind, _, val = text.partition(" ")
    if kind == "clock":
        env[host]["clock_samples"].append({"remote": float(val), "arrived": float(stamp)})
    elif kind == "env":
        key, _, v = val.partition(" ")
        env[host][key] = int(v) if v.isdigit() else v
for h in hosts:
    e = env[h]
    s = e["clock_samples"]
    if s:
        # Host clock minus this one's (docs/cluster.md): at least a sample minus its arrival
        # here, at most a sample minus the instant the command was sent.
        lo = max(x["remote"] - x["arrived"] for x in s)
        hi = min(x["remote"] - t_send for x in s)
        e["clock_offset_s"] = {
            "estimate": round(lo, 6), "lower": round(lo, 6), "upper": round(hi, 6)}
    json.dump(e, open("%s/%s.json" % (outdir, h), "w"), indent=2)
    if not s or e.get("loadgen") in (None, "missing"):
        print("%s\t%s" % (h, "no answer" if not s else "no loadgen at " + loadgen))
    else:
        print("%s\tok" % h)
PY
OK_HOSTS=()
declare -A FAILED=()
while IFS=$'\t' read -r h st; do
    if [[ $st == ok ]]; then OK_HOSTS+=("$h"); else FAILED[$h]=$st; say "host $h: $st"; fi
done <"$TMP/env.ok"
[[ ${#OK_HOSTS[@]} -gt 0 ]] || { say "no host answered; see $LOG"; exit 1; }
HAS_START_AT=1
for h in "${OK_HOSTS[@]}"; do
    grep -q '"loadgen_start_at"' "$OUT/env/$h.json" || HAS_START_AT=0
done
# exec runs every host on this machine (namespaces share its hostname): each loadgen is told
# its pdsh host name (%h) instead, so a merge's inputs name the hosts.
HOST_NAME_ARG=()
if [[ $RCMD == exec ]]; then
    HOST_NAME_ARG=(--host-name @HOST@)
    for h in "${OK_HOSTS[@]}"; do
        grep -q '"loadgen_host_name"' "$OUT/env/$h.json" || HOST_NAME_ARG=()
    done
fi
[[ $HAS_START_AT == 1 ]] || say "loadgen without --start-at on some host: the hosts start as pdsh reaches them"

# ---- 2. the shares ------------------------------------------------------------------------------
N=${#OK_HOSTS[@]}
IFS=, read -r -a STEPS <<<"$CONNS"
for c in "${STEPS[@]}"; do
    [[ $c -ge $N ]] || die2 "--connections $c: fewer than one per host ($N hosts)"
done
HOST_RATE=
[[ -z $RATE ]] || HOST_RATE=$(python3 -c "print('%.6g' % ($RATE / $N))")
# Host k (0-based) gets c / N connections of each step, and one more while k < c % N. Hosts with
# the same shares form one group: one pdsh command each, all started together.
declare -A GROUP_HOSTS=()
GROUP_KEYS=()
for ((k = 0; k < N; k++)); do
    share=()
    for c in "${STEPS[@]}"; do share+=($((c / N + (k < c % N ? 1 : 0)))); done
    key=$(IFS=,; echo "${share[*]}")
    # --local: the first host also samples the server (every namespace sees its /proc; the
    # merge takes the server figures from the first input that has them).
    [[ $k == 0 && $SERVER_SAMPLE == 1 ]] && key+=" server"
    [[ -n ${GROUP_HOSTS[$key]:-} ]] || GROUP_KEYS+=("$key")
    GROUP_HOSTS[$key]+=${GROUP_HOSTS[$key]:+,}${OK_HOSTS[$k]}
done

START_AT=$(python3 -c "import time; print('%.3f' % (time.time() + $START_DELAY))")
# ---- 3. the run ---------------------------------------------------------------------------------
g=0
for key in "${GROUP_KEYS[@]}"; do
    args=(--target "$TARGET" --connections "${key% server}")
    [[ $key == *" server" ]] && args+=(--server-pid "$SERVER_PID")
    [[ -n $HOST_RATE ]] && args+=(--rate "$HOST_RATE")
    [[ $HAS_START_AT == 1 ]] && args+=(--start-at "$START_AT")
    args+=("${HOST_NAME_ARG[@]}")
    args+=("${REST[@]}")
    words=
    for a in "${args[@]}"; do words+=" $(shq "$a")"; done
    # The JSON goes to a file on the host, then through pdsh's stdout folded into lines of 2 KiB
    # (pdsh cuts lines longer than 128 KiB; JSON needs no line breaks to be read back), ending
    # with a newline (pdsh would glue a last partial line to the next host's first).
    run_script="t=\$(mktemp) || exit 1
trap 'rm -f \"\$t\"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
$LG_Q$words --json \"\$t\"
rc=\$?
fold -b -w 2048 \"\$t\"
echo
exit \$rc"
    pdsh_cmd "$CMD_TIMEOUT" "${GROUP_HOSTS[$key]}" "$run_script" "${NS_WRAP[@]}" "${PIN[@]}"
    "${PDSH_ARGV[@]}" >"$TMP/run.$g.out" 2>"$TMP/run.$g.err" </dev/null &
    PDSH_PIDS+=($!)
    g=$((g + 1))
done
say "started ${#OK_HOSTS[@]} hosts in $g pdsh command(s), start at $START_AT"
for pid in "${PDSH_PIDS[@]}"; do wait "$pid"; done
PDSH_PIDS=()
cat "$TMP"/run.*.err >>"$LOG"

# ---- 4. collect, check, merge ---------------------------------------------------------------------
python3 - "$OUT" "$TMP" "$g" "${OK_HOSTS[@]}" >"$TMP/run.ok" <<'PY'
import json, re, sys
out, tmp, groups, hosts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
text = {h: [] for h in hosts}
exits = {}
for g in range(groups):
    for line in open("%s/run.%d.out" % (tmp, g), errors="replace"):
        host, sep, rest = line.rstrip("\n").partition(": ")
        if sep and host in text:
            text[host].append(rest)
    for line in open("%s/run.%d.err" % (tmp, g), errors="replace"):
        m = re.match(r"pdsh@[^:]*: ([^:]+): .* exited with exit code (\d+)", line)
        if m and m.group(1) in text:
            exits[m.group(1)] = int(m.group(2))
for h in hosts:
    try:
        doc = json.loads("".join(text[h]))
    except ValueError:
        doc = None
    if doc is not None:
        json.dump(doc, open("%s/hosts/%s.json" % (out, h), "w"), indent=2)
    if exits.get(h, 0) != 0:
        print("%s\texit code %d" % (h, exits[h]))
    elif doc is None:
        print("%s\tno JSON came back" % h)
    else:
        print("%s\tok" % h)
PY
MERGE_HOSTS=()
while IFS=$'\t' read -r h st; do
    if [[ $st == ok ]]; then MERGE_HOSTS+=("$h"); else FAILED[$h]=$st; say "host $h failed: $st"; fi
done <"$TMP/run.ok"

merged=0
if [[ ${#MERGE_HOSTS[@]} -gt 0 ]]; then
    files=()
    for h in "${MERGE_HOSTS[@]}"; do files+=("$OUT/hosts/$h.json"); done
    if "$REPO/bin/loadgen" merge "${files[@]}" >"$TMP/merged.json" 2>"$TMP/merge.err"; then
        merged=1
    else
        say "loadgen merge failed: $(head -n 3 "$TMP/merge.err")"
    fi
fi

failed_json=$(for h in "${!FAILED[@]}"; do printf '%s\t%s\n' "$h" "${FAILED[$h]}"; done)
python3 - "$OUT" "$TMP/merged.json" "$merged" "$START_AT" "$HAS_START_AT" "$RCMD" "$TARGET" \
    "$LOCAL" "${RTT_MS:-0}" "${LOSS:-0}" "${PREFIX:-}" "$failed_json" \
    "${MERGE_HOSTS[@]}" <<'PY'
import json, sys
(out, merged_path, merged, start_at, has_start_at, rcmd, target, local, rtt, loss, prefix,
 failed) = sys.argv[1:13]
held = sys.argv[13:]
failed = dict(l.split("\t", 1) for l in failed.splitlines() if l)
envs = {}
for h in held + list(failed):
    try:
        envs[h] = json.load(open("%s/env/%s.json" % (out, h)))
    except (OSError, ValueError):
        envs[h] = {}
per_host = {}
for h in held:
    doc = json.load(open("%s/hosts/%s.json" % (out, h)))
    cfg = doc.get("config", {})
    off = envs[h].get("clock_offset_s")
    late = (doc.get("start") or {}).get("late_us")
    per_host[h] = {
        "connections": cfg.get("connections"), "rate": cfg.get("rate"),
        "clock_offset_s": off,
        # By the host's own clock, and corrected by the offset estimate to this one's.
        "start_late_us": late,
        "start_late_us_controller_clock":
            None if late is None or off is None else round(late - off["estimate"] * 1e6),
    }
cluster = {
    "hosts": held,
    "failed_hosts": failed,
    "target": target,
    "rcmd": rcmd,
    "start_at": float(start_at),
    "start_at_used": has_start_at == "1",
    "per_host": per_host,
}
if int(local):
    cluster["local"] = {"clients": int(local), "rtt_ms": float(rtt), "loss_pct": float(loss),
                        "prefix": prefix}
json.dump(cluster, open(out + "/cluster.json", "w"), indent=2)
if merged == "1":
    doc = json.load(open(merged_path))
    doc["cluster"] = cluster
    json.dump(doc, open(out + "/merged.json", "w"), indent=2)
PY

if [[ $merged == 1 ]]; then
    python3 - "$OUT/merged.json" >&2 <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
for i, s in enumerate(doc.get("steps", [])):
    r, l = s["requests"], s["latency_us"]
    print("cluster: step %d: %d connections, %d requests (%.0f/s), p50 %s us, p99 %s us, "
          "errors %d, timeouts %d" % (i + 1, s["connections"]["established"], r["completed"],
          r["per_sec"], l["p50"], l["p99"], r["errors"], r["timeouts"]))
print("cluster: merged %d hosts: %s" % (len(doc["cluster"]["hosts"]), " ".join(doc["cluster"]["hosts"])))
PY
fi
say "results in $OUT"
[[ ${#FAILED[@]} -eq 0 && $merged == 1 ]]
