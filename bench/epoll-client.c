/* epoll-client: the minimal closed-loop client loadgen must be at least as fast as. One
 * thread, one epoll set, N blocking-connected then non-blocking sockets; each sends --size
 * bytes, reads the whole reply, checks it is the uppercase, sends again. No libraries.
 * Usage: epoll-client --port N [--host A] [--connections N] [--duration S] [--size B]
 * Prints one JSON line: requests, per_sec, mismatches, cpu_s, cpu_us_per_request. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct conn {
    int fd;
    size_t got;
    int bad;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* A --port value: decimal lo..65535 and nothing else (atoi would take "9x" or "-1" or
 * "70000" and bind something else). The port, or -1. */
static int parse_port(const char *s, int lo)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > 65535)
        return -1;
    return (int)v;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    long nconns = 100, size = 64;
    double duration = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0) {
            if ((port = parse_port(argv[i + 1], 1)) < 0) {
                fprintf(stderr, "epoll-client: bad --port '%s' (want 1..65535)\n", argv[i + 1]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[i + 1];
        else if (strcmp(argv[i], "--connections") == 0)
            nconns = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--duration") == 0)
            duration = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atol(argv[i + 1]);
        else
            port = -1;
    }
    if (port <= 0 || (argc - 1) % 2 || nconns < 1 || size < 1 || size > 65536 || duration <= 0) {
        fprintf(stderr, "usage: epoll-client --port N [--host A] [--connections N] "
                        "[--duration S] [--size B]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char *msg = malloc((size_t)size), *want = malloc((size_t)size), *buf = malloc(65536);
    for (long i = 0; i < size; i++) {
        msg[i] = (char)('a' + i % 26);
        want[i] = (char)('A' + i % 26);
    }
    struct conn *cs = calloc((size_t)nconns, sizeof *cs);
    int ep = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int one = 1;
    for (long i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            perror("epoll-client: connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        cs[i].fd = fd;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s(), end = t0 + duration;
    unsigned long long done = 0, mismatches = 0, errors = 0;
    for (long i = 0; i < nconns; i++)
        if (send(cs[i].fd, msg, (size_t)size, MSG_NOSIGNAL) != size)
            errors++;
    struct epoll_event evs[MAX_EVENTS];
    unsigned loops = 0;
    for (;;) {
        /* The clock is read once per 64 wake-ups: cheap, and a few ms late at most. */
        if ((++loops & 63) == 0 && now_s() >= end)
            break;
        int n = epoll_wait(ep, evs, MAX_EVENTS, 10);
        if (n < 0 && errno != EINTR)
            break;
        if (n == 0 && now_s() >= end)
            break;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            ssize_t r = recv(c->fd, buf, 65536, 0);
            if (r < 0 && errno == EAGAIN)
                continue;
            if (r <= 0 || (size_t)r > (size_t)size - c->got) {
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (memcmp(buf, want + c->got, (size_t)r) != 0)
                c->bad = 1;
            c->got += (size_t)r;
            if (c->got < (size_t)size)
                continue;
            if (c->bad)
                mismatches++;
            else
                done++;
            c->got = 0;
            c->bad = 0;
            /* 64 bytes always fit in an idle socket's send buffer: no partial writes. */
            if (send(c->fd, msg, (size_t)size, MSG_NOSIGNAL) != size) {
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            }
        }
    }
    double t1 = now_s();
    getrusage(RUSAGE_SELF, &ru1);
    double user = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
    double sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
    printf("{\"client\":\"epoll-client\",\"connections\":%ld,\"size\":%ld,\"duration_s\":%.3f,"
           "\"requests\":%llu,\"per_sec\":%.1f,\"mismatches\":%llu,\"errors\":%llu,"
           "\"cpu_s\":{\"user\":%.3f,\"sys\":%.3f},\"cpu_us_per_request\":%.3f}\n",
           nconns, size, t1 - t0, done, (double)done / (t1 - t0), mismatches, errors, user, sys,
           done ? (user + sys) * 1e6 / (double)done : 0.0);
    for (long i = 0; i < nconns; i++)
        close(cs[i].fd);
    free(cs);
    free(msg);
    free(want);
    free(buf);
    return 0;
}
