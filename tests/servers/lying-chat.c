/* lying-chat: a test chat server (docs/interfaces.md's line protocol, "IP:PORT: TEXT" to every
 * other client, no join/leave notices) that corrupts every TVSA_LIE_EVERY-th line it relays
 * (default 5): TVSA_LIE=pad changes the text's last byte, TVSA_LIE=name (default) puts another
 * name in front, TVSA_LIE=drop relays it to nobody. It gives loadgen's chat check something to
 * catch. Thread per connection. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "knob.h"
#include "opts.h"
#include "sock.h"
#include "tsrv.h"

#define SERVER_NAME "lying-chat"
#define MAX_CLIENTS 256
#define LINE_MAX_LEN 70000

static const struct opts_spec spec = {
    SERVER_NAME, "Chat relay that corrupts every Nth line (for tests).", 0, 0,
};

/* Set in main before any thread starts; read-only after. */
static long lie_every = 5;
static int lie_pad, lie_drop;
/* The room: fds and names, under room_mu. */
static pthread_mutex_t room_mu = PTHREAD_MUTEX_INITIALIZER;
static int room_fd[MAX_CLIENTS];
static uint64_t relayed;

static void relay(int from, const char *name, const char *text, size_t len)
{
    static char out[LINE_MAX_LEN + 64];
    pthread_mutex_lock(&room_mu);
    int lie = ++relayed % (uint64_t)lie_every == 0;
    if (lie && lie_drop) {
        pthread_mutex_unlock(&room_mu);
        return;
    }
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

/* Static: a handler past the stop deadline may outlive main's frame (tsrv.h). */
static struct server_opts o;
static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP, .handler = serve,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    const char *mode = getenv("TVSA_LIE");
    lie_every = knob_long(SERVER_NAME, "TVSA_LIE_EVERY", 5, 1, 1000000000);
    lie_pad = mode && strcmp(mode, "pad") == 0;
    lie_drop = mode && strcmp(mode, "drop") == 0;
    return tsrv_run(&cfg);
}
