/* lying-dns: a test DNS server over UDP that answers from the sample zone, but changes the
 * last byte of the first A record's address in every TVSA_LIE_EVERY-th reply that has one
 * (default 1: all), so loadgen's dns scenario has a wrong answer to catch. One thread. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dnswire.h"
#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "zone.h"

#define SERVER_NAME "lying-dns"

static const struct opts_spec spec = {
    SERVER_NAME, "DNS over UDP from the sample zone with wrong addresses (for tests).", 0, 0,
};

/* Changes the first A address of reply out[0..len); 1 if there was one. */
static int lie(uint8_t *out, size_t len, struct dnswire_msg *m)
{
    char err[128];
    if (dnswire_decode(out, len, m, err, sizeof err) != DNSWIRE_OK)
        return 0;
    for (size_t i = 0; i < m->nan; i++) {
        if (m->an[i].type == DNSWIRE_T_A && m->an[i].rdlen == 4) {
            out[m->an[i].rdata_off + 3] ^= 0x01;
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct server_opts o;
    struct srv_stats stats = {0};
    char err[256];
    opts_parse_or_exit(&spec, argc, argv, &o);
    long every = 1;
    const char *ev = getenv("TVSA_LIE_EVERY");
    if (ev && (every = strtol(ev, NULL, 10)) < 1) {
        fprintf(stderr, "%s: bad TVSA_LIE_EVERY '%s'\n", SERVER_NAME, ev);
        return 2;
    }
    struct zone *z = zone_parse(zone_sample_text, strlen(zone_sample_text), err, sizeof err);
    struct dnswire_msg *m = malloc(sizeof *m);
    int stopfd = z && m ? stopsig_install(err, sizeof err) : -1;
    int fd = stopfd < 0 ? -1 : sock_bind_udp(o.bind, o.port, 0, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", SERVER_NAME, err);
        return 1;
    }
    report_emit(stdout, report_listening(SERVER_NAME, "threaded", o.bind, sock_local_port(fd),
                                         NULL));
    uint8_t in[DNSWIRE_UDP_LIMIT * 2], out[DNSWIRE_UDP_LIMIT];
    uint64_t with_a = 0;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = stopfd, .events = POLLIN}};
    while (poll(p, 2, -1) >= 0 || errno == EINTR) {
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            continue;
        static const struct zone_limits udp = {ZONE_UDP, DNSWIRE_UDP_LIMIT};
        size_t len = zone_respond(z, in, (size_t)n, &udp, out, sizeof out, m, NULL);
        if (len == 0)
            continue;
        /* Decode a copy: lie() needs the offsets, and only every Nth reply with an A lies. */
        uint8_t copy[DNSWIRE_UDP_LIMIT];
        memcpy(copy, out, len);
        if (lie(copy, len, m) && ++with_a % (uint64_t)every == 0)
            memcpy(out, copy, len);
        sendto(fd, out, len, 0, (struct sockaddr *)&from, flen);
    }
    close(fd);
    zone_free(z);
    free(m);
    report_emit(stdout, report_stopped(SERVER_NAME, "threaded", &stats, NULL));
    return 0;
}
