/* async-chat: the chat room (common/room.h) on one thread and one libevent loop, a
 * bufferevent per client. The room decides who gets what, who is paused and who is dropped;
 * this file only waits for sockets with callbacks. threaded/chat.c is its mirror with
 * blocking threads: the same steps under the same names. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <linux/sockios.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat.h"
#include "frame.h"
#include "lib/asrv.h"
#include "mono.h"
#include "opts.h"
#include "room.h"
#include "sock.h"

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

/* The skeleton (async/lib/asrv.h) allocates it, keeps it in its list and frees it
 * (asrv_conn_close, which calls conn_free); the room's member is inside. */
struct client {
    struct asrv_conn base;         /* first: the skeleton's; base.flow.bev is ours, its to free */
    struct room_member m;          /* the room's view of this client */
    struct server *srv;
    enum chat_client_state state;
    struct bufferevent *bev;       /* == base.flow.bev */
    size_t in_seen;                /* input bytes already counted in base.bytes_in */
    /* Flushing and lingering: one absolute deadline (CHAT_FLUSH_TIMEOUT_S from leaving) that
     * frees the client when it fires. Not a bufferevent timeout: those are inactivity
     * timeouts, which every byte the client sends or takes would reset. */
    struct event *deadline_ev;
    int too_long;                  /* 1: owed the too-long notice; 2: it is queued, linger */
    int outq;                      /* the socket's unacked bytes at the last tick (SIOCOUTQ) */
};

/* Everything here is owned by the loop thread; there is no other thread (no --loops). */
struct server {
    const struct server_opts *o;
    struct room room;
    struct event *tick_ev;         /* while any client is open */
    struct timeval flush_tv, tick_tv;
    size_t nclients, nclients_peak;  /* peak since the last trim */
    int stop_fd;                   /* the skeleton's, for naive_send's poll */
    int stopping;                  /* a stop arrived during a naive send: deliver no more */
    uint64_t closed_too_long, closed_idle;
};

static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void client_discard_cb(struct bufferevent *bev, void *arg);
static void client_deadline_cb(evutil_socket_t fd, short what, void *arg);
static void client_free(struct client *c);
static void act_on_room(struct server *s);

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
        c->deadline_ev = evtimer_new(asrv_base(&c->base), client_deadline_cb, c);
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
        bufferevent_set_timeouts(c->bev, NULL, asrv_idle(&c->base));
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
    if (info->n_deleted > 0)
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
            c->base.bytes_out += (uint64_t)n;
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
            event_base_loopbreak(asrv_base(&c->base));
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
                rc = 1; /* released by line_done once written */
            else
                rc = -1;
            /* Counted queued; the skeleton takes off what is still queued at the close. */
            if (s->o->broadcast == OPTS_BROADCAST_QUEUED && rc >= 0)
                c->base.bytes_out += lines[i]->len;
            if (rc == 1) {
                rc = 0;
                continue;
            }
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
        c->base.bytes_out += c->too_long == 2 ? n : 0;
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

/* c is out of the room without a flush (the room dropped it and announced it): closed now,
 * what was queued for it discarded. */
static void client_drop(struct client *c)
{
    client_free(c);
}

/* Enters the room: the others hear it first. 0, or -1 (no memory). */
static int client_join(struct client *c, const char *name)
{
    struct server *s = c->srv;
    if (room_join(&s->room, &c->m, c, name, mono_now_ns()) < 0)
        return -1;
    act_on_room(s);
    return 0;
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
            client_drop(c);
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

    c->base.bytes_in += evbuffer_get_length(in) - c->in_seen;
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
            c->in_seen = have; /* counted: conn_free must not count it again */
            client_leave(c, 0);
            return;
        }
        long r = frame_next(p, want, max_line);
        if (r == FRAME_NEED_MORE)
            break;
        if (r == FRAME_TOO_LONG) {
            c->in_seen = have;
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

    c->base.bytes_in += n;
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
    uint64_t now = mono_now_ns();
    /* The socket becomes writable only once a third of its buffer is free, so a reader that
     * takes a little at a time may leave no write callback for a while: its kernel's
     * acknowledgements (the unacked queue shrinking) are progress too. */
    for (struct room_member *m = s->room.members; m != NULL; m = m->next) {
        struct client *c = m->owner;
        int outq = 0;
        if (ioctl(c->base.fd, SIOCOUTQ, &outq) == 0 && outq < c->outq)
            room_progress(&s->room, m, now);
        c->outq = outq;
    }
    room_tick(&s->room, now);
    act_on_room(s);
    if (s->nclients_peak >= 2 * s->nclients + TRIM_AFTER_CLIENTS) {
        malloc_trim(0);
        s->nclients_peak = s->nclients;
    }
}

/* Closes c whatever its state (the skeleton calls conn_free, then frees it). */
static void client_free(struct client *c)
{
    asrv_conn_close(&c->base);
}

/* ---- the skeleton's callbacks ----------------------------------------------------------- */

static struct server srv; /* static: the room's lines point back to srv.room */

