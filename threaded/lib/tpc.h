/* Thread-per-connection runtime shared by the threaded servers: accept loop, one detached
 * thread per connection (or a fixed pool fed by a queue), --max-conns, --idle-timeout, and a
 * graceful stop that wakes every blocked handler with shutdown(). */
#ifndef TVSA_TPC_H
#define TVSA_TPC_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "list.h"
#include "srvstats.h"

/* Lives on the stack of the thread that serves it. The runtime itself never allocates on a
 * connection thread; a handler may (tpc_run limits glibc to one arena, so a thread's first
 * malloc no longer maps 64 MiB of its own), but keeping state on the stack is cheaper. */
struct tpc_conn {
    int fd;              /* blocking socket, TCP_NODELAY, SO_RCV/SNDTIMEO = --idle-timeout */
    uint64_t bytes_in;   /* the handler adds what it reads and writes; the runtime flushes */
    uint64_t bytes_out;  /* them into srv_stats when the connection closes */
    void *user;          /* free for the handler */
    struct sockaddr_storage peer; /* the address accept() returned (still right after a
                                   * reset, when getpeername() fails) */
    socklen_t peer_len;
    struct list_node link;        /* runtime's registry of live connections (under its lock) */
};

/* Serves one connection until EOF, error or stop; must not close conn->fd (the runtime does).
 * Runs on the connection's own thread (or a pool worker). */
typedef void (*tpc_handler_fn)(struct tpc_conn *conn, void *arg);

struct tpc_config {
    int listen_fd;        /* from sock_listen_tcp (non-blocking) */
    long pool;            /* 0: a detached thread per connection; N: N workers and a queue */
    long stack_kb;        /* 0: system default */
    long max_conns;       /* 0: no cap; beyond it a connection is accepted and closed at once */
    long idle_timeout_s;  /* 0: none; else reads and writes block at most this long (then the
                           * handler sees EAGAIN and should return) */
    tpc_handler_fn handler;
    void *arg;
    /* Called once on the accepting thread when the runtime is ready to serve (pool workers
     * started), before the first accept: where a server prints its listening line. May be
     * NULL. */
    void (*on_ready)(void *arg);
};

struct tpc_result {
    uint64_t threads_created;
    uint64_t thread_create_failures;  /* each one's connection was closed; the server went on */
    uint64_t handlers_unfinished;     /* still running when the stop deadline passed */
    long thread_stack_bytes;          /* stack size of the threads' attributes
                                       * (pthread_attr_getstacksize) */
    uint64_t accept_pauses;           /* times accepting paused because accept failed
                                       * (EMFILE...), as the async listener counts them */
};

/* Accepts and serves until stop_fd is readable, then stops accepting, shuts every connection
 * down, drops queued ones, and waits (up to 900 ms) for the handlers. Returns 0, or -1 with
 * err filled if the runtime could not start (on_ready was then not called). One runtime per
 * process at a time. cfg, stats and arg must outlive the process's last handler: if
 * handlers_unfinished > 0, they are still running when this returns (keep those objects
 * static, not on main's stack). Sets glibc's arena count to one (see tpc.c). */
int tpc_run(const struct tpc_config *cfg, int stop_fd, struct srv_stats *stats,
            struct tpc_result *result, char *err, size_t errlen);

#endif
