#!/usr/bin/env python3
"""The scripts' JSON in one place (issue 12): reading loadgen/dnsq/server JSON, the figures the
shell scripts need from it, and the statistics of repeated rounds (issue 13).

Used two ways:
  - imported by scripts/summarize.py and tests/py/ (the functions below);
  - called by scripts/compare.sh, lab.sh and bench.sh as `python3 scripts/tvsa_json.py CMD ARGS`
    (the CMD table at the end; `--help` lists them).
Python 3 standard library only.
"""
import inspect
import json
import math
import os
import platform
import sys
import time

# --------------------------------------------------------------------------------------------
# Reading


def load_json(path):
    """The parsed file, or None if it is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def get(obj, *keys):
    """obj[k1][k2]... or None when any level is missing (ints index lists, -1 is the last)."""
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj):
            obj = obj[k]
        else:
            return None
    return obj


def get_path(obj, path):
    """get() with a dotted path: "requests.per_sec"."""
    return get(obj, *path.split("."))


def num(v):
    """v as a float if it is a finite number, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------------------------
# Statistics over rounds (issue 13): the median, its min-max spread, and when two models differ.


def spread(values, low=False):
    """(median, min, max) of the numbers among values (None and non-numbers are skipped), or
    None when there is none. The median of an even count is the mean of the middle two, or with
    low the lower of them (for figures that must be one of the values, like a ramp step)."""
    v = sorted(x for x in (num(x) for x in values) if x is not None)
    if not v:
        return None
    n = len(v)
    if n % 2:
        med = v[n // 2]
    else:
        med = v[n // 2 - 1] if low else (v[n // 2 - 1] + v[n // 2]) / 2.0
    return (med, v[0], v[-1])


def compare_spreads(a, b, margin=0.0):
    """How spread a compares with spread b: "higher", "lower" or "within noise". A difference is
    stated only when the ranges do not overlap and the medians differ by more than margin (a
    fraction of the larger median); a single round has a zero-width range."""
    if a is None or b is None:
        return None
    _, alo, ahi = a
    _, blo, bhi = b
    big = max(abs(a[0]), abs(b[0]))
    if alo > bhi and (a[0] - b[0]) > margin * big:
        return "higher"
    if ahi < blo and (b[0] - a[0]) > margin * big:
        return "lower"
    return "within noise"


def fmt_spread(s, fmt, sep="–"):
    """'median (min–max)' with fmt for each number; just the median when min == max."""
    if s is None:
        return "n/a"
    med, lo, hi = s
    if fmt(lo) == fmt(hi):
        return fmt(med)
    return "%s (%s%s%s)" % (fmt(med), fmt(lo), sep, fmt(hi))


# The pass rule of a ramp step (docs/compare.md): every connection established and no connect
# failed, no error or mismatch, timeouts under TIMEOUT_FRACTION of the requests and under
# TIMEOUT_CONN_FRACTION of the connections, and the tail (p99.9 when loadgen reports it, else
# p99) under the bound. The second timeout limit is the one that catches connections nobody
# serves (a pool's queue): each times out once per timeout period, in proportion to the
# connections, not to the requests the served ones complete.
TIMEOUT_FRACTION = 0.001
TIMEOUT_CONN_FRACTION = 0.01


def step_verdict(st, bound_us, timeout_fraction=TIMEOUT_FRACTION):
    """(passed, reasons, notes) of one ramp step: reasons say why it failed; notes are things
    within the rule worth saying (a handful of timeouts)."""
    why, notes = [], []
    target = num(get(st, "connections", "target"))
    est = num(get(st, "connections", "established"))
    failed = num(get(st, "connections", "failed")) or 0
    if target is None or est is None or est < target:
        why.append("%s of %s established" % (fmt_int(est), fmt_int(target)))
    if failed:
        why.append("%s connects failed" % fmt_int(failed))
    for k in ("errors", "mismatches"):
        v = num(get(st, "requests", k)) or 0
        if v:
            why.append("%s %s" % (fmt_int(v), k))
    done = num(get(st, "requests", "completed"))
    tmo = num(get(st, "requests", "timeouts")) or 0
    if tmo:
        share = tmo / max((done or 0) + tmo, 1)
        text = "%s timeouts of %s requests" % (fmt_int(tmo), fmt_int((done or 0) + tmo))
        too_many = share >= timeout_fraction or tmo >= TIMEOUT_CONN_FRACTION * (target or 0)
        (why if too_many else notes).append(text)
    if done is None or (target is not None and done < target):
        why.append("only %s requests completed" % fmt_int(done))
    tail_name, tail = "p99.9", num(get(st, "latency_us", "p999"))
    if tail is None:
        tail_name, tail = "p99", num(get(st, "latency_us", "p99"))
    if tail is None:
        why.append("no p99")
    elif tail > bound_us:
        why.append("%s %s > %s" % (tail_name, fmt_us(tail), fmt_us(bound_us)))
    return (not why, why, notes)


def highest_prefix(steps, bound_us, timeout_fraction=TIMEOUT_FRACTION):
    """The prefix rule: (highest step such that it and every step below it passed, or None; that
    step; the first failing step as (target, reasons, step) or None). Steps are taken in order of
    their connection target, so a failing middle step ends the count even if higher ones pass."""
    ordered = sorted((s for s in steps if num(get(s, "connections", "target")) is not None),
                     key=lambda s: num(get(s, "connections", "target")))
    best, best_step = None, None
    for st in ordered:
        ok, why, _ = step_verdict(st, bound_us, timeout_fraction)
        if not ok:
            return best, best_step, (num(get(st, "connections", "target")), why, st)
        best, best_step = num(get(st, "connections", "target")), st
    return best, best_step, None


# The bench's saturation rule (issue 13): a req/s ratio says something about a server only when
# the server was the bottleneck: its CPU at least SATURATED_CORES of its core, and the client's
# below CLIENT_BOUND_CORES of its own.
SATURATED_CORES = 0.95
CLIENT_BOUND_CORES = 0.95


def server_bound(server_cores, client_cores, saturated=SATURATED_CORES,
                 client_limit=CLIENT_BOUND_CORES):
    """True when the point measured the server (saturated server, client with room to spare)."""
    s, c = num(server_cores), num(client_cores)
    return s is not None and c is not None and s >= saturated and c < client_limit


def bench_verdict(real, bare, goal):
    """One verdict line of make bench for real against its bare baseline. real and bare are dicts
    with rps, server_cores, client_cores and us_per_req (server CPU µs per request). The req/s
    ratio is the verdict only when both points were server-bound; otherwise "client-bound: no
    verdict" and the CPU-per-request ratio (bare / real), labelled as such."""
    both = all(server_bound(p.get("server_cores"), p.get("client_cores")) for p in (real, bare))
    if both and num(real.get("rps")) is not None and num(bare.get("rps")):
        r = real["rps"] / bare["rps"]
        return "%.3f  %s   (req/s, server-bound: goal >= %.2f)" % (r, "ok" if r >= goal else "MISSED", goal)
    why = "client-bound: no verdict"
    worst = [p for p in (real, bare) if not server_bound(p.get("server_cores"), p.get("client_cores"))]
    if worst:
        p = worst[0]
        why += " (server %s cores, client %s)" % (_cores(p.get("server_cores")),
                                                 _cores(p.get("client_cores")))
    a, b = num(bare.get("us_per_req")), num(real.get("us_per_req"))
    if a is not None and b:
        r = a / b
        why += "; by server CPU per request %.3f  %s" % (r, "ok" if r >= goal else "MISSED")
    return why


def client_verdict(lg, ec):
    """loadgen against the bare epoll client on the same server. The req/s ratio compares the
    clients when both were at their core (client-bound), and is expected to be 1 when the server
    was saturated in both; when neither side was saturated (a busy machine) it is no verdict, and
    the clients' CPU per request (epoll-client / loadgen) is the comparison that holds."""
    r = lg["rps"] / ec["rps"]
    ok = "ok" if r >= 1.0 else "MISSED"
    if all(num(x.get("client_cores")) is not None and x["client_cores"] >= CLIENT_BOUND_CORES
           for x in (lg, ec)):
        return "%.3f  %s   (req/s, both clients at their core: goal >= 1.00)" % (r, ok)
    if all(server_bound(x.get("server_cores"), x.get("client_cores")) for x in (lg, ec)):
        return "%.3f  %s   (req/s, server-bound in both: goal >= 1.00, 1 within noise expected)" % (r, ok)
    text = "no verdict: neither side saturated (loadgen %s cores, epoll-client %s; servers %s and %s)" % (
        _cores(lg.get("client_cores")), _cores(ec.get("client_cores")),
        _cores(lg.get("server_cores")), _cores(ec.get("server_cores")))
    a, b = num(ec.get("client_us_per_req")), num(lg.get("client_us_per_req"))
    if a is not None and b:
        text += "; client CPU per request: loadgen %.2f us, epoll-client %.2f us (ratio %.3f)" % (
            b, a, a / b)
    return text


def _cores(v):
    v = num(v)
    return "n/a" if v is None else "%.2f" % v


def fmt_int(v):
    v = num(v)
    return "n/a" if v is None else "{:,}".format(int(round(v)))


def fmt_us(v):
    """Microseconds, shown in the unit that reads best."""
    v = num(v)
    if v is None:
        return "n/a"
    if v >= 1e6:
        return "%.2f s" % (v / 1e6)
    if v >= 1000:
        return "%.1f ms" % (v / 1000)
    return "%.0f µs" % v


# --------------------------------------------------------------------------------------------
# Machine CPU accounting (issue 20). /proc/stat's busy fields (user, system, softirq...) are
# sampled at the scheduler tick, while its idle field is exact on a tickless kernel and the
# processes' rusage is exact too: a load that wakes thousands of times a second (the fixed
# open-loop run) falls between ticks, so summing the busy fields gave less than server + loadgen
# and "everything else" came out negative (-0.44 cores). Busy time is therefore the wall time of
# every CPU minus its idle and iowait time.


def stat_fields(line):
    """The numbers of a /proc/stat "cpu" line, in clock ticks."""
    return [int(x) for x in line.split()[1:]]


def machine_busy_s(stat0, stat1, wall_s, ncpu, hz):
    """CPU seconds the machine was busy between two /proc/stat "cpu" lines wall_s apart:
    ncpu * wall - (idle + iowait), never below 0."""
    a, b = stat_fields(stat0), stat_fields(stat1)
    idle = ((b[3] - a[3]) + (b[4] - a[4])) / float(hz)
    return max(0.0, ncpu * wall_s - idle)


def machine_busy_ticks_s(stat0, stat1, hz):
    """The tick-sampled figure (sum of the busy fields): kept beside the other for comparison."""
    a, b = stat_fields(stat0), stat_fields(stat1)
    busy = lambda v: sum(v[:8]) - v[3] - v[4]
    return (busy(b) - busy(a)) / float(hz)


def stat_cpus():
    """CPUs counted in /proc/stat's "cpu" line (the online ones)."""
    try:
        with open("/proc/stat") as f:
            return sum(1 for l in f if l.startswith("cpu") and l[3:4].isdigit())
    except OSError:
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Commands for the shell scripts. Each takes its arguments as in the docstring.


def cmd_get(file, path):
    """get FILE PATH: prints the value at the dotted PATH of the JSON in FILE, or nothing."""
    v = get_path(load_json(file), path)
    if v is not None:
        print(v)


def step_line(st, model, scenario):
    c = st.get("connections", {})
    r = st.get("requests", {})
    p99 = get(st, "latency_us", "p99")
    p99s = "p99 %.2f ms" % (p99 / 1000.0) if isinstance(p99, (int, float)) else "p99 n/a"
    extra = []
    if c.get("established") != c.get("target"):
        extra.append("established %s" % c.get("established"))
    for k in ("errors", "timeouts", "mismatches"):
        if r.get(k):
            extra.append("%s %s" % (k, r[k]))
    return "%s %s %s conns: %.0f req/s %s%s" % (model, scenario, c.get("target"),
            r.get("per_sec") or 0, p99s, (" (" + ", ".join(extra) + ")") if extra else "")


def cmd_report_steps(file, model, scenario):
    """report-steps FILE MODEL SCENARIO: one progress line per step of a loadgen JSON."""
    for st in get(load_json(file), "steps") or []:
        print(step_line(st, model, scenario))


def cmd_record_run(out, tag, model, scenario, cmd, lrc, src, elapsed, stat0, stat1, wall,
                   loadgen_cpu="", rnd="1", rerun_of=""):
    """record-run RUNS.JSONL TAG MODEL SCENARIO CMD LOADGEN_EXIT SERVER_EXIT ELAPSED STAT0 STAT1
    WALL [LOADGEN_CPU_S [ROUND [RERUN_OF]]]: appends one run record (machine CPU from two
    /proc/stat lines WALL s apart; loadgen's whole CPU time; the noisy attempt it replaces)."""
    rec = {"tag": tag, "model": model, "scenario": scenario, "loadgen_cmd": cmd,
           "loadgen_exit": int(lrc), "server_exit": int(src), "elapsed_s": int(elapsed),
           "json": "loadgen/%s.json" % tag, "round": int(rnd)}
    if num(_float(loadgen_cpu)) is not None:
        rec["loadgen_cpu_s"] = float(loadgen_cpu)
    if num(_float(rerun_of)) is not None:
        rec["rerun_of_noisy_cores"] = float(rerun_of)
    if stat0 and stat1:
        hz = os.sysconf("SC_CLK_TCK")
        rec["machine_busy_cpu_s"] = round(machine_busy_s(stat0, stat1, float(wall), stat_cpus(), hz), 3)
        rec["machine_busy_ticks_cpu_s"] = round(machine_busy_ticks_s(stat0, stat1, hz), 3)
        rec["measured_wall_s"] = float(wall)
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read_runs(d):
    """{tag: record} of DIR/runs.jsonl; a tag run twice (a noisy run rerun) keeps the last."""
    runs = {}
    try:
        with open(os.path.join(d, "runs.jsonl")) as f:
            for line in f:
                line = line.strip()
                if line:
                    r = json.loads(line)
                    runs[r["tag"]] = r
    except (OSError, ValueError, KeyError):
        pass
    return runs


def run_noise(d, rec):
    """(wall s, machine busy cores, server cores, loadgen cores, everything else) of one run of
    round directory d, or None without the machine figures. loadgen is its whole CPU time when
    recorded (connects included), else the sum of its measurement windows."""
    busy, wall = num(rec.get("machine_busy_cpu_s")), num(rec.get("measured_wall_s"))
    if busy is None or not wall:
        return None
    tag = rec.get("tag")
    st = load_json(os.path.join(d, "servers", "%s.stopped.json" % tag))
    srv = (num(get(st, "rusage", "user_s")) or 0) + (num(get(st, "rusage", "sys_s")) or 0)
    lg = num(rec.get("loadgen_cpu_s"))
    if lg is None:
        lg = 0.0
        for step in get(load_json(os.path.join(d, "loadgen", "%s.json" % tag)), "steps") or []:
            lg += (num(get(step, "loadgen", "cpu_s", "user")) or 0) + \
                  (num(get(step, "loadgen", "cpu_s", "sys")) or 0)
    return (wall, busy / wall, srv / wall, lg / wall, (busy - srv - lg) / wall)


def cmd_run_noise(d, tag):
    """run-noise ROUND_DIR TAG: prints the "everything else" cores of run TAG (0 if unknown)."""
    rec = read_runs(d).get(tag)
    n = run_noise(d, rec) if rec else None
    print("%.2f" % (n[4] if n else 0.0))


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cmd_env(out):
    """env OUT: writes env.json from the ENV_* variables compare.sh sets and the machine."""
    cpu_model = None
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    e = os.environ
    env = {
        "schema": "tvsa-env/1",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
        "kernel_version": _read("/proc/version"),
        "cpu_model": cpu_model,
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_total_kib": mem_kib,
        "loadavg_at_start": _read("/proc/loadavg"),
        "libraries": {"libevent": e["ENV_LIBEVENT"], "jansson": e["ENV_JANSSON"],
                      "cmocka": e["ENV_CMOCKA"]},
        "gnuplot": e["ENV_GNUPLOT"],
        "python": platform.python_version(),
        "compiler": e["ENV_CC"],
        "fd_limit": {"soft": e["ENV_FD_SOFT"], "hard": e["ENV_FD_HARD"]},
        "git_revision": e["ENV_GIT_REV"],
        "git_uncommitted_files": int(e["ENV_GIT_DIRTY"]),
        "sysctl": {k: _read("/proc/sys/" + k.replace(".", "/")) for k in (
            "vm.overcommit_memory", "kernel.pid_max", "kernel.threads-max",
            "net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse")},
    }
    with open(out, "w") as f:
        json.dump(env, f, indent=2)


def cmd_plan(out):
    """plan OUT: writes plan.json from the PLAN_* variables compare.sh sets."""
    e = os.environ
    steps = lambda s: [int(x) for x in s.split(",")]
    models = []
    for line in e["PLAN_MODELS"].splitlines():
        fields = line.split("\t") + [""]
        label, title, cmd, note = fields[:4]
        binary, *args = cmd.split()
        m = {"label": label, "title": title, "binary": binary, "args": args}
        if note:
            m["skipped"] = note
        models.append(m)
    plan = {
        "schema": "tvsa-compare-plan/2",
        "quick": e["PLAN_QUICK"] == "1",
        "rounds": int(e["PLAN_ROUNDS"]),
        "models": models,
        "pinning": {"server_cpus": e["PLAN_SERVER_CPUS"], "loadgen_cpus": e["PLAN_LOADGEN_CPUS"],
                    "cpu_bound_server_cpus": e["PLAN_ALL_CPUS"],
                    "cpu_bound_loadgen_cpus": e["PLAN_ALL_CPUS"]},
        "message_size": int(e["PLAN_MSG_SIZE"]),
        "request_timeout_ms": int(e["PLAN_TIMEOUT"]),
        "p99_bound_ms": int(e["PLAN_BOUND"]),
        "timeout_fraction": TIMEOUT_FRACTION,
        "noisy_cores": float(e["PLAN_NOISY_CORES"]),
        "scenarios": {
            "echo": {"connections": steps(e["PLAN_ECHO_STEPS"]),
                     "duration_s": float(e["PLAN_ECHO_DURATION"])},
            "hold": {"connections": steps(e["PLAN_HOLD_STEPS"]),
                     "duration_s": float(e["PLAN_HOLD_DURATION"])},
            "churn": {"connections": int(e["PLAN_CHURN_CONNS"]),
                      "duration_s": float(e["PLAN_CHURN_DURATION"])},
            "fixed": {"connections": int(e["PLAN_FIXED_CONNS"]), "rate": int(e["PLAN_FIXED_RATE"]),
                      "python_rate": int(e["PLAN_PY_FIXED_RATE"]),
                      "mode": e["PLAN_FIXED_MODE"], "duration_s": float(e["PLAN_FIXED_DURATION"])},
            "cpu": {"connections": int(e["PLAN_CPU_CONNS"]), "work_us": int(e["PLAN_CPU_WORK"]),
                    "duration_s": float(e["PLAN_CPU_DURATION"])},
        },
        "abuse": {"kind": e["PLAN_ABUSE_KIND"] or None, "abusers": int(e["PLAN_ABUSE_ABUSERS"]),
                  "good": int(e["PLAN_ABUSE_GOOD"]), "duration_s": float(e["PLAN_ABUSE_DURATION"])},
        "extra": {"scenarios": e["PLAN_EXTRA"].split(), "connections": steps(e["PLAN_EXTRA_STEPS"]),
                  "duration_s": float(e["PLAN_EXTRA_DURATION"]),
                  "models": {"threaded": "threaded-NAME", "async": "async-NAME"}},
        # --rtt-ms: these scenarios ran through scripts/cluster.sh --local 1 (issue 19).
        "rtt": {"ms": float(e["PLAN_RTT_MS"]) if e.get("PLAN_RTT_MS") else 0.0,
                "scenarios": e.get("PLAN_RTT_SCENARIOS", "").split()},
        "sweep": {"asked": e.get("PLAN_SWEEP") == "1", "script": e.get("PLAN_SWEEP_SCRIPT") == "1"},
        "scale": {"asked": e.get("PLAN_SCALE") == "1", "script": e.get("PLAN_SCALE_SCRIPT") == "1",
                  "args": e.get("PLAN_SCALE_ARGS", "").split()},
    }
    with open(out, "w") as f:
        json.dump(plan, f, indent=2)


def _tsv_value(v):
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return "%.6g" % v
    return str(v)


def step_cores(st, side):
    """Cores a side ("server" or "loadgen") used in a loadgen step: (user + sys) / duration_s,
    or None when the step has no such figures."""
    cpu, dur = get(st, side, "cpu_s"), num(st.get("duration_s"))
    if not isinstance(cpu, dict) or not dur:
        return None
    user, sys_ = num(cpu.get("user")), num(cpu.get("sys"))
    return None if user is None or sys_ is None else (user + sys_) / dur


def cmd_steps_tsv(out, label, path, *cols):
    """steps-tsv TSV LABEL JSON COLUMN=PATH...: appends one row per step of a loadgen JSON to TSV
    (header first if new): LABEL, then each dotted PATH of the step ("NaN" if absent). Computed
    columns: bad = errors + timeouts + mismatches + failed connects; server_cores and
    loadgen_cores = that side's user + sys CPU seconds / the step's duration; PATH/PATH
    divides."""
    cols = [c.split("=", 1) for c in cols]
    doc = load_json(path) or {"steps": []}
    new = not os.path.exists(out)
    with open(out, "a") as f:
        if new:
            f.write("\t".join(["run"] + [c[0] for c in cols]) + "\n")
        for st in doc.get("steps", []):
            row = [label]
            for _, p in cols:
                if p == "bad":
                    r, c = st.get("requests", {}), st.get("connections", {})
                    v = sum(r.get(k, 0) for k in ("errors", "timeouts", "mismatches")) + c.get("failed", 0)
                elif p in ("server_cores", "loadgen_cores"):
                    v = step_cores(st, p.split("_")[0])
                else:
                    parts = [get_path(st, q) for q in p.split("/")]
                    v = parts[0]
                    if len(parts) == 2:
                        v = parts[0] / parts[1] if None not in parts and parts[1] else None
                row.append(_tsv_value(v))
            f.write("\t".join(row) + "\n")


def cmd_lab_meta(out, lab, title, quick, scpu, lcpu, elapsed=None):
    """lab-meta DIR LAB TITLE QUICK SERVER_CPUS LOADGEN_CPUS [ELAPSED_S]: writes DIR/lab.json."""
    with open(os.path.join(out, "commands.txt")) as f:
        commands = [l.rstrip("\n") for l in f]
    meta = {"schema": "tvsa-lab/1", "lab": int(lab), "complete": True, "title": title,
            "quick": quick == "1",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg": open("/proc/loadavg").read().split()[:3],
            "cores_online": os.cpu_count(), "server_cpus": scpu, "loadgen_cpus": lcpu,
            "commands": commands}
    if elapsed is not None:
        meta["elapsed_s"] = int(elapsed)
    with open(os.path.join(out, "lab.json"), "w") as f:
        json.dump(meta, f, indent=2)


def cmd_align(path):
    """align TSV: prints a TSV as aligned columns (column(1) is not everywhere)."""
    rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    if rows:
        n = max(map(len, rows))
        w = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(n)]
        for r in rows:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())


