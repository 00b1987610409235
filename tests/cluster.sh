#!/usr/bin/env bash
# Tests scripts/cluster.sh (issue 19): usage and missing-tool exits, pdsh fan-out with each
# host's share and JSON (pdsh -R exec on loopback), a failed host reported by name, and the
# --local namespace cluster: per-host JSON, merged counts equal their sum, netem RTT in p50,
# and nothing the script made left behind after a run, a failure or Ctrl-C. Where namespaces
# (or netem, or `loadgen merge`) are not available the checks are counted SKIPPED, not passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
BIN=${TVSA_BIN:-$REPO/bin}
CL=$REPO/scripts/cluster.sh

tmp=$(mktemp -d /tmp/tvsa-cluster-test.XXXXXX)
srv_pid=
finish() {
    [[ -n $srv_pid ]] && { kill "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null; }
    rm -rf "$tmp"
}
trap finish EXIT
passed=0 failed=0 skipped=0 skip_why=()
ok() { echo "cluster: ok: $*"; passed=$((passed + 1)); }
bad() { echo "cluster: FAIL: $*" >&2; failed=$((failed + 1)); }
skip() { echo "cluster: SKIPPED: $*"; skipped=$((skipped + 1)); skip_why+=("$*"); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# jq-like reads with python: py FILE EXPR (d is the document).
py() { python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print($2)" "$1"; }

# Until loadgen has `merge` (issue 14), the checks of merged figures are SKIPPED.
# bg_start ERRFILE ARGS...: scripts/cluster.sh ARGS in the background (BG_PID) with job control,
# which gives it a SIGINT it can trap (a non-interactive shell starts background jobs with
# SIGINT ignored); returns once its hosts started (or it ended).
bg_start() {
    local err=$1 i
    shift
    set -m
    "$CL" "$@" 2>"$err" &
    BG_PID=$!
    set +m
    for ((i = 0; i < 300; i++)); do
        grep -q 'started [0-9]* hosts' "$err" 2>/dev/null && break
        kill -0 "$BG_PID" 2>/dev/null || break
        sleep 0.1
    done
}
# bg_interrupt WHAT: Ctrl-C to BG_PID, up to 20 s for it to end; BG_RC is its exit status.
bg_interrupt() {
    local i
    kill -INT "$BG_PID" 2>/dev/null
    for ((i = 0; i < 200; i++)); do kill -0 "$BG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$BG_PID" 2>/dev/null && { bad "$1: still running 20 s after Ctrl-C"; kill -KILL "$BG_PID"; }
    wait "$BG_PID"
    BG_RC=$?
}
# alive PID...: those still running (a zombie, dead and not yet reaped by init, is not).
alive() {
    local p out=
    for p in "$@"; do
        [[ -r /proc/$p/stat && $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]] && out+=" $p"
    done
    echo "${out# }"
}

HAS_MERGE=1
[[ $("$BIN/loadgen" merge </dev/null 2>&1) == *"unexpected argument 'merge'"* ]] && HAS_MERGE=0

# ---- usage ---------------------------------------------------------------------------------
"$CL" --help >"$tmp/help" 2>&1
check "--help exits 0 and documents --local" grep -q -- '--local K' "$tmp/help"
"$CL" --local 2 --connections 4 >/dev/null 2>"$tmp/err"
rc=$?
check "--local without --server: exit 2 ($rc)" test "$rc" = 2
"$CL" --hosts a,b --target 127.0.0.1:9 --json x >/dev/null 2>"$tmp/err"
rc=$?
check "--json refused, the script owns it: exit 2 ($rc)" test "$rc" = 2

# Without pdsh on the PATH: a clear message and exit 2.
mkdir -p "$tmp/nopdsh"
for t in dirname python3 id; do ln -s "$(command -v "$t")" "$tmp/nopdsh/$t"; done
PATH=$tmp/nopdsh "$(command -v bash)" "$CL" --hosts a --target 127.0.0.1:9 2>"$tmp/err"
rc=$?
if [[ $rc == 2 ]] && grep -q 'pdsh is not installed' "$tmp/err"; then
    ok "no pdsh: exit 2 with a message"
else
    bad "no pdsh: exit $rc, $(cat "$tmp/err")"
fi

# Not root: --local refuses with exit 2 (setpriv drops to nobody).
if command -v setpriv >/dev/null && [[ $(id -u) == 0 ]]; then
    setpriv --reuid 65534 --regid 65534 --clear-groups \
        "$CL" --local 1 --server async-echo -- --out "$tmp/nobody" 2>"$tmp/err"
    rc=$?
    if [[ $rc == 2 ]] && grep -q 'needs root' "$tmp/err"; then
        ok "not root: --local exits 2 with a message"
    else
        bad "not root: exit $rc, $(cat "$tmp/err")"
    fi
else
    skip "not-root check: needs root and setpriv to drop privileges"
fi

# ---- pdsh fan-out on loopback (pdsh -R exec, every "host" runs here) --------------------------
"$BIN/async-echo" --port 0 >"$tmp/srv.json" 2>/dev/null &
srv_pid=$!
for ((i = 0; i < 100; i++)); do
    grep -q listening "$tmp/srv.json" 2>/dev/null && break
    sleep 0.1
done
port=$(py "$tmp/srv.json" 'd["port"]')
out=$tmp/exec
"$CL" --rcmd exec --hosts 'h[1-3]' --target "127.0.0.1:$port" --out "$out" --start-delay 1 \
    --connections 7,10 --duration 1 --quiet 2>"$tmp/exec.err"
rc=$?
want_rc=0
[[ $HAS_MERGE == 1 ]] || want_rc=1
check "exec hosts: exit $want_rc ($rc)" test "$rc" = "$want_rc"
shares=$(for h in h1 h2 h3; do py "$out/hosts/$h.json" '",".join(str(s["connections"]["established"]) for s in d["steps"])'; done 2>/dev/null | tr '\n' ' ')
check "exec hosts: each host's JSON, shares 3,4 2,3 2,3 established ($shares)" \
    test "$shares" = "3,4 2,3 2,3 "
check "exec hosts: env.json for each host with a clock offset" \
    test "$(for h in h1 h2 h3; do py "$out/env/$h.json" '"clock_offset_s" in d'; done 2>/dev/null | sort -u)" = True
check "exec hosts: the pdsh log holds the commands" grep -q '^\$ pdsh -R exec' "$out/pdsh.log"

# One host's loadgen fails (a wrapper: the first measuring run exits 3): reported by name, the
# merged result holds the others.
cat >"$tmp/flaky-loadgen" <<EOF
#!/bin/sh
case " \$* " in *" --json "*) mkdir "$tmp/flaky.lock" 2>/dev/null && { echo "flaky: failing on purpose" >&2; exit 3; } ;; esac
exec "$BIN/loadgen" "\$@"
EOF
chmod +x "$tmp/flaky-loadgen"
out=$tmp/flaky
"$CL" --rcmd exec --hosts 'h[1-3]' --target "127.0.0.1:$port" --out "$out" --start-delay 1 \
    --loadgen "$tmp/flaky-loadgen" --connections 6 --duration 1 --quiet 2>"$tmp/flaky.err"
rc=$?
check "a failed host: exit 1 ($rc)" test "$rc" = 1
failed_host=$(py "$out/cluster.json" '" ".join(d["failed_hosts"])' 2>/dev/null)
held=$(py "$out/cluster.json" '" ".join(d["hosts"])' 2>/dev/null)
if [[ $failed_host =~ ^h[123]$ ]] && grep -q "host $failed_host failed: exit code 3" "$tmp/flaky.err" &&
        [[ $(wc -w <<<"$held") == 2 && " $held " != *" $failed_host "* ]]; then
    ok "a failed host: $failed_host named on stderr and in cluster.json, the result holds $held"
else
    bad "a failed host: failed '$failed_host', held '$held'; $(grep 'failed' "$tmp/flaky.err")"
fi
if [[ $HAS_MERGE == 1 ]]; then
    check "a failed host: merged.json holds the other two" \
        test "$(py "$out/merged.json" '" ".join(d["cluster"]["hosts"])' 2>/dev/null)" = "$held"
fi
# A hosts file with comments and blank lines.
printf '# two hosts\nalpha\n\n  beta   # the second\n' >"$tmp/hosts.txt"
"$CL" --rcmd exec --hosts "$tmp/hosts.txt" --target "127.0.0.1:$port" --out "$tmp/file" \
    --start-delay 1 --connections 2 --duration 1 --quiet 2>"$tmp/file.err"
rc=$?
check "hosts file: exit 0 ($rc), hosts alpha beta" \
    test "$rc:$(py "$tmp/file/cluster.json" '" ".join(d["hosts"])' 2>/dev/null)" = "0:alpha beta"

# The ssh path (pdsh -R ssh: the command is one string for the remote shell) through a stand-in
# ssh that runs it here, as sshd would: `sh -c` of the words joined.
mkdir -p "$tmp/fakessh"
cat >"$tmp/fakessh/ssh" <<'EOF'
#!/bin/sh
while [ $# -gt 0 ]; do
    case $1 in -l|-p|-o|-i) shift 2 ;; -*) shift ;; *) break ;; esac
