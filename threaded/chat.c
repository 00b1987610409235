/* threaded-chat: the chat room (common/room.h) with blocking threads: one reader per client
 * (threaded/lib/tpc.h) and one writer per client, the room under one lock. The room decides
 * who gets what, who is paused and who is dropped; this file only waits for sockets, by
 * blocking. async/chat.c is its mirror with callbacks: the same steps under the same names. */
#include <errno.h>
#include <limits.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "bytebuf.h"
#include "chat.h"
#include "frame.h"
#include "lib/tsrv.h"
#include "mono.h"
#include "opts.h"
#include "room.h"
#include "sock.h"
#include "serve.h"

#define SERVER_NAME "threaded-chat"
#define READ_CHUNK 16384
/* A writer takes at most this much of the room's log per send (by pointer, not copied). */
#define DELIVER_BYTES (64 * 1024)
#define DELIVER_LINES 256

static const struct opts_spec spec = {
    SERVER_NAME, "Chat room: a blocking thread per client, a shared log with flow control.",
    9002, OPTS_THREADED | OPTS_CHAT,
};

/* Why a writer thread per client rather than one thread polling its socket both ways: the
 * reader and the writer stay plain blocking loops, the model this server stands for, and a
 * sender hands a line over with the room lock and a signal, never a wake-up fd per client.
 * The cost is a second thread (stack) per client, part of what the threaded column
 * measures. */
struct client {
    struct room_member m;        /* the room's view of this client: under room_lock */
    struct tpc_conn *conn;
    enum chat_client_state state; /* under room_lock */
    int too_long;                /* owed the too-long notice once flushed: under room_lock */
    pthread_cond_t wake;         /* writer: lines due, or the client left (room_lock) */
    pthread_cond_t resume;       /* reader: flow control let it go on, or it left */
    pthread_cond_t writer_exit;  /* writer_done set */
    int writer_done;             /* under room_lock */
    pthread_t writer;
    uint64_t bytes_out;          /* the writer's (naive: whoever holds room_lock) */
};

static const struct server_opts *opts;  /* set by main before the runtime starts; read-only */
/* Likewise, and never destroyed: a handler that misses the stop deadline may still start a
 * writer with it after tpc_run returned. */
static pthread_attr_t writer_attr;
static struct timeval send_tick;         /* SO_SNDTIMEO of a writer: how often it looks up */

/* The room and every client's state, under room_lock. Nobody holds it across a blocking
 * call, except the naive broadcast, on purpose. */
static pthread_mutex_t room_lock = PTHREAD_MUTEX_INITIALIZER;
static struct room room;

/* Counters for the stopped line: added to by any thread, without a lock (atomics); read by
 * main once tpc_run returned. */
static atomic_uint_fast64_t closed_too_long, closed_idle, writer_start_failures,
    writers_created;

/* room_lock held: the only place a client changes state (legal changes: room.h). */
static int client_set_state(struct client *c, enum chat_client_state next)
{
    if (!chat_client_state_legal(c->state, next)) {
        serve_log("bad state change %s -> %s", chat_client_state_name(c->state),
                  chat_client_state_name(next));
        return -1;
    }
    c->state = next;
    pthread_cond_signal(&c->wake);
    pthread_cond_signal(&c->resume);
    return 0;
}

/* room_lock held: --broadcast naive hands c its lines with blocking writes, under the room
 * lock: the trap on purpose, one receiver that stops reading stops every sender, joiner and
 * leaver. 0, or -1 if c's socket failed. */
static int naive_send(struct client *c, const struct room_line *l)
{
    if (sock_send_all(c->conn->fd, l->data, l->len) < 0)
        return -1;
    c->bytes_out += l->len;
    room_taken(&room, &c->m, l->len, mono_now_ns());
    return 0;
}

