#!/usr/bin/env bash
# Checks the coursework labs (issue 8): runs `scripts/lab.sh N --quick` for every lab into a
# temporary directory and checks the files each must produce, then runs every quick command of
# the handouts (docs/labs/*.md fenced blocks whose info string is exactly `sh`; `sh slow` blocks
# are not run) against those results, the way a student would from the repository root.
# Usage: tests/labs.sh [N...]   (only those labs; default 1-7)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD

# make check sets TVSA_ONLY_C: the labs measure performance, which sanitized builds do not show.
if [[ ${TVSA_ONLY_C:-0} == 1 ]]; then
    echo "labs: skipped (TVSA_ONLY_C=1: sanitized binaries)"
    exit 0
fi

tmp=$(mktemp -d /tmp/tvsa-labs-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "labs: FAIL: $*" >&2; failures=$((failures + 1)); }

labs=("$@")
[[ ${#labs[@]} -gt 0 ]] || labs=(1 2 3 4 5 6 7)

# Files each lab must write besides lab.json, summary.tsv, summary.txt and commands.txt.
declare -A PNGS=([1]="throughput p99" [2]="rss_per_conn vsz_per_conn" [3]="ctx_per_request"
                 [4]="throughput latency" [5]="chat_rate chat_latency" [6]="udp udp_loss timeouts names"
                 [7]="starvation queueing")

# 1. The quick runs, and what they must leave behind. They run in two lanes at once (each
# lab's runs one after the other within its lane): a quick run checks that a lab works, not its
# figures, and the suite must fit its time budget. Each lab's exit status and seconds go to
# $tmp/labN.rc.
lane() {
    local n start
    for n in "$@"; do
        start=$SECONDS
        scripts/lab.sh "$n" --quick --no-build --out "$tmp/out/lab-$n" 2>"$tmp/lab$n.stderr"
        echo "$? $((SECONDS - start))" >"$tmp/lab$n.rc"
    done
}
lane1=() lane2=()
for i in "${!labs[@]}"; do
    if ((i % 2 == 0)); then lane1+=("${labs[i]}"); else lane2+=("${labs[i]}"); fi
done
lane "${lane1[@]}" &
lane1_pid=$!
[[ ${#lane2[@]} -gt 0 ]] && lane "${lane2[@]}"
wait "$lane1_pid"
for n in "${labs[@]}"; do
    out=$tmp/out/lab-$n
    read -r rc took <"$tmp/lab$n.rc" 2>/dev/null || rc=1 took=0
    if [[ $rc -ne 0 ]]; then
        tail -n 20 "$tmp/lab$n.stderr" >&2
        fail "lab $n: scripts/lab.sh $n --quick exited non-zero"
        continue
    fi
    echo "labs: lab $n --quick took $took s (two labs at a time)"
    if grep -q '^lab [0-9]: skipped' "$tmp/lab$n.stderr"; then
        echo "labs: lab $n skipped by lab.sh: $(grep -m1 skipped "$tmp/lab$n.stderr")"
        continue
    fi
    for f in lab.json summary.tsv summary.txt commands.txt; do
        [[ -s $out/$f ]] || fail "lab $n: no $f"
    done
    for p in ${PNGS[$n]}; do
        [[ -s $out/$p.png ]] || { fail "lab $n: no $p.png"; continue; }
        [[ $(head -c 8 "$out/$p.png" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]] ||
            fail "lab $n: $p.png is not a PNG"
    done
    python3 - "$out" "$n" <<'PY' || fail "lab $n: bad lab.json or summary.tsv"
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
meta = json.load(open(out + "/lab.json"))
assert meta["lab"] == n and meta["complete"] is True and meta["quick"] is True, meta
assert meta["commands"], "no commands recorded"
rows = [l.rstrip("\n").split("\t") for l in open(out + "/summary.tsv")]
assert len(rows) >= 2, "summary.tsv has no rows"
assert all(len(r) == len(rows[0]) for r in rows), "ragged summary.tsv"
PY
    # No server of this run may be left running (pid alive and still one of ours).
    for f in "$out"/servers/*.stdout; do
        [[ -f $f ]] || continue
        pid=$(sed -n 's/.*"event":"listening".*"pid":\([0-9]*\).*/\1/p' "$f" | head -n1)
        [[ -n $pid ]] || continue
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- '--port 0'; then
            fail "lab $n: server pid $pid ($(basename "$f" .stdout)) still running"
        fi
    done
done

# 2. The handouts' quick commands, each block on its own from a tree that looks like the
# repository root with results/lab-N holding the quick run above (so the repository's own
# results/ is never touched).
tree=$tmp/tree
mkdir -p "$tree/results"
ln -s "${TVSA_BIN:-$REPO/bin}" "$tree/bin"
for d in scripts docs data tests common bench; do
    [[ -e $REPO/$d ]] && ln -s "$REPO/$d" "$tree/$d"
done
for n in "${labs[@]}"; do
    [[ -d $tmp/out/lab-$n ]] && ln -s "$tmp/out/lab-$n" "$tree/results/lab-$n"
done
for n in "${labs[@]}"; do
    handout=$(ls docs/labs/lab"$n"-*.md 2>/dev/null | head -n1)
    [[ -n $handout ]] || { fail "lab $n: no docs/labs/lab$n-*.md"; continue; }
    # One file per `sh` block: blocks/lab-N/K.sh.
    mkdir -p "$tmp/blocks/lab-$n"
    awk -v dir="$tmp/blocks/lab-$n" '
        /^```/ && !inb { inb = 1; quick = ($0 == "```sh"); if (quick) { k++; f = dir "/" k ".sh" } ; next }
        /^```/ && inb  { inb = 0; next }
        inb && quick   { print > f }' "$handout"
    nblocks=$(ls "$tmp/blocks/lab-$n" | wc -l)
    [[ $nblocks -gt 0 ]] || fail "$handout: no quick (\`\`\`sh) block"
    for b in $(ls "$tmp/blocks/lab-$n" | sort -n); do
        start=$SECONDS
        if ! (cd "$tree" && timeout -k 5 60 bash -e -o pipefail "$tmp/blocks/lab-$n/$b") \
                >"$tmp/block.out" 2>&1; then
            fail "$handout: block $b failed:"
            sed 's/^/    | /' "$tmp/blocks/lab-$n/$b" >&2
            tail -n 15 "$tmp/block.out" | sed 's/^/    > /' >&2
        else
            echo "labs: $handout block $b ok ($((SECONDS - start)) s)"
        fi
    done
done

echo "labs: $failures failure(s)"
[[ $failures -eq 0 ]]
