#!/usr/bin/env python3
"""Turns one scripts/compare.sh results directory into summary.md and the plots' data files.

Usage: scripts/summarize.py DIR

Reads DIR/plan.json, env.json, complexity.json, switch-cost.json and each round's
DIR/rN/{runs.jsonl,loadgen/*.json,servers/*.stopped.json} (a directory without rN/ is read as
one round; any file may be missing: the cell says n/a). Every figure of the table is the median
over the rounds with its min-max spread; a verdict that compares two models states a difference
only when their ranges do not overlap. Writes DIR/summary.md and DIR/plots/data/*.tsv for
scripts/plots.sh. Python 3 standard library only.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tvsa_json import (TIMEOUT_FRACTION, compare_spreads, fmt_int, fmt_spread, fmt_us,  # noqa: E402
                       get, highest_prefix, load_json, num, read_runs, run_noise, server_bound,
                       spread, step_verdict)

# The columns when plan.json does not list them (results of an older compare.sh).
DEFAULT_MODELS = [
    ("threaded-pool50", "threaded `--pool 50`"),
    ("threaded-tpc", "threaded, 1 thread/conn (8 MiB stacks)"),
    ("async", "async (1 thread, libevent)"),
]
# complexity.json's model for each column.
COMPLEXITY_OF = {"threaded-pool50": "threaded", "threaded-tpc": "threaded", "async": "async",
                 "async-coro": "coro", "python-threads": "python-threads",
                 "python-asyncio": "python-asyncio"}
NA = "n/a"
NOISY_CORES = 0.3


# --------------------------------------------------------------------------------------------
# Reading


class Round:
    """One round's directory: runs.jsonl, loadgen/ and servers/."""

    def __init__(self, d, n):
        self.dir, self.n = d, n
        self.runs = read_runs(d)

    def loadgen(self, scenario, model):
        return load_json(os.path.join(self.dir, "loadgen", "%s-%s.json" % (scenario, model)))

    def steps(self, scenario, model):
        return get(self.loadgen(scenario, model), "steps") or []

    def stopped(self, scenario, model):
        return load_json(os.path.join(self.dir, "servers", "%s-%s.stopped.json" % (scenario, model)))


class Results:
    def __init__(self, d):
        self.dir = d
        self.plan = load_json(os.path.join(d, "plan.json")) or {}
        self.env = load_json(os.path.join(d, "env.json")) or {}
        self.complexity = load_json(os.path.join(d, "complexity.json"))
        self.switch = load_json(os.path.join(d, "switch-cost.json"))
        self.rounds = []
        n = 1
        while os.path.isdir(os.path.join(d, "r%d" % n)):
            self.rounds.append(Round(os.path.join(d, "r%d" % n), n))
            n += 1
        if not self.rounds:
            self.rounds = [Round(d, 1)]
        models = self.plan.get("models")
        if models and all("title" in m for m in models):
            self.models = [(m["label"], m["title"]) for m in models if not m.get("skipped")]
            self.skipped = [(m["label"], m["title"], m["skipped"]) for m in models if m.get("skipped")]
        else:
            self.models, self.skipped = list(DEFAULT_MODELS), []
        self.noisy = num(self.plan.get("noisy_cores")) or NOISY_CORES

    def labels(self):
        return [m for m, _ in self.models]

    def bound_us(self):
        return 1000.0 * (num(self.plan.get("p99_bound_ms")) or 1000.0)

    def per_round(self, fn, *args):
        """[fn(round, *args) for every round]."""
        return [fn(r, *args) for r in self.rounds]


# --------------------------------------------------------------------------------------------
# Formatting


def fmt_rate(v):
    v = num(v)
    if v is None:
        return NA
    return "{:,.0f}".format(v) if v >= 100 else "{:.1f}".format(v)


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


def num2(v):
    return fmt_num(v, 2)


def num4(v):
    return fmt_num(v, 4)


def bold_spread(s, fmt):
    """**median** (min–max): the median bold, the spread after it."""
    if s is None:
        return NA
    text = fmt_spread(s, fmt)
    med = fmt(s[0])
    return "**%s**%s" % (med, text[len(med):])


# --------------------------------------------------------------------------------------------
# Figures for each row, per round; then the spread over the rounds.


def concurrency_round(rnd, model, bound_us):
    """One round's echo ramp: best (prefix rule), its step, first failure, and the steps that
    passed with a few timeouts (within the pass rule)."""
    steps = rnd.steps("echo", model)
    if not steps:
        return None
    best, best_step, fail = highest_prefix(steps, bound_us)
    notes = []
    for st in steps:
        target = num(get(st, "connections", "target"))
        ok, _, nt = step_verdict(st, bound_us)
        if ok and nt and (best is not None and target is not None and target <= best):
            notes.append("%s passed with %s" % (fmt_int(target), ", ".join(nt)))
    return {"best": best, "best_step": best_step, "fail": fail, "notes": notes, "round": rnd.n}


def concurrency_cell(res, model):
    per = [x for x in res.per_round(concurrency_round, model, res.bound_us()) if x is not None]
    if not per:
        return NA, None
    best = spread([0 if p["best"] is None else p["best"] for p in per], low=True)
    parts = ["none" if best[2] == 0 else bold_spread(best, fmt_int)]
    fails = []
    for p in per:
        tag = "r%d " % p["round"] if len(res.rounds) > 1 else ""
        if p["fail"] is not None:
            fails.append("%sat %s: %s" % (tag, fmt_int(p["fail"][0]), ", ".join(p["fail"][1][:2])))
        else:
            fails.append("%severy step passed" % tag)
        for note in p["notes"]:
            fails.append("%s%s" % (tag, note))
    if len(set(f.split(" ", 1)[-1] for f in fails)) == 1 and len(fails) > 1:
        fails = [fails[0].split(" ", 1)[1] + " (every round)"]
    parts.append("; ".join(fails))
    return "; ".join(parts), {"best": best}


