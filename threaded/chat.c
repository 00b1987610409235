/* threaded-chat: the chat room with one blocking thread per client (threaded/lib/tpc.h), a
 * shared room under a lock, and a bounded outgoing queue per client drained by that client's
 * own writer thread (or, with --broadcast naive, the freeze this server exists to show). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bytebuf.h"
#include "chat.h"
#include "frame.h"
#include "lib/tpc.h"
#include "mono.h"
#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"

#define SERVER_NAME "threaded-chat"
#define READ_CHUNK 16384
/* A writer's send buffer bigger than this is given back after use, so a burst does not pin
 * memory for the rest of the connection. */
#define KEEP_SEND_BUF (256 * 1024)

static const struct opts_spec spec = {
    SERVER_NAME,
    "Chat room: a blocking thread per client, a locked room, a bounded queue per client.", 9002,
    OPTS_THREADED | OPTS_CHAT,
};

/* Why a writer thread per client rather than one thread polling its socket both ways: the
 * reader and the writer stay plain blocking loops, the model this server stands for; both keep
 * the runtime's --idle-timeout as it is (SO_RCVTIMEO for the reader, SO_SNDTIMEO for the
 * writer, whose send then fails with EAGAIN and drops the client); and a sender hands a line
 * over with a lock, a non-blocking send or an append, and a signal, never a wake-up fd per
 * client. The cost is a second thread (stack) per client, part of what the threaded column
 * measures. */
struct client {
    struct tpc_conn *conn;
    char name[CHAT_NAME_MAX];
    struct client *prev, *next;  /* room membership: under room_lock */

    /* The outgoing queue, under c->lock. Senders write through or append; the writer swaps
     * the queue out and sends it. */
    pthread_mutex_t lock;
    pthread_cond_t changed;      /* bytes queued, closing/dropped set, or the writer ended */
    struct bytebuf queue;
    size_t inflight;             /* bytes the writer took and has not finished sending */
    int closing;                 /* the reader is done: send what is queued, then end */
    int dropped;                 /* over --max-backlog or the socket failed: end at once */
    int writer_done;
    pthread_t writer;

    /* Naive mode: written by whoever holds room_lock. Queued mode: under c->lock. Read by
     * the client's own thread once nobody else can write it. */
    uint64_t bytes_out;
};

static const struct server_opts *opts;  /* set by main before the runtime starts; read-only */
static size_t max_backlog;               /* bytes; likewise */
/* Likewise, and never destroyed: a handler that misses the stop deadline may still start a
 * writer with it after tpc_run returned. */
static pthread_attr_t writer_attr;
/* The runtime's configuration and counters: static, since handlers that miss the stop
 * deadline still use them after tpc_run returns. Written by main before tpc_run only. */
static struct tpc_config cfg;
static struct srv_stats stats;

/* The room: every member, and every member's prev/next, under room_lock. */
static pthread_mutex_t room_lock = PTHREAD_MUTEX_INITIALIZER;
static struct client *room;

/* Counters for the stopped line: added to by any reader or writer thread, without a lock
 * (atomics); read by main once tpc_run returned. */
static atomic_uint_fast64_t lines_broadcast, dropped_backlog, closed_too_long, closed_idle,
    writer_start_failures, writers_created;

/* Writer thread: takes the whole queue at once, sends it with blocking writes outside the lock,
 * repeats until the reader says closing (and the queue is empty) or the client is dropped. */
