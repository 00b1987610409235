"""What both Python echo servers share: the command line, the counters, the JSON lines, the
CPU work. Python 3 standard library only, like the servers.

The contract is the C servers' (docs/interfaces.md): the same flags, a `listening` line and a
`stopped` line with the same keys on stdout, flushed at once; diagnostics on stderr; bad
flags exit 2.
"""
import argparse
import json
import os
import platform
import resource
import socket
import sys
import threading
import time


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad input already; this only adds the C servers' hint line."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, "%s: %s\nTry '%s --help'.\n" % (self.prog, message, self.prog))


def _number(lo, hi):
    def parse(s):
        # Digits only, like common/opts.c: int() would accept " 5", "+5" and "5_0".
        if not (s.isdigit() or (s[:1] == "-" and s[1:].isdigit())):
            raise argparse.ArgumentTypeError("not a number: %r" % s)
        v = int(s)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError("%d is outside %d..%d" % (v, lo, hi))
        return v
    return parse


def _address(s):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, s)
            return s
        except OSError:
            pass
    raise argparse.ArgumentTypeError("not a numeric address: %r" % s)


def parse_args(prog, description, threaded, argv=None):
    """The flags of docs/interfaces.md that an echo server takes; the threaded model adds
    --pool and --stack-kb."""
    p = _Parser(prog=prog, description=description,
                epilog="Prints one JSON line on stdout when listening and one when stopped "
                       "(SIGINT/SIGTERM).")
    p.add_argument("--bind", type=_address, default="127.0.0.1", metavar="ADDR",
                   help="numeric address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_number(0, 65535), default=9000, metavar="N",
                   help="port, 0 picks a free one (default 9000)")
    p.add_argument("--max-conns", type=_number(0, 10000000), default=0, metavar="N",
                   help="refuse connections beyond N (default 0: no cap)")
    p.add_argument("--idle-timeout", type=_number(0, 86400), default=0, metavar="SEC",
                   help="close connections idle for SEC s (default 0: never)")
    if threaded:
        p.add_argument("--stack-kb", type=_number(32, 1048576), default=0, metavar="N",
                       help="thread stack in KiB, 32 or more (default: the system's, 8 MiB)")
        p.add_argument("--pool", type=_number(0, 100000), default=0, metavar="N",
                       help="a ThreadPoolExecutor of N threads serves the connections "
                            "(default 0: a thread each)")
    p.add_argument("--work-us", type=_number(0, 10000000), default=0, metavar="N",
                   help="burn N us of CPU (Python bytecode, holding the GIL) per message "
                        "received (default 0)")
    return p.parse_args(argv)


class Stats:
    """The counters of the stopped line (common/srvstats.c), behind one lock: the threaded
    server updates them from every connection thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = self.refused = self.current = self.peak = 0
        self.bytes_in = self.bytes_out = 0

    def admit(self, max_conns):
        """Counts a new connection: True if it may be served, False if --max-conns refuses
        it (counted as refused, not accepted, as in the C servers)."""
        with self.lock:
            if max_conns > 0 and self.current >= max_conns:
                self.refused += 1
                return False
            self.accepted += 1
            self.current += 1
            self.peak = max(self.peak, self.current)
            return True

    def closed(self, bytes_in, bytes_out):
        with self.lock:
            self.current -= 1
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def emit_listening(server, model, addr, port, **extra):
    obj = {"event": "listening", "server": server, "model": model, "addr": addr,
           "port": port, "pid": os.getpid()}
    obj.update(extra, python=platform.python_implementation() + " " +
               platform.python_version())
    emit(obj)


def emit_stopped(server, model, stats, **extra):
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with stats.lock:
        obj = {"event": "stopped", "server": server, "model": model,
               "connections_accepted": stats.accepted,
               "connections_refused": stats.refused,
               "peak_concurrent": stats.peak,
               "bytes_in": stats.bytes_in, "bytes_out": stats.bytes_out}
    obj["rusage"] = {"user_s": round(ru.ru_utime, 6), "sys_s": round(ru.ru_stime, 6), "maxrss_kib": ru.ru_maxrss,
                     "ctx_switches": {"voluntary": ru.ru_nvcsw,
                                      "involuntary": ru.ru_nivcsw}}
    obj.update(extra)
    emit(obj)


def burn_cpu_us(us):
    """CPU-bound work for --work-us, in Python bytecode: the thread holds the GIL while it
    runs (CPython lets another thread in only at its switch interval, 5 ms). Thread CPU time,
    as in common/burn.c: a thread that waits for the GIL or a core still does its full share.
    Returns the hash so the loop has a result."""
    if us <= 0:
        return 0
    # The thread CPU clock is a system call: as in common/burn.c it is read O(log us) times,
    # each time doing half of what is left at the pace measured so far.
    now = time.thread_time_ns()
    deadline = now + us * 1000
    h = 0x9E3779B97F4A7C15
    batches = 1
    while True:
        for _ in range(batches):
            for _ in range(32):
                h = (h * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        t = time.thread_time_ns()
        if t >= deadline:
            return h
        per_batch = (t - now) // batches + 1
        now = t
        batches = max(1, (deadline - now) // (2 * per_batch))
