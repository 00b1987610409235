/* loadgen scenarios dns and dns-tcp: A queries for names from --opt names=FILE (default: the
 * zone's names), over UDP (dns) or TCP with the 2-byte length prefix (dns-tcp), closed loop or
 * --rate open loop; every reply checked against the zone in use (--opt zone=FILE, default the
 * sample zone): rcode and A set; rcode counts, lost and late replies, latency. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnswire.h"
#include "scenario.h"
#include "zone.h"

#define TCP_REPLY_MAX 4096  /* dns-tcp: a longer reply is an error (none in a test zone is) */

/* lg_stats.counter[] slots. */
enum { C_NOERROR, C_NXDOMAIN, C_OTHER_RCODE, C_LATE, C_TRUNCATED, C_SENT };

/* The names to ask for and the zone the answers must come from: loaded by dns_check in main
 * before any thread starts, read-only after, so the threads share them without a lock. */
static struct dnswire_name *names;
static size_t nnames;
static struct zone *zone_in_use;  /* NULL: --opt names without --opt zone, nothing to check
                                   * the answers against (only id, name and rcode counts) */
static int dns_loaded;

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

static int load_zone_names(const struct zone *z, char *err, size_t errlen)
{
    size_t cap = 0;
    for (size_t i = 0; i < zone_names(z); i++) {
        if (nnames == cap) {
            cap = cap ? cap * 2 : 64;
            struct dnswire_name *n = realloc(names, cap * sizeof *names);
            if (n == NULL) {
                snprintf(err, errlen, "dns: out of memory");
                return -1;
            }
            names = n;
        }
        names[nnames++] = *zone_name_at(z, i);
    }
    if (nnames == 0) {
        snprintf(err, errlen, "dns: the zone holds no names (give --opt names=FILE)");
        return -1;
    }
    return 0;
}

static int dns_check(const struct lg_config *cfg, char *err, size_t errlen)
{
    const char *path = lg_config_opt(cfg, "names");
    const char *zpath = lg_config_opt(cfg, "zone");
    if (cfg->scn->transport == LG_UDP && cfg->timeout_ms <= 0) {
        snprintf(err, errlen, "dns: needs --timeout > 0 (a lost query would stall its socket)");
        return -1;
    }
    if (dns_loaded)
        return 0;
    dns_loaded = 1;
    /* The zone the server answers from: --opt zone=FILE, or the sample zone when the names are
     * the sample zone's too. A names file alone says nothing of the server's zone. */
    char zerr[200];
    if (zpath || path == NULL) {
        zone_in_use = zpath ? zone_load_file(zpath, zerr, sizeof zerr)
                            : zone_parse(zone_sample_text, strlen(zone_sample_text), zerr,
                                         sizeof zerr);
        if (zone_in_use == NULL) {
            snprintf(err, errlen, "dns: zone: %s", zerr);
            return -1;
        }
    }
    return path ? load_names(path, err, errlen) : load_zone_names(zone_in_use, err, errlen);
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
    if (lg_counting(c))
        lg_conn_stats(c)->counter[C_SENT]++;
    if (cfg->scn->transport == LG_TCP) {
        dnswire_tcp_prefix(q, (size_t)len);
        return lg_send(c, q, (size_t)len + 2) < 0 ? LG_ERROR : LG_OK;
    }
    return lg_send(c, q + 2, (size_t)len) < 0 ? LG_ERROR : LG_OK;
}

/* 1 when the answer section of m (decoded from p) holds exactly the zone's A set for the
 * question (a truncated reply: a subset of it), 0 otherwise. */
static int answers_match(const struct dnswire_msg *m, const uint8_t *p, const struct dnswire_a *want,
                         size_t nwant, int truncated)
{
    size_t na = 0;
    for (size_t i = 0; i < m->nan; i++) {
        const struct dnswire_rr *rr = &m->an[i];
        if (rr->type != DNSWIRE_T_A)
            continue;
        if (rr->rdlen != 4)
            return 0;
        size_t k = 0;
        while (k < nwant && memcmp(want[k].addr, p + rr->rdata_off, 4) != 0)
            k++;
        if (k == nwant)
            return 0; /* an address the zone does not hold */
        na++;
    }
    return truncated ? na <= nwant : na == nwant && m->nan == m->h.ancount;
}

