#!/usr/bin/env bash
# Memcheck of every server (issue 7): each server binary in bin/ runs under valgrind through a
# short bin/loadgen load and a SIGTERM. A server fails on any byte definitely or indirectly lost,
# any invalid read or write, or any other memcheck error. One line per server, a summary, and
# exit 1 if any failed. Takes under a minute on 2 cores (about 35 s for the 10 runs).
#
# Usage: scripts/valgrind.sh [--no-build] [--keep] [SERVER...]   (default: every server built)
#   --no-build  use bin/ as it is (default: make the servers and bin/loadgen first)
#   --keep      keep the logs directory even when everything passed
# TVSA_BIN: directory of the binaries (default bin).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

ALL_SERVERS=(async-echo threaded-echo async-chat threaded-chat async-udp threaded-udp
             async-dns threaded-dns)
BIN=${TVSA_BIN:-$PWD/bin}
BUILD=1
KEEP=0
servers=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "valgrind.sh: unknown option $1" >&2; exit 2 ;;
        *) servers+=("$1") ;;
    esac
    shift
done
[[ ${#servers[@]} -gt 0 ]] || servers=("${ALL_SERVERS[@]}")

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not found (apt-get install valgrind)" >&2; exit 2; }
if [[ $BUILD == 1 ]]; then
    targets=("$BIN/loadgen")
    for s in "${servers[@]}"; do
        case $s in
            async-*) [[ -f async/${s#async-}.c ]] && targets+=("$BIN/$s") ;;
            threaded-*) [[ -f threaded/${s#threaded-}.c ]] && targets+=("$BIN/$s") ;;
        esac
    done
    make --no-print-directory -s BIN="$BIN" "${targets[@]}" || exit 1
fi
[[ -x $BIN/loadgen ]] || { echo "valgrind.sh: $BIN/loadgen missing (run make)" >&2; exit 2; }

OUT=$(mktemp -d /tmp/tvsa-valgrind.XXXXXX)
VPID=
cleanup() { [[ -n $VPID ]] && kill -KILL "$VPID" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The loads of one server, one loadgen argument list a line: a few hundred requests over a few
# connections, the right scenario for the protocol; the echo servers also get abuse (resets
# mid-message and a flood that never reads) to walk their error and back-pressure paths.
loads_for() {
    case $1 in
        *-echo) echo "--scenario echo --connections 4 --rate 300"
                echo "--scenario abuse --kind reset --good 1 --abusers 4"
                echo "--scenario abuse --kind flood --good 1 --abusers 2" ;;
        *-chat) echo "--scenario chat --connections 4 --opt senders=2 --opt rate=100" ;;
        *-udp) echo "--scenario udp --connections 4 --rate 300" ;;
        *-dns) echo "--scenario dns --connections 4 --rate 300"
               echo "--scenario dns-tcp --connections 2 --rate 100" ;;
    esac
}

# The flag sets a server runs with, one a line: the echo servers' other code paths too (raw
# events with the server's own buffers; a coroutine per connection, whose stacks
# async/lib/coro.c registers with Valgrind; a fixed pool of workers).
variants_for() {
    echo ""
    case $1 in
        async-echo) echo "--api event"; echo "--api coro" ;;
        threaded-echo) echo "--pool 4" ;;
    esac
}

# Field of a loadgen JSON file (first step), or "?".
lg_field() {
    python3 - "$1" "$2" <<'PY' 2>/dev/null || echo "?"
import json, sys
v = json.load(open(sys.argv[1]))["steps"][0]
for k in sys.argv[2].split("."):
    v = v[k]
print(v)
PY
}

# Runs one server (with flags $2) under valgrind; prints its line; returns 1 if it failed.
check_server() {
    local name=$1 flags=$2 tag=$1${2:+-${2// /}} port="" problems=() loads=()
    local log=$OUT/$tag.valgrind.log out=$OUT/$tag.stdout
    # shellcheck disable=SC2086  # flags is a word list on purpose
    valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
        --log-file="$log" "$BIN/$name" $flags --port 0 </dev/null >"$out" 2>"$OUT/$tag.stderr" &
    VPID=$!
    for _ in $(seq 300); do  # up to 30 s: valgrind starts slowly
        port=$(grep -o '"port":[0-9]*' "$out" 2>/dev/null | head -1 | cut -d: -f2)
        [[ -n $port ]] && break
        kill -0 "$VPID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $port ]]; then
        problems+=("no listening line")
    else
        local i=0 args
        while read -r args; do
            i=$((i + 1))
            local json=$OUT/$tag.load$i.json
            # shellcheck disable=SC2086  # args is a word list on purpose
            if timeout 60 "$BIN/loadgen" --target "127.0.0.1:$port" --threads 1 --duration 1 \
                   --quiet --json "$json" $args </dev/null 2>>"$OUT/$tag.loadgen.stderr"; then
                loads+=("$(echo "$args" | awk '{print $2 ($3 == "--kind" ? "/" $4 : "")}') $(lg_field "$json" requests.completed)")
            else
                problems+=("loadgen '$args' failed")
            fi
        done < <(loads_for "$name")
    fi
    kill -TERM "$VPID" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$VPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$VPID" 2>/dev/null && { kill -KILL "$VPID"; problems+=("no exit 30 s after SIGTERM"); }
    wait "$VPID"
    local rc=$?
    VPID=
    local def ind errs inv
    def=$(grep -o 'definitely lost: [0-9,]* bytes' "$log" | tail -1 | tr -dc '0-9')
    ind=$(grep -o 'indirectly lost: [0-9,]* bytes' "$log" | tail -1 | tr -dc '0-9')
    errs=$(grep -o 'ERROR SUMMARY: [0-9,]* errors' "$log" | tail -1 | tr -dc '0-9')
    inv=$(grep -c 'Invalid \(read\|write\|free\)' "$log")
    [[ -z $def ]] && def=0
    [[ -z $ind ]] && ind=0
    [[ -z $errs ]] && problems+=("no valgrind summary")
    [[ $rc == 0 ]] || problems+=("exit $rc")
    [[ $def == 0 && $ind == 0 ]] || problems+=("lost $def+$ind bytes")
    [[ $inv == 0 ]] || problems+=("$inv invalid reads/writes")
    [[ ${errs:-0} == 0 ]] || problems+=("$errs errors")
    local status=ok
    [[ ${#problems[@]} == 0 ]] || status=FAIL
    printf 'valgrind %-25s %-4s lost %s+%s bytes, %s errors; requests: %s%s\n' \
        "$name${flags:+ $flags}" "$status" \
        "$def" "$ind" "${errs:-?}" "${loads[*]:-none}" \
        "${problems[*]:+ -- ${problems[*]} (see $log)}"
    [[ $status == ok ]]
}

checked=0 failed=0
for s in "${servers[@]}"; do
    if [[ ! -x $BIN/$s ]]; then
        [[ " ${ALL_SERVERS[*]} " == *" $s "* ]] || { echo "valgrind.sh: no server $BIN/$s" >&2; failed=$((failed + 1)); }
        continue
    fi
    while read -r flags; do
        checked=$((checked + 1))
        check_server "$s" "$flags" || failed=$((failed + 1))
    done < <(variants_for "$s")
done
if [[ $failed == 0 && $KEEP == 0 ]]; then
    rm -rf "$OUT"
    echo "valgrind: $checked server runs checked, none failed"
else
    echo "valgrind: $checked server runs checked, $failed failed (logs: $OUT)"
fi
[[ $failed == 0 ]]
