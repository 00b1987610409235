#!/usr/bin/env python3
"""Turns one scripts/compare.sh results directory into summary.md and the plots' data files.

Usage: scripts/summarize.py DIR

Reads DIR/plan.json, env.json, runs.jsonl, complexity.json, loadgen/*.json and
servers/*.stopped.json (any of them may be missing: the cell says n/a). Writes DIR/summary.md
(the textbook table with measured figures and verdicts, then every step) and DIR/plots/data/*.tsv
for scripts/plots.sh. Python 3 standard library only.
"""
import json
import math
import os
import sys

MODELS = [
    ("threaded-pool50", "threaded `--pool 50`"),
    ("threaded-tpc", "threaded, 1 thread/conn (8 MiB stacks)"),
    ("async", "async (1 thread, libevent)"),
]
NA = "n/a"


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
    """obj[k1][k2]... or None when any level is missing."""
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj):
            obj = obj[k]
        else:
            return None
    return obj


def num(v):
    """v as a float if it is a finite number, else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class Results:
    def __init__(self, d):
        self.dir = d
        self.plan = load_json(os.path.join(d, "plan.json")) or {}
        self.env = load_json(os.path.join(d, "env.json")) or {}
        self.complexity = load_json(os.path.join(d, "complexity.json"))
        self.runs = {}
        try:
            with open(os.path.join(d, "runs.jsonl")) as f:
                for line in f:
                    line = line.strip()
                    if line:
                        r = json.loads(line)
                        self.runs[r["tag"]] = r
        except (OSError, ValueError, KeyError):
            pass

    def loadgen(self, scenario, model):
        return load_json(os.path.join(self.dir, "loadgen", "%s-%s.json" % (scenario, model)))

    def steps(self, scenario, model):
        return get(self.loadgen(scenario, model), "steps") or []

    def stopped(self, scenario, model):
        return load_json(os.path.join(self.dir, "servers", "%s-%s.stopped.json" % (scenario, model)))

    def bound_us(self):
        return 1000.0 * (num(self.plan.get("p99_bound_ms")) or 1000.0)


# --------------------------------------------------------------------------------------------
# Formatting


def fmt_int(v):
    v = num(v)
    return NA if v is None else "{:,}".format(int(round(v)))


def fmt_rate(v):
    v = num(v)
    if v is None:
        return NA
    return "{:,.0f}".format(v) if v >= 100 else "{:.1f}".format(v)


def fmt_us(v):
    """Microseconds, shown in the unit that reads best."""
    v = num(v)
    if v is None:
        return NA
    if v >= 1e6:
        return "%.2f s" % (v / 1e6)
    if v >= 1000:
        return "%.1f ms" % (v / 1000)
    return "%.0f µs" % v


def fmt_bytes(v):
    v = num(v)
    if v is None:
        return NA
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= 1024 * 1024:
        return "%s%.1f MiB" % (sign, v / 1048576)
    if v >= 1024:
        return "%s%.1f KiB" % (sign, v / 1024)
    return "%s%.0f B" % (sign, v)


def fmt_num(v, digits=2):
    v = num(v)
    return NA if v is None else ("%." + str(digits) + "f") % v


# --------------------------------------------------------------------------------------------
# Figures for each row


def step_problems(st, bound_us):
    """Why a ramp step does not count as 'every connection established and served' (a list)."""
    why = []
    target = num(get(st, "connections", "target"))
    est = num(get(st, "connections", "established"))
    failed = num(get(st, "connections", "failed")) or 0
    if target is None or est is None or est < target:
        why.append("%s of %s established" % (fmt_int(est), fmt_int(target)))
    if failed:
        why.append("%s connects failed" % fmt_int(failed))
    for k in ("timeouts", "errors", "mismatches"):
        v = num(get(st, "requests", k)) or 0
        if v:
            why.append("%s %s" % (fmt_int(v), k))
    done = num(get(st, "requests", "completed"))
    if done is None or (target is not None and done < target):
        why.append("only %s requests completed" % fmt_int(done))
    p99 = num(get(st, "latency_us", "p99"))
    if p99 is None:
        why.append("no p99")
    elif p99 > bound_us:
        why.append("p99 %s > %s" % (fmt_us(p99), fmt_us(bound_us)))
    return why


def concurrency(res, model):
    """(highest good step or None, its step, first failing step above it with reasons)."""
    steps = res.steps("echo", model)
    best, best_step, fail = None, None, None
    for st in steps:
        target = num(get(st, "connections", "target"))
        why = step_problems(st, res.bound_us())
        if not why and target is not None and (best is None or target > best):
            best, best_step = target, st
    for st in steps:
        target = num(get(st, "connections", "target"))
        why = step_problems(st, res.bound_us())
        if why and target is not None and (best is None or target > best):
            fail = (target, why, st)
            break
    return best, best_step, fail


def concurrency_cell(res, model):
    if not res.steps("echo", model):
        return NA, None
    best, best_step, fail = concurrency(res, model)
    parts = []
    if best is None:
        parts.append("**none**")
    else:
        parts.append("**%s** (p99 %s)" % (fmt_int(best), fmt_us(get(best_step, "latency_us", "p99"))))
    if fail is not None:
        parts.append("at %s: %s" % (fmt_int(fail[0]), ", ".join(fail[1][:2])))
    else:
        parts.append("every step passed")
    return "; ".join(parts), best


def hold_step(res, model):
    """The largest hold step with per-connection figures (prefer fully established ones)."""
    steps = [s for s in res.steps("hold", model)
             if num(get(s, "server", "rss_per_conn_bytes")) is not None]
    full = [s for s in steps if num(get(s, "connections", "established")) is not None
            and num(get(s, "connections", "established")) >= (num(get(s, "connections", "target")) or 0)]
    pick = full or steps
    return pick[-1] if pick else None


def memory_cell(res, model):
    st = hold_step(res, model)
    if st is None:
        return NA, None
    rss = num(get(st, "server", "rss_per_conn_bytes"))
    vsz = num(get(st, "server", "vsz_per_conn_bytes"))
    kern = get(st, "server", "kernel_per_conn_bytes")
    text = "RSS **%s**, VSZ **%s**" % (fmt_bytes(rss), fmt_bytes(vsz))
    if isinstance(kern, dict):
        ks = num(kern.get("kernel_stack"))
        sk = num(kern.get("sock_mem"))
        extra = []
        if ks is not None:
            extra.append("kernel stack %s" % fmt_bytes(ks))
        if sk is not None:
            extra.append("socket buffers %s" % fmt_bytes(sk))
        if extra:
            text += "; " + ", ".join(extra) + " (system-wide)"
    elif num(kern) is not None:
        text += "; kernel %s (system-wide)" % fmt_bytes(kern)
    est = num(get(st, "connections", "established"))
    text += " per conn at %s held" % fmt_int(est)
    alive = hold_alive(st)
    if alive:
        text += " (" + alive + ")"
    return text, {"rss": rss, "vsz": vsz, "conns": est}


def hold_alive(st):
    """What the end-of-hold message on each connection showed, when some did not answer."""
    bad = []
    alive = num(get(st, "alive"))
    est = num(get(st, "connections", "established"))
    if alive is not None and est is not None and alive < est:
        bad.append("%s of %s answered" % (fmt_int(alive), fmt_int(est)))
    for k in ("timeouts", "errors", "mismatches"):
        v = num(get(st, "requests", k)) or 0
        if v:
            bad.append("%s %s" % (fmt_int(v), k))
    return "end check: " + ", ".join(bad) if bad else ""


def ctx_figures(res, model):
    """(switches per request, per second, rusage switches per request) of the fixed-load run."""
    st = get(res.steps("fixed", model), -1)
    if st is None:
        return None
    per_req = num(get(st, "server", "ctx_switches_per_request"))
    rate = num(get(st, "requests", "per_sec"))
    per_s = num(get(st, "server", "ctx_switches_per_sec"))
    if per_s is None and per_req is not None and rate is not None:
        per_s = per_req * rate
    ru = None
    stopped = res.stopped("fixed", model)
    done = num(get(st, "requests", "completed"))
    vol = num(get(stopped, "rusage", "ctx_switches", "voluntary"))
    inv = num(get(stopped, "rusage", "ctx_switches", "involuntary"))
    if vol is not None and inv is not None and done:
        ru = (vol + inv) / done
    return {"per_req": per_req, "per_s": per_s, "rusage_per_req": ru, "rate": rate,
            "p99": num(get(st, "latency_us", "p99")), "saturated": saturated_ctx(res, model)}


def saturated_ctx(res, model):
    """(connections, switches per request) of the closed-loop ramp at 1,000 connections (or the
    largest step below): the saturated view of context switching."""
    best = None
    for s in res.steps("echo", model):
        c = num(get(s, "connections", "target"))
        v = num(get(s, "server", "ctx_switches_per_request"))
        if c is not None and v is not None and c <= 1000 and (best is None or c > best[0]):
            best = (c, v)
    return best


def ctx_cell(res, model):
    f = ctx_figures(res, model)
    if f is None:
        return NA, None
    text = "**%s**/req, %s/s" % (fmt_num(f["per_req"]), fmt_rate(f["per_s"]))
    text += " at %s req/s" % fmt_rate(f["rate"])
    if f["rusage_per_req"] is not None:
        text += " (rusage, whole run: %s/req)" % fmt_num(f["rusage_per_req"])
    if f["saturated"] is not None:
        text += "; saturated ramp at %s conns: %s/req" % (fmt_int(f["saturated"][0]),
                                                          fmt_num(f["saturated"][1], 4))
    return text, f


def cpu_figures(res, model):
    st = get(res.steps("cpu", model), -1)
    if st is None:
        return None
    dur = num(get(st, "duration_s"))
    user = num(get(st, "server", "cpu_s", "user"))
    sys_ = num(get(st, "server", "cpu_s", "sys"))
    cores = (user + sys_) / dur if dur and user is not None and sys_ is not None else None
    return {"rate": num(get(st, "requests", "per_sec")), "p99": num(get(st, "latency_us", "p99")),
            "cores": cores, "threads": num(get(st, "server", "threads"))}


def cpu_cell(res, model):
    f = cpu_figures(res, model)
    if f is None:
        return NA, None
    text = "**%s** req/s, p99 %s" % (fmt_rate(f["rate"]), fmt_us(f["p99"]))
    if f["cores"] is not None:
        text += ", server used %.2f cores" % f["cores"]
    return text, f


def complexity_figures(res, model_dir):
    return get(res.complexity, "models", model_dir)


def complexity_cell(res, model_dir):
    m = complexity_figures(res, model_dir)
    if m is None:
        return NA, None
    t = m.get("total", {})
    text = "%s lines; %s lock/unlock, %s condvar, %s thread, %s callback-registration sites" % (
        fmt_int(t.get("lines")), fmt_int(t.get("lock_sites")), fmt_int(t.get("condvar_sites")),
        fmt_int(t.get("thread_sites")), fmt_int(t.get("callback_sites")))
    if m.get("missing"):
        text += " (missing: %s)" % ", ".join("`%s`" % p for p in m["missing"])
    return text, t


# --------------------------------------------------------------------------------------------
# Verdicts: one line, only saying "agrees" when the measurement does.


def verdict_concurrency(res, best):
    top = max((num(get(s, "connections", "target")) or 0 for m, _ in MODELS
               for s in res.steps("echo", m)), default=0)
    pool, tpc, asy = best.get("threaded-pool50"), best.get("threaded-tpc"), best.get("async")
    out = []
    if pool is not None:
        if pool <= 50:
            out.append("pool of 50: connections beyond 50 wait for a worker (agrees)")
        else:
            out.append("pool of 50 still passed at %s (disagrees: check the timeouts)" % fmt_int(pool))
    elif res.steps("echo", "threaded-pool50"):
        out.append("pool of 50 failed every step")
    if tpc is not None and top and tpc >= min(top, 10000):
        out.append("one thread per connection served %s too: ~50 is a pool size, not a thread limit"
                   % fmt_int(tpc))
    elif tpc is not None:
        out.append("one thread per connection stopped at %s" % fmt_int(tpc))
    if asy is not None and asy >= 10000:
        out.append("async served %s (agrees)" % fmt_int(asy))
    elif asy is not None and top and asy >= top:
        out.append("async passed every step up to %s (ramp top)" % fmt_int(asy))
    elif asy is not None:
        out.append("async stopped at %s (disagrees)" % fmt_int(asy))
    return "; ".join(out) if out else NA


def verdict_memory(mem):
    tpc, asy = mem.get("threaded-tpc"), mem.get("async")
    if not tpc or not asy:
        return NA
    out = []
    if tpc["vsz"] is not None and tpc["rss"] is not None:
        out.append("the 8 MB is VSZ (reserved stack: %s/conn), not RSS (%s/conn): "
                   "partly disagrees" % (fmt_bytes(tpc["vsz"]), fmt_bytes(tpc["rss"])))
    if asy["rss"] is not None:
        if tpc["rss"] and asy["rss"] < tpc["rss"]:
            out.append("async %s/conn, %.0f× less RSS than a thread (no coroutine: a bufferevent "
                       "and its buffers)" % (fmt_bytes(asy["rss"]), tpc["rss"] / max(asy["rss"], 1)))
        else:
            out.append("async %s/conn: not less than a thread (disagrees)" % fmt_bytes(asy["rss"]))
    return "; ".join(out)


def verdict_ctx(ctx):
    tpc, asy, pool = ctx.get("threaded-tpc"), ctx.get("async"), ctx.get("threaded-pool50")
    thr = tpc or pool
    if not thr or not asy or thr["per_req"] is None or asy["per_req"] is None:
        return NA
    out = []
    ratio = thr["per_req"] / max(asy["per_req"], 1e-9)
    if ratio >= 1.5:
        out.append("at the fixed load threads switch %.1f× more per request (agrees)" % ratio)
    else:
        out.append("at the fixed load every model switches about as often (%s vs %s per "
                   "request): each sleeps between requests (disagrees)"
                   % (fmt_num(thr["per_req"]), fmt_num(asy["per_req"])))
    ts, as_ = thr.get("saturated"), asy.get("saturated")
    if ts and as_ and ts[1] is not None and as_[1] is not None:
        if as_[1] < ts[1]:
            out.append("saturated, the event loop batches (%s vs %s per request at %s conns)"
                       % (fmt_num(as_[1], 4), fmt_num(ts[1], 4), fmt_int(as_[0])))
        else:
            out.append("saturated, no batching advantage (%s vs %s per request)"
                       % (fmt_num(as_[1], 4), fmt_num(ts[1], 4)))
    out.append("the async server has no user-level switching: it sleeps in epoll_wait")
    return "; ".join(out)


def verdict_cpu(cpu):
    tpc, asy, pool = cpu.get("threaded-tpc"), cpu.get("async"), cpu.get("threaded-pool50")
    thr = tpc or pool
    if not thr or not asy or thr["rate"] is None or asy["rate"] is None:
        return NA
    out = []
    if thr["cores"] is not None and thr["cores"] > 1.2:
        out.append("C has no GIL: threads used %.1f cores (disagrees with 'limited by GIL')"
                   % thr["cores"])
    elif thr["cores"] is not None:
        out.append("threads used only %.1f cores here (loadgen shares the CPUs)" % thr["cores"])
    if asy["rate"] < thr["rate"]:
        out.append("one event loop gets one core: %.1f× less throughput (agrees)"
                   % (thr["rate"] / max(asy["rate"], 1e-9)))
    else:
        out.append("async kept up with the threads here (disagrees)")
    return "; ".join(out)


def verdict_complexity(cx):
    thr, asy = cx.get("threaded"), cx.get("async")
    if not thr or not asy:
        return NA
    return ("threaded: %s lock/unlock + %s condvar sites (runtime and shared state); async: %s lock "
            "sites but %s callback registrations with explicit state — C callbacks, not structured "
            "concurrency" % (fmt_int(thr.get("lock_sites")), fmt_int(thr.get("condvar_sites")),
                             fmt_int(asy.get("lock_sites")), fmt_int(asy.get("callback_sites"))))


# --------------------------------------------------------------------------------------------
# summary.md


def md_row(cells):
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def noisy_note(res, scenario, verdict):
    """The verdict, with a warning when other programs took CPU during that scenario's runs."""
    worst = max((r[5] for r in noise(res) if r[0].startswith(scenario + "-")), default=0.0)
    if worst > NOISY_CORES:
        return verdict + " — *noisy: %.1f cores used by others, see Machine noise*" % worst
    return verdict