static void *writer_main(void *arg)
{
    struct client *c = arg;
    struct bytebuf sending = BYTEBUF_INIT;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (bytebuf_len(&c->queue) == 0 && !c->closing && !c->dropped)
            pthread_cond_wait(&c->changed, &c->lock);
        if (c->dropped || bytebuf_len(&c->queue) == 0)
            break;
        struct bytebuf t = c->queue;
        c->queue = sending;
        sending = t;
        c->inflight = bytebuf_len(&sending);
        pthread_mutex_unlock(&c->lock);

        size_t len;
        const uint8_t *p = bytebuf_peek(&sending, &len);
        int rc = sock_send_all(c->conn->fd, p, len);
        int send_errno = errno;
        bytebuf_consume(&sending, len);
        if (sending.cap > KEEP_SEND_BUF)
            bytebuf_free(&sending);

        pthread_mutex_lock(&c->lock);
        c->inflight = 0;
        if (rc < 0) {
            /* The peer is gone, was shut down, or (EAGAIN: SO_SNDTIMEO, --idle-timeout) has
             * taken nothing for that long: wake the reader so the client leaves. */
            if (send_errno == EAGAIN || send_errno == EWOULDBLOCK)
                atomic_fetch_add(&closed_idle, 1);
            c->dropped = 1;
            shutdown(c->conn->fd, SHUT_RDWR);
            break;
        }
        c->bytes_out += len;
    }
    c->writer_done = 1;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    bytebuf_free(&sending);
    return NULL;
}

/* m is gone: over --max-backlog, or its socket failed. m->lock held. The shutdown wakes m's
 * reader (read returns 0), which takes m out of the room and sends its leave notice; m's fd
 * stays open until then, since m is still in the room our caller holds. */
static void drop_locked(struct client *m)
{
    m->dropped = 1;
    shutdown(m->conn->fd, SHUT_RDWR);
    pthread_cond_signal(&m->changed);
}

/* Queued mode, room_lock held: hands msg to m without ever waiting on m's socket. When m's
 * writer is idle and nothing waits, the kernel takes what it can right away (MSG_DONTWAIT), as
 * the async server's output buffer would; the rest is queued for the writer. So the queue only
 * grows for a client that is really behind, and one that would pass --max-backlog is dropped. */
static void enqueue_locked(struct client *m, const char *msg, size_t len)
{
    pthread_mutex_lock(&m->lock);
    if (m->dropped)
        goto out;
    size_t pending = bytebuf_len(&m->queue) + m->inflight;
    if (pending == 0) {
        ssize_t n = send(m->conn->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            drop_locked(m);
            goto out;
        }
        if (n > 0) {
            m->bytes_out += (uint64_t)n;
            msg += n;
            len -= (size_t)n;
        }
        if (len == 0)
            goto out;
    }
    if (pending + len > max_backlog || bytebuf_append(&m->queue, msg, len) < 0) {
        atomic_fetch_add(&dropped_backlog, 1);
        drop_locked(m);
        goto out;
    }
    pthread_cond_signal(&m->changed);
out:
    pthread_mutex_unlock(&m->lock);
}

/* room_lock held: msg to every member but `from`. Naive mode is the trap on purpose: a
 * blocking write to each receiver in turn while holding the room lock, so one receiver that
 * stops reading stops every sender, joiner and leaver. */
static void broadcast_locked(const struct client *from, const char *msg, size_t len)
{
    for (struct client *m = room; m != NULL; m = m->next) {
        if (m == from)
            continue;
        if (opts->broadcast == OPTS_BROADCAST_QUEUED) {
            enqueue_locked(m, msg, len);
        } else if (sock_send_all(m->conn->fd, msg, len) < 0) {
            shutdown(m->conn->fd, SHUT_RDWR); /* its reader wakes and it leaves */
        } else {
            m->bytes_out += len;
        }
    }
}

/* Announces c to the room, then makes it a member (it never hears its own arrival). */
static void room_join(struct client *c)
{
    char note[CHAT_NAME_MAX + 32];
    size_t n = chat_fmt_joined(note, sizeof note, c->name);

    pthread_mutex_lock(&room_lock);
    if (n <= sizeof note)
        broadcast_locked(c, note, n);
    c->next = room;
    if (room)
        room->prev = c;
    room = c;
    pthread_mutex_unlock(&room_lock);
}