/* room_lock held: lines are due to c. Queued: its writer is told. Naive: sent right here. */
static int deliver(struct client *c)
{
    struct room_line *lines[DELIVER_LINES];
    size_t n;
    int rc = 0;

    if (opts->broadcast == OPTS_BROADCAST_QUEUED) {
        pthread_cond_signal(&c->wake);
        return 0;
    }
    while ((n = room_take(&room, &c->m, lines, DELIVER_LINES, DELIVER_BYTES)) > 0)
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                rc = naive_send(c, lines[i]);
            room_release(lines[i]);
        }
    return rc;
}

/* room_lock held: c is out of the room without a flush (its socket failed, or the room
 * dropped it). The shutdown wakes its reader (read returns 0) and fails its writer's send;
 * both then see it out and end. */
static void client_drop(struct client *c)
{
    room_leave(&room, &c->m, 0, mono_now_ns());
    shutdown(c->conn->fd, SHUT_RDWR);
    pthread_cond_signal(&c->wake);
    pthread_cond_signal(&c->resume);
}

/* room_lock held: what the room decided during the last calls: tell the woken writers, wake
 * the resumed readers, shut the dropped down. Called after every room call. */
static void act_on_room(void)
{
    struct room_member *m;
    unsigned what;

    while ((m = room_next_event(&room, &what)) != NULL) {
        struct client *c = m->owner;
        if (what & ROOM_EV_DROP) {
            client_drop(c); /* out of the room already: the room announced it */
            continue;
        }
        if ((what & ROOM_EV_READ) && !m->paused)
            pthread_cond_signal(&c->resume);
        if ((what & ROOM_EV_WAKE) && deliver(c) < 0)
            client_drop(c);
    }
}

/* Sends lines[0..n) with blocking writes outside every lock. The socket's SO_SNDTIMEO
 * (send_tick) makes each write come back at least that often, so the writer reports
 * progress and, when the socket took nothing, asks the room whether this is a stall, and
 * keeps --idle-timeout for writes. 0, or -1 (socket failed, stalled, idle, dropped). */
static int send_lines(struct client *c, struct room_line *const *lines, size_t n)
{
    struct iovec iov[DELIVER_LINES];
    size_t first = 0;
    uint64_t idle_ns = (uint64_t)opts->idle_timeout_s * 1000000000u, progress = mono_now_ns();
    int last_outq = INT_MAX;

    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){lines[i]->data, lines[i]->len};
    while (first < n) {
        struct msghdr mh = {.msg_iov = iov + first, .msg_iovlen = n - first};
        ssize_t k = sendmsg(c->conn->fd, &mh, MSG_NOSIGNAL);
        uint64_t now = mono_now_ns();
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        /* Nothing taken in a tick: the peer may still have taken bytes that freed too little
         * of the socket for the send to go on (its unacked queue shrank): progress too. */
        int outq = 0, acked = 0;
        if (k <= 0 && ioctl(c->conn->fd, SIOCOUTQ, &outq) == 0) {
            acked = outq < last_outq;
            last_outq = outq;
        }
        pthread_mutex_lock(&room_lock);
        int out = c->m.state == ROOM_OUT;
        if (k > 0) {
            progress = now;
            c->bytes_out += (uint64_t)k;
            room_taken(&room, &c->m, (size_t)k, now);
        } else if (acked) {
            progress = now;
            room_progress(&room, &c->m, now);
        } else if (!out && room_check_stall(&room, &c->m, now)) {
            out = 1;
        } else if (!out && idle_ns > 0 && now - progress >= idle_ns) {
            atomic_fetch_add(&closed_idle, 1); /* took nothing for --idle-timeout */
            client_drop(c);
            out = 1;
        }
        act_on_room();
        pthread_mutex_unlock(&room_lock);
        if (out)
            return -1;
        for (size_t left = k > 0 ? (size_t)k : 0; left > 0;) {
            size_t take = left < iov[first].iov_len ? left : iov[first].iov_len;
            iov[first].iov_base = (char *)iov[first].iov_base + take;
            iov[first].iov_len -= take;
            left -= take;
            if (iov[first].iov_len == 0)
                first++;
        }
    }
    return 0;
}

/* Writer thread: takes the room's lines it is owed, sends them outside the lock, repeats
 * until the client is out of the room and owed nothing (then the too-long notice, if owed). */
