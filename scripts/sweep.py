#!/usr/bin/env python3
"""Reads a scripts/sweep.sh directory (DIR/sweep: runs.tsv and the loadgen JSON it names) and
writes sweep.json (per model: capacity and points), cells.json (the "latency at 80% of capacity"
cell of each model) and data/MODEL.tsv (the plot's figures); with --table, prints the points as
an aligned table instead. Standard library only.

Latency is loadgen's `latency_us`: in open loop it is corrected for coordinated omission (timed
from each request's intended send time, docs/metrics.md); `latency_raw_us` (from the actual
send) is kept beside it as raw_p99_us for comparison, never used for the figures.
"""
import argparse
import csv
import json
import os
import statistics
import sys

CELL_PCT = 80
TITLES = {"threaded-tpc": "threaded, 1 thread/conn", "threaded-pool50": "threaded --pool 50",
          "async": "async (1 thread, libevent)"}
ORDER = ["threaded-pool50", "threaded-tpc", "async"]    # compare.sh's column order


def read_runs(sw):
    with open(os.path.join(sw, "runs.tsv")) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def step_of(sw, name):
    """The first step of a loadgen JSON, or None when the file is missing or has no step."""
    try:
        with open(os.path.join(sw, name)) as f:
            steps = json.load(f).get("steps") or []
    except (OSError, ValueError):
        return None
    return steps[0] if steps else None


def cores(cpu, duration):
    if not isinstance(cpu, dict) or not duration:
        return None
    return (cpu.get("user", 0) + cpu.get("sys", 0)) / duration


def run_figures(sw, run):
    """One run's figures (a dict), with its file, exit status and the machine's state."""
    fig = {"file": run["file"], "loadgen_exit": int(run["loadgen_exit"]),
           "loadavg": num(run["loadavg"]), "cpu_some_avg10": num(run["cpu_some_avg10"]),
           "cpu_some_run": num(run.get("cpu_some_run"))}
    st = step_of(sw, run["file"])
    if st is None:
        fig["missing"] = True
        return fig
    req, lat, dur = st.get("requests", {}), st.get("latency_us", {}), st.get("duration_s")
    fig.update({
        "duration_s": dur,
        "established": st.get("connections", {}).get("established"),
        "completed": req.get("completed"),
        "achieved_per_s": (st.get("rate") or {}).get("achieved", req.get("per_sec")),
        "p50_us": lat.get("p50"), "p99_us": lat.get("p99"), "p999_us": lat.get("p999"),
        "max_us": lat.get("max"),
        "raw_p99_us": (st.get("latency_raw_us") or {}).get("p99"),
        "unsent_at_stop": lat.get("unsent_at_stop"),
        "timeouts": req.get("timeouts"), "errors": req.get("errors"),
        "mismatches": req.get("mismatches"),
        "loadgen_cores": cores((st.get("loadgen") or {}).get("cpu_s"), dur),
        "server_cores": cores((st.get("server") or {}).get("cpu_s"), dur),
    })
    return fig


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def spread(vals):
    vals = [v for v in vals if v is not None]
    return [min(vals), max(vals)] if vals else None


