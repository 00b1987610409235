/* Zone files ($ORIGIN, $TTL, `NAME [TTL] [IN] A IPV4`, SOA) and the answers an authoritative
 * DNS server gives from them. */
#include "zone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A zone file larger than this is refused: the file is read whole into memory, and a zone
 * served by a test bed has no business being bigger. */
#define ZONE_FILE_MAX (64u * 1024 * 1024)
#define NO_ZONE ((size_t)-1)
#define MAX_TOKENS 11 /* NAME TTL IN SOA and its 7 fields */

/* Names in canonical order (RFC 4034 6.1: labels compared from the right), lowercased, so all
 * the names below a name follow it: an empty non-terminal is found by one binary search. Each
 * owns a run of addrs (possibly empty: an origin without A records). */
struct zone_entry {
    struct dnswire_name name;
    size_t first, count;
};

/* One origin, sorted by name_cmp, with its SOA (given, or synthesised). */
struct zone_apex {
    struct dnswire_name origin;
    struct dnswire_soa soa;
    uint32_t soa_ttl;
};

struct zone {
    struct zone_entry *entries;
    size_t nentries;
    struct dnswire_a *addrs; /* never NULL: the empty runs point here */
    size_t naddrs;
    struct zone_apex *apexes;
    size_t napexes;
};

/* A record as parsed, before grouping: an A record, or an origin marker (no address). */
struct parsed_rr {
    struct dnswire_name name;
    struct dnswire_a a;
    size_t line;
    size_t origin;  /* index into the parser's origins; NO_ZONE without $ORIGIN */
    int is_origin;  /* a marker that makes the origin a name of its own */
};

/* An origin as declared by $ORIGIN, with the SOA line that went with it, if any. */
struct parsed_origin {
    struct dnswire_name name;
    size_t line, soa_line;
    struct dnswire_soa soa;
    uint32_t soa_ttl;
};

struct parser {
    struct parsed_rr *rrs;
    size_t n, cap;
    struct parsed_origin *origins;
    size_t norigins, ocap;
    long ttl; /* $TTL */
};

/* ---- names ---------------------------------------------------------------------------- */

static int name_cmp(const struct dnswire_name *a, const struct dnswire_name *b)
{
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->wire, b->wire, a->len);
}

/* The offset of each label of n (the root excluded); returns how many. */
static size_t label_offsets(const struct dnswire_name *n, uint8_t off[DNSWIRE_MAX_LABELS])
{
    size_t k = 0, p = 0;
    while (p < n->len && n->wire[p] != 0 && k < DNSWIRE_MAX_LABELS) {
        off[k++] = (uint8_t)p;
        p += (size_t)n->wire[p] + 1;
    }
    return k;
}

/* RFC 4034 6.1 on lowercased names: label by label from the right, an ancestor first. */
static int canon_cmp(const struct dnswire_name *a, const struct dnswire_name *b)
{
    uint8_t ao[DNSWIRE_MAX_LABELS], bo[DNSWIRE_MAX_LABELS];
    size_t na = label_offsets(a, ao), nb = label_offsets(b, bo);
    for (size_t i = 1; i <= na && i <= nb; i++) {
        const uint8_t *la = a->wire + ao[na - i], *lb = b->wire + bo[nb - i];
        int c = memcmp(la + 1, lb + 1, la[0] < lb[0] ? la[0] : lb[0]);
        if (c != 0)
            return c;
        if (la[0] != lb[0])
            return la[0] < lb[0] ? -1 : 1;
    }
    return na < nb ? -1 : na > nb;
}

/* 1 if child (lowercased) is parent (lowercased) or below it. */
static int name_under(const struct dnswire_name *child, const struct dnswire_name *parent)
{
    if (parent->len > child->len)
        return 0;
    size_t off = (size_t)child->len - parent->len, p = 0;
    while (p < off)
        p += (size_t)child->wire[p] + 1;
    return p == off && memcmp(child->wire + off, parent->wire, parent->len) == 0;
}