def main_table(res):
    lines = []
    head = ["Metric", "Textbook claim (threaded 50 / async)"] + [t for _, t in MODELS] + ["Verdict"]
    lines.append(md_row(head))
    lines.append(md_row(["---"] * len(head)))

    cells, best = {}, {}
    for m, _ in MODELS:
        cells[m], best[m] = concurrency_cell(res, m)
    lines.append(md_row(["Concurrent connections", "~50 / ~10,000+"]
                        + [cells[m] for m, _ in MODELS] + [noisy_note(res, "echo", verdict_concurrency(res, best))]))

    cells, mem = {}, {}
    for m, _ in MODELS:
        cells[m], mem[m] = memory_cell(res, m)
    lines.append(md_row(["Memory per connection", "~8 MB (stack) / ~few KB (coroutine)"]
                        + [cells[m] for m, _ in MODELS] + [noisy_note(res, "hold", verdict_memory(mem))]))

    cells, ctx = {}, {}
    for m, _ in MODELS:
        cells[m], ctx[m] = ctx_cell(res, m)
    lines.append(md_row(["Context switching", "OS-level (expensive) / user-level (cheap)"]
                        + [cells[m] for m, _ in MODELS] + [noisy_note(res, "fixed", verdict_ctx(ctx))]))

    cells, cpu = {}, {}
    for m, _ in MODELS:
        cells[m], cpu[m] = cpu_cell(res, m)
    lines.append(md_row(["CPU-bound work", "Limited by GIL / blocks event loop"]
                        + [cells[m] for m, _ in MODELS] + [noisy_note(res, "cpu", verdict_cpu(cpu))]))

    thr_text, thr = complexity_cell(res, "threaded")
    asy_text, asy = complexity_cell(res, "async")
    lines.append(md_row(["Complexity", "Locks, races / structured concurrency",
                         thr_text, "same source as `--pool 50`", asy_text,
                         verdict_complexity({"threaded": thr, "async": asy})]))
    return lines


