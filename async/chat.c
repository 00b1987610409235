/* async-chat: the chat room (common/room.h) on one thread and one libevent loop, a
 * bufferevent per client. The room decides who gets what, who is paused and who is dropped;
 * this file only waits for sockets with callbacks. threaded/chat.c is its mirror with
 * blocking threads: the same steps under the same names. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat.h"
#include "frame.h"
#include "lib/evlisten.h"
#include "mono.h"
#include "opts.h"
#include "report.h"
#include "room.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"

#define SERVER_NAME "async-chat"
/* A client's output evbuffer holds at most about this much of the room's log (by reference,
 * not copied); the rest waits in the log, where it is stored once for everyone. */
#define DELIVER_BYTES (64 * 1024)
#define DELIVER_LOW (16 * 1024)   /* the write callback asks for more below this */
#define DELIVER_LINES 256
/* Lines shorter than this are copied into the output, longer ones added by reference: a
 * reference costs a chain of its own (about 100 bytes and a malloc) per line per receiver,
 * more than a join notice itself (measured: a reset flood peaked at 85 MB by reference, 15 MB
 * copying the notices). */
#define DELIVER_COPY_MAX 512
/* After a flood: once fewer than half the clients of the peak since the last trim are open,
 * and at least this many fewer, the freed heap is given back to the system (malloc_trim). */
#define TRIM_AFTER_CLIENTS 64
/* Accepts per loop turn: a connect flood is served in slices, and the resets of the clients
 * already accepted are seen between them. */
#define ACCEPT_BATCH 64

static const struct opts_spec spec = {
    SERVER_NAME, "Chat room: one thread, one libevent loop, a shared log with flow control.",
    9002, OPTS_CHAT,
};

struct server;

struct client {
    struct room_member m;          /* the room's view of this client */
    struct server *srv;
    enum chat_client_state state;
    struct bufferevent *bev;
    uint64_t bytes_in, bytes_out;  /* bytes_out: what the socket took */
    size_t in_seen;                /* input bytes already counted in bytes_in */
    /* Flushing and lingering: one absolute deadline (CHAT_FLUSH_TIMEOUT_S from leaving) that
     * frees the client when it fires. Not a bufferevent timeout: those are inactivity
     * timeouts, which every byte the client sends or takes would reset. */
    struct event *deadline_ev;
    int too_long;                  /* 1: owed the too-long notice; 2: it is queued, linger */
    struct client *prev, *next;    /* the server's clients */
};

/* Everything here is owned by the loop thread; there is no other thread. */
struct server {
    const struct server_opts *o;
    struct room room;
    struct event_base *base;
    struct evlisten *listener;
    struct event *stop_ev, *tick_ev;
    struct timeval idle_tv, flush_tv, tick_tv;
    struct srv_stats stats;
    struct client *clients;
    size_t nclients, nclients_peak;  /* peak since the last trim */
    int stop_fd;
    int stopping;                  /* a stop arrived during a naive send: deliver no more */
    uint64_t closed_too_long, closed_idle;
};

static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void client_discard_cb(struct bufferevent *bev, void *arg);
static void client_deadline_cb(evutil_socket_t fd, short what, void *arg);
static void client_free(struct client *c);

/* The only place a client changes state (legal changes: room.h). 0, or -1 with nothing
 * changed (an illegal change, or no memory for the deadline timer). */