def stopped_line(path):
    """The server's `stopped` JSON line from its stdout file, or {}."""
    st = {}
    try:
        for line in open(path):
            if '"event":"stopped"' in line:
                st = json.loads(line)
    except (OSError, ValueError):
        pass
    return st


def cmd_chat_stopped_row(tsv, run, k, path, rc):
    """chat-stopped-row TSV RUN K STDOUT RC: the chat server's stopped-line figures as a row."""
    st = stopped_line(path)
    row = [run, k] + [st.get(key, "NaN") for key in ("lines_broadcast", "dropped_backlog",
                                                   "dropped_stalled")]
    row += [st.get("rusage", {}).get("maxrss_kib", "NaN"), rc]
    with open(tsv, "a") as f:
        f.write("\t".join(map(str, row)) + "\n")


def cmd_chat_plot(src, dst, k):
    """chat-plot SUMMARY.TSV OUT.TSV K: per chat server, delivered ratio and p99 with 0 and K
    stalled clients."""
    rows = [l.rstrip("\n").split("\t") for l in open(src)]
    head, rows = rows[0], rows[1:]
    col = {h: i for i, h in enumerate(head)}
    out = {}
    for r in rows:
        out.setdefault(r[0], {})[r[col["stalled"]]] = r
    with open(dst, "w") as f:
        for run in ("threaded-queued", "threaded-naive", "async-queued", "async-naive"):
            g = out.get(run, {})
            pick = lambda s, c: g.get(s, [])[col[c]] if s in g else "NaN"
            f.write("\t".join([run, pick("0", "delivered_ratio"), pick(k, "delivered_ratio"),
                               pick("0", "p99_us"), pick(k, "p99_us")]) + "\n")