def how_measured(res):
    p = res.plan
    sc = p.get("scenarios", {})
    pin = p.get("pinning", {})
    e, h, c = sc.get("echo", {}), sc.get("hold", {}), sc.get("cpu", {})
    f, ch = sc.get("fixed", {}), sc.get("churn", {})
    fixed_load = ("open loop at %s req/s" % fmt_int(f.get("rate")) if f.get("mode") == "rate"
                  else "closed loop with a think time aiming at %s req/s" % fmt_int(f.get("rate")))
    return [
        "- **Concurrent connections**: closed-loop `echo` ramp over %s connections, %s s a step, "
        "%s-byte messages, request timeout %s ms. A step passes when every connection is "
        "established, no request times out (a connection left waiting, unserved, shows up as a "
        "timeout), fails or mismatches, and p99 ≤ **%s ms**. The cell is the highest passing step; the "
        "first failing step above it follows with its reasons."
        % (", ".join(fmt_int(x) for x in e.get("connections", [])), fmt_num(e.get("duration_s"), 0),
           p.get("message_size", NA), p.get("request_timeout_ms", NA), p.get("p99_bound_ms", NA)),
        "- **Memory per connection**: `hold` ramp over %s connections (idle %s s, then one message "
        "each): (server RSS or VSZ at the step − before the first connection) / established "
        "connections, from /proc/PID/status. Kernel figures are system-wide deltas."
        % (", ".join(fmt_int(x) for x in h.get("connections", [])), fmt_num(h.get("duration_s"), 0)),
        "- **Context switching**: %s connections, %s, %s s; server voluntary + involuntary switches "
        "over every thread (/proc/PID/task) during the step, per completed request and per second "
        "(loadgen's figures). The rusage figure comes from the server's `stopped` line (getrusage, counts exited "
        "threads too) over its whole life, connects included."
        % (fmt_int(f.get("connections")), fixed_load, fmt_num(f.get("duration_s"), 0)),
        "- **CPU-bound work**: %s connections, closed loop, server started with `--work-us %s` "
        "(CPU burnt per message), %s s. Cores used = server CPU time / step duration."
        % (fmt_int(c.get("connections")), c.get("work_us", NA), fmt_num(c.get("duration_s"), 0)),
        "- **Complexity**: `scripts/complexity.sh` over `threaded/{echo,chat}.c threaded/lib/*.c` "
        "and `async/{echo,chat}.c async/lib/*.c`: non-blank non-comment lines and call sites "
        "outside comments and strings (see complexity.json for each file).",
        "- **Pinning**: server on CPU %s, loadgen on CPU %s, for every run except **CPU-bound "
        "work**, where the server may use CPUs %s (it needs both cores to show what threads can "
        "do) and loadgen shares them."
        % (pin.get("server_cpus", NA), pin.get("loadgen_cpus", NA),
           pin.get("cpu_bound_server_cpus", NA)),
        "- **Churn** (below): %s connections each connect, send one request, close, repeat, for "
        "%s s." % (fmt_int(ch.get("connections")), fmt_num(ch.get("duration_s"), 0)),
    ]