/* Takes c out of the room and tells the others. After this nobody but c's own threads touches
 * c or its socket. */
static void room_leave(struct client *c)
{
    char note[CHAT_NAME_MAX + 32];
    size_t n = chat_fmt_left(note, sizeof note, c->name);

    pthread_mutex_lock(&room_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        room = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    if (n <= sizeof note)
        broadcast_locked(c, note, n);
    pthread_mutex_unlock(&room_lock);
}

static void room_broadcast(const struct client *from, const char *msg, size_t len)
{
    pthread_mutex_lock(&room_lock);
    broadcast_locked(from, msg, len);
    pthread_mutex_unlock(&room_lock);
}

/* Reads, frames and broadcasts until EOF, error, idle timeout, stop or a too-long line.
 * Returns 1 if the client sent a line over --max-line, else 0. */
static int read_loop(struct client *c)
{
    struct bytebuf in = BYTEBUF_INIT;
    size_t max_line = (size_t)opts->max_line;
    size_t msg_cap = CHAT_MSG_CAP(max_line);
    char *msg = malloc(msg_cap); /* on the heap: --stack-kb may be as small as 32 KiB */
    int too_long = 0;

    while (msg != NULL) {
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

        long r;
        size_t have;
        const uint8_t *p = bytebuf_peek(&in, &have);
        while ((r = frame_next(p, have, max_line)) > 0) {
            size_t len = chat_fmt_line(msg, msg_cap, c->name, p, (size_t)r - 1);
            if (len <= msg_cap) {
                room_broadcast(c, msg, len);
                atomic_fetch_add(&lines_broadcast, 1);
            }
            bytebuf_consume(&in, (size_t)r);
            p = bytebuf_peek(&in, &have);
        }
        if (r == FRAME_TOO_LONG) {
            too_long = 1;
            break;
        }
    }
    free(msg);
    bytebuf_free(&in);
    return too_long;
}

/* Queued mode, after the client left the room: lets the writer send what is left until
 * deadline_ns (mono_now_ns), then shuts the socket under it if need be, and joins it. */
static void writer_finish(struct client *c, uint64_t deadline_ns)
{
    /* c->changed waits on CLOCK_MONOTONIC, mono_now_ns's clock. */
    struct timespec deadline = {(time_t)(deadline_ns / 1000000000u),
                                (long)(deadline_ns % 1000000000u)};

    pthread_mutex_lock(&c->lock);
    c->closing = 1;
    pthread_cond_signal(&c->changed);
    while (!c->writer_done)
        if (pthread_cond_timedwait(&c->changed, &c->lock, &deadline) == ETIMEDOUT)
            break;
    if (!c->writer_done)
        shutdown(c->conn->fd, SHUT_RDWR); /* a blocked send() fails now */
    pthread_mutex_unlock(&c->lock);
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
    bytebuf_free(&c->queue);
    pthread_cond_destroy(&c->changed);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* One client, on its connection thread: join, read and broadcast, leave, flush, done. */
static void chat_handler(struct tpc_conn *conn, void *arg)
{
    pthread_condattr_t ca;
    int queued = opts->broadcast == OPTS_BROADCAST_QUEUED;
    char note[64];
    (void)arg;

    struct client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->conn = conn;
    /* The accept address: getpeername() fails once the client has reset. */
    sock_addr_name((const struct sockaddr *)&conn->peer, conn->peer_len, c->name,
                   sizeof c->name);
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->changed, &ca);
    pthread_condattr_destroy(&ca);
    if (queued) {
        int rc = pthread_create(&c->writer, &writer_attr, writer_main, c);
        if (rc != 0) {
            fprintf(stderr, SERVER_NAME ": writer thread for %s: %s\n", c->name, strerror(rc));
            atomic_fetch_add(&writer_start_failures, 1);
            client_free(c);
            return;
        }
        atomic_fetch_add(&writers_created, 1);
    }

    room_join(c);
    int too_long = read_loop(c);
    room_leave(c);

    if (too_long) {
        atomic_fetch_add(&closed_too_long, 1);
        size_t n = chat_fmt_too_long(note, sizeof note);
        if (queued) {
            pthread_mutex_lock(&c->lock);
            if (!c->dropped && bytebuf_append(&c->queue, note, n) == 0)
                pthread_cond_signal(&c->changed);
            pthread_mutex_unlock(&c->lock);
        } else if (sock_send_all(conn->fd, note, n) == 0) {
            c->bytes_out += n;
        }
    }
    /* One deadline for all that is left: the flush, then (too long) the linger. */
    uint64_t deadline_ns = mono_now_ns() + CHAT_FLUSH_TIMEOUT_S * 1000000000ull;
    if (queued)
        writer_finish(c, deadline_ns);
    if (too_long)
        linger(conn, deadline_ns);
    conn->bytes_out += c->bytes_out;
    client_free(c);
}

/* tpc's on_ready: the runtime can serve (pool workers started), so say we listen. */
static void print_listening(void *arg)
{
    const struct server_opts *o = arg;

    report_emit(stdout,
                report_listening(SERVER_NAME, "threaded", o->bind, sock_local_port(cfg.listen_fd),
                                 json_pack("{s:s, s:I, s:I, s:I, s:I}", "broadcast",
                                           o->broadcast == OPTS_BROADCAST_NAIVE ? "naive"
                                                                                : "queued",
                                           "max_line", (json_int_t)o->max_line,
                                           "max_backlog_kib", (json_int_t)o->max_backlog_kib,
                                           "pool", (json_int_t)o->pool, "stack_kb",
                                           (json_int_t)o->stack_kb)));
}

int main(int argc, char **argv)
{
    static struct server_opts o;
    struct tpc_result res;
    char err[256];

    opts_parse_or_exit(&spec, argc, argv, &o);
    opts = &o;
    max_backlog = (size_t)o.max_backlog_kib * 1024;
    pthread_attr_init(&writer_attr);
    int rc = o.stack_kb > 0 ? pthread_attr_setstacksize(&writer_attr, (size_t)o.stack_kb * 1024)
                            : 0;
    if (rc != 0) {
        fprintf(stderr, SERVER_NAME ": stack size %ld KiB: %s\n", o.stack_kb, strerror(rc));
        return 1;
    }

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

    cfg = (struct tpc_config){
        .listen_fd = listen_fd, .pool = o.pool, .stack_kb = o.stack_kb,
        .max_conns = o.max_conns, .idle_timeout_s = o.idle_timeout_s,
        .handler = chat_handler, .arg = &o, .on_ready = print_listening,
    };
    rc = tpc_run(&cfg, stop_fd, &stats, &res, err, sizeof err);
    close(listen_fd);
    close(stop_fd);
    if (rc < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        return 1;
    }

    /* threads_created: the runtime's readers (or pool workers) and our writers. */
    report_emit(stdout,
                report_stopped(
                    SERVER_NAME, "threaded", &stats,
                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "lines_broadcast",
                              (json_int_t)atomic_load(&lines_broadcast), "dropped_backlog",
                              (json_int_t)atomic_load(&dropped_backlog), "closed_too_long",
                              (json_int_t)atomic_load(&closed_too_long), "closed_idle",
                              (json_int_t)atomic_load(&closed_idle), "writer_start_failures",
                              (json_int_t)atomic_load(&writer_start_failures), "threads_created",
                              (json_int_t)(res.threads_created + atomic_load(&writers_created)),
                              "thread_create_failures", (json_int_t)res.thread_create_failures,
                              "handlers_unfinished", (json_int_t)res.handlers_unfinished,
                              "thread_stack_bytes", (json_int_t)res.thread_stack_bytes)));
    return 0;
}
