#!/usr/bin/env bash
# Tests scripts/sweep.sh (issue 20, latency against offered load): the quick (```sh) blocks of
# docs/labs/lab9-tail-latency.md, run as a student would from the repository root, the first of
# which is one --quick run of the three models; then that run's files, the order of every
# point's percentiles, that no point sent more than its offered rate allows (the achieved rate
# at the lightest point is printed, not asserted: on a shared machine it is a timing figure),
# the PNG and cells.json; bad usage; a one-model run; no server left running; --rtt-ms.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
BIN=${TVSA_BIN:-$REPO/bin}

if [[ ${TVSA_ONLY_C:-0} == 1 ]]; then
    echo "sweep_quick: skipped (TVSA_ONLY_C=1: sanitized binaries)"
    echo "0 passed, 0 failed"
    exit 0
fi

tmp=$(mktemp -d /tmp/tvsa-sweep-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "sweep_quick: ok: $*"; passed=$((passed + 1)); }
fail() { echo "sweep_quick: FAIL: $*" >&2; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

is_png() { [[ -s $1 && $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; }

# No server started by a run (its listening lines) may still be running.
none_left() {
    local f pid rc=0
    for f in "$1"/servers/*.listening.json; do
        [[ -f $f ]] || continue
        pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$f")
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
                tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '--port 0'; then
            echo "server pid $pid ($(basename "$f")) still running" >&2
            rc=1
        fi
    done
    return "$rc"
}

# verify SWEEP_DIR MODELS: prints one line per problem found in a sweep directory.
verify() {
    python3 - "$1" "$2" <<'PY'
import csv, json, os, sys
sw, models = sys.argv[1], sys.argv[2].split(",")

def load(name):
    try:
        return json.load(open(os.path.join(sw, name)))
    except (OSError, ValueError) as e:
        print("%s: %s" % (name, e))

runs = list(csv.DictReader(open(os.path.join(sw, "runs.tsv")), delimiter="\t"))
for r in runs:
    doc = load(r["file"])
    if doc is None:
        continue
    if doc.get("schema") != "tvsa-loadgen/1" or len(doc.get("steps", [])) != 1:
        print("%s: not a one-step loadgen JSON" % r["file"])
        continue
    cfg = doc["config"]
    want = "closed" if r["kind"] == "capacity" else "open"
    if cfg.get("mode") != want or cfg.get("threads") != 1:
        print("%s: mode %s threads %s, want %s and 1" % (r["file"], cfg.get("mode"), cfg.get("threads"), want))
    if r["kind"] == "point" and int(cfg.get("rate", 0)) != int(r["rate"]):
        print("%s: --rate %s, runs.tsv says %s" % (r["file"], cfg.get("rate"), r["rate"]))
    if r["loadgen_exit"] != "0":
        print("%s: loadgen exited %s" % (r["file"], r["loadgen_exit"]))
    if r["kind"] == "point":
        # No more requests than the offered rate allows in the window: completed, timed out,
        # mismatched and due-but-unsent at the stop together stay within rate x duration (+5%).
        # Not a lower bound: loadgen's worker starts its schedule when it sees the start
        # command, which a starved worker sees late (14% of a 1 s window once), while
        # duration_s is the main thread's window.
        st = doc["steps"][0]
        req, lat = st["requests"], st["latency_us"]
        due = cfg["rate"] * st["duration_s"]
        seen = req["completed"] + req["timeouts"] + req["mismatches"] + lat["unsent_at_stop"]
        if seen > 1.05 * due + 1:
            print("%s: %.0f requests due at --rate, %d sent or due" % (r["file"], due, seen))

sweep = load("sweep.json") or {}
cells = load("cells.json") or {}
if sorted(sweep.get("models", {})) != sorted(models):
    print("sweep.json models %s, want %s" % (sorted(sweep.get("models", {})), sorted(models)))
for m, d in sweep.get("models", {}).items():
    cap = d["capacity"]["per_sec"]
    if not cap or cap <= 0:
        print("%s: no capacity" % m)
        continue
    pts = d["points"]
    if not pts:
        print("%s: no points" % m)
    for p in pts:
        if abs(p["offered_per_s"] - cap * p["pct"] / 100) > 2:
            print("%s %d%%: offered %s is not %d%% of %s" % (m, p["pct"], p["offered_per_s"], p["pct"], cap))
        for x in [p] + p["rounds"]:
            a, b, c = x.get("p50_us"), x.get("p99_us"), x.get("p999_us")
            if None in (a, b, c) or not (0 < a <= b <= c):
                print("%s %d%% %s: p50 %s p99 %s p99.9 %s not in order" % (m, p["pct"], x.get("file", "median"), a, b, c))
        if p["achieved_per_s"] is None or p["timeouts"] is None:
            print("%s %d%%: no achieved rate or timeouts" % (m, p["pct"]))
    low = min(pts, key=lambda p: p["pct"]) if pts else None
    if low:
        # Reported, not asserted: on a shared machine a starved 1 s run achieved 2% of its
        # 10% point once (a timing figure, not a property of the code).
        print("note: %s %d%%: achieved %.0f/s of %d/s offered (%.0f%%)" % (
            m, low["pct"], low["achieved_per_s"], low["offered_per_s"],
            100 * low["achieved_per_s"] / low["offered_per_s"]))
    cell = cells.get("cells", {}).get(m)
    if not cell or not cell.get("text"):
        print("cells.json: no cell for %s" % m)
        continue
    near = min(pts, key=lambda q: (abs(q["pct"] - 80), q["pct"]))
    for k in ("p50_us", "p99_us", "p999_us"):
        if cell.get(k) != near[k]:
            print("cells.json %s: %s %s, the %d%% point has %s" % (m, k, cell.get(k), near["pct"], near[k]))
if cells.get("row") != "Latency at 80% of capacity":
    print("cells.json: row %r" % cells.get("row"))
for m in models:
    data = os.path.join(sw, "data", m + ".tsv")
    if not os.path.exists(data) or sum(1 for l in open(data) if not l.startswith("#")) < 1:
        print("data/%s.tsv: missing or empty" % m)
PY
}

# 1. The lab's quick blocks, each on its own from a tree that looks like the repository root
# (so the repository's own results/ is never touched), as tests/labs.sh runs the other labs'.
# The first block is the lab's quick sweep of all three models (`scripts/sweep.sh --quick --out
# results/lab-9-quick`): section 2 checks what it wrote, so the suite runs one quick sweep.
handout=docs/labs/lab9-tail-latency.md
tree=$tmp/tree
mkdir -p "$tree/results" "$tmp/blocks"
ln -s "$BIN" "$tree/bin"
for d in scripts docs data tests common bench; do
    [[ -e $REPO/$d ]] && ln -s "$REPO/$d" "$tree/$d"
done
awk -v dir="$tmp/blocks" '
    /^```/ && !inb { inb = 1; quick = ($0 == "```sh"); if (quick) { k++; f = dir "/" k ".sh" }; next }
    /^```/ && inb  { inb = 0; next }
    inb && quick   { print > f }' "$handout" 2>/dev/null
check "$handout has a quick (\`\`\`sh) block" test -n "$(ls "$tmp/blocks")"
for b in $(ls "$tmp/blocks" | sort -n); do
    start=$SECONDS rc=0
    (cd "$tree" && timeout -k 5 60 bash -e -o pipefail "$tmp/blocks/$b") >"$tmp/block-$b.out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        sed 's/^/    | /' "$tmp/blocks/$b" >&2
        tail -n 15 "$tmp/block-$b.out" | sed 's/^/    > /' >&2
    fi
    check "$handout block $b runs ($((SECONDS - start)) s)" test "$rc" -eq 0
done
check "the lab's quick block wrote results/lab-9-quick/sweep/cells.json" \
    test -s "$tree/results/lab-9-quick/sweep/cells.json"
for d in "$tree"/results/*/sweep; do
    [[ -d $d ]] && check "no server left running by the lab's blocks ($d)" none_left "$d"
done


# 2. What the lab's quick sweep of all three models wrote (block 1, above).
check "the lab's first quick block is the quick sweep" \
    grep -q '^scripts/sweep.sh --quick --out results/lab-9-quick$' "$tmp/blocks/1.sh"
out=$tree/results/lab-9-quick
cp "$tmp/block-1.sh.out" "$tmp/stderr" 2>/dev/null || : >"$tmp/stderr"
sw=$out/sweep
for f in sweep.json cells.json runs.tsv; do
    check "$f written" test -s "$sw/$f"
done
check "latency.png is a PNG" is_png "$sw/latency.png"
check "no server left running" none_left "$sw"
# verify's "note:" lines are information; every other line is a problem.
verify "$sw" threaded-tpc,threaded-pool50,async >"$tmp/verify" 2>&1
grep '^note:' "$tmp/verify" | sed 's/^/sweep_quick: /'
grep -v '^note:' "$tmp/verify" >"$tmp/problems"
if [[ -s $tmp/problems ]]; then
    sed 's/^/    /' "$tmp/problems" >&2
    fail "sweep directory checks ($(wc -l <"$tmp/problems") problems)"
else
    ok "every run's JSON, every point's p50 <= p99 <= p99.9 and within its rate, cells.json"
fi
check "the table is printed at the end" grep -q '^async  *80%' "$tmp/stderr"

# 3. The checker can fail: the same directory with one point's p99 above its p99.9.
cp -r "$sw" "$tmp/broken"
python3 - "$tmp/broken/sweep.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["models"]["async"]["points"][0]
p["p99_us"] = p["p999_us"] + 1
json.dump(d, open(sys.argv[1], "w"))
PY
check "a point with p99 > p99.9 is caught" \
    bash -c "$(declare -f verify); verify '$tmp/broken' threaded-tpc,threaded-pool50,async | grep -q 'p99.9 .* not in order'"

# 4. Bad usage exits 2 and starts nothing; a directory that is not a sweep is refused.
for args in "--quick" "--out $tmp/x --models bogus" "--out $tmp/x --points 10,x" \
            "--out $tmp/x --duration 0" "--out $tmp/x --cpus 1"; do
    rc=0
    # shellcheck disable=SC2086 # the arguments are split on purpose
    scripts/sweep.sh $args --no-build >/dev/null 2>&1 || rc=$?
    check "sweep.sh $args exits 2" test "$rc" -eq 2
done
mkdir -p "$tmp/other/sweep" && echo keep >"$tmp/other/sweep/mine.txt"
rc=0
scripts/sweep.sh --quick --no-build --out "$tmp/other" >/dev/null 2>&1 || rc=$?
check "a sweep/ that is not sweep.sh's is refused" test "$rc" -eq 1 -a -f "$tmp/other/sweep/mine.txt"

# 5. One model, two points, rerun into the first run's directory (replaces it).
rc=0
scripts/sweep.sh --no-build --out "$out" --models async --points 10,80 --duration 1 --rounds 1 \
    2>"$tmp/stderr1" || rc=$?
check "--models async --points 10,80 exits 0" test "$rc" -eq 0
verify "$sw" async 2>&1 | grep -v '^note:' >"$tmp/problems1"
check "--models async: only async, its two points" \
    bash -c "[[ ! -s '$tmp/problems1' ]] && ! ls '$sw' | grep -q threaded &&
             python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [p[\"pct\"] for p in d[\"models\"][\"async\"][\"points\"]] == [10, 80]' '$sw/sweep.json'"
[[ -s $tmp/problems1 ]] && sed 's/^/    /' "$tmp/problems1" >&2
check "no server left running (one model)" none_left "$sw"

# 6. --rtt-ms: every run through scripts/cluster.sh --local 1. --rtt-ms 0 takes the whole path
# (namespaces, a fresh server per run, merged JSON) without netem; --rtt-ms 10 either measures
# the round trip (p50 >= 10 ms, capacity <= connections / RTT) or, without netem, exits 2 before
# measuring. Either way nothing of cluster.sh's may be left. Needs root and pdsh: else SKIPPED.
for args in "--out $tmp/x --rtt-ms ten" "--out $tmp/x --rtt-ms 5 --cpus 0,1"; do
    rc=0
    # shellcheck disable=SC2086 # the arguments are split on purpose
    scripts/sweep.sh $args --no-build >/dev/null 2>&1 || rc=$?
    check "sweep.sh $args exits 2" test "$rc" -eq 2
done
cluster_names() {
    { ip netns list; ip -o link show; } 2>/dev/null | grep -o 'tvsa[0-9a-f]\{6\}' | sort -u
}
if [[ $(id -u) != 0 ]] || ! command -v pdsh >/dev/null; then
    echo "sweep_quick: SKIPPED: --rtt-ms (needs root and pdsh for scripts/cluster.sh --local)"
else
    before=$(cluster_names)
    rc=0
    scripts/sweep.sh --quick --no-build --out "$tmp/rtt0" --models async --points 80 \
        --rtt-ms 0 2>"$tmp/rtt0.err" || rc=$?
    [[ $rc -eq 0 ]] || tail -n 5 "$tmp/rtt0.err" | sed 's/^/    > /' >&2
    check "--rtt-ms 0 (through cluster.sh) exits 0" test "$rc" -eq 0
    verify "$tmp/rtt0/sweep" async 2>&1 | grep -v '^note:' >"$tmp/problems0"
    [[ -s $tmp/problems0 ]] && sed 's/^/    /' "$tmp/problems0" >&2
    check "--rtt-ms 0: the sweep directory checks, the server lines of each run, network named" \
        bash -c "[[ ! -s '$tmp/problems0' &&
                    -s '$tmp/rtt0/sweep/servers/async-80-r1.stopped.json' &&
                    -s '$tmp/rtt0/sweep/cluster/async-80-r1/merged.json' ]] &&
                 grep -q '\"network\": \"scripts/cluster.sh --local 1' '$tmp/rtt0/sweep/sweep.json'"
    rc=0
    scripts/sweep.sh --quick --no-build --out "$tmp/rtt10" --models async --points 80 \
        --rtt-ms 10 2>"$tmp/rtt10.err" || rc=$?
    if [[ $rc -eq 2 ]] && grep -q 'no netem' "$tmp/rtt10.err"; then
        check "--rtt-ms 10 without netem: exit 2, nothing measured" \
            bash -c "grep -q 'nothing was measured' '$tmp/rtt10.err' &&
                     ! ls '$tmp/rtt10/sweep/'*.json >/dev/null 2>&1"
        echo "sweep_quick: SKIPPED: --rtt-ms 10 measured (this kernel has no netem)"
    else
        check "--rtt-ms 10: p50 at least 10 ms, capacity at most 50 connections / 10 ms" \
            python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))["models"]["async"]
assert d["capacity"]["per_sec"] <= 50 / 0.010 * 1.05, d["capacity"]
assert all(p["p50_us"] >= 10000 for p in d["points"]), d["points"]' "$tmp/rtt10/sweep/sweep.json"
    fi
    check "--rtt-ms: no namespace, veth or bridge of cluster.sh left" \
        test "$(cluster_names)" = "$before"
fi

echo "sweep_quick: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