def extra_table(res):
    head = ["Figure"] + [t for _, t in MODELS]
    lines = [md_row(head), md_row(["---"] * len(head))]
    row = ["Peak echo throughput (closed loop)"]
    for m, _ in MODELS:
        steps = [s for s in res.steps("echo", m) if num(get(s, "requests", "per_sec")) is not None]
        if not steps:
            row.append(NA)
            continue
        s = max(steps, key=lambda s: num(get(s, "requests", "per_sec")))
        row.append("%s req/s at %s conns" % (fmt_rate(get(s, "requests", "per_sec")),
                                             fmt_int(get(s, "connections", "target"))))
    lines.append(md_row(row))
    row = ["Churn: connect + 1 request + close"]
    for m, _ in MODELS:
        s = get(res.steps("churn", m), -1)
        if s is None:
            row.append(NA)
            continue
        cps = get(s, "connects_per_sec")
        if cps is None:
            cps = get(s, "requests", "per_sec")
        text = "%s conns/s, request p99 %s" % (fmt_rate(cps), fmt_us(get(s, "latency_us", "p99")))
        clat = get(s, "connect_latency_us", "p99")
        if clat is not None:
            text += ", connect p99 %s" % fmt_us(clat)
        row.append(text)
    lines.append(md_row(row))
    row = ["Fixed load p99"]
    for m, _ in MODELS:
        f = ctx_figures(res, m)
        row.append(fmt_us(f["p99"]) if f else NA)
    lines.append(md_row(row))
    ab = get(res.plan, "abuse") or {}
    if ab.get("kind"):
        row = ["Under %s (%s abusers): the %s good clients" % (ab["kind"], fmt_int(ab.get("abusers")),
                                                             fmt_int(ab.get("good")))]
        for m, _ in MODELS:
            s = get(res.steps("abuse", m), -1)
            if s is None:
                row.append(NA)
                continue
            row.append("%s req/s, p99 %s, %s timeouts, %s errors" % (
                fmt_rate(get(s, "requests", "per_sec")), fmt_us(get(s, "latency_us", "p99")),
                fmt_int(get(s, "requests", "timeouts")), fmt_int(get(s, "requests", "errors"))))
        lines.append(md_row(row))
    row = ["Server threads at the largest hold step"]
    for m, _ in MODELS:
        s = hold_step(res, m)
        row.append(fmt_int(get(s, "server", "threads")) if s else NA)
    lines.append(md_row(row))
    return lines


