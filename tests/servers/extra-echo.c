/* extra-echo: a test server that echoes the uppercase of each request of TVSA_REQ_SIZE bytes
 * (default 64) and appends one extra byte to every TVSA_EXTRA_EVERY-th reply of a connection
 * (default 1: every reply); with TVSA_EXTRA_FLIP=1 such a reply also has its first byte's
 * case flipped. It gives loadgen's "more bytes than asked for" check something to catch.
 * With TVSA_CLOSE_EVERY=N (default 0: never) every Nth connection is closed at once, unread,
 * so loadgen sees it lost mid-request and reopens it after a pause.
 * Thread per connection, blocking I/O. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
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

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
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
    srvstats_closed(&stats, in, out);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_opts o;
    char err[256];
    opts_parse_or_exit(&spec, argc, argv, &o);
    req_size = env_long("TVSA_REQ_SIZE", 64, 1, REQ_MAX);
    extra_every = env_long("TVSA_EXTRA_EVERY", 1, 1, 1000000);
    extra_flip = (int)env_long("TVSA_EXTRA_FLIP", 0, 0, 1);
    close_every = env_long("TVSA_CLOSE_EVERY", 0, 0, 1000000);
    uint64_t accepted = 0;
    int stopfd = stopsig_install(err, sizeof err);
    int lfd = stopfd < 0 ? -1 : sock_listen_tcp(o.bind, o.port, err, sizeof err);
    if (lfd < 0) {
        fprintf(stderr, "%s: %s\n", SERVER_NAME, err);
        return 1;
    }
    report_emit(stdout, report_listening(SERVER_NAME, "threaded", o.bind, sock_local_port(lfd),
                                         NULL));
    struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = stopfd, .events = POLLIN}};
    while (poll(p, 2, -1) >= 0 || errno == EINTR) {
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        if (close_every > 0 && ++accepted % (uint64_t)close_every == 0) {
            close(fd);
            continue;
        }
        sock_set_nonblock(fd, 0);
        sock_set_nodelay(fd);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0) {
            srvstats_refused(&stats);
            close(fd);
        } else {
            srvstats_opened(&stats);
        }
        pthread_attr_destroy(&attr);
    }
    close(lfd);
    report_emit(stdout, report_stopped(SERVER_NAME, "threaded", &stats, NULL));
    return 0;
}