/* A new connection: its bufferevent, then the room (the others hear it join). */
static int conn_start(struct asrv_conn *ac, void *arg)
{
    struct client *c = (struct client *)ac;
    struct server *s = arg;
    char name[CHAT_NAME_MAX];

    c->srv = s;
    c->state = CLIENT_IN_ROOM;
    if (++s->nclients > s->nclients_peak)
        s->nclients_peak = s->nclients;
    /* The stall tick runs while any client is open; a failure to start it refuses this client
     * and leaves tick_ev NULL, so the next client tries again (stall checks never go off). */
    if (s->tick_ev == NULL && s->room.cfg.stall_ns > 0) {
        s->tick_ev = event_new(asrv_base(ac), -1, EV_PERSIST, tick_cb, s);
        if (s->tick_ev != NULL && event_add(s->tick_ev, &s->tick_tv) < 0) {
            event_free(s->tick_ev);
            s->tick_ev = NULL;
        }
        if (s->tick_ev == NULL)
            return -1;
    }
    if (s->o->broadcast == OPTS_BROADCAST_QUEUED) {
        int buf = CHAT_SOCK_BUF;
        setsockopt(ac->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        setsockopt(ac->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    }
    c->bev = bufferevent_socket_new(asrv_base(ac), ac->fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL)
        return -1;
    ac->flow.bev = c->bev; /* the skeleton frees it */
    if (evbuffer_add_cb(bufferevent_get_output(c->bev), output_cb, c) == NULL)
        return -1;
    /* The accept address: getpeername() fails once the client has reset. */
    sock_addr_name((struct sockaddr *)&ac->peer, ac->peer_len, name, sizeof name);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, DELIVER_LOW, 0);
    /* --idle-timeout: nothing read for that long, or a write that made no progress for that
     * long (a client that sends but never reads). */
    bufferevent_set_timeouts(c->bev, asrv_idle(ac), asrv_idle(ac));
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0 || client_join(c, name) < 0)
        return -1; /* never announced: closed without a notice */
    return 0;
}

/* The connection ends (its own close, or the stop): out of the room (the others hear it
 * unless it already left), its timers and its hold on the log given up. */
static void conn_free(struct asrv_conn *ac, void *arg)
{
    struct client *c = (struct client *)ac;
    struct server *s = arg;

    if (c->srv == NULL)
        return; /* conn_start failed before anything was made */
    if (c->m.state == ROOM_IN)
        room_leave(&s->room, &c->m, 0, mono_now_ns());
    room_forget(&s->room, &c->m);
    s->nclients--;
    if (c->bev) {
        evbuffer_remove_cb(bufferevent_get_output(c->bev), output_cb, c);
        ac->bytes_in += evbuffer_get_length(bufferevent_get_input(c->bev)) - c->in_seen;
    }
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    if (s->nclients == 0 && s->tick_ev) {
        event_free(s->tick_ev);
        s->tick_ev = NULL;
    }
}

static json_t *listening_extra(const struct asrv_result *r, void *arg)
{
    struct server *s = arg;
    s->stop_fd = r->sv->stop_fd;
    return json_pack("{s:s, s:I, s:I, s:I, s:I}", "broadcast",
                     s->o->broadcast == OPTS_BROADCAST_NAIVE ? "naive" : "queued", "max_line",
                     (json_int_t)s->o->max_line, "max_backlog_kib",
                     (json_int_t)s->o->max_backlog_kib, "high_water_kib",
                     (json_int_t)s->o->high_water_kib, "stall_ms", (json_int_t)s->o->stall_ms);
}

static json_t *stopped_extra(const struct asrv_result *r, void *arg)
{
    struct server *s = arg;
    (void)r;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "lines_broadcast",
                     (json_int_t)s->room.stats.lines, "dropped_backlog",
                     (json_int_t)s->room.stats.dropped_backlog, "dropped_stalled",
                     (json_int_t)s->room.stats.dropped_stalled, "flow_pauses",
                     (json_int_t)s->room.stats.pauses, "log_bytes_peak",
                     (json_int_t)s->room.stats.log_bytes_peak, "closed_too_long",
                     (json_int_t)s->closed_too_long, "closed_idle", (json_int_t)s->closed_idle);
}

static struct server_opts o;
static const struct asrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP, .conn_size = sizeof(struct client),
    .conn_start = conn_start, .conn_free = conn_free, .arg = &srv,
    .accept_batch = ACCEPT_BATCH, .listening_extra = listening_extra,
    .stopped_extra = stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    srv.o = &o;
    struct room_config rules = room_rules(&o);
    room_init(&srv.room, &rules);
    srv.flush_tv.tv_sec = CHAT_FLUSH_TIMEOUT_S;
    long tick_ms = room_tick_ms(&o);
    srv.tick_tv = (struct timeval){tick_ms / 1000, (suseconds_t)(tick_ms % 1000) * 1000};
    int rc = asrv_run(&cfg);
    room_free(&srv.room); /* after the loop's base is gone: no evbuffer holds a line */
    return rc;
}