CORE_RUNS = (("echo", "Echo ramp (closed loop)"), ("hold", "Hold ramp (idle)"), ("churn", "Churn"),
             ("fixed", "Fixed load"), ("cpu", "CPU-bound (`--work-us`)"))


def steps_tables(res, runs=CORE_RUNS, models=None):
    out = []
    models = models or [m for m, _ in MODELS]
    for scenario, title in runs:
        out.append("### %s" % title)
        out.append("")
        head = ["model", "conns", "established", "req/s", "p50", "p99", "max", "timeouts",
                "errors", "mismatches", "RSS/conn", "VSZ/conn", "ctx sw/req", "threads"]
        out.append(md_row(head))
        out.append(md_row(["---"] * len(head)))
        for m in models:
            steps = res.steps(scenario, m)
            run = res.runs.get("%s-%s" % (scenario, m))
            if not steps:
                why = "no data"
                if run and run.get("loadgen_exit"):
                    why = "loadgen exited %s" % run["loadgen_exit"]
                out.append(md_row([m, why] + [""] * (len(head) - 2)))
                continue
            for s in steps:
                out.append(md_row([
                    m, fmt_int(get(s, "connections", "target")),
                    fmt_int(get(s, "connections", "established")),
                    fmt_rate(get(s, "requests", "per_sec")),
                    fmt_us(get(s, "latency_us", "p50")), fmt_us(get(s, "latency_us", "p99")),
                    fmt_us(get(s, "latency_us", "max")), fmt_int(get(s, "requests", "timeouts")),
                    fmt_int(get(s, "requests", "errors")), fmt_int(get(s, "requests", "mismatches")),
                    fmt_bytes(get(s, "server", "rss_per_conn_bytes")),
                    fmt_bytes(get(s, "server", "vsz_per_conn_bytes")),
                    fmt_num(get(s, "server", "ctx_switches_per_request")),
                    fmt_int(get(s, "server", "threads"))]))
        out.append("")
    return out


