/* DNS wire format (RFC 1035): encode queries and responses, decode whole messages. Pure. */
#include "dnswire.h"

#include <stdio.h>
#include <string.h>

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int dnswire_decode_header(const uint8_t *buf, size_t len, struct dnswire_header *h)
{
    if (buf == NULL || len < DNSWIRE_HDR_LEN)
        return DNSWIRE_ESHORT;
    h->id = get16(buf);
    h->flags = get16(buf + 2);
    h->qdcount = get16(buf + 4);
    h->ancount = get16(buf + 6);
    h->nscount = get16(buf + 8);
    h->arcount = get16(buf + 10);
    return DNSWIRE_OK;
}

/* Why the loop below ends: every pointer must point strictly before the start of the label
 * run that contains it, so the start offset strictly decreases with each jump; and the output
 * is capped at 255 bytes, so plain labels are bounded too. Why it ends soon: a name may take
 * at most DNSWIRE_MAX_JUMPS pointers, or a 64 KiB message of chained pointers would cost
 * every name thousands of jumps (quadratic work for the whole message). */
int dnswire_read_name(const uint8_t *msg, size_t len, size_t *pos, struct dnswire_name *out,
                      char *err, size_t errlen)
{
    size_t p = *pos, run_start = *pos, resume = 0;
    int jumped = 0, labels = 0;

    out->len = 0;
    for (;;) {
        if (p >= len) {
            snprintf(err, errlen, "name at %zu runs past the end", *pos);
            return -1;
        }
        uint8_t c = msg[p];
        if ((c & 0xC0) == 0xC0) {
            if (p + 1 >= len) {
                snprintf(err, errlen, "compression pointer at %zu cut short", p);
                return -1;
            }
            size_t target = ((size_t)(c & 0x3F) << 8) | msg[p + 1];
            if (target >= run_start) {
                snprintf(err, errlen, "compression pointer at %zu to %zu is not backwards", p,
                         target);
                return -1;
            }
            if (target < DNSWIRE_HDR_LEN) {
                snprintf(err, errlen, "compression pointer at %zu into the header", p);
                return -1;
            }
            if (jumped == DNSWIRE_MAX_JUMPS) {
                snprintf(err, errlen, "name at %zu takes more than %d compression pointers",
                         *pos, DNSWIRE_MAX_JUMPS);
                return -1;
            }
            if (!jumped)
                resume = p + 2;
            jumped++;
            p = run_start = target;
            continue;
        }
        if ((c & 0xC0) != 0) {
            snprintf(err, errlen, "reserved label type 0x%02x at %zu", c, p);
            return -1;
        }
        if (c == 0) {
            out->wire[out->len++] = 0;
            *pos = jumped ? resume : p + 1;
            return 0;
        }
        /* c <= 63 here. Room for the label, its length byte and the final 0. */
        if ((size_t)out->len + 1 + c + 1 > DNSWIRE_MAX_NAME) {
            snprintf(err, errlen, "name at %zu longer than %d bytes", *pos, DNSWIRE_MAX_NAME);
            return -1;
        }
        if (++labels > DNSWIRE_MAX_LABELS) {
            snprintf(err, errlen, "name at %zu has more than %d labels", *pos,
                     DNSWIRE_MAX_LABELS);
            return -1;
        }
        if (c > len - p - 1) {
            snprintf(err, errlen, "label at %zu runs past the end", p);
            return -1;
        }
        memcpy(out->wire + out->len, msg + p, (size_t)c + 1);
        out->len = (uint8_t)(out->len + c + 1);
        p += (size_t)c + 1;
    }
}

static int read_question(const uint8_t *buf, size_t len, size_t *pos, struct dnswire_question *q,
                         char *err, size_t errlen)
{
    if (dnswire_read_name(buf, len, pos, &q->name, err, errlen) < 0)
        return -1;
    if (len - *pos < 4) {
        snprintf(err, errlen, "question at %zu cut short", *pos);
        return -1;
    }
    q->qtype = get16(buf + *pos);
    q->qclass = get16(buf + *pos + 2);
    *pos += 4;
    return 0;
}

