/* lying-dns: a test DNS server over UDP that answers from the sample zone, but changes the
 * last byte of the first A record's address in every TVSA_LIE_EVERY-th reply that has one
 * (default 1: all), so loadgen's dns scenario has a wrong answer to catch. One thread
 * (threaded/lib/tsrv). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnswire.h"
#include "knob.h"
#include "opts.h"
#include "tsrv.h"
#include "zone.h"

#define SERVER_NAME "lying-dns"

static const struct opts_spec spec = {
    SERVER_NAME, "DNS over UDP from the sample zone with wrong addresses (for tests).", 0, 0,
};

/* Set in main before the thread starts; the scratch and `with_a` are the one UDP thread's. */
static long every = 1;
static struct zone *zone;
static struct dnswire_msg *m;
static uint64_t with_a;

/* Changes the first A address of reply out[0..len); 1 if there was one. */
static int lie(uint8_t *out, size_t len)
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

static size_t answer(void *w, uint8_t *q, size_t n, int truncated, uint8_t *out)
{
    (void)w;
    (void)truncated;
    static const struct zone_limits udp = {ZONE_UDP, DNSWIRE_UDP_LIMIT};
    size_t len = zone_respond(zone, q, n, &udp, out, DNSWIRE_UDP_LIMIT, m, NULL);
    if (len == 0)
        return 0;
    /* Decode a copy: lie() needs the offsets, and only every Nth reply with an A lies. */
    uint8_t copy[DNSWIRE_UDP_LIMIT];
    memcpy(copy, out, len);
    if (lie(copy, len) && ++with_a % (uint64_t)every == 0)
        memcpy(out, copy, len);
    return len;
}

static struct server_opts o;
static const struct serve_dgram dgram = {
    .dgram_max = DNSWIRE_UDP_LIMIT * 2, .reply_max = DNSWIRE_UDP_LIMIT, .answer = answer,
};
static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_UDP, .dgram = &dgram,
};

int main(int argc, char **argv)
{
    char err[256];
    opts_parse_or_exit(&spec, argc, argv, &o);
    every = knob_long(SERVER_NAME, "TVSA_LIE_EVERY", 1, 1, 1000000000);
    zone = zone_parse(zone_sample_text, strlen(zone_sample_text), err, sizeof err);
    m = malloc(sizeof *m);
    if (zone == NULL || m == NULL) {
        fprintf(stderr, "%s: %s\n", SERVER_NAME, zone ? "out of memory" : err);
        return 1;
    }
    o.threads = 1; /* `with_a` counts replies in order */
    int rc = tsrv_run(&cfg);
    zone_free(zone);
    free(m);
    return rc;
}
