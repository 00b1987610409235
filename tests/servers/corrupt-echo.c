/* corrupt-echo: a test server that echoes the uppercase of what it reads, except that one
 * reply byte in a thousand (every 1000th byte of each connection) has its case flipped, so
 * loadgen's reply check has something to catch. Thread per connection, blocking I/O. */
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

#define SERVER_NAME "corrupt-echo"
#define CORRUPT_EVERY 1000

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase echo that corrupts one reply byte in a thousand (for tests).",
    0, 0,
};

/* Shared by every connection thread; atomic. */
static struct srv_stats stats;

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
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
    srvstats_closed(&stats, in, out);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_opts o;
    char err[256];
    opts_parse_or_exit(&spec, argc, argv, &o);
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
