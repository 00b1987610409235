/* async-chat: the chat room on one thread and one libevent loop, a bufferevent per client,
 * each client's unsent output bounded by --max-backlog (or, with --broadcast naive, the
 * freeze this server exists to show). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat.h"
#include "lib/evlisten.h"
#include "frame.h"
#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"

#define SERVER_NAME "async-chat"

static const struct opts_spec spec = {
    SERVER_NAME, "Chat room: one thread, one libevent loop, a bounded output queue per client.",
    9002, OPTS_CHAT,
};

enum client_state {
    CLIENT_IN_ROOM,   /* reading, receiving broadcasts */
    CLIENT_LEAVING,   /* out of the room; its leave notice and free are pending (reap list) */
    CLIENT_FLUSHING,  /* out of the room (EOF, idle, too-long line): its output drains */
    CLIENT_LINGERING, /* too-long notice sent, our side shut: input is discarded until EOF */
};

struct server;

struct client {
    struct server *srv;
    enum client_state state;
    struct bufferevent *bev;
    char name[CHAT_NAME_MAX];
    uint64_t bytes_in, bytes_out;  /* bytes_out counts what was queued; unsent is taken off */
    size_t in_seen;                /* input bytes already counted in bytes_in */
    /* Flushing and lingering: one absolute deadline (CHAT_FLUSH_TIMEOUT_S from entering
     * FLUSHING) that frees the client when it fires. Not a bufferevent timeout: those are
     * inactivity timeouts, which every byte the client sends or takes would reset. */
    struct event *deadline_ev;
    int linger_after;              /* flushed -> LINGERING (too-long line), else freed */
    struct client *prev, *next;    /* in exactly one of the server's three lists, by state */
};

struct client_list {
    struct client *head;
};

/* Everything here is owned by the loop thread; there is no other thread. */
struct server {
    const struct server_opts *o;
    size_t max_backlog;            /* bytes */
    struct event_base *base;
    struct evlisten *listener;
    struct event *stop_ev;
    struct timeval idle_tv, flush_tv;
    struct srv_stats stats;
    struct client_list room, leaving, closing; /* closing: flushing and lingering */
    char *msg;                     /* scratch for one formatted line, CHAT_MSG_CAP(max_line) */
    size_t msg_cap;
    int stop_fd;
    int stopping;                  /* a stop arrived during a naive flush: broadcast no more */
    uint64_t lines_broadcast, dropped_backlog, closed_too_long, closed_idle;
};

static struct client_list *list_of(struct server *s, enum client_state st)
{
    switch (st) {
    case CLIENT_IN_ROOM: return &s->room;
    case CLIENT_LEAVING: return &s->leaving;
    case CLIENT_FLUSHING:
    case CLIENT_LINGERING: return &s->closing;
    }
    return NULL;
}

