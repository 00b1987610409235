/* Blocking-style socket I/O for coroutines on a libevent loop: a connection's handler runs in
 * its own coroutine (coro.h) and calls coio_read / coio_write_all as a thread would call
 * read / write; on EAGAIN they arm the socket's event and switch back to the loop, and the
 * event's callback switches into the coroutine again. One loop thread owns a coio. */
#ifndef TVSA_COIO_H
#define TVSA_COIO_H
#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coro.h"

struct coio {
    struct coro *co;
    evutil_socket_t fd;            /* non-blocking; not owned (its opener closes it) */
    struct event *rev, *wev;       /* persistent; at most the awaited one is armed */
    const struct timeval *idle;    /* each wait's timeout, or NULL */
    short fired;                   /* what woke the coroutine: EV_READ, EV_WRITE, EV_TIMEOUT */
    int short_read;                /* the last recv took less than asked: wait before the next */
    void (*handler)(struct coio *io, void *arg);
    void (*done)(void *arg);       /* on the loop's stack, once the handler returned */
    void *arg;
    uint64_t switches;             /* into and out of this coroutine */
};

/* Totals over every coio of the process (every loop thread), for the stopped line. */
struct coio_totals {
    uint64_t started;     /* coroutines created */
    uint64_t finished;    /* whose handler returned (EOF, error, timeout) */
    uint64_t discarded;   /* freed while parked in a wait (the server's stop) */
    uint64_t switches;    /* coroutine switches, in and out, of the coios freed so far */
};

/* Sets io up on fd and base and schedules handler(io, arg) to start in a new coroutine of
 * stack_bytes on the loop's next turn (not now: the caller's set-up finishes first). Each
 * wait times out after idle (NULL: never). Once the handler returns, done(arg) is called on
 * the loop's own stack, where it may free io. 0, or -1 with err filled (nothing to free). */
int coio_start(struct coio *io, struct event_base *base, evutil_socket_t fd,
               const struct timeval *idle, size_t stack_bytes,
               void (*handler)(struct coio *io, void *arg), void (*done)(void *arg), void *arg,
               char *err, size_t errlen);

/* From the handler, like read(2) on a blocking socket: bytes read (> 0), 0 at EOF, or -1 on an
 * error or when nothing came for the idle timeout (errno ETIMEDOUT). */
ssize_t coio_read(struct coio *io, void *buf, size_t len);

/* From the handler: sends all len bytes, parking while the socket is full. 0, or -1 on an error
 * or when the peer took nothing for the idle timeout (errno ETIMEDOUT). */
int coio_write_all(struct coio *io, const void *buf, size_t len);

/* On the loop's stack: frees the events and the coroutine — finished, or parked in a wait and
 * discarded without resuming (what its frames held must be owned elsewhere). Not the fd. */
void coio_free(struct coio *io);

void coio_totals(struct coio_totals *out);

#endif
