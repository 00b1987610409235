/* bare-epoll-echo: the hand-written baseline for async-echo. One thread, one epoll set,
 * level-triggered, non-blocking sockets, uppercase echo; no libraries, no framework. What
 * async-echo must reach 90% of (scripts/bench.sh). Usage: bare-epoll-echo [--port N]
 * [--bind ADDR]; prints the same `listening` JSON line as the real servers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define READ_CHUNK 16384
#define MAX_EVENTS 256

/* Bytes a peer did not take yet; while any are held the connection is not read. */
struct pending {
    char *buf;
    size_t len, off;
};

static struct pending pend[MAX_FD];

static void upper(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'a' && p[i] <= 'z')
            p[i] = (char)(p[i] - 32);
}

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    free(pend[fd].buf);
    memset(&pend[fd], 0, sizeof pend[fd]);
    close(fd);
}

static void set_events(int ep, int fd, unsigned ev)
{
    struct epoll_event e = {.events = ev, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

static void on_readable(int ep, int fd)
{
    char buf[READ_CHUNK];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        drop(ep, fd);
        return;
    }
    upper(buf, (size_t)n);
    ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN) {
        drop(ep, fd);
        return;
    }
    if (w < 0)
        w = 0;
    if (w < n) {
        struct pending *p = &pend[fd];
        p->buf = malloc((size_t)(n - w));
        if (p->buf == NULL) {
            drop(ep, fd);
            return;
        }
        memcpy(p->buf, buf + w, (size_t)(n - w));
        p->len = (size_t)(n - w);
        p->off = 0;
        set_events(ep, fd, EPOLLOUT);
    }
}

static void on_writable(int ep, int fd)
{
    struct pending *p = &pend[fd];
    ssize_t w = send(fd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN) {
        drop(ep, fd);
        return;
    }
    if (w > 0)
        p->off += (size_t)w;
    if (p->off == p->len) {
        free(p->buf);
        memset(p, 0, sizeof *p);
        set_events(ep, fd, EPOLLIN);
    }
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
    const char *bind_addr = "127.0.0.1";
    int port = 9000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            if ((port = parse_port(argv[++i], 0)) < 0) {
                fprintf(stderr, "bare-epoll-echo: bad --port '%s' (want 0..65535)\n", argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc)
            bind_addr = argv[++i];
        else {
            fprintf(stderr, "usage: bare-epoll-echo [--port N] [--bind ADDR]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof sa;
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
        perror("bare-epoll-echo: listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event le = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    printf("{\"event\":\"listening\",\"server\":\"bare-epoll-echo\",\"model\":\"async\","
           "\"addr\":\"%s\",\"port\":%d,\"pid\":%d}\n",
           bind_addr, ntohs(sa.sin_port), (int)getpid());
    fflush(stdout);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FD) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                /* Out of fds: the listening socket stays readable (level-triggered), so
                 * without a pause the loop would spin; let connections close meanwhile, as
                 * bare-thread-echo does. */
                if (errno == EMFILE || errno == ENFILE)
                    usleep(1000);
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                on_writable(ep, fd);
            else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(ep, fd);
        }
    }
    return 0;
}
