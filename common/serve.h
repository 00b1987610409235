/* I/O. The steps both server skeletons (threaded/lib/tsrv.h, async/lib/asrv.h) share, so each
 * is written once: begin (log name, --procs supervisor, stop signal), open (the sockets),
 * listening and stopped lines, end; and serve_log, the one way a server writes a diagnostic. */
#ifndef TVSA_SERVE_H
#define TVSA_SERVE_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "opts.h"
#include "srvstats.h"

enum serve_transport {
    SERVE_TCP,      /* a listener */
    SERVE_UDP,      /* a bound socket, no connections */
    SERVE_TCP_UDP,  /* both on one port (DNS) */
};

/* A datagram service, the same for both skeletons: the threaded one calls `answer` from each
 * of its --threads threads blocking in recvfrom, the async one from its loop between
 * recvmmsg and sendmmsg. */
struct serve_dgram {
    size_t dgram_max;   /* receive buffer; a longer datagram arrives cut, `truncated` set */
    size_t reply_max;   /* 0: the reply is written in place, over the datagram */
    /* Per-thread (threaded) or per-loop (async) state, made on that thread; NULL: arg. */
    void *(*worker_new)(void *arg);
    /* Called once per worker after its last datagram, on main's thread; may be NULL. */
    void (*worker_free)(void *worker, void *arg);
    /* Answers the datagram buf[0..len): writes the reply into `reply` (reply_max bytes, or buf
     * itself) and returns its length, 0 for no reply. */
    size_t (*answer)(void *worker, uint8_t *buf, size_t len, int truncated, uint8_t *reply);
};

/* What a datagram skeleton counted (summed over its workers). */
struct serve_dgram_counts {
    uint64_t received, sent, send_failures, truncated;
    uint64_t batches;   /* async: recvmmsg calls that returned datagrams */
};

/* {"datagrams_received","datagrams_sent","send_failures","truncated"}: the UDP servers'
 * stopped-line counters. A new object. */
json_t *serve_dgram_json(const struct serve_dgram_counts *c);

/* One process's part of a server (the only process, or one --procs worker). Filled by
 * serve_begin and serve_open; owned by main's thread. */
struct serve {
    const char *name;   /* "async-echo": the log prefix and the lines' "server" */
    const char *model;  /* "threaded" or "async" */
    const struct server_opts *o;
    int stop_fd;        /* readable once SIGINT/SIGTERM arrived (stopsig.h) */
    int worker;         /* -1: the only process; else this --procs worker's index */
    enum serve_transport transport;
    int port;           /* the port to bind (the supervisor's choice in a worker), then bound */
    int tcp_fd, udp_fd; /* -1 when the transport has none */
};

/* "NAME: " + the message + "\n" on stderr, NAME from the last serve_begin (or serve_log_as). */
void serve_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sets the name serve_log prints (serve_begin does it; for code that runs before). */
void serve_log_as(const char *name);
/* serve_log at most once a second for one call site: *last_ns is that site's own stamp
 * (start at 0; guard it if several threads share it). Returns 1 if it printed. */
int serve_log_limited(uint64_t *last_ns, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 (and *last_ns updated) when a message of that site is due: at most once a second. For a
 * message that costs something to build. */
int serve_log_due(uint64_t *last_ns);

/* Step 1. Names the log, installs the stop signal, and with o->procs > 1 becomes the --procs
 * supervisor (procs.h): the parent returns only when its workers are done, with its exit
 * status; each worker returns -1 like a single process, sv->worker set. Returns -1 to go on
 * serving, else the status main returns (1 when the stop signal could not be installed). */
int serve_begin(struct serve *sv, const char *name, const char *model,
                const struct server_opts *o, enum serve_transport t);

/* Step 2. Opens sv->transport's sockets on o->bind and sv->port into sv->tcp_fd/udp_fd, with
 * SO_REUSEPORT in a --procs worker or when `reuseport` (--loops) is set, and sets sv->port to
 * the bound port. UDP sockets get o->rcvbuf as SO_RCVBUF (best effort). 0, or -1 (logged). */
int serve_open(struct serve *sv, int reuseport);

/* One more TCP listener on sv->port, SO_REUSEPORT (a --loops loop's own). fd, or -1 (logged). */
int serve_listen_again(struct serve *sv);

/* Step 3 and 4: the `listening` and `stopped` lines on stdout (report.h), extra stolen. With a
 * UDP socket the listening line adds "rcvbuf": the receive buffer the kernel granted, bytes. */
void serve_listening(const struct serve *sv, json_t *extra);
/* serve_stopped returns -1 (logged) when the line could not be written: exit non-zero then. */
int serve_stopped(const struct serve *sv, const struct srv_stats *st, json_t *extra);

/* Last step: closes the sockets and the stop fd. */
void serve_end(struct serve *sv);

#endif