def hold_step(rnd, model):
    """The largest hold step with per-connection figures (prefer fully established ones)."""
    steps = [s for s in rnd.steps("hold", model)
             if num(get(s, "server", "rss_per_conn_bytes")) is not None]
    full = [s for s in steps if num(get(s, "connections", "established")) is not None
            and num(get(s, "connections", "established")) >= (num(get(s, "connections", "target")) or 0)]
    pick = full or steps
    return pick[-1] if pick else None


def hold_alive(st):
    """(text, mostly unserved) of the end-of-hold message on each connection."""
    bad = []
    alive = num(get(st, "alive"))
    est = num(get(st, "connections", "established"))
    unserved = alive is not None and est and alive < est / 2.0
    if alive is not None and est is not None and alive < est:
        bad.append("%s of %s answered" % (fmt_int(alive), fmt_int(est)))
    for k in ("timeouts", "errors", "mismatches"):
        v = num(get(st, "requests", k)) or 0
        if v:
            bad.append("%s %s" % (fmt_int(v), k))
    return ("end check: " + ", ".join(bad) if bad else ""), unserved


def memory_cell(res, model):
    sts = [s for s in res.per_round(hold_step, model) if s is not None]
    if not sts:
        return NA, None
    rss = spread([get(s, "server", "rss_per_conn_bytes") for s in sts])
    vsz = spread([get(s, "server", "vsz_per_conn_bytes") for s in sts])
    st = sts[0]
    alive, unserved = hold_alive(st)
    if unserved:
        # Most connections were never served: the figure is of a server that did nothing.
        text = "RSS %s, VSZ %s (not a result: most connections were never served)" % (
            fmt_spread(rss, fmt_bytes), fmt_spread(vsz, fmt_bytes))
    else:
        text = "RSS %s, VSZ %s" % (bold_spread(rss, fmt_bytes), bold_spread(vsz, fmt_bytes))
    kern = get(st, "server", "kernel_per_conn_bytes")
    if isinstance(kern, dict):
        extra = []
        ks = spread([get(s, "server", "kernel_per_conn_bytes", "kernel_stack") for s in sts])
        sk = spread([get(s, "server", "kernel_per_conn_bytes", "sock_mem") for s in sts])
        if ks is not None:
            extra.append("kernel stack %s" % fmt_spread(ks, fmt_bytes))
        if sk is not None:
            extra.append("socket buffers %s" % fmt_spread(sk, fmt_bytes))
        if extra:
            text += "; " + ", ".join(extra) + " (system-wide)"
    text += " per conn at %s held" % fmt_int(get(st, "connections", "established"))
    if alive:
        text += " (" + alive + ")"
    return text, {"rss": rss, "vsz": vsz, "unserved": unserved}


def saturated_ctx(rnd, model):
    """(connections, switches per request) of the closed-loop ramp at 1,000 connections (or the
    largest step below): the saturated view of context switching."""
    best = None
    for s in rnd.steps("echo", model):
        c = num(get(s, "connections", "target"))
        v = num(get(s, "server", "ctx_switches_per_request"))
        if c is not None and v is not None and c <= 1000 and (best is None or c > best[0]):
            best = (c, v)
    return best


def ctx_round(rnd, model):
    st = get(rnd.steps("fixed", model), -1)
    if st is None:
        return None
    per_req = num(get(st, "server", "ctx_switches_per_request"))
    rate = num(get(st, "requests", "per_sec"))
    per_s = num(get(st, "server", "ctx_switches_per_sec"))
    if per_s is None and per_req is not None and rate is not None:
        per_s = per_req * rate
    ru = None
    stopped = rnd.stopped("fixed", model)
    done = num(get(st, "requests", "completed"))
    vol = num(get(stopped, "rusage", "ctx_switches", "voluntary"))
    inv = num(get(stopped, "rusage", "ctx_switches", "involuntary"))
    if vol is not None and inv is not None and done:
        ru = (vol + inv) / done
    sat = saturated_ctx(rnd, model)
    return {"per_req": per_req, "per_s": per_s, "rusage_per_req": ru, "rate": rate,
            "p99": num(get(st, "latency_us", "p99")),
            "cpu_us": num(get(st, "server", "cpu_us_per_request")),
            "sat_conns": sat[0] if sat else None, "sat": sat[1] if sat else None}


def ctx_figures(res, model):
    per = [x for x in res.per_round(ctx_round, model) if x is not None]
    if not per:
        return None
    out = {k: spread([p[k] for p in per]) for k in per[0]}
    return out


def ctx_cell(res, model):
    f = ctx_figures(res, model)
    if f is None:
        return NA, None
    text = "%s/req, %s/s at %s req/s" % (bold_spread(f["per_req"], num2), fmt_spread(f["per_s"], fmt_rate),
                                         fmt_spread(f["rate"], fmt_rate))
    if f["cpu_us"] is not None:
        text += "; server CPU %s µs/req" % fmt_spread(f["cpu_us"], lambda v: fmt_num(v, 1))
    if f["rusage_per_req"] is not None:
        text += " (rusage, whole run: %s/req)" % fmt_spread(f["rusage_per_req"], num2)
    if f["sat"] is not None:
        text += "; saturated ramp at %s conns: %s/req" % (fmt_int(f["sat_conns"][0]),
                                                          fmt_spread(f["sat"], num4))
    return text, f