def cmd_dnsq_row(tsv, case, retries, path):
    """dnsq-row TSV CASE RETRIES JSON: one dnsq single-name run as a row."""
    try:
        d = json.load(open(path))
        r = d["results"][0]
        row = [case, retries, d["timeout_ms"], r["tries"], "%.1f" % d["elapsed_ms"], r["status"],
               r.get("error", "").replace(" ", "_") or "-"]
    except (OSError, ValueError, KeyError, IndexError):
        row = [case, retries, "NaN", "NaN", "NaN", "NaN", "no_json"]
    with open(tsv, "a") as f:
        f.write("\t".join(map(str, row)) + "\n")


def cmd_names_row(tsv, case, server, model, path, tpath):
    """names-row TSV CASE SERVER MODEL JSON TIMEFILE: one dnsq --file run as a row (peak RSS
    from /usr/bin/time's output)."""
    try:
        d = json.load(open(path))
        row = [case, server, model, d["names"], d["ok"], d["failed"], "%.1f" % d["elapsed_ms"]]
    except (OSError, ValueError, KeyError):
        row = [case, server, model, "NaN", "NaN", "NaN", "NaN"]
    try:
        row.append(open(tpath).read().split()[-1])
    except (OSError, IndexError):
        row.append("NaN")
    with open(tsv, "a") as f:
        f.write("\t".join(map(str, row)) + "\n")


