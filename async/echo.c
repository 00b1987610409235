/* async-echo: uppercase TCP echo on one thread and one libevent event_base (or --loops N,
 * one each), written three times: --api bufferevent (the streams style, default), --api event
 * (raw callbacks and the server's own buffer, the protocol/transport style) and --api coro (a
 * coroutine per connection in blocking style, like threaded-echo's handler). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>

#include "burn.h"
#include "bytebuf.h"
#include "lib/asrv.h"
#include "lib/coio.h"
#include "opts.h"
#include "serve.h"
#include "upper.h"

#define SERVER_NAME "async-echo"
#define READ_CHUNK 16384

static const struct opts_spec spec = {
    SERVER_NAME,
    "Uppercase TCP echo: one thread, one libevent loop (bufferevents, raw events or coroutines).",
    9000, OPTS_API | OPTS_WORK | OPTS_PROCS | OPTS_LOOPS,
};

/* Owned by its loop's thread. --api bufferevent uses base.flow; --api event the rest, with
 * the same three states as bevflow's (bevflow.h). */
struct conn {
    struct asrv_conn base;          /* first (asrv.h) */
    union {                         /* one --api per process: every idle connection pays for
                                     * the largest member only */
        struct {                    /* --api event */
            enum bevflow_state state;
            struct event *rev, *wev; /* wev: made on the first send the socket does not finish */
            struct bytebuf out;     /* only unsent bytes; freed when empty */
        };
        struct coio io;             /* --api coro: its coroutine and events */
    };
};

/* Read-only once main parsed it; every loop reads it. */
static struct server_opts o;

/* ---- --api bufferevent ------------------------------------------------------------------ */

static void bev_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t n = evbuffer_get_length(in);
    /* One chain, so the pull-up copies nothing: every read is drained before the next (sent,
     * or moved to the output). */
    unsigned char *p = evbuffer_pullup(in, -1);
    if (p == NULL) {
        asrv_conn_close(&c->base);
        return;
    }
    c->base.bytes_in += n;
    if (o.work_us > 0)
        burn_cpu_us((unsigned)o.work_us);
    upper_inplace(p, n);
    c->base.bytes_out += n;
    /* Like asyncio's transport.write(): with nothing queued, try the socket at once and queue
     * only what it did not take. Queuing everything would arm and disarm EPOLLOUT around every
     * reply: two epoll_ctl calls and a wake-up per request (measured: 5 syscalls a request
     * instead of 3). On a write error the bufferevent's next read or write reports it. */
    if (evbuffer_get_length(out) == 0) {
        /* send() rather than evbuffer_write()'s writev(), which costs more in the kernel for
         * one buffer; the fd the skeleton keeps rather than bufferevent_getfd(), a locked
         * control call. */
        ssize_t sent = send(c->base.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) {
            evbuffer_drain(in, (size_t)sent);
            n -= (size_t)sent;
        }
    }
    if (n > 0)
        evbuffer_add_buffer(out, in); /* moves the chains, no copy */
    bevflow_check_output(&c->base.flow);
}

/* ---- --api event ------------------------------------------------------------------------ */

/* The only place an --api event connection changes state: only the read event changes.
 * Draining is final; back-pressure comes and goes (bevflow's rule, for raw events). */
static void conn_set_state(struct conn *c, enum bevflow_state next)
{
    int legal = (c->state == BEVFLOW_READING && next != BEVFLOW_READING) ||
                (c->state == BEVFLOW_BACKPRESSURED && next != BEVFLOW_BACKPRESSURED);
    if (!legal) {
        serve_log("bad state change %d -> %d", c->state, next);
        return;
    }
    c->state = next;
    if (next == BEVFLOW_READING)
        event_add(c->rev, asrv_idle(&c->base));
    else
        event_del(c->rev);
}

static void raw_write_cb(evutil_socket_t fd, short what, void *arg);

