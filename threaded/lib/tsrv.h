/* The threaded server skeleton: a server's main() fills a tsrv_config and calls tsrv_run,
 * which does every step around the server's handler, in this order (the mirror of
 * async/lib/asrv.h, step for step):
 *   begin    serve_begin: log name, stop signal, the --procs supervisor (common/procs.h)
 *   open     serve_open: the listener and/or the UDP socket (SO_REUSEPORT in a worker)
 *   run      TCP: tpc_run, one thread per connection or --pool N (tpc.h), calling `handler`;
 *            UDP: --threads N threads blocking in recvfrom on one socket, calling
 *            dgram->answer for each datagram (why one socket: docs/dns.md)
 *   listening the `listening` line, once the runtime is ready, plus listening_extra's fields
 *   stop     SIGINT/SIGTERM: tpc's graceful stop, then the UDP threads are woken and joined
 *   stopped  the `stopped` line plus stopped_extra's fields; end: sockets closed
 * --procs N is handled entirely in `begin`: the server's code never sees it. */
#ifndef TVSA_TSRV_H
#define TVSA_TSRV_H
#include <jansson.h>

#include "opts.h"
#include "serve.h"
#include "tpc.h"

/* What the skeleton ran, for the lines' extra fields. */
struct tsrv_result {
    const struct serve *sv;             /* name, options, bound port */
    struct tpc_result tpc;              /* TCP: threads created, failures, stack size */
    long udp_threads;                   /* UDP: receiving threads started */
    struct serve_dgram_counts dgram;    /* UDP: summed over the threads */
};

struct tsrv_config {
    const char *name;                   /* "threaded-echo" */
    const struct server_opts *o;        /* bind, port, max-conns, idle-timeout, pool, stack-kb,
                                         * threads, procs */
    enum serve_transport transport;
    tpc_handler_fn handler;             /* TCP connections (tpc.h) */
    const struct serve_dgram *dgram;    /* UDP datagrams */
    void *arg;                          /* handed to handler and the hooks */
    /* Extra fields of the two lines (new references, stolen); either may be NULL. */
    json_t *(*listening_extra)(const struct tsrv_result *r, void *arg);
    json_t *(*stopped_extra)(const struct tsrv_result *r, void *arg);
};

/* Runs the server until SIGINT/SIGTERM and returns main's exit status: 0 after a clean stop,
 * 1 if it could not start, 2 for options the transport does not take. cfg, *o and arg must be
 * static: a handler that misses the stop deadline still runs after this returns (tpc.h). */
int tsrv_run(const struct tsrv_config *cfg);

/* The thread-per-connection runtime's counters as the stopped line carries them:
 * {"threads_created", "thread_create_failures", "handlers_unfinished", "thread_stack_bytes",
 * "accept_pauses"}. For a server's stopped_extra. */
json_t *tsrv_tpc_json(const struct tsrv_result *r);

#endif
