#!/usr/bin/env python3
"""Helpers of scripts/scale.sh (issue 14), standard library only.

  scale.py env OUT.json [KEY=VALUE...]   the limits that decide where each model stops
  scale.py snap OUT.json                 one sample of the kernel's memory figures
  scale.py watch OUT.json PID            samples every 0.25 s while PID lives (at most 900 s)
                                         and keeps the one with the most TCP sockets in use
  scale.py served DIR TAG               exit 0 if step TAG was served fully, else 1 (why on stderr)
  scale.py report DIR                    DIR/scale/*.json -> summary.json, scale.md, cells.json,
                                         data/rss.tsv (the plot's data)

Kernel figures (system-wide, so both ends of a loopback connection and every other process
on the machine are in them): /proc/meminfo Slab, SUnreclaim, KernelStack, PageTables,
MemAvailable; /proc/net/sockstat TCP inuse, alloc and mem (pages); /proc/slabinfo
active_objs x objsize of the caches a socket or a thread allocates (SLAB_CACHES).
"""
import glob
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tvsa_json import load_json as load  # noqa: E402  (scripts/tvsa_json.py, the one reader)

SLAB_CACHES = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq",
               "task_struct", "pid")
MEMINFO_KEYS = ("MemTotal", "MemAvailable", "Slab", "SUnreclaim", "KernelStack", "PageTables")
PAGE = os.sysconf("SC_PAGE_SIZE")


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def read_int(path):
    text = read(path)
    try:
        return int(text.split()[0])
    except (AttributeError, IndexError, ValueError):
        return None


def tasks_in_use():
    """Every thread of every process on the machine, what counts against kernel.pid_max:
    /proc/loadavg's total (the kernel's nr_threads, not limited to this PID namespace);
    the threads /proc lists if it cannot be read."""
    try:
        return int((read("/proc/loadavg") or "").split()[3].split("/")[1])
    except (IndexError, ValueError):
        return len(glob.glob("/proc/[0-9]*/task/[0-9]*"))


def env(out, extra):
    lo_hi = (read("/proc/sys/net/ipv4/ip_local_port_range") or "").split()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc_soft, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    unl = lambda v: None if v == resource.RLIM_INFINITY else v  # noqa: E731
    mem = meminfo()
    doc = {
        "pid_max": read_int("/proc/sys/kernel/pid_max"),
        "threads_max": read_int("/proc/sys/kernel/threads-max"),
        "max_map_count": read_int("/proc/sys/vm/max_map_count"),
        "ip_local_port_range": [int(x) for x in lo_hi] if len(lo_hi) == 2 else None,
        "ephemeral_ports": int(lo_hi[1]) - int(lo_hi[0]) + 1 if len(lo_hi) == 2 else None,
        "somaxconn": read_int("/proc/sys/net/core/somaxconn"),
        "tcp_max_syn_backlog": read_int("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        "fd_limit": {"soft": unl(soft), "hard": unl(hard),
                     "nr_open": read_int("/proc/sys/fs/nr_open"),
                     "file_max": read_int("/proc/sys/fs/file-max")},
        "rlimit_nproc": {"soft": unl(nproc_soft), "hard": unl(nproc_hard)},
        "tasks_in_use": tasks_in_use(),
        "mem_total_kib": mem.get("MemTotal"),
        "mem_available_kib": mem.get("MemAvailable"),
        "cpus": os.cpu_count(),
        "kernel": os.uname().release,
    }
    for kv in extra:
        k, _, v = kv.partition("=")
        try:
            doc[k] = json.loads(v)
        except ValueError:
            doc[k] = v
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def meminfo():
    out = {}
    for line in (read("/proc/meminfo") or "").splitlines():
        k, _, rest = line.partition(":")
        if k in MEMINFO_KEYS:
            out[k] = int(rest.split()[0])
    return out


def snapshot():
    s = {"t": time.time(), "meminfo_kib": meminfo(), "sockstat": {}, "slab_bytes": {}}
    for line in (read("/proc/net/sockstat") or "").splitlines():
        if line.startswith("TCP:"):
            f = line.split()[1:]
            s["sockstat"] = {f[i]: int(f[i + 1]) for i in range(0, len(f) - 1, 2)}
    for line in (read("/proc/slabinfo") or "").splitlines()[2:]:
        f = line.split()
        if f and f[0] in SLAB_CACHES:
            s["slab_bytes"][f[0]] = int(f[1]) * int(f[3])
    return s