def cpu_round(rnd, model):
    st = get(rnd.steps("cpu", model), -1)
    if st is None:
        return None
    dur = num(get(st, "duration_s"))
    user = num(get(st, "server", "cpu_s", "user"))
    sys_ = num(get(st, "server", "cpu_s", "sys"))
    cores = (user + sys_) / dur if dur and user is not None and sys_ is not None else None
    return {"rate": num(get(st, "requests", "per_sec")), "p99": num(get(st, "latency_us", "p99")),
            "cores": cores, "threads": num(get(st, "server", "threads"))}


def cpu_figures(res, model):
    per = [x for x in res.per_round(cpu_round, model) if x is not None]
    if not per:
        return None
    return {k: spread([p[k] for p in per]) for k in per[0]}


def cpu_cell(res, model):
    f = cpu_figures(res, model)
    if f is None:
        return NA, None
    text = "%s req/s, p99 %s" % (bold_spread(f["rate"], fmt_rate), fmt_spread(f["p99"], fmt_us))
    if f["cores"] is not None:
        text += ", server used %s cores" % fmt_spread(f["cores"], num2)
    return text, f


def complexity_cell(res, model):
    key = COMPLEXITY_OF.get(model, model)
    if model == "threaded-tpc" and "threaded-pool50" in res.labels():
        return "same source as `--pool 50`", None
    m = get(res.complexity, "models", key)
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
# Verdicts: one line, only saying "agrees" when the measurement does, and "within noise" (with
# both ranges) when two models' ranges overlap.


def versus(name_a, a, name_b, b, fmt, what):
    """'A higher/lower than B' when the ranges do not overlap, else 'within noise'."""
    c = compare_spreads(a, b)
    if c is None:
        return None
    if c == "within noise":
        return "%s: %s %s and %s %s, within noise" % (what, name_a, fmt_spread(a, fmt), name_b,
                                                      fmt_spread(b, fmt))
    return "%s: %s %s, %s than %s %s" % (what, name_a, fmt_spread(a, fmt), c, name_b,
                                         fmt_spread(b, fmt))


def med(s):
    return None if s is None else s[0]


def in_python(figs, key, fmt, what):
    """The same comparison between the two Python columns (threads against asyncio), or None."""
    thr, asy = figs.get("python-threads"), figs.get("python-asyncio")
    a, b = get(thr, key), get(asy, key)
    if a is None or b is None:
        return None
    c = compare_spreads(b, a)
    if c == "within noise":
        return "in Python: %s, asyncio %s and threads %s, within noise" % (what, fmt_spread(b, fmt),
                                                                          fmt_spread(a, fmt))
    return "in Python: %s, asyncio %s, %s than threads %s" % (what, fmt_spread(b, fmt), c,
                                                              fmt_spread(a, fmt))


def verdict_concurrency(res, figs):
    top = max((num(get(s, "connections", "target")) or 0 for r in res.rounds for m in res.labels()
               for s in r.steps("echo", m)), default=0)
    g = lambda m: get(figs, m, "best")
    pool, tpc, asy = med(g("threaded-pool50")), med(g("threaded-tpc")), med(g("async"))
    out = []
    if pool is not None:
        if pool <= 50:
            out.append("pool of 50: connections beyond 50 wait for a worker (agrees)")
        else:
            out.append("pool of 50 still passed at %s (disagrees: check the timeouts)" % fmt_int(pool))
    if tpc is not None and top and tpc >= min(top, 10000):
        out.append("one thread per connection served %s too: ~50 is a pool size, not a thread limit"
                   % fmt_int(tpc))
    elif tpc is not None:
        out.append("one thread per connection stopped at %s" % fmt_spread(g("threaded-tpc"), fmt_int))
    if asy is not None and asy >= 10000:
        out.append("async served %s (agrees)" % fmt_int(asy))
    elif asy is not None and top and asy >= top:
        out.append("async passed every step up to %s (ramp top)" % fmt_int(asy))
    elif asy is not None:
        out.append("async stopped at %s (disagrees)" % fmt_spread(g("async"), fmt_int))
    v = versus("async", g("async"), "one thread per connection", g("threaded-tpc"), fmt_int,
               "async vs threads")
    if v:
        out.append(v)
    for m, title in res.models:
        if m not in ("threaded-pool50", "threaded-tpc", "async") and g(m) is not None:
            out.append("%s: %s" % (title, fmt_spread(g(m), fmt_int)))
    return "; ".join(out) if out else NA


def verdict_memory(res, figs):
    tpc, asy = figs.get("threaded-tpc"), figs.get("async")
    out = []
    if tpc and tpc["vsz"] is not None and tpc["rss"] is not None:
        out.append("the 8 MB is VSZ (reserved stack: %s/conn), not RSS (%s/conn): "
                   "partly disagrees" % (fmt_bytes(med(tpc["vsz"])), fmt_bytes(med(tpc["rss"]))))
    if tpc and asy and asy["rss"] is not None and tpc["rss"] is not None:
        c = compare_spreads(asy["rss"], tpc["rss"])
        if c == "lower":
            out.append("async %s/conn, %.0f× less RSS than a thread (a bufferevent and its buffers)"
                       % (fmt_spread(asy["rss"], fmt_bytes), med(tpc["rss"]) / max(med(asy["rss"]), 1)))
        elif c == "within noise":
            out.append("async %s and a thread %s per conn: within noise (disagrees)"
                       % (fmt_spread(asy["rss"], fmt_bytes), fmt_spread(tpc["rss"], fmt_bytes)))
        else:
            out.append("async %s/conn: not less than a thread (disagrees)" % fmt_spread(asy["rss"], fmt_bytes))
    coro = figs.get("async-coro")
    if coro and coro["rss"] is not None:
        out.append("coroutines: %s RSS/conn" % fmt_spread(coro["rss"], fmt_bytes))
    py = in_python(figs, "rss", fmt_bytes, "RSS per connection")
    if py:
        out.append(py)
    return "; ".join(out) if out else NA


