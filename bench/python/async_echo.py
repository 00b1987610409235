#!/usr/bin/env python3
"""python-async-echo: uppercase TCP echo, one thread, one asyncio loop, the streams API (the
chapter's style). The Python peer of bin/async-echo; same flags and JSON lines
(docs/interfaces.md)."""
import asyncio
import signal
import socket
import sys

import tvsa_server

SERVER, MODEL = "python-async-echo", "async"
STOP_GRACE_S = 2.0


async def idle_bounded(awaitable, idle_timeout):
    """awaitable, or asyncio.TimeoutError after idle_timeout s (0: no bound)."""
    if idle_timeout <= 0:
        return await awaitable
    return await asyncio.wait_for(awaitable, idle_timeout)


def make_handler(opts, stats, tasks):
    async def handle(reader, writer):
        if not stats.admit(opts.max_conns):
            writer.close()
            return
        task = asyncio.current_task()
        tasks.add(task)
        n_in = n_out = 0
        try:
            while True:
                data = await idle_bounded(reader.read(4096), opts.idle_timeout)
                if not data:
                    break
                n_in += len(data)
                tvsa_server.burn_cpu_us(opts.work_us)  # the loop runs nothing else meanwhile
                writer.write(data.upper())  # bytes.upper(): ASCII only, like common/upper.c
                n_out += len(data)
                # Back-pressure: a client that stops reading stops this coroutine here, and
                # with it the reads from that client.
                await idle_bounded(writer.drain(), opts.idle_timeout)
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
            pass  # reset, idle timeout, or the stop
        finally:
            tasks.discard(task)
            writer.transport.abort()  # no lingering flush to a client that does not read
            stats.closed(n_in, n_out)
    return handle


def count_accept_pauses(loop):
    """A one-item list counting asyncio's accept pauses: on EMFILE, ENFILE, ENOBUFS or ENOMEM
    it stops accepting for 1 s and reports it through the loop's exception handler (the C
    servers' accept_pauses, 100 ms each there). CPython 3.11 keeps calling accept() up to
    backlog times in that same callback, each failure reported and a retry scheduled, so a
    burst of reports within one callback counts (and is logged) as one pause."""
    pauses = [0]
    in_burst = [False]

    def burst_over():
        in_burst[0] = False

    def handler(lp, context):
        if context.get("message") != "socket.accept() out of system resource":
            lp.default_exception_handler(context)
        elif not in_burst[0]:
            in_burst[0] = True
            pauses[0] += 1
            lp.call_soon(burst_over)
            lp.default_exception_handler(context)
    loop.set_exception_handler(handler)
    return pauses


async def serve(opts):
    stats = tvsa_server.Stats()
    tasks = set()
    try:
        server = await asyncio.start_server(make_handler(opts, stats, tasks), opts.bind,
                                            opts.port, backlog=socket.SOMAXCONN)
    except OSError as e:
        print("%s: bind %s:%d: %s" % (SERVER, opts.bind, opts.port, e), file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    accept_pauses = count_accept_pauses(loop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tvsa_server.emit_listening(SERVER, MODEL, opts.bind, server.sockets[0].getsockname()[1],
                               work_us=opts.work_us)
    await stop.wait()
    server.close()  # stops accepting; in Python < 3.12 it leaves the clients alone
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.wait(list(tasks), timeout=STOP_GRACE_S)
    tvsa_server.emit_stopped(SERVER, MODEL, stats, accept_pauses=accept_pauses[0])
    return 0


def main():
    opts = tvsa_server.parse_args(
        "async_echo.py", "Uppercase TCP echo in Python: one thread, one asyncio loop "
        "(asyncio.start_server, streams).", threaded=False)
    return asyncio.run(serve(opts))


if __name__ == "__main__":
    sys.exit(main())
