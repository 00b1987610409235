# Sourced by scripts/compare.sh, scripts/lab.sh and scripts/sweep.sh: start a tvsa server on a free port, read its
# listening line, stop it and keep its stopped line. Every server started is in TVSA_LIVE until
# stopped, so a script's exit trap can stop them all (tvsa_stop_all).
# shellcheck shell=bash

declare -A TVSA_LIVE=()     # pid -> tag
declare -A TVSA_LIVE_DIR=() # pid -> directory of its stdout/stderr files

# tvsa_server_start DIR TAG CPUS BINARY ARGS...: starts BINARY ARGS --port 0 pinned to CPUS,
# stdout/stderr in DIR/TAG.stdout and .stderr, waits (up to 30 s: a loaded machine starts
# processes slowly) for the listening line, saved as DIR/TAG.listening.json. Sets
# TVSA_SERVER_PID and TVSA_SERVER_PORT. Returns 1 if no listening line came (the process is
# still in TVSA_LIVE if it is running).
tvsa_server_start() {
    local dir=$1 tag=$2 cpus=$3; shift 3
    local base=$dir/$tag i
    taskset -c "$cpus" "$@" --port 0 >"$base.stdout" 2>"$base.stderr" </dev/null &
    TVSA_SERVER_PID=$!
    TVSA_LIVE[$TVSA_SERVER_PID]=$tag
    TVSA_LIVE_DIR[$TVSA_SERVER_PID]=$dir
    for ((i = 0; i < 300; i++)); do
        grep -q '"event":"listening"' "$base.stdout" 2>/dev/null && break
        kill -0 "$TVSA_SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -m1 '"event":"listening"' "$base.stdout" >"$base.listening.json" 2>/dev/null || {
        rm -f "$base.listening.json"
        return 1
    }
    # taskset execs the server, so $! is the server's own pid.
    # shellcheck disable=SC2034 # read by the scripts that source this file
    TVSA_SERVER_PORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$base.listening.json")
}

# tvsa_server_stop PID: SIGTERM, up to 10 s for the exit, then SIGKILL. Saves the stopped line
# as DIR/TAG.stopped.json. Returns the server's exit status.
tvsa_server_stop() {
    local pid=$1 i rc=0
    local tag=${TVSA_LIVE[$pid]:-unknown} dir=${TVSA_LIVE_DIR[$pid]:-.}
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$tag: still running 10 s after SIGTERM, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    unset "TVSA_LIVE[$pid]" "TVSA_LIVE_DIR[$pid]"
    grep -m1 '"event":"stopped"' "$dir/$tag.stdout" >"$dir/$tag.stopped.json" 2>/dev/null ||
        rm -f "$dir/$tag.stopped.json"
    return "$rc"
}

# tvsa_stop_all: stops every server still in TVSA_LIVE (for exit traps).
tvsa_stop_all() {
    local pid
    for pid in "${!TVSA_LIVE[@]}"; do
        tvsa_server_stop "$pid" || true
    done
}

# tvsa_cleanup_on_exit LOG_FUNCTION DIR: sets the EXIT, INT and TERM traps of a script that
# starts servers and loadgen: on any exit, the loadgen whose pid is in TVSA_LOADGEN_PID (if
# set) and every server in TVSA_LIVE are stopped, and a non-zero exit is reported through
# LOG_FUNCTION with DIR as the place of the partial results. Ctrl-C exits 130.
tvsa_cleanup_on_exit() {
    TVSA_CLEANUP_LOG=$1 TVSA_CLEANUP_DIR=$2 TVSA_LOADGEN_PID=
    trap _tvsa_cleanup EXIT
    trap '"$TVSA_CLEANUP_LOG" interrupted; exit 130' INT TERM
}
_tvsa_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n ${TVSA_LOADGEN_PID:-} ]]; then
        kill -TERM "$TVSA_LOADGEN_PID" 2>/dev/null || true
        wait "$TVSA_LOADGEN_PID" 2>/dev/null || true
    fi
    tvsa_stop_all >/dev/null 2>&1
    [[ $rc -ne 0 ]] && "$TVSA_CLEANUP_LOG" "stopped early (exit $rc); partial results in $TVSA_CLEANUP_DIR"
    exit "$rc"
}