static void *writer_main(void *arg)
{
    struct client *c = arg;
    struct room_line *lines[DELIVER_LINES];

    pthread_mutex_lock(&room_lock);
    for (;;) {
        while (c->m.state == ROOM_IN && !room_has_lines(&c->m))
            pthread_cond_wait(&c->wake, &room_lock);
        size_t n = room_take(&room, &c->m, lines, DELIVER_LINES, DELIVER_BYTES);
        if (n == 0)
            break; /* out, or flushing and owed nothing more */
        pthread_mutex_unlock(&room_lock);
        int rc = send_lines(c, lines, n);
        pthread_mutex_lock(&room_lock);
        for (size_t i = 0; i < n; i++)
            room_release(lines[i]);
        if (rc < 0) {
            if (c->m.state != ROOM_OUT)
                client_drop(c); /* the peer is gone or shut down */
            act_on_room();
            break;
        }
    }
    int note = c->m.state == ROOM_FLUSHING && c->too_long;
    pthread_mutex_unlock(&room_lock);
    if (note) {
        char buf[64];
        size_t n = chat_fmt_too_long(buf, sizeof buf);
        if (sock_send_all(c->conn->fd, buf, n) == 0)
            c->bytes_out += n;
    }
    pthread_mutex_lock(&room_lock);
    c->writer_done = 1;
    pthread_cond_signal(&c->writer_exit);
    pthread_mutex_unlock(&room_lock);
    return NULL;
}

/* Enters the room: the others hear it first. 0, or -1 (no memory). */
static int client_join(struct client *c, const char *name)
{
    pthread_mutex_lock(&room_lock);
    int rc = room_join(&room, &c->m, c, name, mono_now_ns());
    act_on_room();
    pthread_mutex_unlock(&room_lock);
    return rc;
}

/* Leaves the room: the others hear it now. flush = 1: the writer still sends what c is owed
 * (writer_finish bounds it); naive: sent right here. */
static void client_leave(struct client *c, int flush)
{
    pthread_mutex_lock(&room_lock);
    room_leave(&room, &c->m, flush, mono_now_ns());
    if (c->state == CLIENT_IN_ROOM)
        client_set_state(c, flush ? CLIENT_FLUSHING : CLIENT_CLOSED);
    if (opts->broadcast == OPTS_BROADCAST_NAIVE)
        deliver(c);
    act_on_room();
    pthread_mutex_unlock(&room_lock);
}

/* A line over --max-line: the client leaves; once what it is owed is out its writer sends the
 * notice, and the handler lingers. */
static void too_long(struct client *c)
{
    atomic_fetch_add(&closed_too_long, 1);
    pthread_mutex_lock(&room_lock);
    c->too_long = 1;
    pthread_mutex_unlock(&room_lock);
    client_leave(c, 1);
}

/* Frames and says every whole line of p[0..have); waits (on c->resume, the lock released)
 * while the room pauses c. Returns the bytes it used (*too_long set if a line is over
 * --max-line), or -1 once c is out of the room. */
static long say_lines(struct client *c, const uint8_t *p, size_t have, int *too_long)
{
    size_t max_line = (size_t)opts->max_line, used = 0;
    long r;

    pthread_mutex_lock(&room_lock);
    while ((r = frame_next(p + used, have - used, max_line)) > 0) {
        while (c->m.paused && c->m.state == ROOM_IN) {
            /* Tell the receivers of the lines said so far before waiting: a writer that
             * waits for them is what drains the receiver that paused c. */
            act_on_room();
            pthread_cond_wait(&c->resume, &room_lock);
        }
        if (c->m.state != ROOM_IN)
            break;
        room_say(&room, &c->m, p + used, (size_t)r - 1, mono_now_ns());
        used += (size_t)r;
    }
    int out = c->m.state != ROOM_IN;
    act_on_room();
    pthread_mutex_unlock(&room_lock);
    *too_long = r == FRAME_TOO_LONG;
    return out ? -1 : (long)used;
}