/* The longest common suffix of a and b, in whole labels (the root at least). */
static void common_suffix(struct dnswire_name *a, const struct dnswire_name *b)
{
    uint8_t ao[DNSWIRE_MAX_LABELS], bo[DNSWIRE_MAX_LABELS];
    size_t na = label_offsets(a, ao), nb = label_offsets(b, bo), k = 0;
    while (k < na && k < nb && a->len - ao[na - k - 1] == b->len - bo[nb - k - 1] &&
           memcmp(a->wire + ao[na - k - 1], b->wire + bo[nb - k - 1],
                  a->len - ao[na - k - 1]) == 0)
        k++;
    size_t from = k == 0 ? (size_t)a->len - 1 : ao[na - k];
    memmove(a->wire, a->wire + from, a->len - from);
    a->len = (uint8_t)(a->len - from);
}

/* The index in z->apexes of the zone name (lowercased) belongs to, or NO_ZONE: each suffix of
 * the name, longest first, is looked up among the sorted origins. */
static size_t find_apex(const struct zone_apex *apexes, size_t napexes,
                        const struct dnswire_name *name)
{
    struct dnswire_name suffix;
    size_t p = 0;
    for (;;) {
        suffix.len = (uint8_t)(name->len - p);
        memcpy(suffix.wire, name->wire + p, suffix.len);
        size_t lo = 0, hi = napexes;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = name_cmp(&suffix, &apexes[mid].origin);
            if (c == 0)
                return mid;
            if (c < 0)
                hi = mid;
            else
                lo = mid + 1;
        }
        if (p >= name->len || name->wire[p] == 0)
            return NO_ZONE;
        p += (size_t)name->wire[p] + 1;
    }
}

/* ---- parsing -------------------------------------------------------------------------- */

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

/* One line's tokens (at most maxtok kept; the return counts them all). Modifies line. */
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