def switch_cost_text(res):
    """The figures of switch-cost.json, read generically: every numeric leaf."""
    if not isinstance(res.switch, dict):
        return None
    leaves = []

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(prefix + [str(k)], x)
        elif num(v) is not None and prefix and prefix[-1] not in ("schema",):
            leaves.append("%s %s" % (".".join(prefix), "%d" % v if float(v).is_integer() else fmt_num(v, 1)))
    walk([], res.switch)
    return "switch cost (`bin/switch-cost --json`): " + ", ".join(leaves[:12]) if leaves else None


def verdict_ctx(res, figs):
    tpc, asy, pool = figs.get("threaded-tpc"), figs.get("async"), figs.get("threaded-pool50")
    thr = tpc or pool
    out = []
    if thr and asy and thr["per_req"] is not None and asy["per_req"] is not None:
        c = compare_spreads(thr["per_req"], asy["per_req"])
        ratio = med(thr["per_req"]) / max(med(asy["per_req"]), 1e-9)
        if c == "higher" and ratio >= 1.5:
            out.append("at the fixed load threads switch %.1f× more per request (agrees)" % ratio)
        elif c == "within noise":
            out.append("at the fixed load threads %s and async %s switches per request: within noise "
                       "(each sleeps between requests: disagrees)"
                       % (fmt_spread(thr["per_req"], num2), fmt_spread(asy["per_req"], num2)))
        else:
            out.append("at the fixed load every model switches about as often (%s vs %s per "
                       "request): each sleeps between requests (disagrees)"
                       % (fmt_spread(thr["per_req"], num2), fmt_spread(asy["per_req"], num2)))
        ts, as_ = thr.get("sat"), asy.get("sat")
        if ts is not None and as_ is not None:
            if compare_spreads(as_, ts) == "lower":
                out.append("saturated, the event loop batches (%s vs %s per request)"
                           % (fmt_spread(as_, num4), fmt_spread(ts, num4)))
            else:
                out.append("saturated, no batching advantage beyond noise (%s vs %s per request)"
                           % (fmt_spread(as_, num4), fmt_spread(ts, num4)))
        if thr.get("cpu_us") is not None and asy.get("cpu_us") is not None:
            v = versus("threads", thr["cpu_us"], "async", asy["cpu_us"], lambda v: fmt_num(v, 1),
                       "server CPU µs per request")
            if v:
                out.append(v)
    py = in_python(figs, "per_req", num2, "switches per request")
    if py:
        out.append(py)
    if "async-coro" not in res.labels():
        out.append("the async server has no user-level switching: it sleeps in epoll_wait")
    sw = switch_cost_text(res)
    if sw:
        out.append(sw)
    return "; ".join(out) if out else NA


def verdict_cpu(res, figs):
    tpc, asy, pool = figs.get("threaded-tpc"), figs.get("async"), figs.get("threaded-pool50")
    thr = tpc or pool
    out = []
    if thr and thr["cores"] is not None and med(thr["cores"]) > 1.2:
        out.append("C has no GIL: threads used %s cores (disagrees with 'limited by GIL')"
                   % fmt_spread(thr["cores"], lambda v: fmt_num(v, 1)))
    elif thr and thr["cores"] is not None:
        out.append("threads used only %s cores here (loadgen shares the CPUs)"
                   % fmt_spread(thr["cores"], lambda v: fmt_num(v, 1)))
    if thr and asy and thr["rate"] is not None and asy["rate"] is not None:
        c = compare_spreads(asy["rate"], thr["rate"])
        if c == "lower":
            out.append("one event loop gets one core: %.1f× less throughput (agrees)"
                       % (med(thr["rate"]) / max(med(asy["rate"]), 1e-9)))
        elif c == "within noise":
            out.append("async %s and threads %s req/s: within noise (disagrees)"
                       % (fmt_spread(asy["rate"], fmt_rate), fmt_spread(thr["rate"], fmt_rate)))
        else:
            out.append("async kept up with the threads here (disagrees)")
    py = in_python(figs, "rate", fmt_rate, "req/s")
    if py:
        out.append(py)
    py = figs.get("python-threads")
    if py and py["cores"] is not None:
        holds = med(py["cores"]) <= 1.2
        out.append("Python threads used %s cores: the GIL %s (in Python)"
                   % (fmt_spread(py["cores"], lambda v: fmt_num(v, 1)),
                      "holds them to one core (agrees)" if holds else "did not hold them to one core"))
    return "; ".join(out) if out else NA


def verdict_complexity(res, figs):
    thr, asy = figs.get("threaded-pool50") or figs.get("threaded-tpc"), figs.get("async")
    if not thr or not asy:
        return NA
    return ("threaded: %s lock/unlock + %s condvar sites (runtime and shared state); async: %s lock "
            "sites but %s callback registrations with explicit state — C callbacks, not structured "
            "concurrency" % (fmt_int(thr.get("lock_sites")), fmt_int(thr.get("condvar_sites")),
                             fmt_int(asy.get("lock_sites")), fmt_int(asy.get("callback_sites"))))