static int client_set_state(struct client *c, enum chat_client_state next)
{
    struct server *s = c->srv;

    if (!chat_client_state_legal(c->state, next)) {
        fprintf(stderr, SERVER_NAME ": bad state change %s -> %s\n",
                chat_client_state_name(c->state), chat_client_state_name(next));
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
    c->state = next;
    switch (next) {
    case CLIENT_FLUSHING:
        /* Read nothing more; the write callback says when the output is out; the deadline
         * gives up on a client that never takes it. */
        bufferevent_disable(c->bev, EV_READ);
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        bufferevent_set_timeouts(c->bev, NULL, s->o->idle_timeout_s > 0 ? &s->idle_tv : NULL);
        break;
    case CLIENT_LINGERING:
        /* Closing a socket with unread input sends a reset, which may destroy the notice
         * before the client reads it. So: FIN first, then discard input until the client's
         * EOF (or the deadline set on leaving), then close. */
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
    case CLIENT_CLOSED:
        break;
    }
    return 0;
}

/* The evbuffer is done with a line it held by reference. */
static void line_done(const void *data, size_t len, void *line)
{
    (void)data;
    (void)len;
    room_release(line);
}

/* The output evbuffer lost n_deleted bytes to the socket: the room counts the progress. */
static void output_cb(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    struct client *c = arg;
    (void)out;
    if (info->n_deleted == 0)
        return;
    c->bytes_out += info->n_deleted;
    room_taken(&c->srv->room, &c->m, info->n_deleted, mono_now_ns());
}

/* --broadcast naive: writes msg to c's socket and waits, blocking the whole loop, until the
 * kernel took all of it. This is the trap on purpose: one client that stops reading stops
 * everyone. Only a stop request (watched on the same poll) or the client's failure ends the
 * wait. 0, or -1 if c failed. */
static int naive_send(struct client *c, const char *msg, size_t len)
{
    struct server *s = c->srv;
    evutil_socket_t fd = bufferevent_getfd(c->bev);

    while (len > 0 && !s->stopping) {
        ssize_t n = send(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c->bytes_out += (uint64_t)n;
            room_taken(&s->room, &c->m, (size_t)n, mono_now_ns());
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
        }
    }
    return 0;
}

/* Hands c the room's lines it is owed: by reference into its output evbuffer, up to
 * DELIVER_BYTES (libevent writes them when the socket is writable), or, naive, straight to
 * its socket, waiting. 0, or -1 if c failed. */
static int deliver(struct client *c)
{
    struct server *s = c->srv;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct room_line *lines[DELIVER_LINES];
    size_t n, i, queued;
    int rc = 0;

    while (rc == 0 && (queued = evbuffer_get_length(out)) < DELIVER_BYTES &&
           (n = room_take(&s->room, &c->m, lines, DELIVER_LINES, DELIVER_BYTES - queued)) > 0)
        for (i = 0; i < n; i++) {
            if (rc == 0 && s->o->broadcast == OPTS_BROADCAST_NAIVE)
                rc = naive_send(c, lines[i]->data, lines[i]->len);
            else if (rc == 0 && lines[i]->len < DELIVER_COPY_MAX)
                rc = evbuffer_add(out, lines[i]->data, lines[i]->len);
            else if (rc == 0 && evbuffer_add_reference(out, lines[i]->data, lines[i]->len,
                                                       line_done, lines[i]) == 0)
                continue; /* released by line_done once written */
            else
                rc = -1;
            room_release(lines[i]);
        }
    return rc;
}

/* Flushing: once the room has handed c everything it is owed and the output is out, c gets
 * the too-long notice if it is owed one (and lingers once that is out), or is freed. */
static void flush_step(struct client *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (c->state != CLIENT_FLUSHING || room_has_lines(&c->m))
        return;
    if (c->too_long == 1) {
        char note[64];
        size_t n = chat_fmt_too_long(note, sizeof note);
        c->too_long = evbuffer_add(out, note, n) == 0 ? 2 : 3;
    }
    if (evbuffer_get_length(out) > 0)
        return; /* the write callback (low watermark 0) comes back */
    if (c->too_long == 2 && client_set_state(c, CLIENT_LINGERING) == 0)
        return;
    client_free(c);
}

/* Leaves the room: the others hear it now; flush = 1 keeps c until what it is owed is out
 * (or the flush deadline), else frees it at once. */
static void client_leave(struct client *c, int flush)
{
    struct server *s = c->srv;

    room_leave(&s->room, &c->m, flush, mono_now_ns());
    if (flush && client_set_state(c, CLIENT_FLUSHING) == 0) {
        if (deliver(c) == 0) {
            flush_step(c);
            return;
        }
    }
    client_free(c);
}

/* What the room decided during the last calls: deliver to the woken, pause or resume
 * senders, close the dropped. Called at the end of every callback that touched the room, so
 * a client is never freed under a loop that is using it. */
static void act_on_room(struct server *s)
{
    struct room_member *m;
    unsigned what;

    while ((m = room_next_event(&s->room, &what)) != NULL) {
        struct client *c = m->owner;
        if (what & ROOM_EV_DROP) {
            client_free(c); /* out of the room already: the room announced it */
            continue;
        }
        if ((what & ROOM_EV_READ) && c->state == CLIENT_IN_ROOM) {
            if (m->paused) {
                bufferevent_disable(c->bev, EV_READ);
            } else {
                bufferevent_enable(c->bev, EV_READ);
                /* Lines already buffered wait for no new byte: frame them on a later turn. */
                bufferevent_trigger(c->bev, EV_READ,
                                    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
            }
        }
        if ((what & ROOM_EV_WAKE) && deliver(c) < 0)
            client_leave(c, 0);
    }
}

/* A line over --max-line: the client leaves; once what it is owed is out it gets the notice
 * and lingers. */
static void too_long(struct client *c)
{
    c->srv->closed_too_long++;
    c->too_long = 1;
    client_leave(c, 1);
}

/* Frames and says every whole line buffered, until the input runs out, the room pauses c, or
 * c leaves. */
static void read_lines(struct client *c)
{
    struct server *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t max_line = (size_t)s->o->max_line;

    c->bytes_in += evbuffer_get_length(in) - c->in_seen;
    while (c->state == CLIENT_IN_ROOM && c->m.state == ROOM_IN && !c->m.paused &&
           !s->stopping) {
        size_t have = evbuffer_get_length(in);
        if (have == 0)
            break;
        /* The shared framer decides, on at most max_line+1 contiguous bytes (pulled up
         * without a copy when the first chain holds them already). */
        size_t want = have < max_line + 1 ? have : max_line + 1;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want);
        if (p == NULL) {
            client_leave(c, 0);
            return;
        }
        long r = frame_next(p, want, max_line);
        if (r == FRAME_NEED_MORE)
            break;
        if (r == FRAME_TOO_LONG) {
            too_long(c);
            return;
        }
        room_say(&s->room, &c->m, p, (size_t)r - 1, mono_now_ns());
        evbuffer_drain(in, (size_t)r);
    }
    c->in_seen = evbuffer_get_length(in);
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct server *s = c->srv;
    (void)bev;

    if (c->state == CLIENT_IN_ROOM)
        read_lines(c);
    act_on_room(s);
}

/* The output went below DELIVER_LOW: more of the log, or the flush goes on. */
static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct client *c = arg;
    struct server *s = c->srv;
    (void)bev;

    if (c->state == CLIENT_LINGERING)
        return; /* the notice went out; the discard callback and EOF do the rest */
    if (deliver(c) < 0)
        client_leave(c, 0);
    else
        flush_step(c);
    act_on_room(s);
}