/* One resource record; rdata of the types tvsa understands is checked, names in it decoded. */
static int read_rr(const uint8_t *buf, size_t len, size_t *pos, struct dnswire_rr *rr,
                   char *err, size_t errlen)
{
    if (dnswire_read_name(buf, len, pos, &rr->name, err, errlen) < 0)
        return -1;
    if (len - *pos < 10) {
        snprintf(err, errlen, "record at %zu cut short", *pos);
        return -1;
    }
    const uint8_t *p = buf + *pos;
    rr->type = get16(p);
    rr->rclass = get16(p + 2);
    rr->ttl = get32(p + 4);
    rr->rdlen = get16(p + 8);
    *pos += 10;
    rr->rdata_off = *pos;
    rr->target.len = 0;
    if (rr->rdlen > len - *pos) {
        snprintf(err, errlen, "rdata at %zu (%u bytes) runs past the end", *pos, rr->rdlen);
        return -1;
    }
    if (rr->type == DNSWIRE_T_A && rr->rclass == DNSWIRE_C_IN && rr->rdlen != 4) {
        snprintf(err, errlen, "A record at %zu with %u bytes of rdata", *pos, rr->rdlen);
        return -1;
    }
    if (rr->type == DNSWIRE_T_SOA) {
        /* MNAME and RNAME (kept in target and scratch), then five 32-bit fields, exactly. */
        struct dnswire_name rname;
        size_t np = *pos, end = *pos + rr->rdlen;
        if (dnswire_read_name(buf, end, &np, &rr->target, err, errlen) < 0 ||
            dnswire_read_name(buf, end, &np, &rname, err, errlen) < 0)
            return -1;
        if (end - np != 20) {
            snprintf(err, errlen, "SOA rdata at %zu: %zu bytes after the names, not 20", *pos,
                     end - np);
            return -1;
        }
    }
    if (rr->type == DNSWIRE_T_CNAME || rr->type == DNSWIRE_T_NS) {
        /* The name must fill the rdata exactly; decoding within the rdata bound means it
         * cannot read the bytes after it (pointers still reach back into the message). */
        size_t np = *pos;
        if (dnswire_read_name(buf, *pos + rr->rdlen, &np, &rr->target, err, errlen) < 0)
            return -1;
        if (np != *pos + rr->rdlen) {
            snprintf(err, errlen, "rdata name at %zu does not fill its rdata", *pos);
            return -1;
        }
    }
    *pos += rr->rdlen;
    return 0;
}

/* 1 if the options of an OPT record (code, length, data; RFC 6891 6.1.2) fill its rdata. */
static int opt_options_ok(const uint8_t *rdata, size_t rdlen)
{
    size_t off = 0;
    while (off < rdlen) {
        if (rdlen - off < 4)
            return 0;
        size_t olen = get16(rdata + off + 2);
        off += 4;
        if (olen > rdlen - off)
            return 0;
        off += olen;
    }
    return 1;
}

/* Notes an OPT record found in section sec (0 answer, 1 authority, 2 additional). */
static void note_opt(const uint8_t *buf, const struct dnswire_rr *rr, int sec,
                     struct dnswire_edns *e)
{
    if (e->count++ == 0) {
        e->udp_size = rr->rclass;
        e->ext_rcode = (uint8_t)(rr->ttl >> 24);
        e->version = (uint8_t)(rr->ttl >> 16);
        e->flags = (uint16_t)rr->ttl;
        e->rdlen = rr->rdlen;
        e->rdata_off = rr->rdata_off;
    }
    if (sec != 2 || rr->name.len != 1 || !opt_options_ok(buf + rr->rdata_off, rr->rdlen))
        e->ok = 0;
}

