/* Pure. DNS server counters for the `stopped` line, the same in both models; not thread-safe:
 * each thread keeps its own and adds them up with dnsstats_add. */
#ifndef TVSA_DNSSTATS_H
#define TVSA_DNSSTATS_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define DNSSTATS_RCODES 17  /* 0..15 and BADVERS (16); any other extended rcode counts as its
                              * low 4 bits */

struct dnsstats {
    uint64_t udp, tcp;                 /* queries received by transport */
    uint64_t dropped;                  /* no answer at all (shorter than a header, QR set...) */
    uint64_t too_long;                 /* UDP queries over the server's query limit */
    uint64_t send_failures;            /* replies the socket refused */
    uint64_t truncated_replies;        /* replies with TC set (too big for UDP) */
    uint64_t edns_replies;             /* replies with an OPT record (the query had one) */
    uint64_t rcode[DNSSTATS_RCODES];
};

/* Counts one answer: rcode < 0 means the query was dropped; reply[0..n) is the answer sent
 * (its additional section, when not empty, is the OPT: that is all the servers put there). */
void dnsstats_count_reply(struct dnsstats *c, int rcode, const uint8_t *reply, size_t n);
/* Adds every counter of from into into. */
void dnsstats_add(struct dnsstats *into, const struct dnsstats *from);
/* {"queries":{"udp","tcp"},"rcodes":{...},"dropped","too_long","send_failures",
 *  "truncated_replies","edns_replies"}: a new object, NULL on allocation failure. rcodes has
 *  NOERROR..REFUSED always, RCODE6..RCODE15 and BADVERS when not zero. */
json_t *dnsstats_json(const struct dnsstats *c);

#endif