static void list_unlink(struct client_list *l, struct client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_push(struct client_list *l, struct client *c)
{
    c->prev = NULL;
    c->next = l->head;
    if (l->head)
        l->head->prev = c;
    l->head = c;
}

static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void client_discard_cb(struct bufferevent *bev, void *arg);
static void client_deadline_cb(evutil_socket_t fd, short what, void *arg);

/* The only place a client changes state. In the room -> leaving (then freed), or in the room
 * -> flushing [-> lingering] (then freed). Moves it to the state's list and sets its callbacks.
 * 0, or -1 with nothing changed (an illegal change, or no memory for the deadline timer). */
static int client_set_state(struct client *c, enum client_state next)
{
    struct server *s = c->srv;
    int legal = (c->state == CLIENT_IN_ROOM &&
                 (next == CLIENT_LEAVING || next == CLIENT_FLUSHING)) ||
                (c->state == CLIENT_FLUSHING && next == CLIENT_LINGERING);

    if (!legal) {
        fprintf(stderr, SERVER_NAME ": bad state change %d -> %d\n", c->state, next);
        return -1;
    }
    if (next == CLIENT_FLUSHING) {
        c->deadline_ev = evtimer_new(s->base, client_deadline_cb, c);
        if (c->deadline_ev == NULL || evtimer_add(c->deadline_ev, &s->flush_tv) < 0) {
            if (c->deadline_ev)
                event_free(c->deadline_ev);
            c->deadline_ev = NULL;
            return -1;
        }
    }
    list_unlink(list_of(s, c->state), c);
    c->state = next;
    list_push(list_of(s, next), c);
    switch (next) {
    case CLIENT_LEAVING:
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        break;
    case CLIENT_FLUSHING:
        /* Read nothing more; the write callback (low watermark 0) says when the output is out;
         * the deadline gives up on a client that never takes it, and --idle-timeout still
         * covers a write that makes no progress. */
        bufferevent_disable(c->bev, EV_READ);
        bufferevent_setcb(c->bev, NULL, client_write_cb, client_event_cb, c);
        bufferevent_set_timeouts(c->bev, NULL, s->o->idle_timeout_s > 0 ? &s->idle_tv : NULL);
        break;
    case CLIENT_LINGERING:
        /* Closing a socket with unread input sends a reset, which may destroy the notice
         * before the client reads it. So: FIN first, then discard input until the client's
         * EOF (or the deadline set on entering FLUSHING), then close. */
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        c->in_seen = 0;
        bufferevent_setcb(c->bev, client_discard_cb, NULL, client_event_cb, c);
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        bufferevent_disable(c->bev, EV_WRITE);
        bufferevent_enable(c->bev, EV_READ);
        break;
    case CLIENT_IN_ROOM:
        break;
    }
    return 0;
}

static void client_free(struct client *c)
{
    struct server *s = c->srv;

    list_unlink(list_of(s, c->state), c);
    c->bytes_out -= evbuffer_get_length(bufferevent_get_output(c->bev));
    c->bytes_in += evbuffer_get_length(bufferevent_get_input(c->bev)) - c->in_seen;
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE closes the fd */
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    srvstats_closed(&s->stats, c->bytes_in, c->bytes_out);
    free(c);
}

/* --broadcast naive: writes msg to c's socket and waits, blocking the whole loop, until the
 * kernel took all of it. This is the trap on purpose: one client that stops reading stops
 * everyone. Only a stop request (watched on the same poll) or the client's failure ends the
 * wait. It bypasses c's output buffer, which is always empty in this mode (every message is
 * flushed before the next), so the order is kept. 0, or -1 if c failed. */
static int naive_send(struct client *c, const char *msg, size_t len)
{
    struct server *s = c->srv;
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    while (len > 0) {
        ssize_t n = send(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c->bytes_out += (uint64_t)n;
            msg += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        struct pollfd p[2] = {{fd, POLLOUT, 0}, {s->stop_fd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            return -1;
        if (p[1].revents & POLLIN) {
            /* Not consumed: the loop's stop event sees it too once we return. */
            s->stopping = 1;
            event_base_loopbreak(s->base);
            return 0;
        }
    }
    return 0;
}

/* Queues msg for every client in the room but `from` (NULL: everyone). A client whose unsent
 * output would pass --max-backlog is dropped instead (it leaves; see reap). Never waits,
 * except in naive mode. */
static void broadcast(struct server *s, const struct client *from, const char *msg, size_t len)
{
    struct client *c, *next;

    for (c = s->room.head; c != NULL && !s->stopping; c = next) {
        next = c->next; /* c may move to the leaving list below */
        if (c == from)
            continue;
        if (s->o->broadcast == OPTS_BROADCAST_NAIVE) {
            if (naive_send(c, msg, len) < 0)
                client_set_state(c, CLIENT_LEAVING);
            continue;
        }
        struct evbuffer *out = bufferevent_get_output(c->bev);
        if (evbuffer_get_length(out) + len > s->max_backlog) {
            s->dropped_backlog++;
            client_set_state(c, CLIENT_LEAVING);
            continue;
        }
        if (evbuffer_add(out, msg, len) < 0) {
            client_set_state(c, CLIENT_LEAVING);
            continue;
        }
        c->bytes_out += len;
    }
}

/* Sends the leave notice of every client that left and frees it. A notice may drop more
 * clients (their backlog overflows); they join the list and are handled in the same loop.
 * Called at the end of every callback that can make a client leave. */
static void reap(struct server *s)
{
    char note[CHAT_NAME_MAX + 32];

    while (s->leaving.head != NULL) {
        struct client *c = s->leaving.head;
        size_t n = chat_fmt_left(note, sizeof note, c->name);
        client_free(c);
        if (n <= sizeof note)
            broadcast(s, NULL, note, n);
    }
}

/* c leaves the room (the others hear it now) and keeps its queued output, which drains until
 * the flush deadline; then it lingers (linger_after) or is freed. Without memory for the
 * deadline it leaves at once instead (reap announces it). Never frees c. */
static void leave_and_flush(struct client *c, int linger_after)
{
    struct server *s = c->srv;
    char left[CHAT_NAME_MAX + 32];

    if (client_set_state(c, CLIENT_FLUSHING) < 0) {
        client_set_state(c, CLIENT_LEAVING);
        return;
    }
    c->linger_after = linger_after;
    size_t m = chat_fmt_left(left, sizeof left, c->name);
    if (m <= sizeof left)
        broadcast(s, c, left, m);
}

/* A flushing client's output is all out: linger after a too-long line, else free it. */
static void client_flushed(struct client *c)
{
    if (c->linger_after)
        client_set_state(c, CLIENT_LINGERING);
    else
        client_free(c);
}

/* A line over --max-line: the client gets the notice, leaves, and is closed once it drained
 * and lingered. */
static void too_long(struct client *c)
{
    struct server *s = c->srv;
    char note[64];
    size_t n = chat_fmt_too_long(note, sizeof note);

    s->closed_too_long++;
    if (evbuffer_add(bufferevent_get_output(c->bev), note, n) == 0)
        c->bytes_out += n;
    leave_and_flush(c, 1);
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct server *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t max_line = (size_t)s->o->max_line;

    c->bytes_in += evbuffer_get_length(in) - c->in_seen;
    while (c->state == CLIENT_IN_ROOM && !s->stopping) {
        size_t have = evbuffer_get_length(in);
        if (have == 0)
            break;
        /* The shared framer decides, on at most max_line+1 contiguous bytes (pulled up
         * without a copy when the first chain holds them already). */
        size_t want = have < max_line + 1 ? have : max_line + 1;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want);
        if (p == NULL) {
            client_set_state(c, CLIENT_LEAVING);
            break;
        }
        long r = frame_next(p, want, max_line);
        if (r == FRAME_NEED_MORE)
            break;
        if (r == FRAME_TOO_LONG) {
            too_long(c);
            break;
        }
        size_t n = chat_fmt_line(s->msg, s->msg_cap, c->name, p, (size_t)r - 1);
        if (n <= s->msg_cap) {
            broadcast(s, c, s->msg, n);
            s->lines_broadcast++;
        }
        evbuffer_drain(in, (size_t)r);
    }
    c->in_seen = evbuffer_get_length(in);
    reap(s);
}

/* Only armed while flushing: the output has gone out. */
static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    if (c->state == CLIENT_FLUSHING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        client_flushed(c);
}

/* The flush deadline passed, flushing or lingering: the client is closed, done or not. */
static void client_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_free(arg);
}

/* Lingering: what the client still sends is counted and thrown away. */
static void client_discard_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);

    c->bytes_in += n;
    evbuffer_drain(in, n);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct client *c = arg;
    struct server *s = c->srv;
    (void)bev;

    if (c->state == CLIENT_FLUSHING || c->state == CLIENT_LINGERING) {
        if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING))
            s->closed_idle++;
        client_free(c); /* EOF, error or write timeout: the output went, or never will */
        return;
    }
    if (c->state != CLIENT_IN_ROOM)
        return;
    if (what & BEV_EVENT_TIMEOUT)
        s->closed_idle++; /* --idle-timeout: nothing read, or a write made no progress */
    if ((what & BEV_EVENT_EOF) || ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING))) {
        /* It said goodbye or went quiet: like the threaded writer, send it what is queued
         * (until the flush deadline) before closing. */
        leave_and_flush(c, 0);
        if (c->state == CLIENT_FLUSHING &&
            evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            client_flushed(c);
    } else {
        client_set_state(c, CLIENT_LEAVING); /* error, or a write timeout: nothing to flush */
    }
    reap(s);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *s = arg;
    char note[CHAT_NAME_MAX + 32];
    (void)l;

    if (s->stopping) {
        evutil_closesocket(fd);
        srvstats_refused(&s->stats);
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c == NULL || bev == NULL) {
        if (bev)
            bufferevent_free(bev);
        else
            evutil_closesocket(fd);
        free(c);
        srvstats_refused(&s->stats);
        return;
    }
    c->srv = s;
    c->bev = bev;
    c->state = CLIENT_IN_ROOM;
    /* The accept address: getpeername() fails once the client has reset. */
    sock_addr_name(sa, (socklen_t)salen, c->name, sizeof c->name);
    bufferevent_setcb(bev, client_read_cb, NULL, client_event_cb, c);
    /* --idle-timeout: nothing read for that long, or a write that made no progress for that
     * long (a client that sends but never reads). */
    const struct timeval *idle = s->o->idle_timeout_s > 0 ? &s->idle_tv : NULL;
    bufferevent_set_timeouts(bev, idle, idle);
    srvstats_opened(&s->stats);
    if (bufferevent_enable(bev, EV_READ | EV_WRITE) < 0) {
        list_push(&s->room, c); /* never announced: freed without a notice */
        client_free(c);
        return;
    }
    /* Announce first, then enter: the newcomer does not hear its own arrival. */
    size_t n = chat_fmt_joined(note, sizeof note, c->name);
    if (n <= sizeof note)
        broadcast(s, NULL, note, n);
    list_push(&s->room, c);
    reap(s);
}

