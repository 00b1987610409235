/* async-echo: uppercase TCP echo on one thread and one libevent event_base, written twice:
 * --api bufferevent (the streams style, default) and --api event (raw callbacks and the
 * server's own buffer, the protocol/transport style). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "burn.h"
#include "lib/bevflow.h"
#include "lib/evlisten.h"
#include "bytebuf.h"
#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "upper.h"

#define SERVER_NAME "async-echo"
/* Back-pressure: past HIGH_WATER unsent bytes a connection stops reading; it resumes once its
 * output drained to LOW_WATER. So a client that sends but never reads costs at most ~HIGH_WATER
 * plus one read of server memory. */
#define HIGH_WATER (256 * 1024)
#define LOW_WATER (64 * 1024)
#define READ_CHUNK 16384

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase TCP echo: one thread, one libevent loop (bufferevents or raw events).",
    9000, OPTS_API | OPTS_WORK,
};

/* --api event's connection states (--api bufferevent's are bevflow's, the same three). */
enum conn_state {
    CONN_READING,        /* reading, echoing */
    CONN_BACKPRESSURED,  /* output over HIGH_WATER: not reading until it drains to LOW_WATER */
    CONN_DRAINING,       /* the client sent EOF: flush what is queued, then close */
};

struct server;

struct conn {
    struct bevflow flow;        /* --api bufferevent; first: its callbacks get the conn */
    struct server *srv;
    enum conn_state state;      /* --api event */
    int fd;                     /* the socket (--api bufferevent: the bufferevent owns it) */
    struct event *rev, *wev;    /* wev: made on the first send the socket does not finish */
    struct bytebuf out;
    uint64_t bytes_in, bytes_out;
    struct conn *prev, *next;   /* every live connection, so the stop can close them all */
};

/* Everything here is owned by the loop thread; there is no other thread. */
struct server {
    const struct server_opts *o;
    struct event_base *base;
    struct evlisten *listener;
    struct event *stop_ev;
    struct timeval idle_tv;     /* --idle-timeout, when set */
    struct srv_stats stats;
    struct conn *conns;
};

static void conn_free(struct conn *c)
{
    struct server *s = c->srv;

    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->flow.bev) {
        /* Queued but unsent bytes never went out. */
        c->bytes_out -= evbuffer_get_length(bufferevent_get_output(c->flow.bev));
        bufferevent_free(c->flow.bev); /* BEV_OPT_CLOSE_ON_FREE closes the fd */
    } else {
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        if (c->fd >= 0)
            close(c->fd);
        bytebuf_free(&c->out);
    }
    srvstats_closed(&s->stats, c->bytes_in, c->bytes_out);
    free(c);
}

static struct conn *conn_new(struct server *s)
{
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->srv = s;
    c->fd = -1;
    c->state = CONN_READING;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    return c;
}

static const struct timeval *idle_timeout(const struct server *s)
{
    return s->o->idle_timeout_s > 0 ? &s->idle_tv : NULL;
}

/* ---- --api bufferevent ------------------------------------------------------------------ */

static void bev_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t n = evbuffer_get_length(in);
    /* One chain, so the pull-up copies nothing: every read is drained before the next (sent,
     * or moved to the output), and evbuffer_read reads an empty buffer into one chain. */
    unsigned char *p = evbuffer_pullup(in, -1);
    if (p == NULL) {
        conn_free(c);
        return;
    }
    c->bytes_in += n;
    if (c->srv->o->work_us > 0)
        burn_cpu_us((unsigned)c->srv->o->work_us);
    upper_inplace(p, n);
    c->bytes_out += n;
    /* Like asyncio's transport.write(): with nothing queued, try the socket at once and queue
     * only what it did not take. Queuing everything would arm and disarm EPOLLOUT around every
     * reply: two epoll_ctl calls and a wake-up per request (measured: 5 syscalls a request
     * instead of 3). On a write error the bufferevent's next read or write reports it. */
    if (evbuffer_get_length(out) == 0) {
        /* send() rather than evbuffer_write()'s writev(), which costs more in the kernel for
         * one buffer; c->fd rather than bufferevent_getfd(), a locked control call. */
        ssize_t sent = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent > 0) {
            evbuffer_drain(in, (size_t)sent);
            n -= (size_t)sent;
        }
    }
    if (n > 0)
        evbuffer_add_buffer(out, in); /* moves the chains, no copy */
    bevflow_check_output(&c->flow);
}

/* bevflow's finish callback. */
static void bev_conn_finish(void *arg)
{
    conn_free(arg);
}

static int bev_conn_start(struct server *s, struct conn *c, evutil_socket_t fd)
{
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return -1;
    c->flow.bev = bev; /* owned from here: conn_free frees it even if the start fails */
    c->fd = fd;        /* for bev_read_cb's send; the bufferevent closes it */
    return bevflow_start(&c->flow, bev, bev_read_cb, bev_conn_finish, HIGH_WATER, LOW_WATER,
                         idle_timeout(s));
}

/* ---- --api event ------------------------------------------------------------------------ */

/* The only place an --api event connection changes state: only the read event changes.
 * Draining is final; back-pressure comes and goes. */