int dnswire_decode(const uint8_t *buf, size_t len, struct dnswire_msg *m, char *err,
                   size_t errlen)
{
    struct dnswire_question qscratch;
    struct dnswire_rr rrscratch;
    size_t pos = DNSWIRE_HDR_LEN;

    m->nq = m->nan = m->nns = 0;
    memset(&m->edns, 0, sizeof m->edns);
    m->edns.ok = 1;
    if (dnswire_decode_header(buf, len, &m->h) < 0) {
        snprintf(err, errlen, "%zu bytes: shorter than a header", buf ? len : 0);
        return DNSWIRE_ESHORT;
    }
    for (unsigned i = 0; i < m->h.qdcount; i++) {
        struct dnswire_question *q = m->nq < DNSWIRE_MAX_QD ? &m->q[m->nq] : &qscratch;
        if (read_question(buf, len, &pos, q, err, errlen) < 0)
            return DNSWIRE_EMALFORMED;
        if (q != &qscratch)
            m->nq++;
    }
    unsigned nrr = (unsigned)m->h.ancount + m->h.nscount + m->h.arcount;
    for (unsigned i = 0; i < nrr; i++) {
        int sec = i < m->h.ancount ? 0 : i < (unsigned)m->h.ancount + m->h.nscount ? 1 : 2;
        struct dnswire_rr *rr = &rrscratch;
        if (sec == 0 && m->nan < DNSWIRE_MAX_RR)
            rr = &m->an[m->nan++];
        else if (sec == 1 && m->nns < DNSWIRE_MAX_NS)
            rr = &m->ns[m->nns++];
        if (read_rr(buf, len, &pos, rr, err, errlen) < 0)
            return DNSWIRE_EMALFORMED;
        if (rr->type == DNSWIRE_T_OPT)
            note_opt(buf, rr, sec, &m->edns);
    }
    if (pos != len) {
        snprintf(err, errlen, "%zu bytes after the last record", len - pos);
        return DNSWIRE_EMALFORMED;
    }
    return DNSWIRE_OK;
}

int dnswire_name_from_text(const char *text, struct dnswire_name *out)
{
    size_t tl = strlen(text), i = 0, labels = 0;

    out->len = 0;
    if (tl == 1 && text[0] == '.') {
        out->wire[out->len++] = 0;
        return 0;
    }
    if (tl > 0 && text[tl - 1] == '.')
        tl--;
    if (tl == 0)
        return -1;
    while (i < tl) {
        size_t start = i;
        while (i < tl && text[i] != '.')
            i++;
        size_t ll = i - start;
        if (ll == 0 || ll > DNSWIRE_MAX_LABEL || ++labels > DNSWIRE_MAX_LABELS ||
            (size_t)out->len + 1 + ll + 1 > DNSWIRE_MAX_NAME)
            return -1;
        out->wire[out->len] = (uint8_t)ll;
        memcpy(out->wire + out->len + 1, text + start, ll);
        out->len = (uint8_t)(out->len + 1 + ll);
        if (i < tl)
            i++; /* the dot; a dot at the very end was removed above, so a label follows */
        if (i == tl && text[i - 1] == '.')
            return -1;
    }
    out->wire[out->len++] = 0;
    return 0;
}

/* Appends s to buf at *n, keeping room for the NUL; counts what did not fit too. */
static void emit(char *buf, size_t buflen, size_t *n, const char *s)
{
    for (; *s; s++, (*n)++)
        if (*n + 1 < buflen)
            buf[*n] = *s;
}

size_t dnswire_name_to_text(const struct dnswire_name *n, char *buf, size_t buflen)
{
    size_t out = 0, p = 0;

    if (n->len <= 1) {
        emit(buf, buflen, &out, ".");
    } else {
        while (p < n->len && n->wire[p] != 0) {
            uint8_t ll = n->wire[p++];
            if (out > 0)
                emit(buf, buflen, &out, ".");
            for (uint8_t k = 0; k < ll && p < n->len; k++, p++) {
                uint8_t c = n->wire[p];
                char tmp[8];
                if (c == '.' || c == '\\')
                    snprintf(tmp, sizeof tmp, "\\%c", c);
                else if (c < 0x21 || c > 0x7E)
                    snprintf(tmp, sizeof tmp, "\\%03u", c);
                else
                    snprintf(tmp, sizeof tmp, "%c", c);
                emit(buf, buflen, &out, tmp);
            }
        }
    }
    if (buflen > 0)
        buf[out < buflen ? out : buflen - 1] = '\0';
    return out;
}

