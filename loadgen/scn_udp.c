/* loadgen scenario udp: datagrams of --size bytes from each connected UDP socket, closed loop or
 * --rate open loop; counts sent, received, lost (no reply within --timeout), late, mismatched. */
#include <stdio.h>
#include <string.h>

#include "scenario.h"
#include "upper.h"

#define UDP_MAX 65507   /* the largest IPv4 UDP payload */
#define SEQ_DIGITS 10   /* a datagram starts with its sequence number in decimal */
#define LATE_WINDOW 8   /* a reply to one of the last 8 datagrams given up on counts as late */

enum { C_LATE, C_SENT, C_RECEIVED }; /* lg_stats.counter[] slots */

struct udp_state {
    uint32_t seq;       /* of the datagram in flight (each send takes the next one) */
    uint8_t msg[];      /* the datagram in flight (--size bytes), then --size bytes of
                         * scratch where an earlier datagram is rebuilt to compare */
};

static int udp_check(const struct lg_config *cfg, char *err, size_t errlen)
{
    /* At least the whole sequence number: with fewer digits a stale reply could match. */
    if (cfg->size < SEQ_DIGITS || cfg->size > UDP_MAX) {
        snprintf(err, errlen, "udp: --size must be %d..%d (the sequence number, one datagram)",
                 SEQ_DIGITS, UDP_MAX);
        return -1;
    }
    if (cfg->timeout_ms <= 0) {
        snprintf(err, errlen, "udp: needs --timeout > 0 (a lost datagram would stall its socket)");
        return -1;
    }
    return 0;
}

static size_t udp_state_size(const struct lg_config *cfg)
{
    return sizeof(struct udp_state) + 2 * (size_t)cfg->size;
}

/* The sequence number as the first 10 decimal digits (uppercase leaves digits
 * alone), then lowercase letters that depend on it, so a reply that is not uppercased, or is
 * another datagram's, is caught. */
static void fill(uint8_t *p, size_t size, uint32_t seq)
{
    char digits[SEQ_DIGITS + 1];
    snprintf(digits, sizeof digits, "%010u", seq);
    memcpy(p, digits, SEQ_DIGITS);
    for (size_t i = SEQ_DIGITS; i < size; i++)
        p[i] = (uint8_t)('a' + (seq + i * 7) % 26);
}

static enum lg_verdict udp_send(struct lg_conn *c)
{
    struct udp_state *s = lg_conn_state(c);
    size_t size = (size_t)lg_conn_config(c)->size;
    s->seq++;
    fill(s->msg, size, s->seq);
    lg_request_start(c, 0);
    if (lg_counting(c))
        lg_conn_stats(c)->counter[C_SENT]++;
    /* A datagram the kernel refuses is lost like one the network drops: --timeout counts it. */
    if (lg_send(c, s->msg, size) < 0)
        return LG_ERROR;
    return LG_OK;
}

/* 1 when the reply is exactly the uppercase of one of the last LATE_WINDOW datagrams before
 * the one in flight (sent, given up on after --timeout, answered since), or of the last one
 * sent when it was given up too (pending = 0). */
static int is_late_reply(struct udp_state *s, size_t size, const uint8_t *p, size_t n,
                         int pending)
{
    if (n != size)
        return 0;
    uint8_t *scratch = s->msg + size;
    for (uint32_t k = pending ? 1 : 0; k <= LATE_WINDOW && k < s->seq; k++) {
        fill(scratch, size, s->seq - k);
        if (upper_matches(scratch, p, n))
            return 1;
    }
    return 0;
}

/* A reply is right (the uppercase of the datagram in flight), late (exactly an earlier
 * datagram's) or a mismatch (anything else: a corrupted digit is not another sequence
 * number). */
static enum lg_verdict udp_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    struct udp_state *s = lg_conn_state(c);
    struct lg_stats *st = lg_conn_stats(c);
    size_t size = (size_t)lg_conn_config(c)->size;

    if (lg_counting(c))
        st->counter[C_RECEIVED]++;
    int pending = lg_request_pending(c);
    if (pending && n == size && upper_matches(s->msg, p, n)) {
        lg_request_done(c, 1);
        return LG_OK;
    }
    if (is_late_reply(s, size, p, n, pending)) {
        if (lg_counting(c))
            st->counter[C_LATE]++;
        return LG_OK;
    }
    if (pending)
        lg_request_done(c, 0);
    else if (lg_counting(c))
        st->mismatches++;
    return LG_OK;
}

static void udp_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                     json_t *step)
{
    (void)cfg;
    (void)duration_s;
    json_object_set_new(step, "datagrams",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "sent",
                                  (json_int_t)st->counter[C_SENT], "received",
                                  (json_int_t)st->counter[C_RECEIVED], "lost",
                                  (json_int_t)st->timeouts, "late",
                                  (json_int_t)st->counter[C_LATE], "mismatched",
                                  (json_int_t)st->mismatches));
}

const struct lg_scenario scn_udp = {
    .name = "udp",
    .summary = "UDP datagrams of --size bytes, uppercase echo checked (--rate: open loop)",
    .transport = LG_UDP,
    .drive = LG_DRIVE_LOOP,
    .check = udp_check,
    .state_size = udp_state_size,
    .send_request = udp_send,
    .on_data = udp_data,
    .json_step = udp_json,
};