def complexity_table(res):
    head = ["file", "lines", "lock/unlock", "condvar", "thread", "atomic", "callback registrations"]
    out = [md_row(head), md_row(["---"] * len(head))]
    for model in ("threaded", "async"):
        m = complexity_figures(res, model) or {}
        for f in m.get("files", []):
            out.append(md_row(["`%s`" % f.get("path"), fmt_int(f.get("lines")),
                               fmt_int(f.get("lock_sites")), fmt_int(f.get("condvar_sites")),
                               fmt_int(f.get("thread_sites")), fmt_int(f.get("atomic_sites")),
                               fmt_int(f.get("callback_sites"))]))
        for path in m.get("missing", []):
            out.append(md_row(["`%s`" % path, "missing", "", "", "", "", ""]))
    return out


def rusage_table(res):
    head = ["run", "user s", "sys s", "voluntary sw", "involuntary sw", "max RSS",
            "accepted", "peak concurrent"]
    out = [md_row(head), md_row(["---"] * len(head))]
    runs = [(sc, m) for sc in ("echo", "hold", "churn", "fixed", "cpu") for m, _ in MODELS]
    runs += [(sc, m) for sc in get(res.plan, "extra", "scenarios") or [] for m in ("threaded", "async")]
    for scenario, m in runs:
        st = res.stopped(scenario, m)
        if st is None:
            continue
        ru = st.get("rusage", {})
        maxrss = num(ru.get("maxrss_kib"))
        out.append(md_row(["%s-%s" % (scenario, m), fmt_num(ru.get("user_s")),
                           fmt_num(ru.get("sys_s")),
                           fmt_int(get(ru, "ctx_switches", "voluntary")),
                           fmt_int(get(ru, "ctx_switches", "involuntary")),
                           fmt_bytes(maxrss * 1024 if maxrss is not None else None),
                           fmt_int(st.get("connections_accepted")),
                           fmt_int(st.get("peak_concurrent"))]))
    return out