static void free_all(struct server *s)
{
    while (s->room.head)
        client_free(s->room.head);
    while (s->leaving.head)
        client_free(s->leaving.head);
    while (s->closing.head)
        client_free(s->closing.head);
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
    s.max_backlog = (size_t)o.max_backlog_kib * 1024;
    s.idle_tv.tv_sec = o.idle_timeout_s;
    s.flush_tv.tv_sec = CHAT_FLUSH_TIMEOUT_S;
    s.msg_cap = CHAT_MSG_CAP(o.max_line);

    s.stop_fd = stopsig_install(err, sizeof err);
    if (s.stop_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        return 1;
    }
    int listen_fd = sock_listen_tcp(o.bind, o.port, err, sizeof err);
    if (listen_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        close(s.stop_fd);
        return 1;
    }
    s.msg = malloc(s.msg_cap);
    s.base = event_base_new();
    if (s.msg == NULL || s.base == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory\n");
        goto out;
    }
    s.listener = evlisten_new(s.base, listen_fd, accept_cb, &s, SERVER_NAME, o.max_conns,
                              &s.stats);
    s.stop_ev = evlisten_stop_event(s.base, s.stop_fd);
    if (s.listener == NULL || s.stop_ev == NULL) {
        fprintf(stderr, SERVER_NAME ": libevent set-up failed\n");
        goto out;
    }

    report_emit(stdout,
                report_listening(SERVER_NAME, "async", o.bind, sock_local_port(listen_fd),
                                 json_pack("{s:s, s:I, s:I}", "broadcast",
                                           o.broadcast == OPTS_BROADCAST_NAIVE ? "naive"
                                                                               : "queued",
                                           "max_line", (json_int_t)o.max_line,
                                           "max_backlog_kib", (json_int_t)o.max_backlog_kib)));
    event_base_dispatch(s.base);

    /* Stop: no more accepts, then every client closed, then the final counters. */
    evlisten_free(s.listener);
    s.listener = NULL;
    free_all(&s);
    report_emit(stdout,
                report_stopped(SERVER_NAME, "async", &s.stats,
                               json_pack("{s:I, s:I, s:I, s:I}", "lines_broadcast",
                                         (json_int_t)s.lines_broadcast, "dropped_backlog",
                                         (json_int_t)s.dropped_backlog, "closed_too_long",
                                         (json_int_t)s.closed_too_long, "closed_idle",
                                         (json_int_t)s.closed_idle)));
    rc = 0;
out:
    evlisten_free(s.listener);
    if (s.stop_ev)
        event_free(s.stop_ev);
    if (s.base)
        event_base_free(s.base);
    libevent_global_shutdown();
    free(s.msg);
    close(listen_fd);
    close(s.stop_fd);
    return rc;
}