/* One whole reply. It answers the query in flight when its id matches; then it is right when
 * it is a response to the same name whose rcode and A set are the zone's (NXDOMAIN and no
 * answers for a name the zone lacks, REFUSED outside every origin it serves). Over UDP a reply with another id is late (an earlier,
 * timed-out query's); over TCP, where queries go one at a time, it is a mismatch, and so is
 * a reply too short for a header. */
static void dns_reply(struct lg_conn *c, const uint8_t *p, size_t n)
{
    struct dns_state *s = lg_conn_state(c);
    struct lg_stats *st = lg_conn_stats(c);
    struct dnswire_msg *m = lg_thread_state(c);
    int tcp = lg_conn_config(c)->scn->transport == LG_TCP;
    char err[128];
    struct dnswire_header h;

    int have_header = dnswire_decode_header(p, n, &h) == 0;
    if (have_header && !tcp && (!lg_request_pending(c) || h.id != s->id)) {
        if (lg_counting(c))
            st->counter[C_LATE]++;
        return;
    }
    if (!have_header || h.id != s->id || !lg_request_pending(c)) {
        if (lg_request_pending(c))
            lg_request_done(c, 0);
        else if (lg_counting(c))
            st->mismatches++;
        return;
    }
    int ok = m != NULL && dnswire_decode(p, n, m, err, sizeof err) == DNSWIRE_OK &&
             (h.flags & DNSWIRE_F_QR) && m->nq == 1 &&
             dnswire_name_equal(&m->q[0].name, &names[s->name_idx]);
    if (ok) {
        unsigned rc = DNSWIRE_RCODE(h.flags);
        if (lg_counting(c)) {
            st->counter[rc == DNSWIRE_RC_NOERROR ? C_NOERROR
                        : rc == DNSWIRE_RC_NXDOMAIN ? C_NXDOMAIN : C_OTHER_RCODE]++;
            if (h.flags & DNSWIRE_F_TC)
                st->counter[C_TRUNCATED]++;
        }
        size_t nwant;
        const struct dnswire_a *want =
            zone_in_use ? zone_lookup(zone_in_use, &names[s->name_idx], &nwant) : NULL;
        if (zone_in_use == NULL)
            ok = 1;
        else if (want == NULL) /* not in the zone, or outside every origin it serves */
            ok = rc == (zone_origin_of(zone_in_use, &names[s->name_idx]) ? DNSWIRE_RC_NXDOMAIN
                                                                       : DNSWIRE_RC_REFUSED) &&
                 m->nan == 0;
        else
            ok = rc == DNSWIRE_RC_NOERROR &&
                 answers_match(m, p, want, nwant, (h.flags & DNSWIRE_F_TC) != 0);
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
            if (lg_counting(c))
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
    /* Whether the answers were checked against a zone (the sample zone, or --opt zone). */
    json_object_set_new(step, "answers_checked", json_boolean(zone_in_use != NULL));
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

static const struct lg_opt_def dns_opts[] = {
    {"names", 0, LG_OPT_STR, "FILE", "the names to ask for, one a line (default: the zone's)", 0,
     0},
    {"zone", 0, LG_OPT_STR, "FILE",
     "the zone the answers are checked against (default: the sample zone)", 0, 0},
    {NULL, 0, 0, NULL, NULL, 0, 0},
};

const struct lg_scenario scn_dns = {
    .name = "dns",
    .summary = "DNS A queries over UDP for --opt names=FILE, answers checked against --opt "
               "zone=FILE (default: the sample zone and its names)",
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
    .opts = dns_opts,
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
    .opts = dns_opts,
};
