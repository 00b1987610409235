/* extra-echo: a test server that echoes the uppercase of each request of TVSA_REQ_SIZE bytes
 * (default 64) and appends one extra byte to every TVSA_EXTRA_EVERY-th reply of a connection
 * (default 1: every reply); with TVSA_EXTRA_FLIP=1 such a reply also has its first byte's
 * case flipped. It gives loadgen's "more bytes than asked for" check something to catch.
 * With TVSA_CLOSE_EVERY=N (default 0: never) every Nth connection is closed at once, unread,
 * so loadgen sees it lost mid-request and reopens it after a pause.
 * Thread per connection (threaded/lib/tpc), blocking I/O. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "tpc.h"
#include "upper.h"

#define SERVER_NAME "extra-echo"
#define REQ_MAX 16384

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase echo that appends a byte to every Nth reply (for tests).", 0, 0,
};

/* Set once in main before any thread starts; read-only after. */
static long req_size = 64, extra_every = 1, close_every;
static int extra_flip;
/* Shared by every connection thread; atomic. */
static struct srv_stats stats;

static long env_long(const char *name, long def, long lo, long hi)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return def;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: bad %s '%s'\n", SERVER_NAME, name, s);
        exit(2);
    }
    return v;
}

static void serve(struct tpc_conn *c, void *arg)
{
    /* Connections this server has served; every close_every-th is dropped unread. */
    static atomic_uint_fast64_t accepted;
    int fd = c->fd;
    (void)arg;
    if (close_every > 0 && (atomic_fetch_add(&accepted, 1) + 1) % (uint64_t)close_every == 0)
        return; /* the runtime closes it */
    uint8_t req[REQ_MAX + 1];
    size_t got = 0;
    uint64_t replies = 0, in = 0, out = 0;
    for (;;) {
        ssize_t n = read(fd, req + got, (size_t)req_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        in += (uint64_t)n;
        got += (size_t)n;
        if (got < (size_t)req_size)
            continue;
        got = 0;
        upper_inplace(req, (size_t)req_size);
        size_t len = (size_t)req_size;
        if (++replies % (uint64_t)extra_every == 0) {
            req[len++] = 'X';
            if (extra_flip)
                req[0] ^= 0x20;
        }
        if (sock_send_all(fd, req, len) < 0)
            break;
        out += len;
    }
    c->bytes_in = in;
    c->bytes_out = out;
}

/* What the runtime and its handlers use: static, since a handler past the stop deadline may
 * outlive main's frame (tpc.h). Written by main before the runtime starts. */
static struct server_opts o;
static struct tpc_config cfg;
static int listen_fd = -1;

static void print_listening(void *arg)
{
    (void)arg;
    report_emit(stdout, report_listening(SERVER_NAME, "threaded", o.bind,
                                         sock_local_port(listen_fd), NULL));
}

/* Serves `handler` on the thread-per-connection runtime until SIGINT/SIGTERM. */
static int run(tpc_handler_fn handler, long stack_kb)
{
    char err[256];
    struct tpc_result res;
    int stop_fd = stopsig_install(err, sizeof err);
    if (stop_fd < 0) {
        fprintf(stderr, "%s: %s\n", SERVER_NAME, err);
        return 1;
    }
    listen_fd = sock_listen_tcp(o.bind, o.port, err, sizeof err);
    if (listen_fd < 0) {
        fprintf(stderr, "%s: %s\n", SERVER_NAME, err);
        close(stop_fd);
        return 1;
    }
    cfg = (struct tpc_config){.listen_fd = listen_fd, .stack_kb = stack_kb,
                              .handler = handler, .on_ready = print_listening};
    int rc = tpc_run(&cfg, stop_fd, &stats, &res, err, sizeof err);
    close(listen_fd);
    close(stop_fd);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", SERVER_NAME, err);
        return 1;
    }
    report_emit(stdout, report_stopped(SERVER_NAME, "threaded", &stats, NULL));
    return 0;
}

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    req_size = env_long("TVSA_REQ_SIZE", 64, 1, REQ_MAX);
    extra_every = env_long("TVSA_EXTRA_EVERY", 1, 1, 1000000);
    extra_flip = (int)env_long("TVSA_EXTRA_FLIP", 0, 0, 1);
    close_every = env_long("TVSA_CLOSE_EVERY", 0, 0, 1000000);
    return run(serve, 256);
}
