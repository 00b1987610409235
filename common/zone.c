/* Zone files (`NAME [TTL] A IPV4`) and the answers a DNS server gives from one. */
#include "zone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A zone file larger than this is refused: the file is read whole into memory, and a zone
 * served by a test bed has no business being bigger. */
#define ZONE_FILE_MAX (64u * 1024 * 1024)

/* Names sorted (by wire length, then bytes, lowercased); each owns a run of addrs. */
struct zone_entry {
    struct dnswire_name name;
    size_t first, count;
};

struct zone {
    struct zone_entry *entries;
    size_t nentries;
    struct dnswire_a *addrs;
    size_t naddrs;
};

/* A record as parsed, before grouping. */
struct parsed_rr {
    struct dnswire_name name;
    struct dnswire_a a;
    size_t line;
};

static int name_cmp(const struct dnswire_name *a, const struct dnswire_name *b)
{
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->wire, b->wire, a->len);
}

static int parsed_cmp(const void *pa, const void *pb)
{
    const struct parsed_rr *a = pa, *b = pb;
    int c = name_cmp(&a->name, &b->name);
    if (c != 0)
        return c;
    return a->line < b->line ? -1 : a->line > b->line; /* file order within a name */
}

/* Hostname syntax for zone files: letters, digits, '-' and '_' in labels; stricter than the
 * wire format allows so that a typo is reported rather than served. */
static int valid_host(const char *s)
{
    if (strcmp(s, ".") == 0)
        return 1;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return 0;
    return 1;
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if ((*a | 0x20) != (*b | 0x20))
            return 0;
    return *a == *b;
}

/* One line's tokens (at most 5 kept; *ntok counts them all). Modifies line in place. */
static size_t split(char *line, char **tok, size_t maxtok)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t\r\v\f", &save); t; t = strtok_r(NULL, " \t\r\v\f", &save)) {
        if (n < maxtok)
            tok[n] = t;
        n++;
    }
    return n;
}

/* Parses one line (comment already cut) into *rr. 0 = a record, 1 = blank, -1 = error. */
static int parse_line(char *line, size_t lineno, struct parsed_rr *rr, char *err, size_t errlen)
{
    char *tok[5];
    size_t n = split(line, tok, 5), i = 1;
    long ttl = ZONE_DEFAULT_TTL;

    if (n == 0)
        return 1;
    if (n < 3 || n > 4) {
        snprintf(err, errlen, "line %zu: expected NAME [TTL] A IPV4, got %zu fields", lineno, n);
        return -1;
    }
    if (!valid_host(tok[0]) || dnswire_name_from_text(tok[0], &rr->name) < 0) {
        snprintf(err, errlen, "line %zu: bad name '%s'", lineno, tok[0]);
        return -1;
    }
    dnswire_name_lower(&rr->name);
    if (n == 4 && ieq(tok[1], "A")) {
        snprintf(err, errlen, "line %zu: expected NAME [TTL] A IPV4, got '%s' after the address",
                 lineno, tok[3]);
        return -1;
    }
    if (n == 4) {
        char *end;
        errno = 0;
        ttl = strtol(tok[1], &end, 10);
        if (tok[1][0] < '0' || tok[1][0] > '9' || *end != '\0' || errno != 0 || ttl < 0 ||
            ttl > 2147483647L) {
            snprintf(err, errlen, "line %zu: bad TTL '%s' (want 0..2147483647)", lineno, tok[1]);
            return -1;
        }
        i = 2;
    }
    if (!ieq(tok[i], "A")) {
        snprintf(err, errlen, "line %zu: unsupported record type '%s' (only A)", lineno, tok[i]);
        return -1;
    }
    if (inet_pton(AF_INET, tok[i + 1], rr->a.addr) != 1) {
        snprintf(err, errlen, "line %zu: bad IPv4 address '%s'", lineno, tok[i + 1]);
        return -1;
    }
    rr->a.ttl = (uint32_t)ttl;
    rr->line = lineno;
    return 0;
}

/* Sorts the parsed records and groups them by name. Duplicates (same name and address) are an
 * error: they are always a mistake in a hand-written file. */
static struct zone *build(struct parsed_rr *rrs, size_t n, char *err, size_t errlen)
{
    struct zone *z = calloc(1, sizeof *z);
    if (z == NULL)
        goto oom;
    if (n > 0) /* qsort(NULL, 0, ...) is undefined (found by fuzz_zone on empty input) */
        qsort(rrs, n, sizeof *rrs, parsed_cmp);
    z->addrs = calloc(n ? n : 1, sizeof *z->addrs);
    z->entries = calloc(n ? n : 1, sizeof *z->entries);
    if (z->addrs == NULL || z->entries == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        struct zone_entry *e = z->nentries ? &z->entries[z->nentries - 1] : NULL;
        if (e == NULL || name_cmp(&e->name, &rrs[i].name) != 0) {
            e = &z->entries[z->nentries++];
            e->name = rrs[i].name;
            e->first = z->naddrs;
            e->count = 0;
        }
        for (size_t k = i - e->count; k < i; k++) {
            if (memcmp(rrs[k].a.addr, rrs[i].a.addr, 4) == 0) {
                snprintf(err, errlen, "line %zu: duplicate record (first on line %zu)",
                         rrs[i].line, rrs[k].line);
                zone_free(z);
                return NULL;
            }
        }
        z->addrs[z->naddrs++] = rrs[i].a;
        e->count++;
    }
    return z;
oom:
    snprintf(err, errlen, "out of memory");
    zone_free(z);
    return NULL;
}

