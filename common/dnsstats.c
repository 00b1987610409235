/* DNS server counters for the `stopped` line, the same in both models. Pure; not thread-safe:
 * each thread keeps its own and adds them up with dnsstats_add. */
#include "dnsstats.h"

#include <stdio.h>

#include "dnswire.h"

void dnsstats_count_reply(struct dnsstats *c, int rcode, const uint8_t *reply, size_t n)
{
    if (rcode < 0) {
        c->dropped++;
        return;
    }
    c->rcode[rcode < DNSSTATS_RCODES ? rcode : rcode & 0xF]++;
    /* TC is bit 9 of the flags word, i.e. bit 1 of the header's third byte. */
    if (n >= 4 && (reply[2] & (DNSWIRE_F_TC >> 8)))
        c->truncated_replies++;
    if (n >= DNSWIRE_HDR_LEN && (reply[10] | reply[11]) != 0)
        c->edns_replies++;
}

void dnsstats_add(struct dnsstats *into, const struct dnsstats *from)
{
    into->udp += from->udp;
    into->tcp += from->tcp;
    into->dropped += from->dropped;
    into->too_long += from->too_long;
    into->send_failures += from->send_failures;
    into->truncated_replies += from->truncated_replies;
    into->edns_replies += from->edns_replies;
    for (int i = 0; i < DNSSTATS_RCODES; i++)
        into->rcode[i] += from->rcode[i];
}

json_t *dnsstats_json(const struct dnsstats *c)
{
    static const char *const names[6] = {"NOERROR", "FORMERR", "SERVFAIL",
                                         "NXDOMAIN", "NOTIMP", "REFUSED"};
    json_t *rc = json_object();
    for (int i = 0; rc != NULL && i < DNSSTATS_RCODES; i++) {
        char other[24];
        snprintf(other, sizeof other, "RCODE%d", i);
        if (i < 6 || c->rcode[i] > 0)
            json_object_set_new(rc, i < 6 ? names[i] : i == DNSWIRE_RC_BADVERS ? "BADVERS" : other,
                                json_integer((json_int_t)c->rcode[i]));
    }
    return json_pack("{s:{s:I, s:I}, s:o, s:I, s:I, s:I, s:I, s:I}", "queries", "udp",
                     (json_int_t)c->udp, "tcp", (json_int_t)c->tcp, "rcodes", rc, "dropped",
                     (json_int_t)c->dropped, "too_long", (json_int_t)c->too_long,
                     "send_failures", (json_int_t)c->send_failures, "truncated_replies",
                     (json_int_t)c->truncated_replies, "edns_replies",
                     (json_int_t)c->edns_replies);
}