/* Reads, frames and says until EOF, error, idle timeout, stop, a drop or a too-long line.
 * Returns 1 if the client sent a line over --max-line, else 0. */
static int read_lines(struct client *c)
{
    struct bytebuf in = BYTEBUF_INIT;
    int over = 0;

    for (;;) {
        size_t avail;
        uint8_t *dst = bytebuf_reserve(&in, READ_CHUNK, &avail);
        if (dst == NULL)
            break;
        ssize_t n = read(c->conn->fd, dst, avail);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            atomic_fetch_add(&closed_idle, 1); /* SO_RCVTIMEO: --idle-timeout passed */
            break;
        }
        if (n <= 0)
            break; /* EOF, error, dropped, or shutdown() by the stop */
        bytebuf_commit(&in, (size_t)n);
        c->conn->bytes_in += (uint64_t)n;

        size_t have;
        const uint8_t *p = bytebuf_peek(&in, &have);
        long used = say_lines(c, p, have, &over);
        if (used < 0 || over)
            break;
        bytebuf_consume(&in, (size_t)used);
    }
    bytebuf_free(&in);
    return over;
}

/* After the client left the room: lets the writer send what it is owed until deadline_ns
 * (mono_now_ns), then shuts the socket under it if need be, and joins it. */
static void writer_finish(struct client *c, uint64_t deadline_ns)
{
    /* c->writer_exit waits on CLOCK_MONOTONIC, mono_now_ns's clock. */
    struct timespec deadline = {(time_t)(deadline_ns / 1000000000u),
                                (long)(deadline_ns % 1000000000u)};

    pthread_mutex_lock(&room_lock);
    pthread_cond_signal(&c->wake);
    while (!c->writer_done)
        if (pthread_cond_timedwait(&c->writer_exit, &room_lock, &deadline) == ETIMEDOUT)
            break;
    if (!c->writer_done)
        shutdown(c->conn->fd, SHUT_RDWR); /* a blocked send() fails now */
    pthread_mutex_unlock(&room_lock);
    pthread_join(c->writer, NULL);
}

/* After the too-long notice: closing a socket with unread input sends a reset, which may
 * destroy the notice before the client reads it. So: FIN first, then discard what the client
 * still sends until its EOF or deadline_ns (mono_now_ns), whichever comes first, however often
 * it sends; then let the runtime close. */
static void linger(struct tpc_conn *conn, uint64_t deadline_ns)
{
    char sink[4096];

    shutdown(conn->fd, SHUT_WR);
    for (;;) {
        uint64_t now = mono_now_ns();
        if (now >= deadline_ns)
            break;
        /* Each read waits at most until the deadline (a zero SO_RCVTIMEO would mean never). */
        uint64_t left_us = (deadline_ns - now) / 1000u + 1;
        struct timeval tv = {(time_t)(left_us / 1000000u), (suseconds_t)(left_us % 1000000u)};
        setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = read(conn->fd, sink, sizeof sink);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        conn->bytes_in += (uint64_t)n;
    }
}

static void client_free(struct client *c)
{
    pthread_mutex_lock(&room_lock);
    room_forget(&room, &c->m);
    pthread_mutex_unlock(&room_lock);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->resume);
    pthread_cond_destroy(&c->writer_exit);
    free(c);
}

