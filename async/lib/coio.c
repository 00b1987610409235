/* Blocking-style socket I/O for coroutines on a libevent loop (coio.h). */
#include "coio.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Process-wide: with --loops N, several loop threads add to them (once per event, not per
 * switch: a switch stays free of atomics). */
static _Atomic uint64_t total_started, total_finished, total_discarded, total_switches;

/* The coroutine's body: the server's handler, then back to the loop for good. */
static void coio_main(void *arg)
{
    struct coio *io = arg;
    io->handler(io, io->arg);
}

/* Both events' callback, on the loop's stack: switch into the coroutine that waits. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct coio *io = arg;
    (void)fd;
    io->fired = what;
    io->switches += 2; /* in, and out again at its next wait or its end */
    if (coro_resume(io->co) == CORO_FINISHED) {
        atomic_fetch_add_explicit(&total_finished, 1, memory_order_relaxed);
        io->done(io->arg); /* may free io */
    }
}

int coio_start(struct coio *io, struct event_base *base, evutil_socket_t fd,
               const struct timeval *idle, size_t stack_bytes,
               void (*handler)(struct coio *io, void *arg), void (*done)(void *arg), void *arg,
               char *err, size_t errlen)
{
    memset(io, 0, sizeof *io);
    io->fd = fd;
    io->idle = idle;
    io->handler = handler;
    io->done = done;
    io->arg = arg;
    io->rev = event_new(base, fd, EV_READ | EV_PERSIST, wake_cb, io);
    io->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, wake_cb, io);
    if (io->rev == NULL || io->wev == NULL) {
        snprintf(err, errlen, "event_new failed");
        goto fail;
    }
    io->co = coro_new(coio_main, io, stack_bytes, err, errlen);
    if (io->co == NULL)
        goto fail;
    /* The first switch in happens from the loop, like every later one. */
    event_active(io->rev, EV_READ, 0);
    atomic_fetch_add_explicit(&total_started, 1, memory_order_relaxed);
    return 0;
fail:
    if (io->rev)
        event_free(io->rev);
    if (io->wev)
        event_free(io->wev);
    memset(io, 0, sizeof *io);
    return -1;
}

/* Parks until ev fires (or its idle timeout). 0, or -1 (errno set).
 * The events are persistent and stay armed between waits, so a connection that waits for
 * reading again and again costs no epoll_ctl (one-shot events would cost two per request: a
 * delete when it fires, an add at the next wait). Only the awaited one may be armed, or the
 * other would wake the coroutine for what it does not wait for: waiting to write disarms
 * reading (back-pressure: no reading while the peer takes nothing), and the reverse. */
static int coio_wait(struct coio *io, struct event *ev)
{
    struct event *other = ev == io->rev ? io->wev : io->rev;
    if (event_pending(other, EV_READ | EV_WRITE, NULL))
        event_del(other);
    if (!event_pending(ev, EV_READ | EV_WRITE, NULL) && event_add(ev, io->idle) < 0) {
        errno = EIO;
        return -1;
    }
    if (coro_yield() < 0) { /* not called from io's coroutine: a caller's bug */
        errno = EINVAL;
        return -1;
    }
    if (io->fired & EV_TIMEOUT) {
        errno = ETIMEDOUT;
        return -1;
    }
    return 0;
}

ssize_t coio_read(struct coio *io, void *buf, size_t len)
{
    for (;;) {
        /* After a short read the socket is most likely empty: wait first rather than spend a
         * recv on EAGAIN (the level-triggered event fires at once if data came meanwhile). */
        if (!io->short_read) {
            ssize_t n = recv(io->fd, buf, len, 0);
            if (n >= 0) {
                io->short_read = n > 0 && (size_t)n < len;
                return n;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
        }
        io->short_read = 0;
        if (coio_wait(io, io->rev) < 0)
            return -1;
    }
}

int coio_write_all(struct coio *io, const void *buf, size_t len)
{
    const char *p = buf;
    size_t off = 0;

    while (off < len) {
        ssize_t n = send(io->fd, p + off, len - off, MSG_NOSIGNAL);
        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (coio_wait(io, io->wev) < 0)
            return -1;
    }
    return 0;
}

void coio_free(struct coio *io)
{
    if (io->co == NULL)
        return;
    event_free(io->rev);
    event_free(io->wev);
    if (coro_state(io->co) != CORO_FINISHED)
        atomic_fetch_add_explicit(&total_discarded, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&total_switches, io->switches, memory_order_relaxed);
    if (coro_free(io->co) < 0)
        fprintf(stderr, "coio: a coroutine freed while it runs; its stack is leaked\n");
    memset(io, 0, sizeof *io);
}

void coio_totals(struct coio_totals *out)
{
    out->started = atomic_load(&total_started);
    out->finished = atomic_load(&total_finished);
    out->discarded = atomic_load(&total_discarded);
    out->switches = atomic_load(&total_switches);
}
