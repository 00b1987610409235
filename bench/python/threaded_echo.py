#!/usr/bin/env python3
"""python-threaded-echo: uppercase TCP echo, one blocking thread per connection, or
--pool N: a concurrent.futures.ThreadPoolExecutor(N) (the table's "Threaded (50 threads)").
The Python peer of bin/threaded-echo; same flags and JSON lines (docs/interfaces.md)."""
import concurrent.futures
import os
import resource
import selectors
import signal
import socket
import sys
import threading
import time

import tvsa_server

SERVER, MODEL = "python-threaded-echo", "threaded"
READ_BUF = 16384
STOP_GRACE_S = 2.0


class Server:
    def __init__(self, opts):
        self.opts = opts
        self.stats = tvsa_server.Stats()
        self.live = set()            # sockets being served, so the stop can shut them down
        self.busy = 0                # handlers started and not finished
        self.threads_created = 0
        self.lock = threading.Lock()  # guards live, busy, threads_created
        self.idle = threading.Condition(self.lock)

    def serve(self, conn):
        """The read/uppercase/write loop. A client that stops reading blocks this thread in
        sendall(), which stops it reading: back-pressure comes free with blocking I/O."""
        n_in = n_out = 0
        try:
            if self.opts.idle_timeout > 0:
                conn.settimeout(self.opts.idle_timeout)
            while True:
                data = conn.recv(READ_BUF)
                if not data:
                    break
                n_in += len(data)
                tvsa_server.burn_cpu_us(self.opts.work_us)
                conn.sendall(data.upper())  # bytes.upper(): ASCII only, like common/upper.c
                n_out += len(data)
        except OSError:
            pass  # reset, idle timeout, or the stop's shutdown()
        finally:
            conn.close()
            self.stats.closed(n_in, n_out)  # before `busy` drops: the stop reports after it
            with self.lock:
                self.live.discard(conn)
                self.busy -= 1
                self.idle.notify_all()

    def thread_started(self):
        with self.lock:
            self.threads_created += 1

    def run(self, listener, wake_fd):
        pool = None
        if self.opts.pool > 0:
            pool = concurrent.futures.ThreadPoolExecutor(self.opts.pool,
                                                         thread_name_prefix="worker",
                                                         initializer=self.thread_started)
        create_failures = accept_pauses = 0
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ)
        sel.register(wake_fd, selectors.EVENT_READ)
        tvsa_server.emit_listening(SERVER, MODEL, self.opts.bind, listener.getsockname()[1],
                                   pool=self.opts.pool, stack_kb=self.opts.stack_kb,
                                   work_us=self.opts.work_us)
        running = True
        while running:
            for key, _ in sel.select():
                if key.fileobj is not listener:
                    running = False  # a signal arrived (set_wakeup_fd)
                    break
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as e:  # EMFILE and friends: say so, keep serving the others
                    print("%s: accept: %s" % (SERVER, e), file=sys.stderr)
                    accept_pauses += 1
                    time.sleep(0.01)
                    continue
                conn.setblocking(True)
                if not self.stats.admit(self.opts.max_conns):
                    conn.close()
                    continue
                with self.lock:
                    self.live.add(conn)
                    self.busy += 1
                try:
                    if pool is not None:
                        pool.submit(self.serve, conn)
                    else:
                        threading.Thread(target=self.serve, args=(conn,), daemon=True).start()
                        self.thread_started()
                except RuntimeError as e:  # "can't start new thread"
                    print("%s: starting a thread: %s" % (SERVER, e), file=sys.stderr)
                    create_failures += 1
                    with self.lock:
                        self.live.discard(conn)
                        self.busy -= 1
                    conn.close()
                    self.stats.closed(0, 0)
        listener.close()
        unfinished = self.stop_handlers(pool)
        tvsa_server.emit_stopped(SERVER, MODEL, self.stats,
                                 threads_created=self.threads_created,
                                 thread_create_failures=create_failures,
                                 handlers_unfinished=unfinished,
                                 thread_stack_bytes=stack_bytes(self.opts.stack_kb),
                                 accept_pauses=accept_pauses)

    def stop_handlers(self, pool):
        """Shuts every connection down so each handler's recv() or sendall() returns, and
        waits STOP_GRACE_S for them. Returns how many did not finish."""
        with self.lock:
            for conn in self.live:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            deadline = time.monotonic() + STOP_GRACE_S
            while self.busy > 0 and time.monotonic() < deadline:
                self.idle.wait(deadline - time.monotonic())
            unfinished = self.busy
        if pool is not None:
            pool.shutdown(wait=unfinished == 0, cancel_futures=True)
        return unfinished


def stack_bytes(stack_kb):
    """The stack every connection thread gets: --stack-kb, or glibc's default for new
    threads, which is the stack rlimit (8 MiB unless `ulimit -s` says otherwise)."""
    if stack_kb > 0:
        return stack_kb * 1024
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    return soft if soft > 0 else 8 << 20


def main():
    opts = tvsa_server.parse_args(
        "threaded_echo.py", "Uppercase TCP echo in Python: one blocking thread per connection, "
        "or a ThreadPoolExecutor of --pool N threads.", threaded=True)
    if opts.stack_kb > 0:
        threading.stack_size(opts.stack_kb * 1024)
    # A signal may land on any thread; the C handler writes its number to this pipe, which the
    # accept loop watches, so the stop never waits for the main thread to run bytecode.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        listener = socket.create_server((opts.bind, opts.port), family=family_of(opts.bind),
                                        backlog=socket.SOMAXCONN, reuse_port=False)
    except OSError as e:
        print("%s: bind %s:%d: %s" % (SERVER, opts.bind, opts.port, e), file=sys.stderr)
        return 1
    listener.setblocking(False)
    Server(opts).run(listener, wake_r)
    sys.stdout.flush()
    # Not a normal exit: a handler that missed the grace period (handlers_unfinished) must
    # not keep the process alive, and the pool's threads are not daemons.
    os._exit(0)


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


if __name__ == "__main__":
    sys.exit(main())
