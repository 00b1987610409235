/* libFuzzer harness for the DNS message parser and the server's answers (scripts/fuzz.sh), OPT
 * and SOA paths included. Beyond "no crash": an answer must fit its limit (the one its OPT
 * allows), decode, carry an OPT when the query did, set TC only when needed; the framer must
 * stay in bounds. */
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

    /* For three server sizes (--edns-size), over TCP, then over UDP. The UDP answer fits the
     * limit the query's OPT allows; it has TC only when the whole (TCP) answer would not fit,
     * and is that answer byte for byte when it has not. */
    static const size_t sizes[] = {DNSWIRE_UDP_LIMIT, DNSWIRE_EDNS_SIZE, 4096};
    static uint8_t full[DNSWIRE_MAX_MSG];
    for (size_t k = 0; k < 3; k++) {
        const struct zone_limits tcp = {ZONE_TCP, sizes[k]}, udp = {ZONE_UDP, sizes[k]};
        size_t fl = zone_respond(z, data, size, &tcp, full, sizeof full, &m, &rcode);
        int tcp_rcode = rcode;
        check(fl <= DNSWIRE_MAX_MSG, "TCP answer within 65,535 bytes");
        check((fl == 0) == (rcode < 0), "rcode says whether an answer was made");
        if (fl > 0) {
            unsigned query_opts = m.edns.count;
            check(dnswire_decode(full, fl, &r, err, sizeof err) == DNSWIRE_OK, "answer decodes");
            check(r.h.flags & DNSWIRE_F_QR, "answer has QR");
            check(dnswire_rcode(&r) == rcode, "rcode in the header and the OPT");
            check(r.edns.count == (query_opts > 0), "an OPT back exactly when the query had one");
            check(!(r.h.flags & DNSWIRE_F_TC), "no TC over TCP (the loader refuses such sets)");
        }
        size_t n = zone_respond(z, data, size, &udp, out, sizeof out, &m, &rcode);
        size_t limit = dnswire_udp_limit(&m, sizes[k]);
        check(n <= limit, "UDP answer within its limit");
        check(rcode == tcp_rcode && (n == 0) == (fl == 0), "same rcode over UDP and TCP");
        if (n == 0)
            continue;
        check(dnswire_decode(out, n, &r, err, sizeof err) == DNSWIRE_OK, "UDP answer decodes");
        if (r.h.flags & DNSWIRE_F_TC)
            check(fl > limit, "TC only when the whole answer does not fit");
        else
            check(n == fl && memcmp(out, full, n) == 0, "untruncated UDP answer = TCP answer");
    }

    const uint8_t *msg;
    size_t mlen, off = 0, used;
    while ((used = dnswire_tcp_next(data + off, size - off, &msg, &mlen)) > 0) {
        check(used == mlen + 2 && off + used <= size, "TCP framer in bounds");
        off += used;
    }
    return 0;
}