done
shift
exec sh -c "$*"
EOF
chmod +x "$tmp/fakessh/ssh"
PATH=$tmp/fakessh:$PATH PDSH_RCMD_TYPE=ssh "$CL" --hosts 'ssh[1-2]' --target "127.0.0.1:$port" \
    --out "$tmp/ssh" --start-delay 1 --connections 5 --rate 200 --duration 1 --quiet 2>"$tmp/ssh.err"
rc=$?
got=$(for h in ssh1 ssh2; do py "$tmp/ssh/hosts/$h.json" '"%d@%g" % (d["steps"][0]["connections"]["established"], d["config"]["rate"])'; done 2>/dev/null | tr '\n' ' ')
check "ssh hosts (stand-in ssh): exit $want_rc ($rc), shares 3@100 2@100 ($got)" \
    test "$rc:$got" = "$want_rc:3@100 2@100 "
check "ssh hosts: 3 pdsh -R ssh commands (environment, two shares), the clock was read through the remote shell" \
    test "$(grep -c '^\$ pdsh -R ssh' "$tmp/ssh/pdsh.log"):$(py "$tmp/ssh/env/ssh1.json" 'len(d["clock_samples"])' 2>/dev/null)" = 3:3

# Ctrl-C while exec hosts run: pdsh leaves its children running when killed, the script must not.
bg_start "$tmp/execint.err" --rcmd exec --hosts 'h[1-2]' --target "127.0.0.1:$port" \
    --out "$tmp/execint" --start-delay 1 --connections 2 --duration 30 --quiet