def noise(res):
    """Per run: (tag, wall s, machine busy cores, server cores, loadgen cores, other cores)."""
    out = []
    for tag, r in res.runs.items():
        busy, wall = num(r.get("machine_busy_cpu_s")), num(r.get("measured_wall_s"))
        if busy is None or not wall:
            continue
        st = res.stopped(r.get("scenario"), r.get("model"))
        srv = (num(get(st, "rusage", "user_s")) or 0) + (num(get(st, "rusage", "sys_s")) or 0)
        lg = 0.0
        for step in res.steps(r.get("scenario"), r.get("model")):
            lg += (num(get(step, "loadgen", "cpu_s", "user")) or 0) + \
                  (num(get(step, "loadgen", "cpu_s", "sys")) or 0)
        out.append((tag, wall, busy / wall, srv / wall, lg / wall, (busy - srv - lg) / wall))
    return out


def noise_table(rows):
    head = ["run", "seconds", "machine busy (cores)", "server", "loadgen (measuring)",
            "everything else"]
    out = [md_row(head), md_row(["---"] * len(head))]
    for tag, wall, busy, srv, lg, other in rows:
        out.append(md_row([tag, "%.1f" % wall, "%.2f" % busy, "%.2f" % srv, "%.2f" % lg,
                           ("**%.2f**" if other > NOISY_CORES else "%.2f") % other]))
    return out


NOISY_CORES = 0.3


def problems(res):
    out = []
    for tag, r in sorted(res.runs.items()):
        if r.get("loadgen_exit"):
            out.append("- `%s`: loadgen exited %s (logs/%s.loadgen.log)" % (tag, r["loadgen_exit"], tag))
        if r.get("server_exit"):
            out.append("- `%s`: server exited %s (servers/%s.stderr)" % (tag, r["server_exit"], tag))
    return out


def write_summary(res):
    env = res.env
    libs = env.get("libraries", {})
    quick = res.plan.get("quick")
    lines = [
        "# Threads vs async: the textbook table, measured",
        "",
        "%s run of `scripts/compare.sh`, %s, git `%s`%s." % (
            "Quick (smoke-test sizes, not for conclusions)" if quick else "Full",
            env.get("date_utc", NA), str(env.get("git_revision", NA))[:12],
            " with %s uncommitted files" % env["git_uncommitted_files"]
            if env.get("git_uncommitted_files") else ""),
        "Machine: %s, %s cores, %s; libevent %s, jansson %s; fd limit %s; load average at start %s." % (
            env.get("cpu_model", NA), env.get("cores_online", NA), env.get("kernel", NA),
            libs.get("libevent", NA), libs.get("jansson", NA), get(env, "fd_limit", "hard") or NA,
            (env.get("loadavg_at_start") or NA).split(" ")[0]),
        "",
        "Bold figures are the ones each row is about; `n/a` means the run produced no figure "
        "(see *Problems*). The server was pinned to one CPU and loadgen to another, **except for "
        "the CPU-bound row, where the server had both cores** (and loadgen shared them).",
        "",
    ]
    rows = noise(res)
    worst = max(rows, key=lambda r: r[5]) if rows else None
    if worst is not None and worst[5] > NOISY_CORES:
        lines += ["**Noisy machine:** other programs (or loadgen while connecting) used up to "
                  "%.2f cores during `%s` (see *Machine noise*): treat these figures as rough."
                  % (worst[5], worst[0]), ""]
    lines += main_table(res)
    lines += ["", "## How each row was measured", ""] + how_measured(res)
    lines += ["", "## Other figures", ""] + extra_table(res)
    if res.complexity:
        lines += ["", "### Complexity by file", ""] + complexity_table(res)
    lines += ["", "## Every step", ""] + steps_tables(res)
    extra = get(res.plan, "extra", "scenarios") or []
    if extra:
        lines += ["## Other servers", "",
                  "Each run once with its default flags (threaded: one thread per connection), "
                  "server and loadgen pinned as above. Not part of the textbook table.", ""]
        lines += steps_tables(res, [(x, "`%s` (threaded-%s vs async-%s)" % (x, x, x)) for x in extra],
                              ["threaded", "async"])
    lines += ["## Server totals (`stopped` lines, getrusage over the server's life)", ""]
    lines += rusage_table(res)
    if rows:
        lines += ["", "## Machine noise", "",
                  "CPU time of the whole machine (/proc/stat) from each server's start to "
                  "loadgen's end, in cores, split into the server (its `stopped` rusage), loadgen "
                  "(its measurement windows) and everything else (other programs, and loadgen "
                  "while connecting). On a quiet machine *everything else* is near 0.", ""]
        lines += noise_table(rows)
    probs = problems(res)
    lines += ["", "## Problems", ""] + (probs or ["None: every loadgen and server exited 0."])
    lines += ["", "## Plots", ""]
    for name, title in PLOTS:
        lines.append("- [%s](plots/%s.png)" % (title, name))
    lines.append("")
    with open(os.path.join(res.dir, "summary.md"), "w") as f:
        f.write("\n".join(lines))