def total(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def build(sw, args):
    runs = read_runs(sw)
    models = [m for m in ORDER if any(r["model"] == m for r in runs)]
    out = {"schema": "tvsa-sweep/1", "quick": args.quick == 1,
           "date_utc": args.start, "loadavg_start": args.start_loadavg.split(),
           "loadavg_end": open("/proc/loadavg").read().split()[:3],
           "connections": args.connections, "duration_s": args.duration, "rounds": args.rounds,
           "cpus": dict(zip(("server", "loadgen"), args.cpus.split(",", 1))),
           "rtt_ms": args.rtt_ms or 0,
           "network": ("loopback" if args.rtt_ms is None else
                       "scripts/cluster.sh --local 1, netem delay %g ms each way"
                       % (args.rtt_ms / 2) if args.rtt_ms else
                       "scripts/cluster.sh --local 1, no netem (--rtt-ms 0)"),
           "latency": "latency_us: corrected for coordinated omission, from each request's "
                      "intended send time (docs/metrics.md); raw_p99_us is latency_raw_us, "
                      "from the actual send, for comparison only",
           "figures": "median over rounds; *_spread = [min, max] over rounds; timeouts and "
                      "errors are summed over rounds",
           "models": {}}
    for m in models:
        caps = [run_figures(sw, r) for r in runs if r["model"] == m and r["kind"] == "capacity"]
        cap = median([c.get("achieved_per_s") for c in caps])
        pts = {}
        for r in runs:
            if r["model"] == m and r["kind"] == "point":
                pts.setdefault(int(r["pct"]), {"rate": int(r["rate"]), "rounds": []})
                pts[int(r["pct"])]["rounds"].append(run_figures(sw, r))
        points = []
        for pct in sorted(pts):
            rs = pts[pct]["rounds"]
            p = {"pct": pct, "offered_per_s": pts[pct]["rate"]}
            for k in ("achieved_per_s", "p50_us", "p99_us", "p999_us", "raw_p99_us",
                      "loadgen_cores", "server_cores"):
                p[k] = median([x.get(k) for x in rs])
            for k in ("achieved_per_s", "p50_us", "p99_us", "p999_us"):
                p[k + "_spread"] = spread([x.get(k) for x in rs])
            for k in ("timeouts", "errors", "mismatches", "unsent_at_stop"):
                p[k] = total([x.get(k) for x in rs])
            p["achieved_ratio"] = (p["achieved_per_s"] / p["offered_per_s"]
                                   if p["achieved_per_s"] is not None else None)
            p["rounds"] = rs
            points.append(p)
        out["models"][m] = {
            "title": TITLES.get(m, m),
            "capacity": {"per_sec": cap, "spread": spread([c.get("achieved_per_s") for c in caps]),
                         "mode": "closed loop", "connections": args.connections,
                         "duration_s": args.duration, "rounds": caps},
            "points": points}
    return out


def fmt_ms(us):
    if us is None:
        return "n/a"
    return "%.2f" % (us / 1000) if us < 10000 else "%.0f" % (us / 1000)


def fmt_rate(v):
    return "n/a" if v is None else "{:,.0f}".format(v)


def cells(sweep):
    """The summary row: each model's p50/p99/p99.9 at the point nearest 80% of its capacity."""
    out = {"schema": "tvsa-sweep-cells/1", "row": "Latency at 80% of capacity",
           "claim": "not in the textbook table",
           "latency": "open loop, corrected for coordinated omission", "cells": {}}
    p99s = {}
    for m, d in sweep["models"].items():
        pts = [p for p in d["points"] if p.get("p99_us") is not None]
        cap = d["capacity"]["per_sec"]
        if not pts or not cap:
            out["cells"][m] = {"text": "not measured", "pct": None}
            continue
        p = min(pts, key=lambda q: (abs(q["pct"] - CELL_PCT), q["pct"]))
        text = "p50 / p99 / p99.9: %s / %s / %s ms at %d%% of %s req/s" % (
            fmt_ms(p["p50_us"]), fmt_ms(p["p99_us"]), fmt_ms(p["p999_us"]), p["pct"],
            fmt_rate(cap))
        if p["timeouts"]:
            text += ", %d timeouts" % p["timeouts"]
        if sweep["rounds"] > 1 and p["p99_us_spread"]:
            lo, hi = p["p99_us_spread"]
            text += " (p99 over %d rounds: %s–%s ms)" % (sweep["rounds"], fmt_ms(lo), fmt_ms(hi))
        out["cells"][m] = {"text": text, "pct": p["pct"], "capacity_per_s": cap,
                           "offered_per_s": p["offered_per_s"],
                           "achieved_per_s": p["achieved_per_s"], "p50_us": p["p50_us"],
                           "p99_us": p["p99_us"], "p999_us": p["p999_us"],
                           "p99_us_spread": p["p99_us_spread"], "timeouts": p["timeouts"]}
        p99s[m] = p["p99_us"]
    runs = [x for d in sweep["models"].values() for p in d["points"] for x in p["rounds"]]
    psi = [x["cpu_some_avg10"] for x in runs if x.get("cpu_some_avg10") is not None]
    # The threaded models' own threads wait for their one CPU, which CPU pressure counts too;
    # async runs one server thread and one loadgen thread on two CPUs, so pressure during its
    # own runs (cpu_some_run: PSI's total over the run; avg10 before a run mostly tells of the
    # runs before it) is other programs': the noise verdict rests on those when there are any.
    async_runs = [x for p in (sweep["models"].get("async") or {}).get("points", [])
                  for x in p["rounds"] if x.get("cpu_some_run") is not None]
    noise = [x["cpu_some_run"] for x in async_runs] or psi
    out["machine"] = {"loadavg_start": sweep["loadavg_start"],
                      "cpu_some_avg10_max": max(psi) if psi else None,
                      "cpu_some_run_max_async": max(noise) if async_runs else None}
    if p99s:
        best = min(p99s, key=p99s.get)
        out["verdict"] = ("lowest p99 at 80%% of its own capacity: %s (%s ms); each model is "
                          "measured at its own rate, not at the same one"
                          % (TITLES.get(best, best), fmt_ms(p99s[best])))
        if noise and max(noise) > 10:
            out["verdict"] = ("noisy machine (some task waited for a CPU up to %.0f%% of the "
                              "time%s): " % (max(noise), " during the async runs" if async_runs
                                             else "")) + out["verdict"]
    else:
        out["verdict"] = "not measured"
    return out


def write_data(sw, sweep):
    for m, d in sweep["models"].items():
        with open(os.path.join(sw, "data", m + ".tsv"), "w") as f:
            f.write("# pct\toffered_per_s\tachieved_per_s\tp50_ms\tp99_ms\tp999_ms\ttimeouts\n")
            for p in d["points"]:
                row = [p["pct"], p["offered_per_s"], p["achieved_per_s"]] + [
                    None if p[k] is None else p[k] / 1000 for k in ("p50_us", "p99_us", "p999_us")
                ] + [p["timeouts"]]
                f.write("\t".join("NaN" if v is None else "%.6g" % v for v in row) + "\n")
        # Each round's p99, so the plot can show the spread behind a median.
        with open(os.path.join(sw, "data", m + ".rounds.tsv"), "w") as f:
            f.write("# pct\tp99_ms\n")
            for p in d["points"]:
                for x in p["rounds"]:
                    if x.get("p99_us") is not None:
                        f.write("%d\t%.6g\n" % (p["pct"], x["p99_us"] / 1000))


def table(sweep):
    head = ["model", "point", "offered/s", "achieved/s", "p50 ms", "p99 ms", "p99.9 ms",
            "spread", "raw p99 ms", "timeouts", "lg cores", "srv cores"]
    rows = [head]
    for m, d in sweep["models"].items():
        c = d["capacity"]
        sp = c["spread"] or [None, None]
        rows.append([m, "capacity", "closed", fmt_rate(c["per_sec"]), "", "", "",
                     "%s–%s req/s" % (fmt_rate(sp[0]), fmt_rate(sp[1])), "", "", "", ""])
        for p in d["points"]:
            s = p["p99_us_spread"] or [None, None]
            rows.append([m, "%d%%" % p["pct"], fmt_rate(p["offered_per_s"]),
                         fmt_rate(p["achieved_per_s"]), fmt_ms(p["p50_us"]), fmt_ms(p["p99_us"]),
                         fmt_ms(p["p999_us"]), "%s–%s" % (fmt_ms(s[0]), fmt_ms(s[1])),
                         fmt_ms(p["raw_p99_us"]), str(p["timeouts"]),
                         "n/a" if p["loadgen_cores"] is None else "%.2f" % p["loadgen_cores"],
                         "n/a" if p["server_cores"] is None else "%.2f" % p["server_cores"]])
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="DIR/sweep of a scripts/sweep.sh run")
    ap.add_argument("--table", action="store_true", help="print sweep.json's points and stop")
    ap.add_argument("--connections", type=int, default=0)
    ap.add_argument("--duration", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--quick", type=int, default=0)
    ap.add_argument("--cpus", default="0,1")
    ap.add_argument("--rtt-ms", type=float, default=None)
    ap.add_argument("--start", default="")
    ap.add_argument("--start-loadavg", default="")
    args = ap.parse_args(argv)
    sw = args.dir
    if args.table:
        with open(os.path.join(sw, "sweep.json")) as f:
            print(table(json.load(f)))
        return 0
    sweep = build(sw, args)
    with open(os.path.join(sw, "sweep.json"), "w") as f:
        json.dump(sweep, f, indent=1)
    with open(os.path.join(sw, "cells.json"), "w") as f:
        json.dump(cells(sweep), f, indent=1, ensure_ascii=False)
    os.makedirs(os.path.join(sw, "data"), exist_ok=True)
    write_data(sw, sweep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
