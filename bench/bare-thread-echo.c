/* bare-thread-echo: the hand-written baseline for threaded-echo. One detached thread per
 * connection (default stack), blocking read -> uppercase -> write; no libraries. What
 * threaded-echo must reach 90% of (scripts/bench.sh). Usage: bare-thread-echo [--port N]
 * [--bind ADDR]; prints the same `listening` JSON line as the real servers. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 16384

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[READ_CHUNK];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] >= 'a' && buf[i] <= 'z')
                buf[i] = (char)(buf[i] - 32);
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    close(fd);
    return NULL;
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
                fprintf(stderr, "bare-thread-echo: bad --port '%s' (want 0..65535)\n", argv[i]);
                return 2;
            }
        }
        else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc)
            bind_addr = argv[++i];
        else {
            fprintf(stderr, "usage: bare-thread-echo [--port N] [--bind ADDR]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t len = sizeof sa;
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, SOMAXCONN) < 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
        perror("bare-thread-echo: listen");
        return 1;
    }
    printf("{\"event\":\"listening\",\"server\":\"bare-thread-echo\",\"model\":\"threaded\","
           "\"addr\":\"%s\",\"port\":%d,\"pid\":%d}\n",
           bind_addr, ntohs(sa.sin_port), (int)getpid());
    fflush(stdout);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) {
            if (errno == EMFILE || errno == ENFILE)
                usleep(1000); /* out of fds: let connections close rather than spin */
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            break;
        }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)c) != 0)
            close(c);
    }
    return 0;
}