def watch(out, pid):
    best, deadline, pids_peak = None, time.time() + 900, None
    cg = os.environ.get("SCALE_CGROUP")
    while time.time() < deadline and os.path.exists("/proc/%d" % pid):
        s = snapshot()
        if cg:
            cur = read_int(os.path.join(cg, "pids.current"))
            if cur is not None and (pids_peak is None or cur > pids_peak):
                pids_peak = cur
        if best is None or s["sockstat"].get("inuse", 0) >= best["sockstat"].get("inuse", 0):
            best = s
        time.sleep(0.25)
    best = best or snapshot()
    best["cgroup_pids_peak"] = pids_peak
    with open(out, "w") as f:
        json.dump(best, f)


def kernel_per_conn(base, peak, n):
    """(peak - base) / n for every kernel figure, in bytes; None without both samples."""
    if not base or not peak or n <= 0:
        return None
    out = {}
    for k in ("Slab", "SUnreclaim", "KernelStack", "PageTables"):
        b, p = base["meminfo_kib"].get(k), peak["meminfo_kib"].get(k)
        if b is not None and p is not None:
            out[k] = (p - b) * 1024.0 / n
    b, p = base["sockstat"].get("mem"), peak["sockstat"].get("mem")
    if b is not None and p is not None:
        out["sock_mem"] = (p - b) * PAGE / n
    b, p = base["sockstat"].get("inuse"), peak["sockstat"].get("inuse")
    if b is not None and p is not None:
        out["tcp_sockets_per_conn"] = (p - b) / float(n)
    out["slab_caches"] = {c: (peak["slab_bytes"].get(c, 0) - base["slab_bytes"].get(c, 0)) / n
                          for c in SLAB_CACHES if c in peak["slab_bytes"]}
    return out


def step_ok(hold, rate, n):
    """Why the step was not served fully: a list of reasons (empty = served)."""
    why = []
    for name, doc in (("hold", hold), ("open loop", rate)):
        st = (doc or {}).get("steps") or []
        if not st:
            why.append("%s: no loadgen result" % name)
            continue
        s = st[0]
        c, r = s.get("connections", {}), s.get("requests", {})
        if c.get("established", 0) < n:
            errs = c.get("failed_by_errno") or {}
            why.append("%s: %d of %d connections established%s" % (
                name, c.get("established", 0), n,
                " (connect failures: %s)" % ", ".join("%s %d" % kv for kv in sorted(errs.items()))
                if errs else " (none failed: still connecting at loadgen's set-up deadline, "
                "a slow machine rather than a wall)"))
        if name == "hold" and s.get("alive", 0) < n:
            why.append("hold: %d of %d probes answered" % (s.get("alive", 0), n))
        for k in ("timeouts", "errors", "mismatches"):
            if r.get(k, 0):
                why.append("%s: %d %s" % (name, r[k], k))
    return why


def server_why(stopped, stderr_text):
    why = []
    stopped = stopped or {}
    tcf = stopped.get("thread_create_failures", 0)
    if tcf:
        line = next((l for l in stderr_text.splitlines() if "pthread_create" in l), "")
        why.append("thread_create_failures %d%s" % (tcf, (": " + line.strip()) if line else ""))
    if stopped.get("accept_pauses", 0):
        why.append("accept paused %d times (out of fds: EMFILE/ENFILE)" % stopped["accept_pauses"])
    if stopped.get("workers_failed", 0):
        bad = [w.get("exit", "?") for w in stopped.get("workers", []) or []
               if w.get("exit") not in (None, "exited 0")]
        why.append("%d worker(s) failed (%s)" % (stopped["workers_failed"], ", ".join(bad[:3])))
    return why