# The textbook table: one row each (label, claim, scenario for the noise note, cell, verdict).
ROWS = [
    ("Concurrent connections", "~50 / ~10,000+", "echo", concurrency_cell, verdict_concurrency),
    ("Memory per connection", "~8 MB (stack) / ~few KB (coroutine)", "hold", memory_cell,
     verdict_memory),
    ("Context switching", "OS-level (expensive) / user-level (cheap)", "fixed", ctx_cell, verdict_ctx),
    ("CPU-bound work", "Limited by GIL / blocks event loop", "cpu", cpu_cell, verdict_cpu),
    ("Complexity", "Locks, races / structured concurrency", None, complexity_cell,
     verdict_complexity),
]


# --------------------------------------------------------------------------------------------
# summary.md


def md_row(cells):
    return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def noise(res):
    """Per run of every round: (round, tag, wall s, machine busy, server, loadgen, other), cores."""
    out = []
    for rnd in res.rounds:
        for tag, r in rnd.runs.items():
            n = run_noise(rnd.dir, r)
            if n is not None:
                out.append((rnd.n, tag) + n)
    return out


def noisy_rounds(res):
    """{round: [(tag, other cores)]} of the runs above the threshold."""
    out = {}
    for rnd, tag, _, _, _, _, other in noise(res):
        if other > res.noisy:
            out.setdefault(rnd, []).append((tag, other))
    return out


def noisy_note(res, scenario, verdict):
    """The verdict, with a warning when other programs took CPU during that scenario's runs."""
    if scenario is None:
        return verdict
    bad = [(rnd, o) for rnd, tag, _, _, _, _, o in noise(res)
           if tag.startswith(scenario + "-") and o > res.noisy]
    if bad:
        rnds = sorted(set(r for r, _ in bad))
        return verdict + " — *noisy in round %s: up to %.1f cores used by others, see Machine noise*" % (
            ", ".join(str(r) for r in rnds), max(o for _, o in bad))
    return verdict


def main_table(res):
    head = ["Metric", "Textbook claim (threaded 50 / async)"] + [t for _, t in res.models] + ["Verdict"]
    lines = [md_row(head), md_row(["---"] * len(head))]
    for label, claim, scenario, cell, verdict in ROWS:
        cells, figs = [], {}
        for m in res.labels():
            text, figs[m] = cell(res, m)
            cells.append(text)
        lines.append(md_row([label, claim] + cells + [noisy_note(res, scenario, verdict(res, figs))]))
    return lines


def how_measured(res):
    p = res.plan
    sc = p.get("scenarios", {})
    pin = p.get("pinning", {})
    e, h, c = sc.get("echo", {}), sc.get("hold", {}), sc.get("cpu", {})
    f, ch = sc.get("fixed", {}), sc.get("churn", {})
    fixed_load = ("open loop at %s req/s" % fmt_int(f.get("rate")) if f.get("mode") == "rate"
                  else "closed loop with a think time aiming at %s req/s" % fmt_int(f.get("rate")))
    if f.get("python_rate"):
        fixed_load += " (Python columns: %s req/s)" % fmt_int(f.get("python_rate"))
    frac = num(p.get("timeout_fraction")) or TIMEOUT_FRACTION
    return [
        "- **Rounds**: %d, the models interleaved in each scenario (A B C A B C); every figure is "
        "the median over the rounds with its min–max spread in brackets; a verdict that compares "
        "two models states a difference only when their ranges do not overlap, else \"within "
        "noise\" with both ranges." % len(res.rounds),
        "- **Concurrent connections**: closed-loop `echo` ramp over %s connections, %s s a step, "
        "%s-byte messages, request timeout %s ms. A step passes when every connection is "
        "established and no connect fails, no request fails or mismatches, timeouts are under "
        "%s%% of the requests and under 1%% of the connections (a few are reported, not failed; "
        "an unserved connection times out once per timeout), and p99.9 ≤ **%s ms**. The cell "
        "is the highest step such that it and every step below it passed in that round (a "
        "failing middle step ends the count), then the first failing step of each round and why."
        % (", ".join(fmt_int(x) for x in e.get("connections", [])), fmt_num(e.get("duration_s"), 0),
           p.get("message_size", NA), p.get("request_timeout_ms", NA), fmt_num(frac * 100, 1),
           p.get("p99_bound_ms", NA)),
        "- **Memory per connection**: `hold` ramp over %s connections (idle %s s, then one message "
        "each): (server RSS or VSZ at the step − before the first connection) / established "
        "connections, from /proc/PID/status. Kernel figures are system-wide deltas. A figure of a "
        "server that never served most of its connections is not bold."
        % (", ".join(fmt_int(x) for x in h.get("connections", [])), fmt_num(h.get("duration_s"), 0)),
        "- **Context switching**: %s connections, %s, %s s; server voluntary + involuntary switches "
        "over every thread (/proc/PID/task) during the step, per completed request and per second "
        "(loadgen's figures), and the server's CPU µs per request. The rusage figure comes from the "
        "server's `stopped` line (getrusage, counts exited threads too) over its whole life, "
        "connects included." % (fmt_int(f.get("connections")), fixed_load, fmt_num(f.get("duration_s"), 0)),
        "- **CPU-bound work**: %s connections, closed loop, server started with `--work-us %s` "
        "(CPU burnt per message), %s s. Cores used = server CPU time / step duration."
        % (fmt_int(c.get("connections")), c.get("work_us", NA), fmt_num(c.get("duration_s"), 0)),
        "- **Complexity**: `scripts/complexity.sh`: non-blank non-comment lines and call sites "
        "outside comments and strings of each model's files (see complexity.json).",
        "- **Pinning**: server on CPU %s, loadgen on CPU %s, for every run except **CPU-bound "
        "work**, where the server may use CPUs %s (it needs both cores to show what threads can "
        "do) and loadgen shares them."
        % (pin.get("server_cpus", NA), pin.get("loadgen_cpus", NA),
           pin.get("cpu_bound_server_cpus", NA)),
        "- **Churn** (below): %s connections each connect, send one request, close, repeat, for "
        "%s s." % (fmt_int(ch.get("connections")), fmt_num(ch.get("duration_s"), 0)),
    ]


