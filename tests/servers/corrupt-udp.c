/* corrupt-udp: a test UDP server that echoes the uppercase of each datagram, except that
 * every TVSA_CORRUPT_EVERY-th datagram (default 10) has its fifth byte, a digit of loadgen's
 * sequence number, changed to another digit, so loadgen's udp scenario has to tell a corrupted
 * reply from a late one. One thread, blocking I/O. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "upper.h"

#define SERVER_NAME "corrupt-udp"
#define CORRUPT_AT 4

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase UDP echo that corrupts a digit of every Nth datagram (for tests).",
    0, 0,
};

int main(int argc, char **argv)
{
    struct server_opts o;
    struct srv_stats stats = {0};
    char err[256];
    opts_parse_or_exit(&spec, argc, argv, &o);
    long every = 10;
    const char *ev = getenv("TVSA_CORRUPT_EVERY");
    if (ev && (every = strtol(ev, NULL, 10)) < 1) {
        fprintf(stderr, "%s: bad TVSA_CORRUPT_EVERY '%s'\n", SERVER_NAME, ev);
        return 2;
    }
    int stopfd = stopsig_install(err, sizeof err);
    int fd = stopfd < 0 ? -1 : sock_bind_udp(o.bind, o.port, 0, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", SERVER_NAME, err);
        return 1;
    }
    report_emit(stdout, report_listening(SERVER_NAME, "threaded", o.bind, sock_local_port(fd),
                                         NULL));
    uint8_t buf[65536];
    uint64_t n_dgrams = 0;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = stopfd, .events = POLLIN}};
    while (poll(p, 2, -1) >= 0 || errno == EINTR) {
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            continue;
        upper_inplace(buf, (size_t)n);
        if (++n_dgrams % (uint64_t)every == 0 && n > CORRUPT_AT &&
            buf[CORRUPT_AT] >= '0' && buf[CORRUPT_AT] <= '9')
            buf[CORRUPT_AT] = (uint8_t)('0' + (buf[CORRUPT_AT] - '0' + 1) % 10);
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
    }
    close(fd);
    report_emit(stdout, report_stopped(SERVER_NAME, "threaded", &stats, NULL));
    return 0;
}