# --------------------------------------------------------------------------------------------
# make bench (scripts/bench.sh): each point's figures from loadgen, epoll-client or dnsperf,
# best round kept, and the verdicts under the saturation rule.


def parse_dnsperf(text):
    """The figures of dnsperf's Statistics section: sent, completed, lost, qps, run_s."""
    out = {}
    keys = {"Queries sent:": "sent", "Queries completed:": "completed", "Queries lost:": "lost",
            "Queries per second:": "qps", "Run time (s):": "run_s"}
    for line in text.splitlines():
        line = line.strip()
        for k, name in keys.items():
            if line.startswith(k):
                try:
                    out[name] = float(line[len(k):].split()[0])
                except (IndexError, ValueError):
                    pass
    return out


def bench_point(d, name, rnd):
    """One point of one round as a dict (rps, server_cores, client_cores, us_per_req of the
    server, client_us_per_req, p99, conns, bad, lost), or None when it wrote nothing."""
    base = os.path.join(d, "%s.r%d" % (name, rnd))
    doc = load_json(base + ".json")
    side = load_json(base + ".cpu.json") or {}
    if isinstance(get(doc, "steps"), list):          # loadgen
        st = get(doc, "steps", 0)
        dur = num(get(st, "duration_s"))
        if st is None or not dur:
            return None
        cpu = lambda who: ((num(get(st, who, "cpu_s", "user")) or 0) +
                           (num(get(st, who, "cpu_s", "sys")) or 0)) / dur
        r = get(st, "requests") or {}
        return {"rps": num(r.get("per_sec")), "server_cores": cpu("server"),
                "client_cores": cpu("loadgen"),
                "us_per_req": num(get(st, "server", "cpu_us_per_request")),
                "client_us_per_req": num(get(st, "loadgen", "cpu_us_per_request")),
                "p99": num(get(st, "latency_us", "p99")),
                "conns": num(get(st, "connections", "established")),
                "bad": sum(num(r.get(k)) or 0 for k in ("errors", "mismatches", "timeouts")),
                "lost": num(get(st, "queries", "lost")),
                "rss_per_conn": num(get(st, "server", "rss_per_conn_bytes"))}
    wall = num(side.get("wall_s"))
    if doc is not None and num(doc.get("per_sec")) is not None:    # epoll-client
        done = num(doc.get("requests")) or 0
        dur = num(doc.get("duration_s")) or wall
        ccpu = (num(get(doc, "cpu_s", "user")) or 0) + (num(get(doc, "cpu_s", "sys")) or 0)
        scpu = num(side.get("server_cpu_s"))
        return {"rps": num(doc["per_sec"]), "client_cores": ccpu / dur if dur else None,
                "server_cores": scpu / wall if scpu is not None and wall else None,
                "us_per_req": scpu * 1e6 / done if scpu is not None and done else None,
                "client_us_per_req": num(doc.get("cpu_us_per_request")),
                "p99": None, "conns": num(doc.get("connections")),
                "bad": (num(doc.get("errors")) or 0) + (num(doc.get("mismatches")) or 0)}
    try:
        with open(base + ".txt") as f:
            dp = parse_dnsperf(f.read())
    except OSError:
        return None
    if "qps" not in dp:
        return None
    done = dp.get("completed") or 0
    scpu, ccpu = num(side.get("server_cpu_s")), num(side.get("client_cpu_s"))
    return {"rps": dp["qps"], "server_cores": scpu / wall if scpu is not None and wall else None,
            "client_cores": ccpu / wall if ccpu is not None and wall else None,
            "us_per_req": scpu * 1e6 / done if scpu is not None and done else None,
            "client_us_per_req": ccpu * 1e6 / done if ccpu is not None and done else None,
            "p99": None, "conns": 100.0, "bad": 0, "lost": dp.get("lost")}