static void conn_set_state(struct conn *c, enum conn_state next)
{
    int legal = (c->state == CONN_READING && next != CONN_READING) ||
                (c->state == CONN_BACKPRESSURED && next != CONN_BACKPRESSURED);
    if (!legal) {
        fprintf(stderr, SERVER_NAME ": bad state change %d -> %d\n", c->state, next);
        return;
    }
    c->state = next;
    if (next == CONN_READING)
        event_add(c->rev, idle_timeout(c->srv));
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
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        bytebuf_consume(&c->out, (size_t)n);
        c->bytes_out += (uint64_t)n;
        p = bytebuf_peek(&c->out, &len);
    }
    if (len > 0) {
        /* Made only now: most connections never fill their socket, and an idle one then costs
         * one event, not two. */
        if (c->wev == NULL) {
            c->wev = event_new(c->srv->base, c->fd, EV_WRITE | EV_PERSIST, raw_write_cb, c);
            if (c->wev == NULL)
                return -1;
        }
        /* Re-armed (so its timeout restarts) only when it was not pending: the timeout then
         * measures how long the client has taken nothing, not the time since the last read. */
        if (!event_pending(c->wev, EV_WRITE, NULL))
            event_add(c->wev, idle_timeout(c->srv));
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
        ssize_t sent = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (sent > 0) {
            c->bytes_out += (uint64_t)sent;
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

/* Every read lands here first: one buffer per loop thread, not one per connection, so an idle
 * connection costs no read buffer (nginx's and asyncio's way). */
static _Thread_local uint8_t read_scratch[READ_CHUNK];

static void raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    if (what & EV_TIMEOUT) {
        conn_free(c);
        return;
    }
    ssize_t n = recv(fd, read_scratch, sizeof read_scratch, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        conn_free(c);
        return;
    }
    if (n == 0) {
        if (bytebuf_len(&c->out) == 0)
            conn_free(c);
        else
            conn_set_state(c, CONN_DRAINING);
        return;
    }
    c->bytes_in += (uint64_t)n;
    if (c->srv->o->work_us > 0)
        burn_cpu_us((unsigned)c->srv->o->work_us);
    upper_inplace(read_scratch, (size_t)n);
    if (raw_send(c, read_scratch, (size_t)n) < 0) {
        conn_free(c);
        return;
    }
    if (bytebuf_len(&c->out) >= HIGH_WATER)
        conn_set_state(c, CONN_BACKPRESSURED);
}

static void raw_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    if (what & EV_TIMEOUT) {
        conn_free(c); /* took nothing for --idle-timeout seconds */
        return;
    }
    if (raw_flush(c) < 0) {
        conn_free(c);
        return;
    }
    size_t pending = bytebuf_len(&c->out);
    if (c->state == CONN_DRAINING && pending == 0)
        conn_free(c);
    else if (c->state == CONN_BACKPRESSURED && pending <= LOW_WATER)
        conn_set_state(c, CONN_READING);
}

static int raw_conn_start(struct server *s, struct conn *c, evutil_socket_t fd)
{
    c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, raw_read_cb, c);
    if (c->rev == NULL)
        return -1;
    c->fd = fd;
    return event_add(c->rev, idle_timeout(s));
}

/* ---- accepting and stopping ------------------------------------------------------------ */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *s = arg;
    (void)l;
    (void)sa;
    (void)salen;

    struct conn *c = conn_new(s);
    if (c == NULL) {
        evutil_closesocket(fd);
        srvstats_refused(&s->stats);
        return;
    }
    srvstats_opened(&s->stats);
    int rc = s->o->api == OPTS_API_EVENT ? raw_conn_start(s, c, fd) : bev_conn_start(s, c, fd);
    if (rc < 0) {
        int owned = c->flow.bev != NULL || c->fd >= 0; /* then conn_free closes it */
        if (!owned)
            evutil_closesocket(fd);
        conn_free(c);
    }
}

int main(int argc, char **argv)
{
    struct server_opts o;
    struct server s;
    char err[256];
    int rc = 1;

    opts_parse_or_exit(&spec, argc, argv, &o);
    memset(&s, 0, sizeof s);
    s.o = &o;
    s.idle_tv.tv_sec = o.idle_timeout_s;

    int stop_fd = stopsig_install(err, sizeof err);
    if (stop_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        return 1;
    }
    int listen_fd = sock_listen_tcp(o.bind, o.port, err, sizeof err);
    if (listen_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        close(stop_fd);
        return 1;
    }
    /* The default configuration: EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST, NO_CACHE_TIME and
     * NOLOCK, BEV_OPT_DEFER_CALLBACKS and UNLOCK_CALLBACKS were measured and none helps this
     * data path (docs/metrics.md, "Profile of async-echo"). */
    s.base = event_base_new();
    if (s.base == NULL) {
        fprintf(stderr, SERVER_NAME ": event_base_new failed\n");
        goto out;
    }
    s.listener = evlisten_new(s.base, listen_fd, accept_cb, &s, SERVER_NAME, o.max_conns,
                              &s.stats);
    s.stop_ev = evlisten_stop_event(s.base, stop_fd);
    if (s.listener == NULL || s.stop_ev == NULL) {
        fprintf(stderr, SERVER_NAME ": libevent set-up failed\n");
        goto out;
    }

    report_emit(stdout, report_listening(SERVER_NAME, "async", o.bind, sock_local_port(listen_fd),
                                         json_pack("{s:s, s:I}", "api",
                                                   o.api == OPTS_API_EVENT ? "event"
                                                                           : "bufferevent",
                                                   "work_us", (json_int_t)o.work_us)));
    event_base_dispatch(s.base);

    /* Stop: no more accepts, then every connection closed, then the final counters. */
    evlisten_free(s.listener);
    s.listener = NULL;
    while (s.conns)
        conn_free(s.conns);
    report_emit(stdout, report_stopped(SERVER_NAME, "async", &s.stats, NULL));
    rc = 0;
out:
    evlisten_free(s.listener);
    if (s.stop_ev)
        event_free(s.stop_ev);
    if (s.base)
        event_base_free(s.base);
    libevent_global_shutdown();
    close(listen_fd);
    close(stop_fd);
    return rc;
}