static uint8_t lower(uint8_t c)
{
    return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

int dnswire_name_equal(const struct dnswire_name *a, const struct dnswire_name *b)
{
    if (a->len != b->len)
        return 0;
    for (size_t i = 0; i < a->len; i++)
        if (lower(a->wire[i]) != lower(b->wire[i]))
            return 0;
    return 1;
}

void dnswire_name_lower(struct dnswire_name *n)
{
    for (size_t i = 0; i < n->len; i++)
        n->wire[i] = lower(n->wire[i]);
}

static void put_header(uint8_t *buf, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
                       uint16_t ns, uint16_t ar)
{
    put16(buf, id);
    put16(buf + 2, flags);
    put16(buf + 4, qd);
    put16(buf + 6, an);
    put16(buf + 8, ns);
    put16(buf + 10, ar);
}

int dnswire_encode_query(uint8_t *buf, size_t cap, uint16_t id, const struct dnswire_name *qname,
                         uint16_t qtype, int rd)
{
    size_t need = DNSWIRE_HDR_LEN + (size_t)qname->len + 4;
    if (qname->len == 0 || cap < need)
        return -1;
    put_header(buf, id, rd ? DNSWIRE_F_RD : 0, 1, 0, 0, 0);
    memcpy(buf + DNSWIRE_HDR_LEN, qname->wire, qname->len);
    put16(buf + DNSWIRE_HDR_LEN + qname->len, qtype);
    put16(buf + DNSWIRE_HDR_LEN + qname->len + 2, DNSWIRE_C_IN);
    return (int)need;
}

static void put_opt(uint8_t *p, uint16_t udp_size, uint8_t ext_rcode, uint16_t flags)
{
    p[0] = 0; /* the root */
    put16(p + 1, DNSWIRE_T_OPT);
    put16(p + 3, udp_size);
    put32(p + 5, ((uint32_t)ext_rcode << 24) | flags); /* version 0 */
    put16(p + 9, 0);
}

int dnswire_append_opt(uint8_t *buf, size_t cap, size_t len, uint16_t udp_size,
                       uint8_t ext_rcode, uint16_t flags)
{
    if (len < DNSWIRE_HDR_LEN || cap < len || cap - len < DNSWIRE_OPT_LEN ||
        get16(buf + 10) == 0xFFFF)
        return -1;
    put_opt(buf + len, udp_size, ext_rcode, flags);
    put16(buf + 10, (uint16_t)(get16(buf + 10) + 1));
    return (int)(len + DNSWIRE_OPT_LEN);
}

/* Where in the question name the SOA owner starts when it is a suffix of it (so a pointer
 * can stand for it), or 0 when it is not. Offsets are from the message start. */
static size_t suffix_pointer(const struct dnswire_question *q, const struct dnswire_name *owner)
{
    if (q == NULL || owner->len > q->name.len)
        return 0;
    size_t off = 0, want = (size_t)q->name.len - owner->len;
    while (off < want)
        off += (size_t)q->name.wire[off] + 1; /* label by label: a boundary, not a byte match */
    if (off != want)
        return 0;
    struct dnswire_name tail;
    tail.len = owner->len;
    memcpy(tail.wire, q->name.wire + off, owner->len);
    return dnswire_name_equal(&tail, owner) ? DNSWIRE_HDR_LEN + off : 0;
}

enum { A_RR_LEN = 2 + 10 + 4 }; /* pointer owner, fixed fields, IPv4 */

int dnswire_encode_reply(uint8_t *buf, size_t limit, const struct dnswire_header *qh,
                         const struct dnswire_question *q, const struct dnswire_reply *r)
{
    size_t qlen = q ? (size_t)q->name.len + 4 : 0, optlen = r->edns ? DNSWIRE_OPT_LEN : 0;
    size_t soa_ptr = r->soa ? suffix_pointer(q, r->soa_owner) : 0, soalen = 0;
    uint16_t flags = (uint16_t)(DNSWIRE_F_QR | (qh->flags & 0x7800u) |
                                (qh->flags & DNSWIRE_F_RD) | (r->aa ? DNSWIRE_F_AA : 0) |
                                (r->rcode & 0xF));
    size_t na = r->na;

    if (limit > DNSWIRE_MAX_MSG)
        limit = DNSWIRE_MAX_MSG;
    if (DNSWIRE_HDR_LEN + qlen + optlen > limit || (q && q->name.len == 0))
        return -1;
    if (r->soa)
        soalen = (soa_ptr ? 2 : r->soa_owner->len) + 10u + r->soa->mname.len +
                 r->soa->rname.len + 20u;
    size_t room = limit - DNSWIRE_HDR_LEN - qlen - optlen;
    int with_soa = r->soa != NULL;
    /* Every record of the answer and the authority is needed (the SOA of a negative answer
     * too: without it a resolver cannot cache it), so it all fits, or none of it goes. */
    if (q == NULL || na > room / A_RR_LEN || soalen > room - na * A_RR_LEN) {
        if (na > 0 || with_soa)
            flags |= DNSWIRE_F_TC;
        na = 0;
        with_soa = 0;
    }
    int soa_an = with_soa && r->soa_in_answer, soa_ns = with_soa && !r->soa_in_answer;
    put_header(buf, qh->id, flags, q ? 1 : 0, (uint16_t)(na + (size_t)soa_an),
               (uint16_t)soa_ns, r->edns ? 1 : 0);
    size_t pos = DNSWIRE_HDR_LEN;
    if (q) {
        memcpy(buf + pos, q->name.wire, q->name.len);
        put16(buf + pos + q->name.len, q->qtype);
        put16(buf + pos + q->name.len + 2, q->qclass);
        pos += qlen;
    }
    for (size_t i = 0; i < na; i++) {
        uint8_t *p = buf + pos;
        put16(p, 0xC000 | DNSWIRE_HDR_LEN); /* the question's name */
        put16(p + 2, DNSWIRE_T_A);
        put16(p + 4, DNSWIRE_C_IN);
        put32(p + 6, r->a[i].ttl);
        put16(p + 10, 4);
        memcpy(p + 12, r->a[i].addr, 4);
        pos += A_RR_LEN;
    }
    if (with_soa) {
        const struct dnswire_soa *soa = r->soa;
        if (soa_ptr) {
            put16(buf + pos, (uint16_t)(0xC000 | soa_ptr));
            pos += 2;
        } else {
            memcpy(buf + pos, r->soa_owner->wire, r->soa_owner->len);
            pos += r->soa_owner->len;
        }
        put16(buf + pos, DNSWIRE_T_SOA);
        put16(buf + pos + 2, DNSWIRE_C_IN);
        put32(buf + pos + 4, r->soa_ttl);
        put16(buf + pos + 8, (uint16_t)(soa->mname.len + soa->rname.len + 20));
        pos += 10;
        memcpy(buf + pos, soa->mname.wire, soa->mname.len);
        pos += soa->mname.len;
        memcpy(buf + pos, soa->rname.wire, soa->rname.len);
        pos += soa->rname.len;
        const uint32_t f[5] = {soa->serial, soa->refresh, soa->retry, soa->expire, soa->minimum};
        for (int i = 0; i < 5; i++, pos += 4)
            put32(buf + pos, f[i]);
    }
    if (r->edns) {
        put_opt(buf + pos, r->edns_size, (uint8_t)((r->rcode >> 4) & 0xFF), 0);
        pos += DNSWIRE_OPT_LEN;
    }
    return (int)pos;
}

int dnswire_encode_response(uint8_t *buf, size_t limit, const struct dnswire_header *qh,
                            const struct dnswire_question *q, int rcode, int aa,
                            const struct dnswire_a *a, size_t na)
{
    const struct dnswire_reply r = {.rcode = rcode, .aa = aa, .a = a, .na = na};
    return dnswire_encode_reply(buf, limit, qh, q, &r);
}

int dnswire_rcode(const struct dnswire_msg *m)
{
    int rc = (int)DNSWIRE_RCODE(m->h.flags);
    return m->edns.count > 0 ? rc | (m->edns.ext_rcode << 4) : rc;
}

size_t dnswire_udp_limit(const struct dnswire_msg *m, size_t server_max)
{
    if (m->edns.count == 0)
        return DNSWIRE_UDP_LIMIT;
    size_t want = m->edns.udp_size < DNSWIRE_UDP_LIMIT ? DNSWIRE_UDP_LIMIT : m->edns.udp_size;
    if (server_max < DNSWIRE_UDP_LIMIT)
        server_max = DNSWIRE_UDP_LIMIT;
    return want < server_max ? want : server_max;
}

size_t dnswire_tcp_next(const uint8_t *buf, size_t len, const uint8_t **msg, size_t *msglen)
{
    if (len < 2)
        return 0;
    size_t n = get16(buf);
    if (len - 2 < n)
        return 0;
    *msg = buf + 2;
    *msglen = n;
    return n + 2;
}

void dnswire_tcp_prefix(uint8_t p[2], size_t n)
{
    put16(p, (uint16_t)n);
}