sleep 1
# Our loadgens: the ones aimed at this test's server port.
lg_pids=$(ps -eo pid=,args= | awk -v t="127.0.0.1:$port" '$2 ~ /loadgen$/ && index($0, t) {print $1}' | tr '\n' ' ')
bg_interrupt "exec Ctrl-C"
# shellcheck disable=SC2086 # one pid a word
left=$(alive $lg_pids)
check "exec Ctrl-C: exit 130 ($BG_RC), its 2 loadgens (${lg_pids:-none}) gone (${left:-none})" \
    test "$BG_RC" = 130 -a "$(wc -w <<<"$lg_pids")" = 2 -a -z "$left"
kill "$srv_pid"; wait "$srv_pid" 2>/dev/null; srv_pid=

# ---- the local cluster ----------------------------------------------------------------------
# Names of namespaces and links this machine has that look like ours.
ours() { { ip netns list 2>/dev/null | awk '{print "netns " $1}'; ip -o link show 2>/dev/null |
           awk -F': ' '{sub(/@.*/, "", $2); print "link " $2}'; } | grep ' tvsa' | sort; }
# left_behind PREFIX BEFORE: what of PREFIX, or new since BEFORE, still exists.
left_behind() {
    local prefix=$1 before=$2
    { [[ -n $prefix ]] && { ours | grep " $prefix"; tc qdisc show 2>/dev/null | grep "$prefix"; }
      comm -13 "$before" <(ours); } | sort -u
}
nothing_left() {
    local what=$1 prefix=$2 before=$3 left
    left=$(left_behind "$prefix" "$before")
    if [[ -z $prefix ]]; then
        bad "$what: the run did not say which names it used"
    elif [[ -z $left ]]; then
        ok "$what: nothing of $prefix left (namespaces, veth, bridge, qdiscs)"
    else
        bad "$what: left behind: $(tr '\n' ' ' <<<"$left")"
    fi
}
prefix_of() { sed -n 's/.*names \(tvsa[0-9a-f]*\)-\*.*/\1/p' "$1" | head -n1; }