/* The flush deadline passed, flushing or lingering: the client is closed, done or not. */
static void client_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *c = arg;
    struct server *s = c->srv;
    (void)fd;
    (void)what;
    client_free(c);
    act_on_room(s);
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

    if ((what & BEV_EVENT_TIMEOUT) && (c->state == CLIENT_IN_ROOM ||
                                       (what & BEV_EVENT_WRITING)))
        s->closed_idle++; /* --idle-timeout: nothing read, or a write made no progress */
    if (c->state != CLIENT_IN_ROOM) {
        client_free(c); /* EOF, error or write timeout: the output went, or never will */
    } else if ((what & BEV_EVENT_EOF) ||
               ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING))) {
        /* It said goodbye or went quiet: send it what it is owed (until the flush deadline)
         * before closing, as the threaded writer does. */
        client_leave(c, 1);
    } else {
        client_leave(c, 0); /* error, or a write timeout: nothing to flush */
    }
    act_on_room(s);
}

/* Every stall_ms / 4 (at least 10 ms): the room drops the receivers that took nothing for
 * --stall-ms; after a flood, the heap it left is given back. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    room_tick(&s->room, mono_now_ns());
    act_on_room(s);
    if (s->nclients_peak >= 2 * s->nclients + TRIM_AFTER_CLIENTS) {
        malloc_trim(0);
        s->nclients_peak = s->nclients;
    }
}

/* Frees c whatever its state; if it was still in the room, the others hear it leave. */
static void client_free(struct client *c)
{
    struct server *s = c->srv;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (c->m.state == ROOM_IN && !s->stopping)
        room_leave(&s->room, &c->m, 0, mono_now_ns());
    room_forget(&s->room, &c->m);
    evbuffer_remove_cb(out, output_cb, c);
    c->bytes_in += evbuffer_get_length(bufferevent_get_input(c->bev)) - c->in_seen;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nclients--;
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE closes the fd; releases its lines */
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    srvstats_closed(&s->stats, c->bytes_in, c->bytes_out);
    free(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *s = arg;
    char name[CHAT_NAME_MAX];
    (void)l;

    if (s->stopping) {
        evutil_closesocket(fd);
        srvstats_refused(&s->stats);
        return;
    }
    struct client *c = calloc(1, sizeof *c);
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c == NULL || bev == NULL || evbuffer_add_cb(bufferevent_get_output(bev), output_cb,
                                                    c) == NULL) {
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
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    if (++s->nclients > s->nclients_peak)
        s->nclients_peak = s->nclients;
    srvstats_opened(&s->stats);
    /* The accept address: getpeername() fails once the client has reset. */
    sock_addr_name(sa, (socklen_t)salen, name, sizeof name);
    bufferevent_setcb(bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(bev, EV_WRITE, DELIVER_LOW, 0);
    /* --idle-timeout: nothing read for that long, or a write that made no progress for that
     * long (a client that sends but never reads). */
    const struct timeval *idle = s->o->idle_timeout_s > 0 ? &s->idle_tv : NULL;
    bufferevent_set_timeouts(bev, idle, idle);
    if (bufferevent_enable(bev, EV_READ | EV_WRITE) < 0 ||
        room_join(&s->room, &c->m, c, name, mono_now_ns()) < 0) {
        client_free(c); /* never announced: freed without a notice */
        return;
    }
    act_on_room(s);
}

int main(int argc, char **argv)
{
    struct server_opts o;
    static struct server s; /* the room's lines point back to s.room */
    char err[256];
    int rc = 1;

    opts_parse_or_exit(&spec, argc, argv, &o);
    s.o = &o;
    struct room_config rules = room_rules(&o);
    room_init(&s.room, &rules);
    s.idle_tv.tv_sec = o.idle_timeout_s;
    s.flush_tv.tv_sec = CHAT_FLUSH_TIMEOUT_S;
    long tick_ms = o.stall_ms / 4 > 10 ? o.stall_ms / 4 : 10;
    s.tick_tv.tv_sec = tick_ms / 1000;
    s.tick_tv.tv_usec = (tick_ms % 1000) * 1000;

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
    s.base = event_base_new();
    if (s.base == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory\n");
        goto out;
    }
    s.listener = evlisten_new(s.base, listen_fd, accept_cb, &s, SERVER_NAME, o.max_conns,
                              &s.stats);
    s.stop_ev = evlisten_stop_event(s.base, s.stop_fd);
    s.tick_ev = event_new(s.base, -1, EV_PERSIST, tick_cb, &s);
    if (s.listener == NULL || s.stop_ev == NULL || s.tick_ev == NULL ||
        (rules.stall_ns > 0 && event_add(s.tick_ev, &s.tick_tv) < 0)) {
        fprintf(stderr, SERVER_NAME ": libevent set-up failed\n");
        goto out;
    }
    evlisten_set_batch(s.listener, ACCEPT_BATCH);

    report_emit(stdout,
                report_listening(SERVER_NAME, "async", o.bind, sock_local_port(listen_fd),
                                 json_pack("{s:s, s:I, s:I, s:I, s:I}", "broadcast",
                                           o.broadcast == OPTS_BROADCAST_NAIVE ? "naive"
                                                                               : "queued",
                                           "max_line", (json_int_t)o.max_line,
                                           "max_backlog_kib", (json_int_t)o.max_backlog_kib,
                                           "high_water_kib", (json_int_t)o.high_water_kib,
                                           "stall_ms", (json_int_t)o.stall_ms)));
    event_base_dispatch(s.base);

    /* Stop: no more accepts, then every client closed, then the final counters. */
    evlisten_free(s.listener);
    s.listener = NULL;
    s.stopping = 1;
    while (s.clients)
        client_free(s.clients);
    report_emit(stdout,
                report_stopped(
                    SERVER_NAME, "async", &s.stats,
                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "lines_broadcast",
                              (json_int_t)s.room.stats.lines, "dropped_backlog",
                              (json_int_t)s.room.stats.dropped_backlog, "dropped_stalled",
                              (json_int_t)s.room.stats.dropped_stalled, "flow_pauses",
                              (json_int_t)s.room.stats.pauses, "log_bytes_peak",
                              (json_int_t)s.room.stats.log_bytes_peak, "closed_too_long",
                              (json_int_t)s.closed_too_long, "closed_idle",
                              (json_int_t)s.closed_idle)));
    rc = 0;
out:
    evlisten_free(s.listener);
    if (s.tick_ev)
        event_free(s.tick_ev);
    if (s.stop_ev)
        event_free(s.stop_ev);
    if (s.base)
        event_base_free(s.base); /* after it, no evbuffer holds a line any more */
    room_free(&s.room);
    libevent_global_shutdown();
    close(listen_fd);
    close(s.stop_fd);
    return rc;
}