/* A decimal number in [0, max]. 0, or -1. */
static int parse_num(const char *s, unsigned long long max, uint32_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0 || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* A name of a zone file: `@` is the current origin; every name is absolute (a trailing dot is
 * optional), so `www` after `$ORIGIN example.test` is www., not www.example.test: the check
 * that names are under their origin then reports it. Lowercased. */
static int parse_name(const struct parser *ps, const char *s, struct dnswire_name *out)
{
    if (strcmp(s, "@") == 0) {
        if (ps->norigins == 0)
            return -1;
        *out = ps->origins[ps->norigins - 1].name;
        return 0;
    }
    if (!valid_host(s) || dnswire_name_from_text(s, out) < 0)
        return -1;
    dnswire_name_lower(out);
    return 0;
}

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    void *np = realloc(*p, ncap * size);
    if (np == NULL)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

/* `$ORIGIN NAME` and `$TTL N` (n tokens, tok[0] and tok[1] read only when n == 2). */
static int parse_directive(struct parser *ps, char **tok, size_t n, size_t lineno, char *err,
                           size_t errlen)
{
    if (ieq(tok[0], "$TTL")) {
        uint32_t v;
        if (n != 2 || parse_num(tok[1], 2147483647ull, &v) < 0) {
            snprintf(err, errlen, "line %zu: expected $TTL SECONDS (0..2147483647)", lineno);
            return -1;
        }
        ps->ttl = v;
        return 0;
    }
    if (!ieq(tok[0], "$ORIGIN")) {
        snprintf(err, errlen, "line %zu: unsupported directive '%s' ($ORIGIN and $TTL only)",
                 lineno, tok[0]);
        return -1;
    }
    struct dnswire_name name;
    if (n != 2 || strcmp(tok[1], "@") == 0 || parse_name(ps, tok[1], &name) < 0) {
        snprintf(err, errlen, "line %zu: expected $ORIGIN NAME", lineno);
        return -1;
    }
    for (size_t i = 0; i < ps->norigins; i++) {
        if (name_cmp(&ps->origins[i].name, &name) == 0) {
            snprintf(err, errlen, "line %zu: $ORIGIN %s repeated (first on line %zu)", lineno,
                     tok[1], ps->origins[i].line);
            return -1;
        }
    }
    if (grow((void **)&ps->origins, &ps->ocap, ps->norigins, sizeof *ps->origins) < 0 ||
        grow((void **)&ps->rrs, &ps->cap, ps->n, sizeof *ps->rrs) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ps->origins[ps->norigins] = (struct parsed_origin){.name = name, .line = lineno};
    ps->rrs[ps->n++] = (struct parsed_rr){.name = name, .line = lineno,
                                          .origin = ps->norigins, .is_origin = 1};
    ps->norigins++;
    return 0;
}

/* The 7 fields of an SOA line into the current origin. */
static int parse_soa(struct parser *ps, const char *owner_text, const struct dnswire_name *owner,
                     char **f, uint32_t ttl, size_t lineno, char *err, size_t errlen)
{
    if (ps->norigins == 0) {
        snprintf(err, errlen, "line %zu: an SOA needs a $ORIGIN line before it", lineno);
        return -1;
    }
    struct parsed_origin *o = &ps->origins[ps->norigins - 1];
    if (name_cmp(owner, &o->name) != 0) {
        snprintf(err, errlen, "line %zu: the SOA must be at the origin (@), not '%s'", lineno,
                 owner_text);
        return -1;
    }
    if (o->soa_line != 0) {
        snprintf(err, errlen, "line %zu: second SOA for this origin (first on line %zu)", lineno,
                 o->soa_line);
        return -1;
    }
    struct dnswire_soa soa;
    uint32_t *num[5] = {&soa.serial, &soa.refresh, &soa.retry, &soa.expire, &soa.minimum};
    for (int i = 0; i < 2; i++) {
        if (parse_name(ps, f[i], i == 0 ? &soa.mname : &soa.rname) < 0) {
            snprintf(err, errlen, "line %zu: bad SOA name '%s'", lineno, f[i]);
            return -1;
        }
    }
    for (int i = 0; i < 5; i++) {
        if (parse_num(f[2 + i], i == 0 ? 4294967295ull : 2147483647ull, num[i]) < 0) {
            snprintf(err, errlen, "line %zu: bad SOA number '%s'", lineno, f[2 + i]);
            return -1;
        }
    }
    o->soa = soa;
    o->soa_ttl = ttl;
    o->soa_line = lineno;
    return 0;
}

#define EXPECT_A "expected NAME [TTL] [IN] A IPV4"
#define EXPECT_SOA "expected NAME [TTL] [IN] SOA MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM"

/* Parses one line (comment already cut). 0 = parsed (or blank), -1 = error. */
static int parse_line(struct parser *ps, char *line, size_t lineno, char *err, size_t errlen)
{
    char *tok[MAX_TOKENS];
    size_t n = split(line, tok, MAX_TOKENS), i = 1;
    uint32_t ttl = (uint32_t)ps->ttl;
    struct dnswire_name name;

    if (n == 0)
        return 0;
    if (tok[0][0] == '$')
        return parse_directive(ps, tok, n, lineno, err, errlen);
    if (n < 3 || n > MAX_TOKENS) {
        snprintf(err, errlen, "line %zu: " EXPECT_A " or SOA, got %zu fields", lineno, n);
        return -1;
    }
    if (parse_name(ps, tok[0], &name) < 0) {
        snprintf(err, errlen, "line %zu: bad name '%s'%s", lineno, tok[0],
                 strcmp(tok[0], "@") == 0 ? " (@ needs a $ORIGIN before it)" : "");
        return -1;
    }
    /* A TTL is whatever starts like a number where a TTL may stand. */
    if ((tok[1][0] >= '0' && tok[1][0] <= '9') || tok[1][0] == '-' || tok[1][0] == '+') {
        if (parse_num(tok[1], 2147483647ull, &ttl) < 0) {
            snprintf(err, errlen, "line %zu: bad TTL '%s' (want 0..2147483647)", lineno, tok[1]);
            return -1;
        }
        i = 2;
    }
    if (i < n && ieq(tok[i], "IN"))
        i++;
    if (i >= n || (tok[i][0] >= '0' && tok[i][0] <= '9')) {
        snprintf(err, errlen, "line %zu: " EXPECT_A " or SOA, got '%s' as the type", lineno,
                 i < n ? tok[i] : "nothing");
        return -1;
    }
    if (ieq(tok[i], "SOA")) {
        if (n - i - 1 != 7) {
            snprintf(err, errlen, "line %zu: " EXPECT_SOA " (one line), got %zu fields", lineno,
                     n);
            return -1;
        }
        return parse_soa(ps, tok[0], &name, tok + i + 1, ttl, lineno, err, errlen);
    }
    if (!ieq(tok[i], "A")) {
        snprintf(err, errlen, "line %zu: unsupported record type '%s' (only A and SOA)", lineno,
                 tok[i]);
        return -1;
    }
    if (n - i - 1 != 1) {
        snprintf(err, errlen, "line %zu: " EXPECT_A ", got %zu fields", lineno, n);
        return -1;
    }
    struct parsed_rr rr = {.name = name, .line = lineno, .origin = NO_ZONE};
    if (inet_pton(AF_INET, tok[i + 1], rr.a.addr) != 1) {
        snprintf(err, errlen, "line %zu: bad IPv4 address '%s'", lineno, tok[i + 1]);
        return -1;
    }
    rr.a.ttl = ttl;
    if (ps->norigins > 0) {
        const struct parsed_origin *o = &ps->origins[ps->norigins - 1];
        char text[DNSWIRE_NAME_TEXT];
        if (!name_under(&name, &o->name)) {
            dnswire_name_to_text(&o->name, text, sizeof text);
            snprintf(err, errlen, "line %zu: '%s' is outside the origin %s (names are absolute: "
                     "write the whole name)", lineno, tok[0], text);
            return -1;
        }
        rr.origin = ps->norigins - 1;
    }
    if (grow((void **)&ps->rrs, &ps->cap, ps->n, sizeof *ps->rrs) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ps->rrs[ps->n++] = rr;
    return 0;
}

/* ---- building ------------------------------------------------------------------------- */

/* Canonical order; within a name, its origin marker first, then file order. */
static int rr_cmp(const void *pa, const void *pb)
{
    const struct parsed_rr *a = pa, *b = pb;
    int c = canon_cmp(&a->name, &b->name);
    if (c != 0)
        return c;
    if (a->is_origin != b->is_origin)
        return a->is_origin ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

static int apex_cmp(const void *pa, const void *pb)
{
    return name_cmp(&((const struct zone_apex *)pa)->origin,
                    &((const struct zone_apex *)pb)->origin);
}

/* The most A records one name may own: its answer over TCP (header, question, the records,
 * an OPT) must fit in 65,535 bytes, or the name could never be served. */
static size_t max_a_records(const struct dnswire_name *n)
{
    return (DNSWIRE_MAX_MSG - DNSWIRE_HDR_LEN - ((size_t)n->len + 4) - DNSWIRE_OPT_LEN) / 16;
}

/* The SOA of a zone file that gives none (ZONE_SYNTH_MINIMUM in zone.h). */
static void synth_soa(struct zone_apex *ap)
{
    static const uint8_t hostmaster[] = {10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r'};
    struct dnswire_soa *s = &ap->soa;
    s->mname = ap->origin;
    s->rname = ap->origin;
    if ((size_t)ap->origin.len + sizeof hostmaster <= DNSWIRE_MAX_NAME) {
        memcpy(s->rname.wire, hostmaster, sizeof hostmaster);
        memcpy(s->rname.wire + sizeof hostmaster, ap->origin.wire, ap->origin.len);
        s->rname.len = (uint8_t)(ap->origin.len + sizeof hostmaster);
    }
    s->serial = 1;
    s->refresh = 3600;
    s->retry = 600;
    s->expire = 86400;
    s->minimum = ZONE_SYNTH_MINIMUM;
    ap->soa_ttl = ZONE_DEFAULT_TTL;
}

/* The zones: one per $ORIGIN, or without any, one whose origin is the longest common suffix
 * of every name (an empty file has none). Sorted for find_apex. */
static int build_apexes(struct zone *z, struct parser *ps, char *err, size_t errlen)
{
    size_t want = ps->norigins ? ps->norigins : ps->n ? 1 : 0;
    z->apexes = calloc(want ? want : 1, sizeof *z->apexes);
    if (z->apexes == NULL)
        goto oom;
    if (ps->norigins == 0 && ps->n > 0) {
        struct dnswire_name origin = ps->rrs[0].name;
        for (size_t i = 1; i < ps->n; i++)
            common_suffix(&origin, &ps->rrs[i].name);
        z->apexes[0].origin = origin;
        synth_soa(&z->apexes[0]);
        z->napexes = 1;
        if (grow((void **)&ps->rrs, &ps->cap, ps->n, sizeof *ps->rrs) < 0)
            goto oom;
        ps->rrs[ps->n++] = (struct parsed_rr){.name = origin, .origin = NO_ZONE, .is_origin = 1};
    }
    for (size_t i = 0; i < ps->norigins; i++) {
        struct zone_apex *ap = &z->apexes[z->napexes++];
        ap->origin = ps->origins[i].name;
        if (ps->origins[i].soa_line) {
            ap->soa = ps->origins[i].soa;
            ap->soa_ttl = ps->origins[i].soa_ttl;
        } else {
            synth_soa(ap);
        }
    }
    if (z->napexes > 1)
        qsort(z->apexes, z->napexes, sizeof *z->apexes, apex_cmp);
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* With $ORIGIN lines, every record belongs to the zone of the $ORIGIN above it: not before
 * the first one, and not below another origin nested in its own (it could never be served). */
static int check_origins(const struct zone *z, const struct parser *ps, char *err,
                         size_t errlen)
{
    if (ps->norigins == 0)
        return 0;
    for (size_t i = 0; i < ps->n; i++) {
        const struct parsed_rr *rr = &ps->rrs[i];
        if (rr->origin == NO_ZONE) {
            snprintf(err, errlen, "line %zu: a record before the first $ORIGIN (a file with "
                     "$ORIGIN lines needs one above every record)", rr->line);
            return -1;
        }
        size_t k = find_apex(z->apexes, z->napexes, &rr->name);
        const struct parsed_origin *own = &ps->origins[rr->origin];
        if (!rr->is_origin && name_cmp(&z->apexes[k].origin, &own->name) != 0) {
            char text[DNSWIRE_NAME_TEXT], otext[DNSWIRE_NAME_TEXT];
            dnswire_name_to_text(&rr->name, text, sizeof text);
            dnswire_name_to_text(&z->apexes[k].origin, otext, sizeof otext);
            snprintf(err, errlen, "line %zu: '%s' is in the zone of $ORIGIN %s, not of the "
                     "$ORIGIN on line %zu", rr->line, text, otext, own->line);
            return -1;
        }
    }
    return 0;
}

/* Sorts the records and groups them by name. Duplicates (same name and address) are an error:
 * they are always a mistake in a hand-written file; so is a name with more A records than an
 * answer can hold. */
static int build_entries(struct zone *z, struct parser *ps, char *err, size_t errlen)
{
    struct parsed_rr *rrs = ps->rrs;
    size_t n = ps->n, run = 0;
    if (n > 0) /* qsort(NULL, 0, ...) is undefined (found by fuzz_zone on empty input) */
        qsort(rrs, n, sizeof *rrs, rr_cmp);
    z->addrs = calloc(n ? n : 1, sizeof *z->addrs);
    z->entries = calloc(n ? n : 1, sizeof *z->entries);
    if (z->addrs == NULL || z->entries == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct zone_entry *e = z->nentries ? &z->entries[z->nentries - 1] : NULL;
        if (e == NULL || canon_cmp(&e->name, &rrs[i].name) != 0) {
            e = &z->entries[z->nentries++];
            e->name = rrs[i].name;
            e->first = z->naddrs;
            e->count = 0;
            run = i; /* the first parsed record of this name */
        }
        if (rrs[i].is_origin)
            continue;
        if (e->count == max_a_records(&e->name)) {
            char text[DNSWIRE_NAME_TEXT];
            dnswire_name_to_text(&e->name, text, sizeof text);
            snprintf(err, errlen, "line %zu: %s has more A records than a 65,535-byte TCP answer "
                     "holds (%zu at most)", rrs[i].line, text, e->count);
            return -1;
        }
        for (size_t k = run; k < i; k++) {
            if (!rrs[k].is_origin && memcmp(rrs[k].a.addr, rrs[i].a.addr, 4) == 0) {
                snprintf(err, errlen, "line %zu: duplicate record (first on line %zu)",
                         rrs[i].line, rrs[k].line);
                return -1;
            }
        }
        z->addrs[z->naddrs++] = rrs[i].a;
        e->count++;
    }
    return 0;
}

static struct zone *build(struct parser *ps, char *err, size_t errlen)
{
    struct zone *z = calloc(1, sizeof *z);
    if (z == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (build_apexes(z, ps, err, errlen) < 0 || check_origins(z, ps, err, errlen) < 0 ||
        build_entries(z, ps, err, errlen) < 0) {
        zone_free(z);
        return NULL;
    }
    return z;
}

struct zone *zone_parse(const char *text, size_t len, char *err, size_t errlen)
{
    struct parser ps = {.ttl = ZONE_DEFAULT_TTL};
    size_t lineno = 0, pos = 0;
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
        if (parse_line(&ps, line, lineno, err, errlen) < 0)
            goto out;
    }
    z = build(&ps, err, errlen);
out:
    free(line);
    free(ps.rrs);
    free(ps.origins);
    return z;
}

struct zone *zone_load_file(const char *path, char *err, size_t errlen)
{
    char *buf = NULL, perr[256];
    size_t len = 0, cap = 0;
    struct zone *z = NULL;
    FILE *f = NULL;
    struct stat sb;

    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever, before
     * the file type could be looked at. A regular file ignores the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* A FIFO, a device (/dev/zero) or a directory would be read without end, or block. */
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if ((unsigned long long)sb.st_size > ZONE_FILE_MAX) {
        snprintf(err, errlen, "%s: larger than %u MiB", path, ZONE_FILE_MAX / (1024 * 1024));
        close(fd);
        return NULL;
    }
    f = fdopen(fd, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
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
    free(z->apexes);
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

const struct dnswire_name *zone_origin_of(const struct zone *z, const struct dnswire_name *name)
{
    struct dnswire_name key = *name;
    dnswire_name_lower(&key);
    size_t k = find_apex(z->apexes, z->napexes, &key);
    return k == NO_ZONE ? NULL : &z->apexes[k].origin;
}

/* The A records of key (lowercased) as zone_lookup says. */
static const struct dnswire_a *lookup_lower(const struct zone *z, const struct dnswire_name *key,
                                            size_t *n)
{
    size_t lo = 0, hi = z->nentries;

    *n = 0;
    while (lo < hi) { /* the first entry not before key */
        size_t mid = lo + (hi - lo) / 2;
        if (canon_cmp(&z->entries[mid].name, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < z->nentries && canon_cmp(&z->entries[lo].name, key) == 0) {
        *n = z->entries[lo].count;
        return &z->addrs[z->entries[lo].first];
    }
    /* Names below key follow it in canonical order: if the next entry is one, key is an empty
     * non-terminal, which exists (RFC 8020) when it is inside a zone. */
    if (lo < z->nentries && name_under(&z->entries[lo].name, key) &&
        find_apex(z->apexes, z->napexes, key) != NO_ZONE)
        return z->addrs;
    return NULL;
}

const struct dnswire_a *zone_lookup(const struct zone *z, const struct dnswire_name *name,
                                    size_t *n)
{
    struct dnswire_name key = *name;
    dnswire_name_lower(&key);
    return lookup_lower(z, &key, n);
}

/* ---- answers -------------------------------------------------------------------------- */

/* The reply to a question of class IN, from the zone it belongs to. */
static void answer_question(const struct zone *z, const struct dnswire_question *q,
                            struct dnswire_reply *r)
{
    struct dnswire_name key = q->name;
    dnswire_name_lower(&key);
    size_t k = find_apex(z->apexes, z->napexes, &key);
    if (k == NO_ZONE) { /* not ours: no AA, no claim that the name does not exist */
        r->rcode = DNSWIRE_RC_REFUSED;
        return;
    }
    const struct zone_apex *ap = &z->apexes[k];
    size_t na;
    const struct dnswire_a *a = lookup_lower(z, &key, &na);
    int apex = name_cmp(&key, &ap->origin) == 0;
    r->aa = 1;
    r->soa = &ap->soa;
    r->soa_owner = &ap->origin;
    if (a == NULL) {
        r->rcode = DNSWIRE_RC_NXDOMAIN;
    } else {
        r->rcode = DNSWIRE_RC_NOERROR;
        if (q->qtype == DNSWIRE_T_A || q->qtype == DNSWIRE_T_ANY) {
            r->a = a;
            r->na = na;
        }
        if (apex && (q->qtype == DNSWIRE_T_SOA || q->qtype == DNSWIRE_T_ANY)) {
            r->soa_in_answer = 1;
            r->soa_ttl = ap->soa_ttl;
            return;
        }
    }
    if (r->na > 0) {
        r->soa = NULL; /* a positive answer: no authority */
        return;
    }
    /* NXDOMAIN or NODATA: the SOA tells for how long the answer may be cached (RFC 2308 3). */
    r->soa_ttl = ap->soa_ttl < ap->soa.minimum ? ap->soa_ttl : ap->soa.minimum;
}

size_t zone_respond(const struct zone *z, const uint8_t *query, size_t qlen,
                    const struct zone_limits *lim, uint8_t *out, size_t cap,
                    struct dnswire_msg *m, int *rcode_out)
{
    char err[128];
    const struct dnswire_question *q = NULL;
    struct dnswire_reply r = {0};

    if (rcode_out)
        *rcode_out = -1;
    int st = dnswire_decode(query, qlen, m, err, sizeof err);
    if (st == DNSWIRE_ESHORT || (m->h.flags & DNSWIRE_F_QR))
        return 0;
    if (st == DNSWIRE_OK && m->nq == 1)
        q = &m->q[0];
    /* A query with an OPT gets one back, whatever the rcode (RFC 6891 7). */
    r.edns = m->edns.count > 0;
    r.edns_size = (uint16_t)(lim->edns_size < DNSWIRE_MAX_MSG ? lim->edns_size
                                                               : DNSWIRE_MAX_MSG);
    if (DNSWIRE_OPCODE(m->h.flags) != DNSWIRE_OP_QUERY)
        r.rcode = DNSWIRE_RC_NOTIMP;
    else if (st != DNSWIRE_OK)
        r.rcode = DNSWIRE_RC_FORMERR;
    else if (m->edns.count > 1 || !m->edns.ok) /* RFC 6891 6.1.1 */
        r.rcode = DNSWIRE_RC_FORMERR;
    else if (m->edns.count == 1 && m->edns.version > 0)
        r.rcode = DNSWIRE_RC_BADVERS;
    else if (q == NULL)
        r.rcode = DNSWIRE_RC_FORMERR;
    else if (q->qclass != DNSWIRE_C_IN)
        r.rcode = DNSWIRE_RC_REFUSED;
    else
        answer_question(z, q, &r);

    size_t limit = lim->transport == ZONE_TCP ? DNSWIRE_MAX_MSG
                                              : dnswire_udp_limit(m, lim->edns_size);
    if (limit > cap)
        limit = cap;
    int n = dnswire_encode_reply(out, limit, &m->h, q, &r);
    if (n < 0) { /* the question alone does not fit: answer without it */
        r.na = 0;
        r.soa = NULL;
        n = dnswire_encode_reply(out, limit, &m->h, NULL, &r);
    }
    if (n < 0)
        return 0;
    if (rcode_out)
        *rcode_out = r.rcode;
    return (size_t)n;
}