def figure_row(res, title, fn, fmt):
    """One row of Other figures: fn(round, model) -> number or None, as a spread per model."""
    row = [title]
    for m in res.labels():
        row.append(fmt_spread(spread(res.per_round(fn, m)), fmt))
    return row


def peak_rps(rnd, m):
    return get(peak_step(rnd, m), "requests", "per_sec")


def peak_step(rnd, m):
    steps = [s for s in rnd.steps("echo", m) if num(get(s, "requests", "per_sec")) is not None]
    return max(steps, key=lambda s: num(get(s, "requests", "per_sec"))) if steps else None


def cores(st, who):
    """CPU seconds per second of the server or loadgen over a step."""
    dur = num(get(st, "duration_s"))
    if not dur:
        return None
    u, s_ = num(get(st, who, "cpu_s", "user")), num(get(st, who, "cpu_s", "sys"))
    return None if u is None or s_ is None else (u + s_) / dur


def bottleneck_row(res):
    """At each model's peak step: the server's and loadgen's cores, and who was the bottleneck
    (the bench's saturation rule): a capacity figure means the server's capacity only when the
    server was saturated and loadgen was not."""
    row = ["At the peak: server / loadgen cores (saturation rule)"]
    for m in res.labels():
        pk = [peak_step(r, m) for r in res.rounds]
        pk = [p for p in pk if p is not None]
        if not pk:
            row.append(NA)
            continue
        srv = spread([cores(p, "server") for p in pk])
        lg = spread([cores(p, "loadgen") for p in pk])
        bound = [server_bound(cores(p, "server"), cores(p, "loadgen")) for p in pk]
        what = ("server-bound" if all(bound) else "not server-bound in %d of %d rounds: "
                "the peak is loadgen's or the machine's, not the server's" % (bound.count(False), len(bound)))
        row.append("%s / %s; %s" % (fmt_spread(srv, num2), fmt_spread(lg, num2), what))
    return row


def churn_cps(rnd, m):
    s = get(rnd.steps("churn", m), -1)
    v = get(s, "connects_per_sec")
    return v if v is not None else get(s, "requests", "per_sec")


def extra_table(res):
    head = ["Figure"] + [t for _, t in res.models]
    lines = [md_row(head), md_row(["---"] * len(head))]
    lines.append(md_row(figure_row(res, "Peak echo throughput (closed loop), req/s", peak_rps, fmt_rate)))
    lines.append(md_row(bottleneck_row(res)))
    lines.append(md_row(figure_row(res, "Churn: connect + 1 request + close, conns/s", churn_cps, fmt_rate)))
    lines.append(md_row(figure_row(res, "Churn: connect p99",
                                   lambda r, m: get(r.steps("churn", m), -1, "connect_latency_us", "p99"),
                                   fmt_us)))
    lines.append(md_row(figure_row(res, "Fixed load p99",
                                   lambda r, m: get(r.steps("fixed", m), -1, "latency_us", "p99"), fmt_us)))
    ab = get(res.plan, "abuse") or {}
    if ab.get("kind"):
        title = "Under %s (%s abusers): the %s good clients" % (ab["kind"], fmt_int(ab.get("abusers")),
                                                               fmt_int(ab.get("good")))
        row = [title]
        for m in res.labels():
            per = [get(r.steps("abuse", m), -1) for r in res.rounds]
            per = [s for s in per if s is not None]
            if not per:
                row.append(NA)
                continue
            row.append("%s req/s, p99 %s, %s timeouts, %s errors" % (
                fmt_spread(spread([get(s, "requests", "per_sec") for s in per]), fmt_rate),
                fmt_spread(spread([get(s, "latency_us", "p99") for s in per]), fmt_us),
                fmt_spread(spread([get(s, "requests", "timeouts") for s in per]), fmt_int),
                fmt_spread(spread([get(s, "requests", "errors") for s in per]), fmt_int)))
        lines.append(md_row(row))
    lines.append(md_row(figure_row(res, "Server threads at the largest hold step",
                                   lambda r, m: get(hold_step(r, m), "server", "threads"), fmt_int)))
    return lines


CORE_RUNS = (("echo", "Echo ramp (closed loop)"), ("hold", "Hold ramp (idle)"), ("churn", "Churn"),
             ("fixed", "Fixed load"), ("cpu", "CPU-bound (`--work-us`)"))