/* One client, on its connection thread: join, read and say, leave, flush, done. */
static void chat_handler(struct tpc_conn *conn, void *arg)
{
    pthread_condattr_t ca;
    int queued = opts->broadcast == OPTS_BROADCAST_QUEUED;
    char name[CHAT_NAME_MAX];
    (void)arg;

    struct client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->conn = conn;
    c->state = CLIENT_IN_ROOM;
    /* The accept address: getpeername() fails once the client has reset. */
    sock_addr_name((const struct sockaddr *)&conn->peer, conn->peer_len, name, sizeof name);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->resume, NULL);
    pthread_cond_init(&c->writer_exit, &ca);
    pthread_condattr_destroy(&ca);
    if (client_join(c, name) < 0) {
        client_free(c);
        return;
    }
    if (queued) {
        int buf = CHAT_SOCK_BUF;
        setsockopt(conn->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        setsockopt(conn->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &send_tick, sizeof send_tick);
        int rc = pthread_create(&c->writer, &writer_attr, writer_main, c);
        if (rc != 0) {
            serve_log("writer thread for %s: %s", name, strerror(rc));
            atomic_fetch_add(&writer_start_failures, 1);
            client_leave(c, 0);
            client_free(c);
            return;
        }
        atomic_fetch_add(&writers_created, 1);
    }

    int line_too_long = read_lines(c);
    if (line_too_long)
        too_long(c);
    else
        client_leave(c, 1);
    /* One deadline for all that is left: the flush, then (too long) the linger. */
    uint64_t deadline_ns = mono_now_ns() + CHAT_FLUSH_TIMEOUT_S * 1000000000ull;
    if (queued) {
        writer_finish(c, deadline_ns);
    } else if (line_too_long) {
        char note[64];
        size_t n = chat_fmt_too_long(note, sizeof note);
        if (sock_send_all(conn->fd, note, n) == 0)
            c->bytes_out += n;
    }
    if (line_too_long)
        linger(conn, deadline_ns);
    conn->bytes_out += c->bytes_out;
    client_free(c);
}

/* ---- the skeleton's hooks ---------------------------------------------------------------- */

static json_t *listening_extra(const struct tsrv_result *r, void *arg)
{
    const struct server_opts *o = arg;
    (void)r;
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "broadcast",
                     o->broadcast == OPTS_BROADCAST_NAIVE ? "naive" : "queued", "max_line",
                     (json_int_t)o->max_line, "max_backlog_kib", (json_int_t)o->max_backlog_kib,
                     "high_water_kib", (json_int_t)o->high_water_kib, "stall_ms",
                     (json_int_t)o->stall_ms, "pool", (json_int_t)o->pool, "stack_kb",
                     (json_int_t)o->stack_kb);
}

/* Handlers past the stop deadline may still use the room: read it under its lock, and never
 * free it. threads_created: the runtime's readers (or pool workers) and the writers. */
static json_t *stopped_extra(const struct tsrv_result *r, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&room_lock);
    struct room_stats rs = room.stats;
    pthread_mutex_unlock(&room_lock);
    json_t *j = tsrv_tpc_json(r);
    json_object_update_new(
        j, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "lines_broadcast",
                     (json_int_t)rs.lines, "dropped_backlog", (json_int_t)rs.dropped_backlog,
                     "dropped_stalled", (json_int_t)rs.dropped_stalled, "flow_pauses",
                     (json_int_t)rs.pauses, "log_bytes_peak", (json_int_t)rs.log_bytes_peak,
                     "closed_too_long", (json_int_t)atomic_load(&closed_too_long),
                     "closed_idle", (json_int_t)atomic_load(&closed_idle),
                     "writer_start_failures", (json_int_t)atomic_load(&writer_start_failures)));
    /* Every thread of the server: the runtime's readers and the chat's own writers. */
    json_object_set_new(j, "threads_created",
                        json_integer((json_int_t)(r->tpc.threads_created +
                                                  atomic_load(&writers_created))));
    return j;
}

static struct server_opts o;
static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP, .handler = chat_handler, .arg = &o,
    .listening_extra = listening_extra, .stopped_extra = stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    opts = &o;
    struct room_config rules = room_rules(&o);
    room_init(&room, &rules);
    long tick_ms = room_tick_ms(&o);
    send_tick = (struct timeval){tick_ms / 1000, (suseconds_t)(tick_ms % 1000) * 1000};
    pthread_attr_init(&writer_attr);
    int rc = o.stack_kb > 0 ? pthread_attr_setstacksize(&writer_attr, (size_t)o.stack_kb * 1024)
                            : 0;
    if (rc != 0) {
        serve_log_as(SERVER_NAME);
        serve_log("stack size %ld KiB: %s", o.stack_kb, strerror(rc));
        return 1;
    }
    return tsrv_run(&cfg);
}
