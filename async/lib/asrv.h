/* The async server skeleton: a server's main() fills an asrv_config and calls asrv_run,
 * which does every step around the server's callbacks, in this order (the mirror of
 * threaded/lib/tsrv.h, step for step):
 *   begin    serve_begin: log name, stop signal, the --procs supervisor (common/procs.h)
 *   open     serve_open: the listener and/or the UDP socket (SO_REUSEPORT in a worker, or
 *            with --loops N, one listener per loop)
 *   run      one event_base per loop (--loops N: N threads); TCP: an evlisten (accept
 *            pauses, --max-conns) whose new connections the skeleton allocates, links into
 *            the loop's list and hands to conn_start; UDP: a read event that takes datagrams
 *            in recvmmsg batches, calls dgram->answer for each and replies with sendmmsg
 *   listening the `listening` line, once every loop is set up, plus listening_extra's fields
 *   stop     SIGINT/SIGTERM breaks every loop; each loop stops accepting and closes every
 *            connection still open (asrv_conn_close), on its own thread
 *   stopped  the `stopped` line plus stopped_extra's fields; end: sockets closed
 * So a server supplies its callbacks and its per-connection state, nothing else.
 *
 * The hook for other connection models (e.g. one coroutine per connection, async/lib/coro):
 * conn_start gets the new connection with its fd and nothing else set up; it may run
 * anything on the connection's loop (asrv_base) as long as it calls asrv_conn_close exactly
 * once when the connection ends, and conn_free releases what it made. conn_free is also
 * called by the stop for every connection still open, in whatever state it is (a coroutine
 * suspended mid-read included): it must free without resuming anything. So `--api coro` can be
 * one change here rather than one per server: a config field for a blocking-style handler
 * (tpc_handler_fn's shape: it reads and writes c->fd and returns at EOF) and a conn_start of
 * the coroutine module's own that runs it on a coroutine, used when that field is set. */
#ifndef TVSA_ASRV_H
#define TVSA_ASRV_H
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/socket.h>

#include "bevflow.h"
#include "list.h"
#include "opts.h"
#include "serve.h"

#define ASRV_DGRAM_BATCH 32  /* datagrams per recvmmsg/sendmmsg call */

struct asrv_loop;

/* The first member of a server's connection struct (conn_size bytes, zeroed, allocated by the
 * skeleton). Owned by its loop's thread. */
struct asrv_conn {
    struct bevflow flow;         /* first: a bufferevent connection's (bevflow.h); flow.bev is
                                  * NULL for any other kind */
    struct asrv_loop *loop;
    evutil_socket_t fd;          /* the socket: closed by the skeleton (or by the bufferevent) */
    uint64_t bytes_in, bytes_out; /* the server adds; added to srv_stats at close */
    struct sockaddr_in6 peer;    /* the address accept() returned (still right after a reset,
                                  * when getpeername() fails); IPv4 or IPv6, not the 128 bytes
                                  * of a sockaddr_storage, which every idle connection pays */
    socklen_t peer_len;
    struct list_node link;       /* the loop's live connections */
};

/* What the skeleton ran, for the lines' extra fields. */
struct asrv_result {
    const struct serve *sv;           /* name, options, bound port */
    long loops;                       /* event loops (threads) */
    unsigned long accept_pauses;      /* times accepting paused (fd table full), all loops */
    struct serve_dgram_counts dgram;  /* UDP */
};

struct asrv_config {
    const char *name;                 /* "async-echo" */
    const struct server_opts *o;      /* bind, port, max-conns, idle-timeout, procs, loops */
    enum serve_transport transport;
    size_t conn_size;                 /* sizeof the server's connection (>= asrv_conn) */
    /* A new connection (c->fd set, TCP_NODELAY): set up its events or bufferevent. 0, or -1:
     * then the skeleton closes it (calling conn_free). */
    int (*conn_start)(struct asrv_conn *c, void *arg);
    /* Frees what conn_start made, but not the fd or c->flow.bev (the skeleton's). NULL: none. */
    void (*conn_free)(struct asrv_conn *c, void *arg);
    const struct serve_dgram *dgram;  /* UDP datagrams (worker_new: one per loop) */
    unsigned accept_batch;            /* TCP accepts per loop turn (evlisten_set_batch); 0: any */
    void *arg;                        /* handed to every callback and hook */
    json_t *(*listening_extra)(const struct asrv_result *r, void *arg);
    json_t *(*stopped_extra)(const struct asrv_result *r, void *arg);
};

/* Runs the server until SIGINT/SIGTERM and returns main's exit status: 0 after a clean stop,
 * 1 if it could not start. With o->loops > 1, callbacks run on several threads at once (one
 * per loop): arg must then be read-only or guarded. */
int asrv_run(const struct asrv_config *cfg);

/* The event_base of c's loop, and --idle-timeout as a timeval (NULL when none). */
struct event_base *asrv_base(const struct asrv_conn *c);
const struct timeval *asrv_idle(const struct asrv_conn *c);

/* The stop pipe (readable once a stop was asked): for a callback that must block, e.g. a
 * naive broadcast waiting in poll() for a slow receiver, to wait on as well. It is never
 * drained, so every loop's stop event still sees it. */
int asrv_stop_fd(void);

/* For conn_start: a bufferevent on c->fd with bevflow's back-pressure and drain (marks
 * BEVFLOW_HIGH_WATER / BEVFLOW_LOW_WATER, --idle-timeout both ways); read_cb gets c. The
 * connection closes itself (asrv_conn_close) on EOF, error, timeout or drained. 0, or -1. */
int asrv_conn_bev(struct asrv_conn *c, bufferevent_data_cb read_cb);

/* Ends a connection: unlinks it, calls conn_free, frees the bufferevent or closes the fd,
 * counts it closed (bytes still queued in a bufferevent count as not sent), frees c. */
void asrv_conn_close(struct asrv_conn *c);

#endif
