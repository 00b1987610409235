/* corrupt-echo: a test server that echoes the uppercase of what it reads, except that one
 * reply byte in a thousand (every 1000th byte of each connection) has its case flipped, so
 * loadgen's reply check has something to catch. Thread per connection (threaded/lib/tsrv),
 * blocking I/O. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "opts.h"
#include "sock.h"
#include "tsrv.h"
#include "upper.h"

#define SERVER_NAME "corrupt-echo"
#define CORRUPT_EVERY 1000

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase echo that corrupts one reply byte in a thousand (for tests).",
    0, 0,
};


static void serve(struct tpc_conn *c, void *arg)
{
    int fd = c->fd;
    (void)arg;
    uint8_t buf[16384];
    uint64_t pos = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        c->bytes_in += (uint64_t)n;
        upper_inplace(buf, (size_t)n);
        for (ssize_t i = 0; i < n; i++, pos++)
            if (pos % CORRUPT_EVERY == CORRUPT_EVERY - 1)
                buf[i] ^= 0x20; /* flips the case of a letter; any byte differs */
        if (sock_send_all(fd, buf, (size_t)n) < 0)
            break;
        c->bytes_out += (uint64_t)n;
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
    o.stack_kb = 256;
    return tsrv_run(&cfg);
}
