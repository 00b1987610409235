/* loadgen scenarios dns and dns-tcp: A queries for names from --opt names=FILE (default: the
 * sample zone's names), over UDP (dns) or TCP with the 2-byte length prefix (dns-tcp), closed
 * loop or --rate open loop; rcode counts, lost and late replies, latency. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnswire.h"
#include "scenario.h"
#include "zone.h"

#define TCP_REPLY_MAX 4096  /* dns-tcp: a longer reply is an error (none in a test zone is) */

/* lg_stats.counter[] slots. */
enum { C_NOERROR, C_NXDOMAIN, C_OTHER_RCODE, C_LATE, C_TRUNCATED, C_SENT };

/* The names to ask for: loaded by dns_check in main before any thread starts, read-only
 * after, so the threads share them without a lock. */
static struct dnswire_name *names;
static size_t nnames;

struct dns_state {
    uint16_t id;                       /* of the query in flight */
    size_t name_idx;
    uint32_t seq;
    size_t have;                       /* dns-tcp: reply bytes buffered */
    uint8_t buf[2 + TCP_REPLY_MAX];
};

static int add_name(const char *text, size_t *cap)
{
    if (nnames == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        struct dnswire_name *n = realloc(names, nc * sizeof *names);
        if (n == NULL)
            return -1;
        names = n;
        *cap = nc;
    }
    if (dnswire_name_from_text(text, &names[nnames]) < 0)
        return -1;
    nnames++;
    return 0;
}

static int load_names(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    size_t cap = 0, lineno = 0;
    if (f == NULL) {
        snprintf(err, errlen, "dns: names file %s: cannot open", path);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *tok = strtok(line, " \t\r\n");
        if (tok && add_name(tok, &cap) < 0) {
            snprintf(err, errlen, "dns: %s line %zu: bad name '%s'", path, lineno, tok);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    if (nnames == 0) {
        snprintf(err, errlen, "dns: %s holds no names", path);
        return -1;
    }
    return 0;
}

static int load_sample_names(char *err, size_t errlen)
{
    struct zone *z = zone_parse(zone_sample_text, strlen(zone_sample_text), err, errlen);
    size_t cap = 0;
    if (z == NULL)
        return -1;
    for (size_t i = 0; i < zone_names(z); i++) {
        if (nnames == cap) {
            cap = cap ? cap * 2 : 64;
            struct dnswire_name *n = realloc(names, cap * sizeof *names);
            if (n == NULL) {
                zone_free(z);
                return -1;
            }
            names = n;
        }
        names[nnames++] = *zone_name_at(z, i);
    }
    zone_free(z);
    return 0;
}

static int dns_check(const struct lg_config *cfg, char *err, size_t errlen)
{
    const char *path = lg_config_opt(cfg, "names");
    if (cfg->scn->transport == LG_UDP && cfg->timeout_ms <= 0) {
        snprintf(err, errlen, "dns: needs --timeout > 0 (a lost query would stall its socket)");
        return -1;
    }
    if (names != NULL)
        return 0;
    return path ? load_names(path, err, errlen) : load_sample_names(err, errlen);
}

static size_t dns_state_size(const struct lg_config *cfg)
{
    (void)cfg;
    return sizeof(struct dns_state);
}

/* A decoder per thread: dnswire_msg is big and the threads must not share one. */
static void *dns_thread_init(struct lg_thread *t)
{
    (void)t;
    return malloc(sizeof(struct dnswire_msg));
}

static void dns_thread_free(void *p)
{
    free(p);
}

static enum lg_verdict dns_open(struct lg_conn *c)
{
    struct dns_state *s = lg_conn_state(c);
    s->have = 0;
    return LG_OK;
}

static enum lg_verdict dns_send(struct lg_conn *c)
{
    struct dns_state *s = lg_conn_state(c);
    const struct lg_config *cfg = lg_conn_config(c);
    uint8_t q[2 + 600];

    /* Walk the names from a different place on each connection; ids step by an odd number
     * from a per-connection start, so consecutive queries never share one. */
    if (s->seq == 0) {
        s->name_idx = (lg_conn_index(c) * 7919u) % nnames;
        s->id = (uint16_t)(lg_conn_index(c) * 40503u + (uintptr_t)s);
    }
    s->seq++;
    s->name_idx = (s->name_idx + 1) % nnames;
    s->id = (uint16_t)(s->id + 0x9E37u);
    int len = dnswire_encode_query(q + 2, sizeof q - 2, s->id, &names[s->name_idx],
                                   DNSWIRE_T_A, 0);
    lg_request_start(c, 0);
    if (lg_measuring(c))
        lg_conn_stats(c)->counter[C_SENT]++;
    if (cfg->scn->transport == LG_TCP) {
        dnswire_tcp_prefix(q, (size_t)len);
        return lg_send(c, q, (size_t)len + 2) < 0 ? LG_ERROR : LG_OK;
    }
    return lg_send(c, q + 2, (size_t)len) < 0 ? LG_ERROR : LG_OK;
}

/* One whole reply: counts its rcode and finishes the request if it answers the query in
 * flight (id and name); a reply to an earlier, timed-out query is late. */
static void dns_reply(struct lg_conn *c, const uint8_t *p, size_t n)
{
    struct dns_state *s = lg_conn_state(c);
    struct lg_stats *st = lg_conn_stats(c);
    struct dnswire_msg *m = lg_thread_state(c);
    char err[128];
    struct dnswire_header h;

    if (dnswire_decode_header(p, n, &h) < 0 || !lg_request_pending(c) || h.id != s->id) {
        if (lg_measuring(c))
            st->counter[C_LATE]++;
        return;
    }
    int ok = m != NULL && dnswire_decode(p, n, m, err, sizeof err) == DNSWIRE_OK &&
             (h.flags & DNSWIRE_F_QR) && m->nq == 1 &&
             dnswire_name_equal(&m->q[0].name, &names[s->name_idx]);
    if (ok && lg_measuring(c)) {
        unsigned rc = DNSWIRE_RCODE(h.flags);
        st->counter[rc == DNSWIRE_RC_NOERROR ? C_NOERROR
                    : rc == DNSWIRE_RC_NXDOMAIN ? C_NXDOMAIN : C_OTHER_RCODE]++;
        if (h.flags & DNSWIRE_F_TC)
            st->counter[C_TRUNCATED]++;
    }
    lg_request_done(c, ok);
}

static enum lg_verdict dns_udp_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    dns_reply(c, p, n);
    return LG_OK;
}

/* TCP: bytes in any split; the framer finds whole replies in the buffer. */
static enum lg_verdict dns_tcp_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    struct dns_state *s = lg_conn_state(c);
    while (n > 0) {
        size_t take = sizeof s->buf - s->have < n ? sizeof s->buf - s->have : n;
        memcpy(s->buf + s->have, p, take);
        s->have += take;
        p += take;
        n -= take;
        const uint8_t *msg;
        size_t mlen, used, off = 0;
        while ((used = dnswire_tcp_next(s->buf + off, s->have - off, &msg, &mlen)) > 0) {
            dns_reply(c, msg, mlen);
            off += used;
        }
        memmove(s->buf, s->buf + off, s->have - off);
        s->have -= off;
        if (s->have == sizeof s->buf) {
            lg_conn_stats(c)->mismatches++; /* a reply longer than TCP_REPLY_MAX */
            return LG_ERROR;
        }
    }
    return LG_OK;
}

