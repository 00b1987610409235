/* corrupt-echo: a test server that echoes the uppercase of what it reads, except that one
 * reply byte in a thousand (every 1000th byte of each connection) has its case flipped, so
 * loadgen's reply check has something to catch. Thread per connection (threaded/lib/tpc), blocking I/O. */
#include <errno.h>
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

#define SERVER_NAME "corrupt-echo"
#define CORRUPT_EVERY 1000

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase echo that corrupts one reply byte in a thousand (for tests).",
    0, 0,
};

/* Shared by every connection thread; atomic. */
static struct srv_stats stats;

static void serve(struct tpc_conn *c, void *arg)
{
    int fd = c->fd;
    (void)arg;
    uint8_t buf[16384];
    uint64_t pos = 0, in = 0, out = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        in += (uint64_t)n;
        upper_inplace(buf, (size_t)n);
        for (ssize_t i = 0; i < n; i++, pos++)
            if (pos % CORRUPT_EVERY == CORRUPT_EVERY - 1)
                buf[i] ^= 0x20; /* flips the case of a letter; any byte differs */
        if (sock_send_all(fd, buf, (size_t)n) < 0)
            break;
        out += (uint64_t)n;
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
    return run(serve, 256);
}