def steps_tables(res, runs=CORE_RUNS, models=None):
    out = []
    models = models or res.labels()
    for scenario, title in runs:
        out.append("### %s" % title)
        out.append("")
        head = ["model", "round", "conns", "established", "req/s", "p50", "p99", "p99.9", "max",
                "timeouts", "errors", "mismatches", "RSS/conn", "VSZ/conn", "ctx sw/req", "threads"]
        out.append(md_row(head))
        out.append(md_row(["---"] * len(head)))
        for m in models:
            for rnd in res.rounds:
                steps = rnd.steps(scenario, m)
                run = rnd.runs.get("%s-%s" % (scenario, m))
                if not steps:
                    why = "no data"
                    if run and run.get("loadgen_exit"):
                        why = "loadgen exited %s" % run["loadgen_exit"]
                    out.append(md_row([m, rnd.n, why] + [""] * (len(head) - 3)))
                    continue
                for s in steps:
                    out.append(md_row([
                        m, rnd.n, fmt_int(get(s, "connections", "target")),
                        fmt_int(get(s, "connections", "established")),
                        fmt_rate(get(s, "requests", "per_sec")),
                        fmt_us(get(s, "latency_us", "p50")), fmt_us(get(s, "latency_us", "p99")),
                        fmt_us(get(s, "latency_us", "p999")),
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
    for model in (get(res.complexity, "models") or {}):
        m = get(res.complexity, "models", model) or {}
        for f in m.get("files", []):
            out.append(md_row(["`%s`" % f.get("path"), fmt_int(f.get("lines")),
                               fmt_int(f.get("lock_sites")), fmt_int(f.get("condvar_sites")),
                               fmt_int(f.get("thread_sites")), fmt_int(f.get("atomic_sites")),
                               fmt_int(f.get("callback_sites"))]))
        for path in m.get("missing", []):
            out.append(md_row(["`%s`" % path, "missing", "", "", "", "", ""]))
    return out


def rusage_table(res):
    head = ["round", "run", "user s", "sys s", "voluntary sw", "involuntary sw", "max RSS",
            "accepted", "peak concurrent"]
    out = [md_row(head), md_row(["---"] * len(head))]
    runs = [(sc, m) for sc in ("echo", "hold", "churn", "fixed", "cpu") for m in res.labels()]
    runs += [(sc, m) for sc in get(res.plan, "extra", "scenarios") or [] for m in ("threaded", "async")]
    for rnd in res.rounds:
        for scenario, m in runs:
            st = rnd.stopped(scenario, m)
            if st is None:
                continue
            ru = st.get("rusage", {})
            maxrss = num(ru.get("maxrss_kib"))
            out.append(md_row([rnd.n, "%s-%s" % (scenario, m), fmt_num(ru.get("user_s")),
                               fmt_num(ru.get("sys_s")),
                               fmt_int(get(ru, "ctx_switches", "voluntary")),
                               fmt_int(get(ru, "ctx_switches", "involuntary")),
                               fmt_bytes(maxrss * 1024 if maxrss is not None else None),
                               fmt_int(st.get("connections_accepted")),
                               fmt_int(st.get("peak_concurrent"))]))
    return out


def noise_table(res, rows):
    head = ["round", "run", "seconds", "machine busy (cores)", "server", "loadgen",
            "everything else"]
    out = [md_row(head), md_row(["---"] * len(head))]
    for rnd, tag, wall, busy, srv, lg, other in rows:
        rerun = get(res.rounds[rnd - 1].runs, tag, "rerun_of_noisy_cores")
        name = tag + (" (rerun: first attempt %.2f)" % rerun if num(rerun) is not None else "")
        out.append(md_row([rnd, name, "%.1f" % wall, "%.2f" % busy, "%.2f" % srv, "%.2f" % lg,
                           ("**%.2f**" if other > res.noisy else "%.2f") % other]))
    return out


def problems(res):
    out = []
    for rnd in res.rounds:
        for tag, r in sorted(rnd.runs.items()):
            if r.get("loadgen_exit"):
                out.append("- round %d `%s`: loadgen exited %s (r%d/logs/%s.loadgen.log)"
                           % (rnd.n, tag, r["loadgen_exit"], rnd.n, tag))
            if r.get("server_exit"):
                out.append("- round %d `%s`: server exited %s (r%d/servers/%s.stderr)"
                           % (rnd.n, tag, r["server_exit"], rnd.n, tag))
    return out


def write_summary(res):
    env = res.env
    libs = env.get("libraries", {})
    quick = res.plan.get("quick")
    lines = [
        "# Threads vs async: the textbook table, measured",
        "",
        "%s run of `scripts/compare.sh`, %d round%s, %s, git `%s`%s." % (
            "Quick (smoke-test sizes, not for conclusions)" if quick else "Full",
            len(res.rounds), "" if len(res.rounds) == 1 else "s",
            env.get("date_utc", NA), str(env.get("git_revision", NA))[:12],
            " with %s uncommitted files" % env["git_uncommitted_files"]
            if env.get("git_uncommitted_files") else ""),
        "Machine: %s, %s cores, %s; libevent %s, jansson %s; fd limit %s; load average at start %s." % (
            env.get("cpu_model", NA), env.get("cores_online", NA), env.get("kernel", NA),
            libs.get("libevent", NA), libs.get("jansson", NA), get(env, "fd_limit", "hard") or NA,
            (env.get("loadavg_at_start") or NA).split(" ")[0]),
        "",
        "Bold figures are the ones each row is about: the median over the rounds, the min–max "
        "spread in brackets; `n/a` means the run produced no figure (see *Problems*). The server "
        "was pinned to one CPU and loadgen to another, **except for the CPU-bound row, where the "
        "server had both cores** (and loadgen shared them).",
        "",
    ]
    for label, title, note in res.skipped:
        lines.append("- Column *%s* skipped: %s." % (title, note))
    if res.skipped:
        lines.append("")
    noisy = noisy_rounds(res)
    if noisy:
        for rnd in sorted(noisy):
            worst = max(noisy[rnd], key=lambda x: x[1])
            lines.append("**Round %d was noisy:** other programs used up to %.2f cores during `%s` "
                         "(%d run%s above %.1f cores; see *Machine noise*): treat its figures as rough."
                         % (rnd, worst[1], worst[0], len(noisy[rnd]),
                            "" if len(noisy[rnd]) == 1 else "s", res.noisy))
        lines.append("")
    lines += main_table(res)
    if any(m.startswith("python-") for m in res.labels()):
        lines += ["", "The Python columns are CPython: its interpreter cost dominates every "
                  "throughput figure (compare the server CPU µs per request of the context-switching "
                  "row); they are there for the claims about Python, not for speed."]
    lines += ["", "## How each row was measured", ""] + how_measured(res)
    lines += ["", "## Other figures", ""] + extra_table(res)
    if res.complexity:
        lines += ["", "### Complexity by file", ""] + complexity_table(res)
    lines += ["", "## Every step", ""] + steps_tables(res)
    extra = get(res.plan, "extra", "scenarios") or []
    if extra:
        lines += ["## Other servers", "",
                  "Each run once a round with its default flags (threaded: one thread per "
                  "connection), server and loadgen pinned as above. Not part of the textbook table.", ""]
        lines += steps_tables(res, [(x, "`%s` (threaded-%s vs async-%s)" % (x, x, x)) for x in extra],
                              ["threaded", "async"])
    lines += ["## Server totals (`stopped` lines, getrusage over the server's life)", ""]
    lines += rusage_table(res)
    rows = noise(res)
    if rows:
        lines += ["", "## Machine noise", "",
                  "CPU time of the whole machine from each server's start to its exit, in "
                  "cores: every CPU's wall time minus its idle time (/proc/stat), split into the "
                  "server (its `stopped` rusage), loadgen (its whole rusage, connects included) "
                  "and everything else (other programs). On a quiet machine *everything else* is "
                  "near 0; above %.1f cores (bold) the run is noisy and was rerun once." % res.noisy, ""]
        lines += noise_table(res, rows)
    probs = problems(res)
    lines += ["", "## Problems", ""] + (probs or ["None: every loadgen and server exited 0."])
    lines += ["", "## Plots", ""]
    for name, title in PLOTS:
        lines.append("- [%s](plots/%s.png)" % (title, name))
    lines.append("")
    with open(os.path.join(res.dir, "summary.md"), "w") as f:
        f.write("\n".join(lines))


# --------------------------------------------------------------------------------------------
# Plot data: one TSV per (scenario, model), NaN where a figure is missing (gnuplot skips it);
# each figure as median, min, max over the rounds.

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


def tsv_spread(s, scale=1.0):
    return [tsv_num(None)] * 3 if s is None else [tsv_num(x, scale) for x in s]


def by_target(res, scenario, m, key="target"):
    """{connections: [step of each round]} over the rounds."""
    out = {}
    for rnd in res.rounds:
        for s in rnd.steps(scenario, m):
            c = num(get(s, "connections", key))
            if c is not None:
                out.setdefault(c, []).append(s)
    return out


def write_plot_data(res):
    d = os.path.join(res.dir, "plots", "data")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "models.tsv"), "w") as f:
        for m, title in res.models:
            f.write("%s\t%s\n" % (m, title.replace("`", "")))
    for m in res.labels():
        with open(os.path.join(d, "echo-%s.tsv" % m), "w") as f:
            f.write("# connections\treq_per_s med\tmin\tmax\tp99_ms med\tmin\tmax\t"
                    "ctx_per_request med\tpassed in every round\n")
            for c, sts in sorted(by_target(res, "echo", m).items()):
                ok = all(step_verdict(s, res.bound_us())[0] for s in sts)
                f.write("\t".join([tsv_num(c)]
                                  + tsv_spread(spread([get(s, "requests", "per_sec") for s in sts]))
                                  + tsv_spread(spread([get(s, "latency_us", "p99") for s in sts]), 1e-3)
                                  + [tsv_num(med(spread([get(s, "server", "ctx_switches_per_request")
                                                          for s in sts]))),
                                     "1" if ok else "0"]) + "\n")
        with open(os.path.join(d, "hold-%s.tsv" % m), "w") as f:
            f.write("# connections\trss_kib_per_conn med\tmin\tmax\tvsz_kib_per_conn med\tmin\tmax\n")
            for c, sts in sorted(by_target(res, "hold", m).items()):
                f.write("\t".join([tsv_num(c)]
                                  + tsv_spread(spread([get(s, "server", "rss_per_conn_bytes") for s in sts]), 1 / 1024)
                                  + tsv_spread(spread([get(s, "server", "vsz_per_conn_bytes") for s in sts]), 1 / 1024))
                        + "\n")
    with open(os.path.join(d, "cpu.tsv"), "w") as f:
        f.write("# model\treq_per_s med\tmin\tmax\tp99_ms\tcores_used\n")
        for m in res.labels():
            c = cpu_figures(res, m) or {}
            f.write("\t".join([m] + tsv_spread(c.get("rate")) + [tsv_num(med(c.get("p99")), 1e-3),
                                                                 tsv_num(med(c.get("cores")))]) + "\n")
    with open(os.path.join(d, "fixed.tsv"), "w") as f:
        f.write("# model\tctx_per_request med\tmin\tmax\tctx_per_s\n")
        for m in res.labels():
            c = ctx_figures(res, m) or {}
            f.write("\t".join([m] + tsv_spread(c.get("per_req")) + [tsv_num(med(c.get("per_s")))]) + "\n")
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write("p99_bound_ms=%s\n" % tsv_num(res.plan.get("p99_bound_ms")))
        f.write("work_us=%s\n" % get(res.plan, "scenarios", "cpu", "work_us"))
        f.write("fixed_rate=%s\n" % get(res.plan, "scenarios", "fixed", "rate"))
        f.write("fixed_connections=%s\n" % get(res.plan, "scenarios", "fixed", "connections"))
        f.write("rounds=%d\n" % len(res.rounds))


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