def bench_best(d, name, rounds):
    """(best round's point by req/s or None, bad summed over every round, rounds with no data,
    lost queries summed): best-of-N must not hide a failing round, so bad counts them all (lost
    queries included; a round with no data counts 1)."""
    best, bad, missing, lost = None, 0, 0, 0
    for rnd in range(1, rounds + 1):
        p = bench_point(d, name, rnd)
        if p is None:
            missing += 1
            bad += 1
            continue
        lost += p.get("lost") or 0
        bad += p["bad"] + (p.get("lost") or 0)
        if best is None or (p["rps"] or 0) > (best["rps"] or 0):
            best = p
    return best, bad, missing, lost


def _f(v, fmt):
    v = num(v)
    return "-" if v is None else fmt % v


def cmd_bench_report(d, rounds, conns, big, dns_servers=""):
    """bench-report DIR ROUNDS CONNS BIG [DNS_SERVERS]: make bench's table and verdicts."""
    rounds = int(rounds)
    names = ["async-echo", "bare-epoll-echo", "async-echo-api-event", "threaded-echo",
             "bare-thread-echo", "epoll-client"]
    dns = dns_servers.split()
    for s in dns:
        names += ["%s-loadgen" % s, "%s-dnsperf" % s]
    pts = {n: bench_best(d, n, rounds) for n in names}
    pts["async-echo-%s" % big] = bench_best(d, "async-echo-%s" % big, 1)
    label = {"epoll-client": "epoll-client -> async-echo"}
    print("%-28s %6s %10s %8s %9s %9s %8s %8s %5s" % ("run (client -> server)", "conns", "req/s",
          "p99 us", "cli us/rq", "srv us/rq", "srv cpu", "cli cpu", "bad"))
    for n in names + ["async-echo-%s" % big]:
        p, bad = pts[n][:2]
        if p is None:
            print("%-28s %s" % (label.get(n, n), "no data (see %s.err)" % n))
            continue
        print("%-28s %6s %10s %8s %9s %9s %8s %8s %5d" % (
            label.get(n, n), _f(p["conns"], "%d"), _f(p["rps"], "%.0f"), _f(p["p99"], "%d"),
            _f(p["client_us_per_req"], "%.2f"), _f(p["us_per_req"], "%.2f"),
            _f(p["server_cores"], "%.2f"), _f(p["client_cores"], "%.2f"), bad))
    print()
    print("srv cpu / cli cpu: CPU seconds per second (1.00 = one core busy). A req/s verdict needs"
          " both servers at >= %.2f and the clients below %.2f." % (SATURATED_CORES, CLIENT_BOUND_CORES))
    p = lambda n: pts[n][0] or {}
    for real, bare, title in (("async-echo", "bare-epoll-echo", "async-echo / bare-epoll-echo"),
                              ("async-echo-api-event", "bare-epoll-echo", "async-echo --api event / bare"),
                              ("threaded-echo", "bare-thread-echo", "threaded-echo / bare-thread-echo")):
        print("%-34s %s" % (title, bench_verdict(p(real), p(bare), 0.90)))
    lg, ec = p("async-echo"), p("epoll-client")
    if lg.get("rps") and ec.get("rps"):
        print("%-34s %s" % ("loadgen / epoll-client", client_verdict(lg, ec)))
    if lg.get("us_per_req") and lg.get("client_us_per_req"):
        r = lg["us_per_req"] / lg["client_us_per_req"]
        print("%-34s %.3f  %s   (goal >= 1.00: loadgen %.2f us, server %.2f us)" % (
            "server / loadgen CPU per request", r, "ok" if r >= 1.0 else "MISSED",
            lg["client_us_per_req"], lg["us_per_req"]))
    for s in dns:
        a, b = p("%s-loadgen" % s), p("%s-dnsperf" % s)
        _, _, missing, lost = pts["%s-dnsperf" % s]
        if not a.get("rps") or not b.get("rps"):
            print("%-34s no data" % ("%s: loadgen vs dnsperf" % s))
            continue
        r = a["rps"] / b["rps"]
        cpu_ok = (a.get("client_us_per_req") is not None and b.get("client_us_per_req") is not None
                  and a["client_us_per_req"] <= b["client_us_per_req"])
        print("%-34s %.3f  %s   (goal >= 1.00 queries/s; CPU per query loadgen %s us, dnsperf %s us: %s;"
              " dnsperf lost %d over %d rounds%s: %s)" % (
                  "%s: loadgen / dnsperf" % s, r, "ok" if r >= 1.0 else "MISSED",
                  _f(a.get("client_us_per_req"), "%.2f"), _f(b.get("client_us_per_req"), "%.2f"),
                  "ok" if cpu_ok else "MISSED", lost, rounds,
                  ", %d with no output" % missing if missing else "",
                  "ok" if lost == 0 and not missing else "MISSED"))
    b = pts["async-echo-%s" % big][0]
    if b:
        print("async-echo at %s connections: %s established, %s req/s, p99 %s us, server RSS/conn %s B" % (
            big, _f(b["conns"], "%d"), _f(b["rps"], "%.0f"), _f(b["p99"], "%d"),
            _f(b.get("rss_per_conn"), "%.0f")))