/* Sends what is queued; the queue's storage is freed once it is empty, so an idle
 * connection holds no buffer. 0, or -1 when the connection failed. */
static int raw_flush(struct conn *c)
{
    size_t len;
    const uint8_t *p = bytebuf_peek(&c->out, &len);

    while (len > 0) {
        ssize_t n = send(c->base.fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        bytebuf_consume(&c->out, (size_t)n);
        c->base.bytes_out += (uint64_t)n;
        p = bytebuf_peek(&c->out, &len);
    }
    if (len > 0) {
        /* Made only now: most connections never fill their socket, and an idle one then costs
         * one event, not two. */
        if (c->wev == NULL) {
            c->wev = event_new(asrv_base(&c->base), c->base.fd, EV_WRITE | EV_PERSIST,
                               raw_write_cb, c);
            if (c->wev == NULL)
                return -1;
        }
        /* Re-armed (so its timeout restarts) only when it was not pending: the timeout then
         * measures how long the client has taken nothing, not the time since the last read. */
        if (!event_pending(c->wev, EV_WRITE, NULL))
            event_add(c->wev, asrv_idle(&c->base));
    } else {
        bytebuf_free(&c->out);
        if (c->wev)
            event_del(c->wev);
    }
    return 0;
}

/* Sends buf[0..n) after what is queued: at once when nothing is (asyncio's
 * transport.write()), queuing only what the socket did not take. 0, or -1 when the
 * connection failed. */
static int raw_send(struct conn *c, const uint8_t *buf, size_t n)
{
    if (bytebuf_len(&c->out) == 0) {
        ssize_t sent = send(c->base.fd, buf, n, MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (sent > 0) {
            c->base.bytes_out += (uint64_t)sent;
            buf += sent;
            n -= (size_t)sent;
        }
        if (n == 0)
            return 0;
    }
    if (bytebuf_append(&c->out, buf, n) < 0)
        return -1;
    return raw_flush(c);
}

/* Every read lands here first: one buffer per loop thread (--loops), not one per connection,
 * so an idle connection costs no read buffer (nginx's and asyncio's way). */
static _Thread_local uint8_t read_scratch[READ_CHUNK];

static void raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (what & EV_TIMEOUT) {
        asrv_conn_close(&c->base);
        return;
    }
    ssize_t n = recv(fd, read_scratch, sizeof read_scratch, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        asrv_conn_close(&c->base);
        return;
    }
    if (n == 0) {
        if (bytebuf_len(&c->out) == 0)
            asrv_conn_close(&c->base);
        else
            conn_set_state(c, BEVFLOW_DRAINING);
        return;
    }
    c->base.bytes_in += (uint64_t)n;
    if (o.work_us > 0)
        burn_cpu_us((unsigned)o.work_us);
    upper_inplace(read_scratch, (size_t)n);
    if (raw_send(c, read_scratch, (size_t)n) < 0) {
        asrv_conn_close(&c->base);
        return;
    }
    if (bytebuf_len(&c->out) >= BEVFLOW_HIGH_WATER)
        conn_set_state(c, BEVFLOW_BACKPRESSURED);
}

static void raw_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    if (what & EV_TIMEOUT) {
        asrv_conn_close(&c->base); /* took nothing for --idle-timeout seconds */
        return;
    }
    if (raw_flush(c) < 0) {
        asrv_conn_close(&c->base);
        return;
    }
    size_t pending = bytebuf_len(&c->out);
    if (c->state == BEVFLOW_DRAINING && pending == 0)
        asrv_conn_close(&c->base);
    else if (c->state == BEVFLOW_BACKPRESSURED && pending <= BEVFLOW_LOW_WATER)
        conn_set_state(c, BEVFLOW_READING);
}

/* ---- --api coro: one coroutine per connection, written like threaded-echo -------------- */

