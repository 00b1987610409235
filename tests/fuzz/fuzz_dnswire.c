/* libFuzzer harness for the DNS message parser and the server's answers (scripts/fuzz.sh).
 * Beyond "no crash": an answer must fit its limit and decode, the framer must stay in bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnswire.h"
#include "zone.h"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_dnswire: invariant broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct dnswire_msg m, r;
    static struct zone *z;
    static uint8_t out[DNSWIRE_MAX_MSG];
    char err[256], text[DNSWIRE_NAME_TEXT];
    int rcode;

    if (z == NULL)
        z = zone_parse(zone_sample_text, strlen(zone_sample_text), err, sizeof err);
    check(z != NULL, "sample zone parses");

    int st = dnswire_decode(data, size, &m, err, sizeof err);
    check(st == DNSWIRE_OK || st == DNSWIRE_EMALFORMED || st == DNSWIRE_ESHORT, "status");
    check(st != DNSWIRE_ESHORT || size < DNSWIRE_HDR_LEN, "ESHORT only below a header");
    if (st == DNSWIRE_OK) {
        check(m.nq <= DNSWIRE_MAX_QD && m.nan <= DNSWIRE_MAX_RR, "kept counts");
        for (size_t i = 0; i < m.nq; i++) {
            check(m.q[i].name.len >= 1 && m.q[i].name.wire[m.q[i].name.len - 1] == 0,
                  "question name ends with 0");
            check(dnswire_name_to_text(&m.q[i].name, text, sizeof text) < sizeof text,
                  "text fits DNSWIRE_NAME_TEXT");
        }
        for (size_t i = 0; i < m.nan; i++)
            check(m.an[i].rdata_off + m.an[i].rdlen <= size, "rdata inside the message");
    }

    static const size_t limits[] = {DNSWIRE_UDP_LIMIT, DNSWIRE_MAX_MSG};
    for (size_t k = 0; k < 2; k++) {
        size_t n = zone_respond(z, data, size, out, limits[k], &m, &rcode);
        check(n <= limits[k], "answer within its limit");
        check((n == 0) == (rcode < 0), "rcode says whether an answer was made");
        if (n > 0) {
            check(dnswire_decode(out, n, &r, err, sizeof err) == DNSWIRE_OK, "answer decodes");
            check(r.h.flags & DNSWIRE_F_QR, "answer has QR");
            check(DNSWIRE_RCODE(r.h.flags) == (unsigned)rcode, "rcode in the header");
        }
    }

    const uint8_t *msg;
    size_t mlen, off = 0, used;
    while ((used = dnswire_tcp_next(data + off, size - off, &msg, &mlen)) > 0) {
        check(used == mlen + 2 && off + used <= size, "TCP framer in bounds");
        off += used;
    }
    return 0;
}