def step_why(d, s):
    """A step's reasons for not being served (empty: served) and the files they came from."""
    tag, n = s["tag"], s["connections"]
    hold = load(os.path.join(d, tag + ".hold.json"))
    rate = load(os.path.join(d, tag + ".rate.json"))
    stopped = load(os.path.join(d, tag + ".stopped.json"))
    base = load(os.path.join(d, tag + ".kbase.json"))
    peak = load(os.path.join(d, tag + ".kpeak.json"))
    if s.get("skipped"):
        return [s["skipped"]], hold, rate, stopped, base, peak
    why = list(s.get("why", []))
    why += server_why(stopped, read(os.path.join(d, tag + ".stderr"), "") or "")
    if s.get("cgroup_max_events"):
        why.append("the pids cgroup refused %d forks/threads (pids.max %s)" % (
            s["cgroup_max_events"], fmt_int(s.get("cgroup_pids_max"))))
    why += step_ok(hold, rate, n)
    mem = (peak or {}).get("meminfo_kib", {})
    if mem.get("MemTotal") and mem.get("MemAvailable", 0) < 0.05 * mem["MemTotal"]:
        why.append("memory: MemAvailable %d MiB at the peak" % (mem["MemAvailable"] // 1024))
    return why, hold, rate, stopped, base, peak


def fmt_int(v):
    return "{:,}".format(int(v)) if v is not None else "–"


def fmt_b(v):
    if v is None:
        return "–"
    if abs(v) >= 1024 * 1024:
        return "%.1f MiB" % (v / 1048576.0)
    if abs(v) >= 1024:
        return "%.1f KiB" % (v / 1024.0)
    return "%.0f B" % v


LABELS = {
    "async": "async (libevent bufferevents), --procs",
    "async-event": "async --api event, --procs",
    "threaded-tpc": "threaded, one thread per connection, --procs",
    "threaded-pool50": "threaded --pool 50",
}


def report(top):
    d = os.path.join(top, "scale")
    envl = load(os.path.join(d, "env-limits.json")) or {}
    plan = load(os.path.join(d, "plan.json")) or {}
    steps = []
    for p in sorted(glob.glob(os.path.join(d, "*.step.json"))):
        st = load(p)
        if st:
            steps.append(st)
    models = plan.get("models") or sorted({s["model"] for s in steps})
    summary = {"models": {}, "env": envl, "plan": plan}
    os.makedirs(os.path.join(d, "data"), exist_ok=True)
    for m in models:
        ms = sorted((s for s in steps if s["model"] == m), key=lambda s: s["connections"])
        rows, served, first_fail = [], None, None
        tsv = ["# connections\trss_mib\tvsz_mib\trss_per_conn_b\tserved"]
        for s in ms:
            n, tag = s["connections"], s["tag"]
            why, hold, rate, stopped, base, peak = step_why(d, s)
            h = ((hold or {}).get("steps") or [{}])[0]
            srv = h.get("server") or {}
            rs = ((rate or {}).get("steps") or [{}])[0]
            est = (h.get("connections") or {}).get("established", 0)
            kpc = kernel_per_conn(base, peak, est) if est else None
            row = {
                "connections": n, "served": not why, "why": why, "procs": s.get("procs"),
                "loadgen_procs": s.get("loadgen_procs"), "source_addresses": s.get("source_addresses"),
                "established": est, "alive": h.get("alive"),
                "rss_kib": srv.get("rss_kib"), "vsz_kib": srv.get("vsz_kib"),
                "threads": srv.get("threads"),
                "rss_per_conn_bytes": srv.get("rss_per_conn_bytes"),
                "vsz_per_conn_bytes": srv.get("vsz_per_conn_bytes"),
                "kernel_per_conn_bytes": kpc,
                "rate": (rs.get("rate") or {}), "p99_us": (rs.get("latency_us") or {}).get("p99"),
                "rate_timeouts": (rs.get("requests") or {}).get("timeouts"),
                "thread_create_failures": (stopped or {}).get("thread_create_failures"),
                "threads_created": (stopped or {}).get("threads_created"),
                "cgroup_pids_max": s.get("cgroup_pids_max"),
                "cgroup_pids_peak": (peak or {}).get("cgroup_pids_peak"),
                "cgroup_max_events": s.get("cgroup_max_events"),
            }
            rows.append(row)
            if s.get("skipped"):
                continue
            if not why and first_fail is None:
                served = row
            elif why and first_fail is None:
                first_fail = row
            if row["rss_kib"] is not None:
                tsv.append("%d\t%.2f\t%.2f\t%s\t%d" % (
                    est, row["rss_kib"] / 1024.0, (row["vsz_kib"] or 0) / 1024.0,
                    row["rss_per_conn_bytes"] if row["rss_per_conn_bytes"] is not None else "NaN",
                    1 if not why else 0))
        with open(os.path.join(d, "data", "rss-%s.tsv" % m), "w") as f:
            f.write("\n".join(tsv) + "\n")
        summary["models"][m] = {"steps": rows, "largest_served": served and served["connections"],
                                "first_not_served": first_fail and first_fail["connections"],
                                "why": first_fail and first_fail["why"]}
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    cell, md = render(summary, envl, plan)
    with open(os.path.join(d, "cells.json"), "w") as f:
        json.dump({"concurrent_connections": cell}, f, indent=1)
        f.write("\n")
    with open(os.path.join(d, "scale.md"), "w") as f:
        f.write(md)


def walls(envl, plan, summary):
    """Where the next walls are, from the limits (text lines)."""
    out = []
    cg = plan.get("cgroup") or {}
    if cg.get("pids_max"):
        hit = ["%s at its %s step" % (m, fmt_int(r["first_not_served"]))
               for m, r in (summary.get("models") or {}).items()
               if any("pids cgroup" in w for w in r.get("why") or [])]
        out.append("the scale run's pids cgroup: pids.max %s (%s), so no threaded server could "
                   "take the machine's last PIDs%s" % (
                       fmt_int(cg["pids_max"]), cg.get("how", ""),
                       ": **the wall hit** by " + ", ".join(hit) if hit else ""))
    if envl.get("pid_max"):
        out.append("kernel.pid_max %s for the whole machine (every thread of every process; "
                   "%s in use when the run started)" % (fmt_int(envl["pid_max"]),
                                                         fmt_int(envl.get("tasks_in_use"))))
    if envl.get("max_map_count"):
        out.append("vm.max_map_count %s per process: a thread takes 2 mappings (stack and guard "
                   "page), so about %s threads per process (with --procs P, P times that; "
                   "pid_max is machine-wide)" % (
                       fmt_int(envl["max_map_count"]), fmt_int(envl["max_map_count"] // 2)))
    if envl.get("threads_max"):
        out.append("kernel.threads-max %s" % fmt_int(envl["threads_max"]))
    fd = envl.get("fd_limit") or {}
    if fd.get("hard"):
        out.append("fds: %s per process (hard limit; nr_open %s, file-max %s), hence --procs" % (
            fmt_int(fd["hard"]), fmt_int(fd.get("nr_open")), fmt_int(fd.get("file_max"))))
    if envl.get("ephemeral_ports"):
        out.append("ephemeral ports: %s per source address and destination (%s-%s), hence "
                   "several 127.0.x.y source addresses" % (
                       fmt_int(envl["ephemeral_ports"]), *envl["ip_local_port_range"]))
    if envl.get("mem_total_kib"):
        line = "memory: %s MiB in all" % fmt_int(envl["mem_total_kib"] // 1024)
        cost = thread_cost(summary)
        if cost:
            line += ("; a thread-per-connection connection measured %s (RSS %s, kernel stack %s, "
                     "page tables %s, slab %s), so memory would last ~%s threads" % (
                         fmt_b(cost["total"]), fmt_b(cost["rss"]), fmt_b(cost["stack"]),
                         fmt_b(cost["pt"]), fmt_b(cost["slab"]),
                         fmt_int(envl["mem_total_kib"] * 1024 // cost["total"])))
        out.append(line)
    return out


def thread_cost(summary):
    """Bytes per connection of the thread-per-connection model at its largest step served."""
    r = (summary.get("models") or {}).get("threaded-tpc") or {}
    st = next((s for s in r.get("steps", []) if s["connections"] == r.get("largest_served")),
              None) or next((s for s in r.get("steps", []) if s.get("established")), None)
    k = (st or {}).get("kernel_per_conn_bytes") or {}
    if not st or st.get("rss_per_conn_bytes") is None or not k:
        return None
    c = {"rss": st["rss_per_conn_bytes"], "stack": max(k.get("KernelStack", 0), 0),
         "pt": max(k.get("PageTables", 0), 0), "slab": max(k.get("Slab", 0), 0)}
    c["total"] = sum(c.values())
    return c if c["total"] > 0 else None


def short_reason(r):
    """The first step not served in a few words, for the table's cell."""
    fail = next((s for s in r["steps"] if s["connections"] == r["first_not_served"]), {})
    why = r["why"] or ["?"]
    if fail.get("thread_create_failures"):
        line = next((w for w in why if w.startswith("thread_create_failures")), "")
        errno = "EAGAIN" if "temporarily unavailable" in line else \
            (line.split("pthread_create:")[1].split("(")[0].strip() if "pthread_create:" in line
             else "failed")
        limit = line.split("likely limit:")[1].split("[")[0].strip() if "likely limit:" in line \
            else "?"
        most = fail.get("cgroup_pids_peak") or fail.get("threads")
        return "%spthread_create %s: %s" % ("~%s threads, " % fmt_int(most) if most else "",
                                            errno, limit)
    return why[0]


def render(summary, envl, plan):
    cells, lines = [], []
    lines.append("## Past one process\n")
    quick = " (quick run: small steps, not the real ramp)" if plan.get("quick") else ""
    lines.append("Held-connection ramp%s: per step the server is started with enough worker "
                 "processes for the fd limit, loadgen opens the connections (paced, several "
                 "source addresses and loadgen processes), holds them idle %s s and probes every "
                 "one (`hold`), then opens them again and runs an open loop of %s req/s in total "
                 "for %s s (p99). A step is served when every connection was established and "
                 "answered its probe with no timeout, error or mismatch, and no thread creation "
                 "failed. %s\n" % (
                     quick, plan.get("hold_s"), fmt_int(plan.get("rate")), plan.get("rate_s"),
                     "" if not any(m.startswith("threaded") for m in plan.get("models", []))
                     else "Threaded servers ran inside a pids cgroup of their own."
                     if (plan.get("cgroup") or {}).get("path") else
                     "No pids cgroup: threaded steps were capped at %s connections." %
                     fmt_int(plan.get("threaded_max"))))
    lines.append("| model | largest step served | first step not served | why | RSS/conn | "
                 "VSZ/conn | kernel/conn (slab + sock) | p99 at %s req/s |" % fmt_int(plan.get("rate")))
    lines.append("|---|---|---|---|---|---|---|---|")
    for m, r in summary["models"].items():
        best = next((s for s in r["steps"] if s["connections"] == r["largest_served"]), None)
        ref = best or next((s for s in r["steps"] if s["established"]), None) or {}
        k = ref.get("kernel_per_conn_bytes") or {}
        kern = "–"
        if k:
            sock = k.get("sock_mem")
            kern = "%s + %s" % (fmt_b(k.get("Slab")),
                                "~0" if sock is not None and abs(sock) < 100 else fmt_b(sock))
            if (k.get("KernelStack") or 0) >= 1024:
                kern += " + stack %s" % fmt_b(k["KernelStack"])
        p99 = ref.get("p99_us")
        why = "; ".join(r["why"] or []) or "–"
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            LABELS.get(m, m), fmt_int(r["largest_served"]) if r["largest_served"] else "none",
            fmt_int(r["first_not_served"]) if r["first_not_served"] else "none (ramp ended)",
            why.replace("|", "/"), fmt_b(ref.get("rss_per_conn_bytes")),
            fmt_b(ref.get("vsz_per_conn_bytes")), kern,
            ("%.1f ms" % (p99 / 1000.0)) if p99 is not None else "–"))
        held = r["largest_served"]
        if r["first_not_served"]:
            short = short_reason(r)
            cells.append("%s: %s held, stops at %s (%s)" % (
                m, fmt_int(held) if held else "none of the steps", fmt_int(r["first_not_served"]),
                short))
        else:
            cells.append("%s: %s held" % (m, fmt_int(held) if held else "none"))
    lines.append("")
    lines.append("Per step (connections established / probes answered; RSS and threads of the "
                 "server's whole process tree while held):\n")
    lines.append("| model | step | procs | established | alive | RSS | threads | p99 | served |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for m, r in summary["models"].items():
        for s in r["steps"]:
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                m, fmt_int(s["connections"]), s.get("procs") or "–", fmt_int(s["established"]),
                fmt_int(s["alive"]), fmt_b((s["rss_kib"] or 0) * 1024) if s["rss_kib"] else "–",
                fmt_int(s["threads"]), ("%.1f ms" % (s["p99_us"] / 1000.0))
                if s["p99_us"] is not None else "–",
                "yes" if s["served"] else "no: " + "; ".join(s["why"]).replace("|", "/")))
    lines.append("")
    lines.append("Walls, nearest first for threads:\n")
    for w in walls(envl, plan, summary):
        lines.append("- " + w)
    lines.append("")
    lines.append("Kernel memory per connection is system-wide and counts both ends of each "
                 "loopback connection (loadgen's socket and the server's): /proc/meminfo `Slab` "
                 "and /proc/net/sockstat `TCP mem` (pages) at the hold's peak minus just before "
                 "it, divided by the connections established; `KernelStack` is the threads' "
                 "kernel stacks (16 KiB each). The per-cache split from /proc/slabinfo is in "
                 "scale/summary.json. On a shared machine read them as an order of magnitude.\n")
    return "; ".join(cells), "\n".join(lines)


def main(argv):
    if len(argv) >= 2 and argv[0] == "env":
        env(argv[1], argv[2:])
    elif len(argv) == 2 and argv[0] == "snap":
        with open(argv[1], "w") as f:
            json.dump(snapshot(), f)
    elif len(argv) == 3 and argv[0] == "watch":
        watch(argv[1], int(argv[2]))
    elif len(argv) == 2 and argv[0] == "report":
        report(argv[1])
    elif len(argv) == 3 and argv[0] == "served":
        s = load(os.path.join(argv[1], argv[2] + ".step.json")) or {"tag": argv[2],
                                                                     "connections": 0,
                                                                     "skipped": "no step file"}
        why = step_why(argv[1], s)[0]
        for w in why:
            sys.stderr.write("scale: %s: %s\n" % (argv[2], w))
        return 1 if why else 0
    elif len(argv) == 1 and argv[0] == "tasks":
        print(tasks_in_use())
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
