/* The echo request of the echo, hold and churn scenarios (see echomsg.h). */
#include "echomsg.h"

#include "upper.h"

struct echo_state {
    uint64_t rng;      /* xorshift state, seeded per connection */
    size_t got;        /* reply bytes checked so far */
    int bad;           /* a reply byte differed */
    uint8_t msg[];     /* the request in flight (--size bytes) */
};

/* Mostly lowercase, so an echo that forgets to uppercase is caught; 64 symbols, all printable
 * and none of them '\n'. */
static const char alphabet[65] = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0123456789.-";

size_t echomsg_state_size(const struct lg_config *cfg)
{
    return sizeof(struct echo_state) + (size_t)cfg->size;
}

enum lg_verdict echomsg_open(struct lg_conn *c)
{
    struct echo_state *s = lg_conn_state(c);
    s->got = 0;
    s->bad = 0;
    return LG_OK;
}

enum lg_verdict echomsg_send(struct lg_conn *c)
{
    struct echo_state *s = lg_conn_state(c);
    size_t size = (size_t)lg_conn_config(c)->size;
    if (s->rng == 0)
        s->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)lg_conn_index(c) << 20) ^
                 (uint64_t)(uintptr_t)s;
    /* Ten 6-bit symbols per 64-bit draw. */
    for (size_t i = 0; i < size;) {
        uint64_t x = s->rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s->rng = x;
        for (int j = 0; j < 10 && i < size; j++, i++)
            s->msg[i] = (uint8_t)alphabet[(x >> (6 * j)) & 63];
    }
    s->got = 0;
    s->bad = 0;
    lg_request_start(c, 0);
    return lg_send(c, s->msg, size) < 0 ? LG_ERROR : LG_OK;
}

enum lg_verdict echomsg_data(struct lg_conn *c, const uint8_t *p, size_t n, int *finished)
{
    struct echo_state *s = lg_conn_state(c);
    size_t size = (size_t)lg_conn_config(c)->size;
    *finished = 0;
    if (!lg_request_pending(c)) {
        if (lg_counting(c))
            lg_conn_stats(c)->mismatches++;
        return LG_CLOSE;
    }
    size_t m = n < size - s->got ? n : size - s->got;
    if (!upper_matches(s->msg + s->got, p, m))
        s->bad = 1;
    s->got += m;
    if (s->got < size)
        return LG_OK;
    *finished = 1;
    if (m < n) {
        /* More than was asked for: the stream is out of step. The request is one mismatch
         * (lg_request_done counts it), however many of its bytes also differed. */
        lg_request_done(c, 0);
        return LG_CLOSE;
    }
    lg_request_done(c, !s->bad);
    return LG_OK;
}
