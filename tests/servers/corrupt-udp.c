/* corrupt-udp: a test UDP server that echoes the uppercase of each datagram, except that
 * every TVSA_CORRUPT_EVERY-th datagram (default 10) has its fifth byte, a digit of loadgen's
 * sequence number, changed to another digit, so loadgen's udp scenario has to tell a corrupted
 * reply from a late one. One thread, blocking I/O (threaded/lib/tsrv). */
#include <stdint.h>

#include "knob.h"
#include "opts.h"
#include "tsrv.h"
#include "upper.h"

#define SERVER_NAME "corrupt-udp"
#define CORRUPT_AT 4

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase UDP echo that corrupts a digit of every Nth datagram (for tests).",
    0, 0,
};

/* Set in main before the thread starts; `seen` is the one UDP thread's. */
static long every = 10;
static uint64_t seen;

static size_t answer(void *w, uint8_t *buf, size_t len, int truncated, uint8_t *reply)
{
    (void)w;
    (void)truncated;
    (void)reply;
    upper_inplace(buf, len);
    if (++seen % (uint64_t)every == 0 && len > CORRUPT_AT && buf[CORRUPT_AT] >= '0' &&
        buf[CORRUPT_AT] <= '9')
        buf[CORRUPT_AT] = (uint8_t)('0' + (buf[CORRUPT_AT] - '0' + 1) % 10);
    return len;
}

static struct server_opts o;
static const struct serve_dgram dgram = {.dgram_max = 65536, .answer = answer};
static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_UDP, .dgram = &dgram,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    every = knob_long(SERVER_NAME, "TVSA_CORRUPT_EVERY", 10, 1, 1000000000);
    o.threads = 1; /* `seen` counts every datagram in order */
    return tsrv_run(&cfg);
}
