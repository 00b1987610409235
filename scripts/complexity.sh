#!/usr/bin/env bash
# Counts code size and concurrency call sites of each model's echo and chat servers (and of the
# coroutine runtime and the Python peers); prints JSON.
# Usage: scripts/complexity.sh [REPO_DIR]   (default: the repository this script lives in)
#
# Per file: "lines" = non-blank lines once C comments are removed; call sites are counted on the
# code with comments and string literals removed, so a message that names a function is not a
# call. Files that do not exist yet are listed under "missing" (not an error). The threaded
# model is threaded/echo.c, threaded/chat.c and threaded/lib/*.c; the async model is the same
# under async/. common/ is shared by both models and is not counted.
set -euo pipefail

repo=${1:-"$(cd "$(dirname "$0")/.." && pwd)"}
cd "$repo"

# One awk pass per file: strips comments and strings, then prints
# "lines lock condvar thread atomic callback".
count_file() {
    awk '
    function count(s, re,    n) {
        n = 0
        while (match(s, re)) { n++; s = substr(s, RSTART + RLENGTH) }
        return n
    }
    BEGIN { in_comment = 0 }
    {
        line = $0; code = ""; i = 1; len = length(line)
        while (i <= len) {
            c = substr(line, i, 1); c2 = substr(line, i, 2)
            if (in_comment) {
                if (c2 == "*/") { in_comment = 0; i += 2; code = code " " } else i++
                continue
            }
            if (c2 == "/*") { in_comment = 1; i += 2; continue }
            if (c2 == "//") break
            if (c == "\"" || c == "\047") {
                q = c; code = code q; i++
                while (i <= len) {
                    c = substr(line, i, 1)
                    if (c == "\\") { i += 2; continue }
                    i++
                    if (c == q) break
                }
                code = code q
                continue
            }
            code = code c; i++
        }
        if (code ~ /[^ \t\r]/) lines++
        pre = "(^|[^A-Za-z0-9_])"
        lock += count(code, pre "(pthread_mutex_(lock|trylock|timedlock|unlock)|pthread_rwlock_(rdlock|wrlock|tryrdlock|trywrlock|timedrdlock|timedwrlock|unlock)|pthread_spin_(lock|trylock|unlock)|bufferevent_(lock|unlock)|evbuffer_(lock|unlock))[ \t]*\\(")
        cond += count(code, pre "pthread_cond_(wait|timedwait|signal|broadcast)[ \t]*\\(")
        thread += count(code, pre "pthread_(create|join|detach|exit|cancel|kill)[ \t]*\\(")
        atomic += count(code, pre "(atomic_[a-z_]+|__atomic_[a-z_]+|__sync_[a-z_]+)[ \t]*\\(")
        cb += count(code, pre "(bufferevent_setcb|bufferevent_socket_new|event_new|event_assign|evtimer_new|evtimer_assign|evsignal_new|evsignal_assign|evconnlistener_new|evconnlistener_new_bind|evconnlistener_set_cb|event_base_once)[ \t]*\\(")
    }
    END { printf "%d %d %d %d %d %d\n", lines, lock, cond, thread, atomic, cb }
    ' "$1"
}

# Python files: non-blank lines that are not # comments (docstrings count as code), and the
# same kinds of call sites (threading.Lock/acquire, Condition, Thread/ThreadPoolExecutor,
# asyncio callback and task registrations).
count_py() {
    awk '
    function count(s, re,    n) { n = 0; while (match(s, re)) { n++; s = substr(s, RSTART + RLENGTH) } return n }
    {
        code = $0; sub(/#.*/, "", code)
        if (code ~ /[^ \t\r]/) lines++
        lock += count(code, "(Lock|RLock|Semaphore)\\(|\\.acquire\\(|\\.release\\(")
        cond += count(code, "Condition\\(|\\.wait\\(|\\.notify(_all)?\\(")
        thread += count(code, "Thread\\(|ThreadPoolExecutor\\(|ThreadingTCPServer|\\.join\\(")
        cb += count(code, "start_server\\(|create_task\\(|add_signal_handler\\(|call_soon|call_later")
    }
    END { printf "%d %d %d %d %d %d\n", lines, lock, cond, thread, 0, cb }
    ' "$1"
}

# Prints one model's JSON object: its files, the missing ones, and totals.
# model_json NAME [FILE...]: the files (default NAME/echo.c NAME/chat.c NAME/lib/*.c).
model_json() {
    local model=$1 files=() f
    shift
    if [[ $# -gt 0 ]]; then
        files=("$@")
    else
        files=("$model/echo.c" "$model/chat.c")
        for f in "$model"/lib/*.c; do files+=("$f"); done
    fi
    local present="" missing="" sep_p="" sep_m=""
    local t_lines=0 t_lock=0 t_cond=0 t_thread=0 t_atomic=0 t_cb=0
    for f in "${files[@]}"; do
        if [[ ! -f $f ]]; then
            [[ $f == *'*'* ]] && continue    # an empty lib/ glob: nothing to report
            missing+="$sep_m\"$f\""; sep_m=", "
            continue
        fi
        if [[ $f == *.py ]]; then
            read -r lines lock cond thread atomic cb < <(count_py "$f")
        else
            read -r lines lock cond thread atomic cb < <(count_file "$f")
        fi
        present+="$sep_p"$'\n'"      {\"path\": \"$f\", \"lines\": $lines, \"lock_sites\": $lock, \"condvar_sites\": $cond, \"thread_sites\": $thread, \"atomic_sites\": $atomic, \"callback_sites\": $cb}"
        sep_p=","
        t_lines=$((t_lines + lines)); t_lock=$((t_lock + lock)); t_cond=$((t_cond + cond))
        t_thread=$((t_thread + thread)); t_atomic=$((t_atomic + atomic)); t_cb=$((t_cb + cb))
    done
    printf '    "%s": {\n      "files": [%s\n      ],\n      "missing": [%s],\n' \
        "$model" "$present" "$missing"
    printf '      "total": {"lines": %d, "lock_sites": %d, "condvar_sites": %d, "thread_sites": %d, "atomic_sites": %d, "callback_sites": %d}\n    }' \
        "$t_lines" "$t_lock" "$t_cond" "$t_thread" "$t_atomic" "$t_cb"
}

printf '{\n  "schema": "tvsa-complexity/1",\n'
printf '  "counted": "non-blank non-comment lines; call sites outside comments and strings",\n'
printf '  "models": {\n'
model_json threaded
printf ',\n'
model_json async
# The coroutine model (issue 15): its runtime in async/lib/coro*.c (and the echo server it
# shares with --api bufferevent, counted under async); the Python peers (issue 18).
coro=(async/lib/coro*.c)
[[ -e ${coro[0]} ]] || coro=(async/lib/coro.c)
printf ',\n'
model_json coro async/echo.c "${coro[@]}"
printf ',\n'
model_json python-threads bench/python/threaded_echo.py
printf ',\n'
model_json python-asyncio bench/python/async_echo.py
printf '\n  }\n}\n'
