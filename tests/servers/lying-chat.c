/* lying-chat: a test chat server (docs/interfaces.md's line protocol, "IP:PORT: TEXT" to every
 * other client, no join/leave notices) that corrupts every TVSA_LIE_EVERY-th line it relays
 * (default 5): TVSA_LIE=pad changes the text's last byte, TVSA_LIE=name (default) puts another
 * name in front. It gives loadgen's chat check something to catch. Thread per connection. */
#include <errno.h>
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
#include "tpc.h"

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

static void serve(struct tpc_conn *c, void *arg)
{
    int fd = c->fd;
    (void)arg;
    char name[64], buf[LINE_MAX_LEN];
    size_t have = 0;
    sock_addr_name((struct sockaddr *)&c->peer, c->peer_len, name, sizeof name);
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
    const char *ev = getenv("TVSA_LIE_EVERY"), *mode = getenv("TVSA_LIE");
    if (ev && (lie_every = strtol(ev, NULL, 10)) < 1) {
        fprintf(stderr, "%s: bad TVSA_LIE_EVERY '%s'\n", SERVER_NAME, ev);
        return 2;
    }
    lie_pad = mode && strcmp(mode, "pad") == 0;
    return run(serve, 0);
}