# switch-cost.json (schema tvsa-switch-cost/1, bin/switch-cost --json): the measures read by name.
SWITCH_MEASURES = ("coro", "thread_futex", "thread_pipe", "swapcontext", "fcontext_raw",
                   "libevent_callback", "function")
SWITCH_GOAL = 0.1       # issue 15: a coroutine switch at most a tenth of a pinned kernel switch


def switch_costs(doc):
    """{measure: ns} of doc's results.MEASURE.ns, plus "ratio" (coro over thread_futex:
    goal.coro_over_thread_futex, else computed), "goal_max" and "met"; None for a document of
    another schema (or none)."""
    if not isinstance(doc, dict) or doc.get("schema") != "tvsa-switch-cost/1":
        return None
    out = {k: num(get(doc, "results", k, "ns")) for k in SWITCH_MEASURES}
    ratio = num(get(doc, "goal", "coro_over_thread_futex"))
    if ratio is None and out["coro"] is not None and out["thread_futex"]:
        ratio = out["coro"] / out["thread_futex"]
    out["ratio"] = ratio
    out["goal_max"] = num(get(doc, "goal", "max")) or SWITCH_GOAL
    out["met"] = None if ratio is None else ratio <= out["goal_max"]
    return out


def cmd_switch_report(path):
    """switch-report FILE: make bench's lines for bin/switch-cost --json: every figure, the goal."""
    doc = load_json(path)
    c = switch_costs(doc)
    if c is None:
        print("switch cost: no figures (see %s)" % path)
        return
    print("switch cost, ns per operation (bin/switch-cost, one pinned CPU, median of %s rounds):"
          % _f(doc.get("rounds"), "%d"))
    print("  " + ", ".join("%s %s" % (k, _f(c[k], "%.1f")) for k in SWITCH_MEASURES))
    print("%-34s %s  %s   (goal <= %.2f: a coroutine switch at most 1/%d of a pinned kernel"
          " thread switch, same run: coro %s ns, thread_futex %s ns)" % (
              "coro / thread_futex switch", _f(c["ratio"], "%.4f"),
              "-" if c["met"] is None else "ok" if c["met"] else "MISSED", c["goal_max"],
              round(1 / c["goal_max"]), _f(c["coro"], "%.1f"), _f(c["thread_futex"], "%.1f")))


