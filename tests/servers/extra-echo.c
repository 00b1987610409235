/* extra-echo: a test server that echoes the uppercase of each request of TVSA_REQ_SIZE bytes
 * (default 64) and appends one extra byte to every TVSA_EXTRA_EVERY-th reply of a connection
 * (default 1: every reply); with TVSA_EXTRA_FLIP=1 such a reply also has its first byte's
 * case flipped. It gives loadgen's "more bytes than asked for" check something to catch.
 * With TVSA_CLOSE_EVERY=N (default 0: never) every Nth connection is closed at once, unread,
 * so loadgen sees it lost mid-request and reopens it after a pause.
 * Thread per connection (threaded/lib/tsrv), blocking I/O. */
#include <errno.h>
#include <stdatomic.h>
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
#include "upper.h"

#define SERVER_NAME "extra-echo"
#define REQ_MAX 16384

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase echo that appends a byte to every Nth reply (for tests).", 0, 0,
};

/* Set once in main before any thread starts; read-only after. */
static long req_size = 64, extra_every = 1, close_every;
static int extra_flip;

static void serve(struct tpc_conn *c, void *arg)
{
    /* Connections this server has served; every close_every-th is dropped unread. */
    static atomic_uint_fast64_t accepted;
    int fd = c->fd;
    (void)arg;
    if (close_every > 0 && (atomic_fetch_add(&accepted, 1) + 1) % (uint64_t)close_every == 0)
        return; /* the runtime closes it */
    uint8_t req[REQ_MAX + 1];
    size_t got = 0;
    uint64_t replies = 0;
    for (;;) {
        ssize_t n = read(fd, req + got, (size_t)req_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        c->bytes_in += (uint64_t)n;
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
        c->bytes_out += len;
    }
}

/* Static: a handler past the stop deadline may outlive main's frame (tsrv.h). */
static struct server_opts o;
static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP, .handler = serve,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    req_size = knob_long(SERVER_NAME, "TVSA_REQ_SIZE", 64, 1, REQ_MAX);
    extra_every = knob_long(SERVER_NAME, "TVSA_EXTRA_EVERY", 1, 1, 1000000);
    extra_flip = (int)knob_long(SERVER_NAME, "TVSA_EXTRA_FLIP", 0, 0, 1);
    close_every = knob_long(SERVER_NAME, "TVSA_CLOSE_EVERY", 0, 0, 1000000);
    o.stack_kb = 256;
    return tsrv_run(&cfg);
}