if [[ $(id -u) != 0 ]]; then
    skip "local cluster: not root, network namespaces cannot be created"
elif ! ip netns add "tvsatest$$" 2>"$tmp/ns.err"; then
    skip "local cluster: cannot create a network namespace: $(cat "$tmp/ns.err")"
else
    ip netns del "tvsatest$$"
    ours >"$tmp/before"

    # A small bounded load over two client namespaces.
    out=$tmp/local
    "$CL" --local 2 --server async-echo -- --out "$out" --start-delay 1 \
        --connections 4,9 --duration 1 --quiet 2>"$tmp/local.err"
    rc=$?
    check "local 2: exit $want_rc ($rc)" test "$rc" = "$want_rc"
    [[ $rc == "$want_rc" ]] || tail -n 5 "$tmp/local.err" >&2
    prefix=$(prefix_of "$tmp/local.err")
    hosts=$(py "$out/cluster.json" '" ".join(d["hosts"])' 2>/dev/null)
    check "local 2: two hosts named $prefix-c1, -c2 ($hosts)" test "$hosts" = "$prefix-c1 $prefix-c2"
    est=$(for h in $hosts; do py "$out/hosts/$h.json" '",".join(str(s["connections"]["established"]) for s in d["steps"])'; done 2>/dev/null | tr '\n' ' ')
    check "local 2: both hosts' JSON, shares 2,5 and 2,4 established ($est)" test "$est" = "2,5 2,4 "
    done_reqs=$(for h in $hosts; do py "$out/hosts/$h.json" 'd["steps"][0]["requests"]["completed"]'; done 2>/dev/null | tr '\n' ' ')
    check "local 2: both hosts completed requests ($done_reqs)" \
        python3 -c "import sys; v = sys.argv[1].split(); sys.exit(not (len(v) == 2 and all(int(x) > 0 for x in v)))" "$done_reqs"
    check "local 2: the server's stopped line was kept" test -s "$out/server/async-echo.stopped.json"
    # shellcheck disable=SC2086 # one host a word
    starts=$(python3 - "$out" $hosts 2>&1 <<'PY'
import json, sys
out, hosts = sys.argv[1], sys.argv[2:]
at = round(json.load(open(out + "/cluster.json"))["start_at"] * 1e6)
docs = [json.load(open("%s/hosts/%s.json" % (out, h))) for h in hosts]
print("same" if all(d["start"]["at_us"] == at for d in docs) else "differ",
      ["server" in s for d in docs for s in d["steps"]])
PY
)
    check "local 2: every host waited for the same --start-at, the first sampled the server ($starts)" \
        test "$starts" = "same [True, True, False, False]"
    if [[ $HAS_MERGE == 1 ]]; then
        # shellcheck disable=SC2086 # one host a word
        python3 - "$out" $hosts >"$tmp/sum.txt" 2>&1 <<'PY'
import json, sys
out, hosts = sys.argv[1], sys.argv[2:]
m = json.load(open(out + "/merged.json"))
docs = [json.load(open("%s/hosts/%s.json" % (out, h))) for h in hosts]
assert m["cluster"]["hosts"] == hosts, m["cluster"]["hosts"]
assert m["merged"]["hosts"] == hosts, ("loadgen --host-name", m["merged"]["hosts"])
assert len(m["steps"]) == 2, len(m["steps"])
for i, ms in enumerate(m["steps"]):
    for key, sub in (("requests", "completed"), ("requests", "errors"), ("requests", "timeouts"),
                     ("connections", "established"), ("connections", "target")):
        want = sum(d["steps"][i][key][sub] for d in docs)
        assert ms[key][sub] == want, "step %d %s.%s: merged %s, hosts sum %s" % (i, key, sub, ms[key][sub], want)