COMMANDS = {
    "get": cmd_get,
    "report-steps": cmd_report_steps,
    "record-run": cmd_record_run,
    "run-noise": cmd_run_noise,
    "env": cmd_env,
    "plan": cmd_plan,
    "steps-tsv": cmd_steps_tsv,
    "lab-meta": cmd_lab_meta,
    "align": cmd_align,
    "chat-stopped-row": cmd_chat_stopped_row,
    "chat-plot": cmd_chat_plot,
    "dnsq-row": cmd_dnsq_row,
    "names-row": cmd_names_row,
    "bench-report": cmd_bench_report,
    "switch-report": cmd_switch_report,
}


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help") or argv[1] not in COMMANDS:
        sys.stderr.write("usage: tvsa_json.py COMMAND ARGS...\n")
        for name, fn in COMMANDS.items():
            sys.stderr.write("  %s\n" % (fn.__doc__ or name).split("\n")[0])
        return 2
    fn = COMMANDS[argv[1]]
    try:
        inspect.signature(fn).bind(*argv[2:])
    except TypeError as e:
        sys.stderr.write("tvsa_json.py %s: %s\nusage: %s\n" % (argv[1], e, fn.__doc__.split(":")[0]))
        return 2
    try:
        fn(*argv[2:])
    except BrokenPipeError:
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