static void dns_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                     json_t *step)
{
    (void)duration_s;
    json_object_set_new(step, "names", json_integer((json_int_t)nnames));
    json_object_set_new(step, "transport",
                        json_string(cfg->scn->transport == LG_TCP ? "tcp" : "udp"));
    json_object_set_new(step, "queries",
                        json_pack("{s:I, s:I, s:I, s:I}", "sent",
                                  (json_int_t)st->counter[C_SENT], "lost",
                                  (json_int_t)st->timeouts, "late",
                                  (json_int_t)st->counter[C_LATE], "truncated",
                                  (json_int_t)st->counter[C_TRUNCATED]));
    json_object_set_new(step, "rcodes",
                        json_pack("{s:I, s:I, s:I}", "NOERROR",
                                  (json_int_t)st->counter[C_NOERROR], "NXDOMAIN",
                                  (json_int_t)st->counter[C_NXDOMAIN], "other",
                                  (json_int_t)st->counter[C_OTHER_RCODE]));
}

const struct lg_scenario scn_dns = {
    .name = "dns",
    .summary = "DNS A queries over UDP for --opt names=FILE (default: the sample zone's)",
    .transport = LG_UDP,
    .drive = LG_DRIVE_LOOP,
    .check = dns_check,
    .state_size = dns_state_size,
    .thread_init = dns_thread_init,
    .thread_free = dns_thread_free,
    .on_open = dns_open,
    .send_request = dns_send,
    .on_data = dns_udp_data,
    .json_step = dns_json,
};

const struct lg_scenario scn_dns_tcp = {
    .name = "dns-tcp",
    .summary = "the dns scenario over TCP (2-byte length prefix, queries in sequence)",
    .transport = LG_TCP,
    .drive = LG_DRIVE_LOOP,
    .check = dns_check,
    .state_size = dns_state_size,
    .thread_init = dns_thread_init,
    .thread_free = dns_thread_free,
    .on_open = dns_open,
    .send_request = dns_send,
    .on_data = dns_tcp_data,
    .json_step = dns_json,
};
