/* libFuzzer harness for the zone-file parser (scripts/fuzz.sh): no crash, every name a zone
 * lists is found again inside an origin, the records add up, and every listed name's A answer
 * fits one TCP message (the loader refuses record sets that cannot be served). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "zone.h"

#define ANSWERED_NAMES 64 /* names per input asked over TCP (the rest only looked up) */

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_zone: invariant broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct dnswire_msg m, r;
    static uint8_t q[600], out[DNSWIRE_MAX_MSG];
    static const struct zone_limits tcp = {ZONE_TCP, DNSWIRE_EDNS_SIZE};
    char err[256];
    struct zone *z = zone_parse((const char *)data, size, err, sizeof err);
    if (z == NULL) {
        check(err[0] != '\0', "an error has a message");
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < zone_names(z); i++) {
        size_t n;
        const struct dnswire_name *name = zone_name_at(z, i);
        check(name != NULL, "name_at in range");
        check(zone_lookup(z, name, &n) != NULL, "a listed name is found");
        check(zone_origin_of(z, name) != NULL, "a listed name is inside an origin");
        total += n;
        if (i >= ANSWERED_NAMES)
            continue;
        int ql = dnswire_encode_query(q, sizeof q, 1, name, DNSWIRE_T_A, 0);
        ql = dnswire_append_opt(q, sizeof q, (size_t)ql, 1232, 0, 0);
        int rcode;
        size_t rl = zone_respond(z, q, (size_t)ql, &tcp, out, sizeof out, &m, &rcode);
        check(rl > 0 && rcode == DNSWIRE_RC_NOERROR, "a listed name: NOERROR");
        check(dnswire_decode(out, rl, &r, err, sizeof err) == DNSWIRE_OK, "answer decodes");
        check(!(r.h.flags & DNSWIRE_F_TC) && r.h.ancount == n, "every record over TCP");
        check(r.h.nscount == (n == 0), "the SOA in authority exactly when no answer");
    }
    check(total == zone_records(z), "records add up");
    zone_free(z);
    return 0;
}