/* threaded/echo.c's read/uppercase/write loop, in a coroutine: coio_read and coio_write_all
 * park it (and run the loop) where the thread would block. A client that stops reading parks
 * it in coio_write_all, so it stops reading: back-pressure as in the threaded server, with at
 * most one buffer of output held per connection. */
static void coro_echo(struct coio *io, void *arg)
{
    struct conn *c = arg;
    /* On the coroutine's stack (--coro-stack-kb is at least 32), like the thread's buffer. */
    uint8_t buf[READ_CHUNK];
    for (;;) {
        ssize_t n = coio_read(io, buf, sizeof buf);
        if (n <= 0)
            break; /* EOF, error or idle timeout */
        c->base.bytes_in += (uint64_t)n;
        if (o.work_us > 0)
            burn_cpu_us((unsigned)o.work_us);
        upper_inplace(buf, (size_t)n);
        if (coio_write_all(io, buf, (size_t)n) < 0)
            break;
        c->base.bytes_out += (uint64_t)n;
    }
}

/* coio's done callback, on the loop's stack once the handler returned. */
static void coro_done(void *arg)
{
    struct conn *c = arg;
    asrv_conn_close(&c->base);
}

static int coro_conn_start(struct conn *c)
{
    char err[256];
    if (coio_start(&c->io, asrv_base(&c->base), c->base.fd, asrv_idle(&c->base),
                   (size_t)o.coro_stack_kb * 1024, coro_echo, coro_done, c, err,
                   sizeof err) < 0) {
        serve_log("%s", err);
        return -1;
    }
    return 0;
}

static json_t *coro_stopped_extra(const struct asrv_result *r, void *arg)
{
    struct coio_totals t;
    (void)r;
    (void)arg;
    if (o.api != OPTS_API_CORO)
        return NULL;
    coio_totals(&t);
    return json_pack("{s:I, s:I, s:I, s:I}", "coroutines_started", (json_int_t)t.started,
                     "coroutines_finished", (json_int_t)t.finished, "coroutines_discarded",
                     (json_int_t)t.discarded, "coro_switches", (json_int_t)t.switches);
}

/* ---- the skeleton's callbacks ----------------------------------------------------------- */

static int conn_start(struct asrv_conn *ac, void *arg)
{
    struct conn *c = (struct conn *)ac;
    (void)arg;
    if (o.api == OPTS_API_BUFFEREVENT)
        return asrv_conn_bev(ac, bev_read_cb);
    if (o.api == OPTS_API_CORO)
        return coro_conn_start(c);
    c->state = BEVFLOW_READING;
    c->rev = event_new(asrv_base(ac), ac->fd, EV_READ | EV_PERSIST, raw_read_cb, c);
    if (c->rev == NULL)
        return -1;
    return event_add(c->rev, asrv_idle(ac));
}

static void conn_free(struct asrv_conn *ac, void *arg)
{
    struct conn *c = (struct conn *)ac;
    (void)arg;
    if (o.api == OPTS_API_CORO) {
        coio_free(&c->io); /* a coroutine parked in a wait is discarded, not resumed */
    } else if (o.api == OPTS_API_EVENT) {
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        bytebuf_free(&c->out);
    }
}

static json_t *listening_extra(const struct asrv_result *r, void *arg)
{
    static const char *const api_names[] = {"bufferevent", "event", "coro"};
    (void)r;
    (void)arg;
    json_t *extra = json_pack("{s:s, s:I}", "api", api_names[o.api], "work_us",
                              (json_int_t)o.work_us);
    if (o.api == OPTS_API_CORO)
        json_object_update_new(extra, json_pack("{s:I, s:s}", "coro_stack_kb",
                                                (json_int_t)o.coro_stack_kb, "coro_backend",
                                                coro_backend()));
    return extra;
}

static const struct asrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP, .conn_size = sizeof(struct conn),
    .conn_start = conn_start, .conn_free = conn_free, .listening_extra = listening_extra,
    .stopped_extra = coro_stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    return asrv_run(&cfg);
}
