/* lying-chat: a test chat server (INTERFACES.md's line protocol, "IP:PORT: TEXT" to every
 * other client, no join/leave notices) that corrupts every TVSA_LIE_EVERY-th line it relays
 * (default 5): TVSA_LIE=pad changes the text's last byte, TVSA_LIE=name (default) puts another
 * name in front. It gives loadgen's chat check something to catch. Thread per connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

#define SERVER_NAME "lying-chat"
#define MAX_CLIENTS 256
#define LINE_MAX_LEN 70000

static const struct opts_spec spec = {
    SERVER_NAME, "Chat relay that corrupts every Nth line (for tests).", 0, 0,
};

/* Set in main before any thread starts; read-only after. */
static long lie_every = 5;
static int lie_pad;
/* The room: fds and names, under room_mu. */
static pthread_mutex_t room_mu = PTHREAD_MUTEX_INITIALIZER;
static int room_fd[MAX_CLIENTS];
static uint64_t relayed;
static struct srv_stats stats;

static void relay(int from, const char *name, const char *text, size_t len)
{
    static char out[LINE_MAX_LEN + 64];
    pthread_mutex_lock(&room_mu);
    int lie = ++relayed % (uint64_t)lie_every == 0;
    int n = snprintf(out, sizeof out, "%s: ", lie && !lie_pad ? "127.0.0.1:1" : name);
    memcpy(out + n, text, len);
    if (lie && lie_pad && len > 0)
        out[n + len - 1] = out[n + len - 1] == 'x' ? 'y' : 'x';
    out[n + len] = '\n';
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (room_fd[i] > 0 && room_fd[i] != from)
            sock_send_all(room_fd[i], out, (size_t)n + len + 1);
    pthread_mutex_unlock(&room_mu);
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char name[64], buf[LINE_MAX_LEN];
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    size_t have = 0;
    getpeername(fd, (struct sockaddr *)&sa, &sl);
    snprintf(name, sizeof name, "%s:%u", inet_ntoa(sa.sin_addr), ntohs(sa.sin_port));
    pthread_mutex_lock(&room_mu);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (room_fd[i] == 0) {
            room_fd[i] = fd;
            break;
        }
    pthread_mutex_unlock(&room_mu);
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
        char *nl;
        size_t off = 0;
        while ((nl = memchr(buf + off, '\n', have - off)) != NULL) {
            relay(fd, name, buf + off, (size_t)(nl - (buf + off)));
            off = (size_t)(nl - buf) + 1;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (have == sizeof buf)
            break;
    }
    pthread_mutex_lock(&room_mu);
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (room_fd[i] == fd)
            room_fd[i] = 0;
    pthread_mutex_unlock(&room_mu);
    srvstats_closed(&stats, 0, 0);
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_opts o;
    char err[256];
    opts_parse_or_exit(&spec, argc, argv, &o);
    const char *ev = getenv("TVSA_LIE_EVERY"), *mode = getenv("TVSA_LIE");
    if (ev && (lie_every = strtol(ev, NULL, 10)) < 1) {
        fprintf(stderr, "%s: bad TVSA_LIE_EVERY '%s'\n", SERVER_NAME, ev);
        return 2;
    }
    lie_pad = mode && strcmp(mode, "pad") == 0;
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
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, serve, (void *)(intptr_t)fd) != 0)
            close(fd);
        else
            srvstats_opened(&stats);
        pthread_attr_destroy(&attr);
    }
    close(lfd);
    report_emit(stdout, report_stopped(SERVER_NAME, "threaded", &stats, NULL));
    return 0;
}