struct zone *zone_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct parsed_rr *rrs = NULL;
    size_t n = 0, cap = 0, lineno = 0, pos = 0;
    char *line = NULL;
    struct zone *z = NULL;

    while (pos < len) {
        size_t start = pos;
        while (pos < len && text[pos] != '\n')
            pos++;
        size_t ll = pos - start;
        pos++; /* past the '\n' (or the end) */
        lineno++;
        if (memchr(text + start, '\0', ll) != NULL) {
            snprintf(err, errlen, "line %zu: NUL byte", lineno);
            goto out;
        }
        char *nl = realloc(line, ll + 1);
        if (nl == NULL) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        line = nl;
        memcpy(line, text + start, ll);
        line[ll] = '\0';
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct parsed_rr *r = realloc(rrs, ncap * sizeof *rrs);
            if (r == NULL) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            rrs = r;
            cap = ncap;
        }
        int rc = parse_line(line, lineno, &rrs[n], err, errlen);
        if (rc < 0)
            goto out;
        if (rc == 0)
            n++;
    }
    z = build(rrs, n, err, errlen);
out:
    free(line);
    free(rrs);
    return z;
}

struct zone *zone_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, perr[256];
    size_t len = 0, cap = 0;
    struct zone *z = NULL;

    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* A FIFO, a device (/dev/zero) or a directory would be read without end, or block. */
    struct stat sb;
    if (fstat(fileno(f), &sb) < 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if ((unsigned long long)sb.st_size > ZONE_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u MiB", path, ZONE_FILE_MAX / (1024 * 1024));
        goto out;
    }
    for (;;) {
        if (cap - len < 4096) {
            char *nb = realloc(buf, cap ? cap * 2 : 65536);
            if (nb == NULL) {
                snprintf(err, errlen, "%s: out of memory", path);
                goto out;
            }
            buf = nb;
            cap = cap ? cap * 2 : 65536;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
        if (len > ZONE_FILE_MAX) { /* it grew while being read */
            snprintf(err, errlen, "%s: larger than %u MiB", path, ZONE_FILE_MAX / (1024 * 1024));
            goto out;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto out;
    }
    z = zone_parse(buf, len, perr, sizeof perr);
    if (z == NULL)
        snprintf(err, errlen, "%s: %s", path, perr);
out:
    free(buf);
    fclose(f);
    return z;
}

void zone_free(struct zone *z)
{
    if (z == NULL)
        return;
    free(z->entries);
    free(z->addrs);
    free(z);
}

size_t zone_names(const struct zone *z)
{
    return z->nentries;
}

size_t zone_records(const struct zone *z)
{
    return z->naddrs;
}

const struct dnswire_name *zone_name_at(const struct zone *z, size_t i)
{
    return i < z->nentries ? &z->entries[i].name : NULL;
}

const struct dnswire_a *zone_lookup(const struct zone *z, const struct dnswire_name *name,
                                    size_t *n)
{
    struct dnswire_name key = *name;
    size_t lo = 0, hi = z->nentries;

    dnswire_name_lower(&key);
    *n = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(&key, &z->entries[mid].name);
        if (c == 0) {
            *n = z->entries[mid].count;
            return &z->addrs[z->entries[mid].first];
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

size_t zone_respond(const struct zone *z, const uint8_t *query, size_t qlen, uint8_t *out,
                    size_t limit, struct dnswire_msg *m, int *rcode_out)
{
    char err[128];
    int rcode, aa = 0;
    const struct dnswire_question *q = NULL;
    const struct dnswire_a *a = NULL;
    size_t na = 0;

    if (rcode_out)
        *rcode_out = -1;
    int st = dnswire_decode(query, qlen, m, err, sizeof err);
    if (st == DNSWIRE_ESHORT || (m->h.flags & DNSWIRE_F_QR))
        return 0;
    if (st == DNSWIRE_OK && m->nq == 1)
        q = &m->q[0];
    if (DNSWIRE_OPCODE(m->h.flags) != DNSWIRE_OP_QUERY) {
        rcode = DNSWIRE_RC_NOTIMP;
    } else if (q == NULL) {
        rcode = DNSWIRE_RC_FORMERR;
    } else if (q->qclass != DNSWIRE_C_IN) {
        rcode = DNSWIRE_RC_REFUSED;
    } else {
        a = zone_lookup(z, &q->name, &na);
        aa = 1;
        if (a == NULL) {
            rcode = DNSWIRE_RC_NXDOMAIN;
        } else {
            rcode = DNSWIRE_RC_NOERROR;
            if (q->qtype != DNSWIRE_T_A)
                na = 0;
        }
    }
    int n = dnswire_encode_response(out, limit, &m->h, q, rcode, aa, a, na);
    if (n < 0) /* the question alone does not fit: answer without it */
        n = dnswire_encode_response(out, limit, &m->h, NULL, rcode, aa, NULL, 0);
    if (n < 0)
        return 0;
    if (rcode_out)
        *rcode_out = rcode;
    return (size_t)n;
}