print("step totals", [s["requests"]["completed"] for s in m["steps"]])
PY
        rc=$?
        check "local 2: merged counts equal the hosts' sum ($(tail -n1 "$tmp/sum.txt"))" test "$rc" = 0
    else
        skip "local 2: merged counts (bin/loadgen has no merge yet)"
    fi
    nothing_left "local 2" "$prefix" "$tmp/before"

    # netem: --rtt-ms 10 must show in the latency.
    out=$tmp/rtt
    "$CL" --local 2 --rtt-ms 10 --server async-echo -- --out "$out" --start-delay 1 \
        --connections 4 --duration 1 --quiet 2>"$tmp/rtt.err"
    rc=$?
    prefix=$(prefix_of "$tmp/rtt.err")
    if [[ $rc == 2 ]] && grep -q 'no netem' "$tmp/rtt.err"; then
        skip "--rtt-ms 10: $(grep -m1 'no netem' "$tmp/rtt.err" | sed 's/^cluster: //')"
        nothing_left "--rtt-ms without netem (failure during set-up)" "$prefix" "$tmp/before"
    else
        check "--rtt-ms 10: exit $want_rc ($rc)" test "$rc" = "$want_rc"
        p50=$(py "$out/hosts/$prefix-c1.json" 'd["steps"][0]["latency_us"]["p50"]' 2>/dev/null)
        check "--rtt-ms 10: one host's p50 is at least 10 ms (${p50:-none} us)" \
            test "${p50:-0}" -ge 10000
        nothing_left "--rtt-ms 10" "$prefix" "$tmp/before"
    fi

    # A forced failure: the server refuses its flags.
    "$CL" --local 2 --server async-echo --no-such-flag -- --out "$tmp/badflag" \
        --connections 2 --duration 1 --quiet 2>"$tmp/badflag.err"
    rc=$?
    check "bad server flag: exit 1 ($rc)" test "$rc" = 1
    nothing_left "bad server flag" "$(prefix_of "$tmp/badflag.err")" "$tmp/before"

    # Ctrl-C in the middle of the load.
    bg_start "$tmp/int.err" --local 2 --server async-echo -- --out "$tmp/int" --start-delay 1 \
        --connections 2 --duration 30 --quiet
    prefix=$(prefix_of "$tmp/int.err")
    sleep 2
    lg_pids=$(for ns in "$prefix-c1" "$prefix-c2"; do ip netns pids "$ns" 2>/dev/null; done | tr '\n' ' ')
    bg_interrupt "Ctrl-C"
    check "Ctrl-C: exit 130 ($BG_RC)" test "$BG_RC" = 130
    # shellcheck disable=SC2086 # one pid a word
    left=$(alive $lg_pids)
    check "Ctrl-C: the loadgens in the namespaces were running (${lg_pids:-none}) and are gone (${left:-none})" \
        test -n "$lg_pids" -a -z "$left"
    nothing_left "Ctrl-C" "$prefix" "$tmp/before"

    # Lab 8's quick blocks (info string exactly `sh`, as tests/labs.sh reads them), each on its
    # own from the repository root: lab.sh has no lab 8, the handout drives cluster.sh itself.
    handout=docs/labs/lab8-latency.md
    mkdir -p "$tmp/lab8"
    awk -v dir="$tmp/lab8" '
        /^```/ && !inb { inb = 1; quick = ($0 == "```sh"); if (quick) { k++; f = dir "/" k ".sh" }; next }
        /^```/ && inb  { inb = 0; next }
        inb && quick   { print > f }' "$handout"
    nblocks=$(find "$tmp/lab8" -name '*.sh' | wc -l)
    check "$handout: has quick blocks ($nblocks)" test "$nblocks" -gt 0
    for ((b = 1; b <= nblocks; b++)); do
        if timeout -k 5 90 bash -e -o pipefail "$tmp/lab8/$b.sh" >"$tmp/lab8.out" 2>&1 &&
                ! grep -q Traceback "$tmp/lab8.out"; then
            ok "$handout block $b"
        else
            bad "$handout block $b: $(tail -n 5 "$tmp/lab8.out")"
        fi
    done
    nothing_left "lab 8 blocks" "$(prefix_of "$tmp/lab8.out")" "$tmp/before"
fi

if [[ $skipped -gt 0 ]]; then
    echo "cluster: $skipped SKIPPED (not counted as passed):"
    printf 'cluster:   %s\n' "${skip_why[@]}"
fi
echo "cluster: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