# --------------------------------------------------------------------------------------------
# Plot data: one TSV per (scenario, model), NaN where a figure is missing (gnuplot skips it).

PLOTS = [
    ("throughput", "Throughput vs connections"),
    ("p99", "p99 latency vs connections"),
    ("rss_per_conn", "RSS per connection vs connections"),
    ("vsz_per_conn", "VSZ per connection vs connections"),
    ("ctx_per_request", "Context switches per request"),
    ("cpu_bound", "CPU-bound throughput"),
]


def tsv_num(v, scale=1.0):
    v = num(v)
    return "NaN" if v is None else "%.6g" % (v * scale)


def write_plot_data(res):
    d = os.path.join(res.dir, "plots", "data")
    os.makedirs(d, exist_ok=True)
    for m, _ in MODELS:
        with open(os.path.join(d, "echo-%s.tsv" % m), "w") as f:
            f.write("# connections\treq_per_s\tp99_ms\tctx_per_request\tpassed\n")
            for s in res.steps("echo", m):
                f.write("\t".join([
                    tsv_num(get(s, "connections", "target")),
                    tsv_num(get(s, "requests", "per_sec")),
                    tsv_num(get(s, "latency_us", "p99"), 1e-3),
                    tsv_num(get(s, "server", "ctx_switches_per_request")),
                    "0" if step_problems(s, res.bound_us()) else "1"]) + "\n")
        with open(os.path.join(d, "hold-%s.tsv" % m), "w") as f:
            f.write("# connections_established\trss_kib_per_conn\tvsz_kib_per_conn\n")
            for s in res.steps("hold", m):
                f.write("\t".join([
                    tsv_num(get(s, "connections", "established")),
                    tsv_num(get(s, "server", "rss_per_conn_bytes"), 1 / 1024),
                    tsv_num(get(s, "server", "vsz_per_conn_bytes"), 1 / 1024)]) + "\n")
    with open(os.path.join(d, "cpu.tsv"), "w") as f:
        f.write("# model\treq_per_s\tp99_ms\tcores_used\n")
        for m, _ in MODELS:
            c = cpu_figures(res, m) or {}
            f.write("%s\t%s\t%s\t%s\n" % (m, tsv_num(c.get("rate")), tsv_num(c.get("p99"), 1e-3),
                                          tsv_num(c.get("cores"))))
    with open(os.path.join(d, "fixed.tsv"), "w") as f:
        f.write("# model\tctx_per_request\tctx_per_s\n")
        for m, _ in MODELS:
            c = ctx_figures(res, m) or {}
            f.write("%s\t%s\t%s\n" % (m, tsv_num(c.get("per_req")), tsv_num(c.get("per_s"))))
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write("p99_bound_ms=%s\n" % tsv_num(res.plan.get("p99_bound_ms")))
        f.write("work_us=%s\n" % get(res.plan, "scenarios", "cpu", "work_us"))
        f.write("fixed_rate=%s\n" % get(res.plan, "scenarios", "fixed", "rate"))
        f.write("fixed_connections=%s\n" % get(res.plan, "scenarios", "fixed", "connections"))


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: scripts/summarize.py RESULTS_DIR\n")
        return 2
    if not os.path.isdir(argv[1]):
        sys.stderr.write("summarize: %s: not a directory\n" % argv[1])
        return 2
    res = Results(argv[1])
    write_plot_data(res)
    write_summary(res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
