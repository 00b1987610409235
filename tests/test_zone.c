/* Unit tests of the zone-file parser, lookups, the answers built from a zone, and the sample
 * zone (the embedded copy must equal data/sample.zone). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dnswire.h"
#include "zone.h"

static struct zone *parse(const char *text)
{
    char err[256];
    struct zone *z = zone_parse(text, strlen(text), err, sizeof err);
    if (z == NULL)
        fail_msg("parse failed: %s", err);
    return z;
}

static const struct dnswire_a *lookup(const struct zone *z, const char *name, size_t *n)
{
    struct dnswire_name wn;
    assert_int_equal(dnswire_name_from_text(name, &wn), 0);
    return zone_lookup(z, &wn, n);
}

static void test_parse_and_lookup(void **state)
{
    (void)state;
    struct zone *z = parse("# comment line\n"
                           "\n"
                           "   www.example.test 300 A 192.0.2.10  # trailing comment\n"
                           "WWW.Example.Test\t300\ta\t192.0.2.11\n"
                           "mail.example.test. A 192.0.2.25\r\n"
                           "zero.example.test 0 A 0.0.0.0\n"
                           "last.example.test A 10.0.0.1"); /* no final newline */
    size_t n;
    const struct dnswire_a *a;

    assert_int_equal(zone_names(z), 5); /* and example.test, the origin (their common suffix) */
    assert_int_equal(zone_records(z), 5);
    a = lookup(z, "www.example.test", &n);
    assert_non_null(a);
    assert_int_equal(n, 2);
    assert_memory_equal(a[0].addr, ((uint8_t[]){192, 0, 2, 10}), 4); /* file order */
    assert_memory_equal(a[1].addr, ((uint8_t[]){192, 0, 2, 11}), 4);
    assert_int_equal(a[0].ttl, 300);
    a = lookup(z, "MAIL.example.TEST.", &n);
    assert_non_null(a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].ttl, ZONE_DEFAULT_TTL);
    a = lookup(z, "zero.example.test", &n);
    assert_non_null(a);
    assert_int_equal(a[0].ttl, 0);
    assert_non_null(lookup(z, "last.example.test", &n));
    assert_non_null(lookup(z, "example.test", &n)); /* the origin exists, without A records */
    assert_int_equal(n, 0);
    assert_null(lookup(z, "test", &n)); /* outside the origin */
    assert_int_equal(n, 0);
    assert_null(lookup(z, "ww.example.test", &n));
    assert_null(lookup(z, "wwww.example.test", &n));
    for (size_t i = 0; i < zone_names(z); i++)
        assert_non_null(zone_lookup(z, zone_name_at(z, i), &n));
    assert_null(zone_name_at(z, zone_names(z)));
    zone_free(z);
}

static void test_empty_zone(void **state)
{
    (void)state;
    struct zone *z = parse("# nothing\n\n   \n");
    size_t n;
    assert_int_equal(zone_names(z), 0);
    assert_null(lookup(z, "a.b", &n));
    zone_free(z);
}

/* fuzz_zone's first find: zero bytes of input reached qsort(NULL, 0, ...), undefined behaviour
 * that UBSan reports (scripts/check.sh runs this test under it). */
static void test_fuzz_empty_input(void **state)
{
    (void)state;
    char err[64];
    struct zone *z = zone_parse("", 0, err, sizeof err);
    size_t n;
    assert_non_null(z);
    assert_int_equal(zone_records(z), 0);
    assert_null(lookup(z, "a.b", &n));
    zone_free(z);
}

struct bad_case {
    const char *text;
    const char *want; /* substring of the error */
};

static void test_errors_name_the_line(void **state)
{
    (void)state;
    static const struct bad_case bad[] = {
        {"a.test A 1.2.3.4\nb.test A 1.2.3\n", "line 2: bad IPv4"},
        {"a.test A 1.2.3.4\n\n# x\nb.test AAAA ::1\n", "line 4: unsupported record type"},
        {"a.test 5 IN CNAME b.test\n", "line 1: unsupported record type 'CNAME'"},
        {"a.test\n", "line 1: expected"},
        {"a.test A\n", "line 1: expected"},
        {"a.test 1 2 A 1.2.3.4\n", "line 1: expected"},
        {"a.test 1 IN\n", "line 1: expected"},
        {"a.test SOA a b 1 2 3 4 5\n", "line 1: an SOA needs a $ORIGIN"},
        {"$ORIGIN x.test\n@ SOA a b 1 2 3 4\n", "line 2: expected NAME [TTL] [IN] SOA"},
        {"$ORIGIN x.test\n@ SOA a b 1 2 3 4 x\n", "line 2: bad SOA number 'x'"},
        {"$ORIGIN x.test\n@ SOA a b 4294967296 2 3 4 5\n", "line 2: bad SOA number"},
        {"$ORIGIN x.test\n@ SOA a b@ 1 2 3 4 5\n", "line 2: bad SOA name 'b@'"},
        {"$ORIGIN x.test\nw.x.test SOA a b 1 2 3 4 5\n", "line 2: the SOA must be at the origin"},
        {"$ORIGIN x.test\n@ SOA a b 1 2 3 4 5\n\nx.test SOA a b 1 2 3 4 5\n",
         "line 4: second SOA for this origin (first on line 2)"},
        {"$ORIGIN x.test\nwww A 1.2.3.4\n", "line 2: 'www' is outside the origin x.test"},
        {"$ORIGIN x.test\nw.y.test A 1.2.3.4\n", "line 2: 'w.y.test' is outside the origin"},
        {"a.x.test A 1.2.3.4\n$ORIGIN x.test\n", "line 1: a record before the first $ORIGIN"},
        {"$ORIGIN x.test\n$ORIGIN X.TEST.\n", "line 2: $ORIGIN X.TEST. repeated (first on line 1)"},
        {"$ORIGIN x.test\na.b.x.test A 1.2.3.4\n$ORIGIN b.x.test\n",
         "line 2: 'a.b.x.test' is in the zone of $ORIGIN b.x.test, not of the $ORIGIN on line 1"},
        {"$ORIGIN\n", "line 1: expected $ORIGIN NAME"},
        {"$ORIGIN @\n", "line 1: expected $ORIGIN NAME"},
        {"$TTL\n", "line 1: expected $TTL"},
        {"$TTL -1\n", "line 1: expected $TTL"},
        {"$INCLUDE other.zone\n", "line 1: unsupported directive '$INCLUDE'"},
        {"@ A 1.2.3.4\n", "line 1: bad name '@' (@ needs a $ORIGIN"},
        {"a.test -5 A 1.2.3.4\n", "line 1: bad TTL"},
        {"a.test 99999999999 A 1.2.3.4\n", "line 1: bad TTL"},
        {"a.test 12x A 1.2.3.4\n", "line 1: bad TTL"},
        {"a..test A 1.2.3.4\n", "line 1: bad name"},
        {"a$b.test A 1.2.3.4\n", "line 1: bad name"},
        {"x.0123456789012345678901234567890123456789012345678901234567890123 A 1.2.3.4\n",
         "line 1: bad name"},
        {"a.test A 256.1.1.1\n", "line 1: bad IPv4"},
        {"a.test A 1.2.3.4.5\n", "line 1: bad IPv4"},
        {"a.test A 1.2.3.4\nA.TEST 60 A 1.2.3.4\n", "line 2: duplicate record (first on line 1)"},
        {"a.test A 1.2.3.4\nb.test A 1.2.3.4 extra\n", "line 2: expected"},
        {"a.test A 1.2.3.4\nb.te\0st A 1.2.3.4\n", "line 2: NUL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        /* The NUL case needs its real length: every text ends with "\n". */
        size_t len = strlen(bad[i].text);
        if (strstr(bad[i].want, "NUL"))
            len = 17 + 18;
        struct zone *z = zone_parse(bad[i].text, len, err, sizeof err);
        if (z != NULL || strstr(err, bad[i].want) == NULL)
            fail_msg("case %zu: zone %p, error '%s', want '%s'", i, (void *)z, err, bad[i].want);
    }
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/tvsa-test-zone-XXXXXX", err[512];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("ok.test A 1.1.1.1\nbad.test A nope\n", f);
    fclose(f);
    assert_null(zone_load_file(path, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "line 2"));
    f = fopen(path, "w");
    fputs("ok.test A 1.1.1.1\n", f);
    fclose(f);
    struct zone *z = zone_load_file(path, err, sizeof err);
    assert_non_null(z);
    assert_int_equal(zone_records(z), 1);
    zone_free(z);
    unlink(path);
    assert_null(zone_load_file("/nonexistent/zone", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/zone"));
}

/* A FIFO with no writer, a device and a directory are refused at once, not read or waited on
 * (the alarm kills the test if open() blocks, as it did before O_NONBLOCK). */
static void test_load_never_blocks(void **state)
{
    (void)state;
    char dir[] = "/tmp/tvsa-test-fifo-XXXXXX", path[64], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/zone", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10);
    const char *const paths[] = {path, "/dev/zero", "/dev/null", dir};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_null(zone_load_file(paths[i], err, sizeof err));
        if (strstr(err, "not a regular file") == NULL || strstr(err, paths[i]) == NULL)
            fail_msg("%s: '%s'", paths[i], err);
    }
    alarm(0);
    unlink(path);
    rmdir(dir);
}

/* Reads data/sample.zone (tests run from the repository root; $TVSA_BIN/.. otherwise). */
static char *read_sample_file(size_t *len)
{
    char path[1024];
    const char *bin = getenv("TVSA_BIN");
    FILE *f = fopen("data/sample.zone", "rb");
    if (f == NULL && bin) {
        snprintf(path, sizeof path, "%s/../data/sample.zone", bin);
        f = fopen(path, "rb");
    }
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[*len] = '\0';
    return buf;
}

static void test_sample_zone(void **state)
{
    (void)state;
    size_t len = 0, n;
    char *file = read_sample_file(&len);
    assert_non_null(file);
    assert_int_equal(len, strlen(zone_sample_text));
    assert_memory_equal(file, zone_sample_text, len);
    free(file);

    struct zone *z = parse(zone_sample_text);
    assert_non_null(lookup(z, "www.example.test", &n));
    assert_int_equal(n, 2);
    assert_non_null(lookup(z, "big.example.test", &n));
    assert_int_equal(n, 40);
    zone_free(z);
}

/* zone_respond: each row a query (built or raw) and the reply expected. */
enum opt_kind {
    OPT_NONE, OPT_ONE, OPT_TWO, OPT_V1, OPT_COOKIE, OPT_BAD_OPTION, OPT_OPTION_PAST_END,
    OPT_NOT_ROOT, OPT_IN_ANSWER,
};

struct respond_case {
    const char *what;
    const char *qname;   /* NULL: use raw */
    uint16_t qtype, qclass;
    uint16_t flags;      /* query header flags */
    const uint8_t *raw;
    size_t rawlen;
    enum opt_kind opt;
    uint16_t udp_size;   /* the client's, in its OPT */
    int tcp;
    size_t edns_size;    /* the server's; 0: DNSWIRE_EDNS_SIZE */
    int want_rcode;      /* full (BADVERS = 16); -1: dropped */
    int want_answers, want_tc, want_aa, want_ns, want_opt;
    uint32_t want_soa_ttl; /* of the SOA in authority (or the answer's SOA) */
};

static const uint8_t garbage_qd1[] = {0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1};
static const uint8_t short_msg[] = {0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0};
static const uint8_t two_questions[] = {0, 9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
                                        0, 0, 1, 0, 1, 0, 0, 1, 0, 1};

/* Appends an OPT of the given kind to the query q[0..len) by hand (OPT_ONE and OPT_TWO through
 * dnswire_append_opt). Returns the new length. */
static size_t add_opt(uint8_t *q, size_t len, enum opt_kind kind, uint16_t size)
{
    static const uint8_t cookie[] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t half_header[] = {0, 10, 0};
    static const uint8_t past_end[] = {0, 10, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t *rd = NULL;
    size_t rdlen = 0, n = len;
    int rc;

    switch (kind) {
    case OPT_NONE:
        return len;
    case OPT_TWO:
        len = add_opt(q, len, OPT_ONE, size);
        /* fall through */
    case OPT_ONE:
        rc = dnswire_append_opt(q, 600, len, size, 0, 0);
        assert_true(rc > 0);
        return (size_t)rc;
    case OPT_COOKIE: rd = cookie; rdlen = sizeof cookie; break;
    case OPT_BAD_OPTION: rd = half_header; rdlen = sizeof half_header; break;
    case OPT_OPTION_PAST_END: rd = past_end; rdlen = sizeof past_end; break;
    default: break;
    }
    if (kind == OPT_NOT_ROOT) {
        q[n++] = 1;
        q[n++] = 'a';
    }
    const uint8_t fixed[] = {0, 0, 41, (uint8_t)(size >> 8), (uint8_t)size, 0,
                             kind == OPT_V1 ? 1 : 0, 0, 0, 0, (uint8_t)rdlen};
    memcpy(q + n, fixed, sizeof fixed);
    n += sizeof fixed;
    if (rdlen)
        memcpy(q + n, rd, rdlen);
    n += rdlen;
    q[kind == OPT_IN_ANSWER ? 7 : 11]++;
    return n;
}

/* The big.example.test answer with an OPT: header, question, 40 A records, OPT. */
#define BIG_EDNS_LEN (12 + 22 + 40 * 16 + 11)

static void test_respond(void **state)
{
    (void)state;
    const struct respond_case rc[] = {
        {"A known", "www.example.test", 1, 1, DNSWIRE_F_RD, .want_answers = 2, .want_aa = 1},
        {"A known, other case", "WWW.EXAMPLE.test", 1, 1, 0, .want_answers = 2, .want_aa = 1},
        {"A of the origin", "example.test", 1, 1, 0, .want_answers = 1, .want_aa = 1},
        {"unknown name: NXDOMAIN and the SOA, minimum as TTL", "nope.example.test", 1, 1, 0,
         .want_rcode = DNSWIRE_RC_NXDOMAIN, .want_aa = 1, .want_ns = 1, .want_soa_ttl = 300},
        {"below an unknown name", "a.b.nope.example.test", 1, 1, 0,
         .want_rcode = DNSWIRE_RC_NXDOMAIN, .want_aa = 1, .want_ns = 1, .want_soa_ttl = 300},
        {"AAAA of known: NODATA and the SOA", "www.example.test", 28, 1, 0, .want_aa = 1,
         .want_ns = 1, .want_soa_ttl = 300},
        {"empty non-terminal: NODATA", "internal.example.test", 1, 1, 0, .want_aa = 1,
         .want_ns = 1, .want_soa_ttl = 300},
        {"empty non-terminal, other case", "INTERNAL.example.TEST", 28, 1, 0, .want_aa = 1,
         .want_ns = 1, .want_soa_ttl = 300},
        {"SOA of the origin", "example.test", 6, 1, 0, .want_answers = 1, .want_aa = 1,
         .want_soa_ttl = 3600},
        {"SOA below the origin: NODATA", "www.example.test", 6, 1, 0, .want_aa = 1,
         .want_ns = 1, .want_soa_ttl = 300},
        {"ANY of the origin: A and SOA", "example.test", 255, 1, 0, .want_answers = 2,
         .want_aa = 1, .want_soa_ttl = 3600},
        {"the root: REFUSED, no AA", ".", 2, 1, 0, .want_rcode = DNSWIRE_RC_REFUSED},
        {"the parent of the origin", "test", 1, 1, 0, .want_rcode = DNSWIRE_RC_REFUSED},
        {"a suffix that is not a label", "xexample.test", 1, 1, 0,
         .want_rcode = DNSWIRE_RC_REFUSED},
        {"another zone", "www.example.org", 1, 1, 0, .want_rcode = DNSWIRE_RC_REFUSED},
        {"class CH", "www.example.test", 1, 3, 0, .want_rcode = DNSWIRE_RC_REFUSED},
        {"opcode STATUS", "www.example.test", 1, 1, 2u << 11, .want_rcode = DNSWIRE_RC_NOTIMP},
        {"big over UDP, no EDNS", "big.example.test", 1, 1, 0, .want_tc = 1, .want_aa = 1},
        {"big over UDP, EDNS 1232", "big.example.test", 1, 1, 0, .opt = OPT_ONE,
         .udp_size = 1232, .want_answers = 40, .want_aa = 1, .want_opt = 1},
        {"big, EDNS exactly its size", "big.example.test", 1, 1, 0, .opt = OPT_ONE,
         .udp_size = BIG_EDNS_LEN, .want_answers = 40, .want_aa = 1, .want_opt = 1},
        {"big, EDNS one byte short", "big.example.test", 1, 1, 0, .opt = OPT_ONE,
         .udp_size = BIG_EDNS_LEN - 1, .want_tc = 1, .want_aa = 1, .want_opt = 1},
        {"big, EDNS 4096, server's --edns-size one byte short", "big.example.test", 1, 1, 0,
         .opt = OPT_ONE, .udp_size = 4096, .edns_size = BIG_EDNS_LEN - 1, .want_tc = 1,
         .want_aa = 1, .want_opt = 1},
        {"big, EDNS 4096, server's --edns-size just enough", "big.example.test", 1, 1, 0,
         .opt = OPT_ONE, .udp_size = 4096, .edns_size = BIG_EDNS_LEN, .want_answers = 40,
         .want_aa = 1, .want_opt = 1},
        {"big, EDNS 100 counts as 512", "big.example.test", 1, 1, 0, .opt = OPT_ONE,
         .udp_size = 100, .want_tc = 1, .want_aa = 1, .want_opt = 1},
        {"big over TCP", "big.example.test", 1, 1, 0, .tcp = 1, .want_answers = 40,
         .want_aa = 1},
        {"big over TCP, EDNS 512 does not matter", "big.example.test", 1, 1, 0, .opt = OPT_ONE,
         .udp_size = 512, .tcp = 1, .want_answers = 40, .want_aa = 1, .want_opt = 1},
        {"NXDOMAIN with EDNS", "nope.example.test", 1, 1, 0, .opt = OPT_ONE, .udp_size = 1232,
         .want_rcode = DNSWIRE_RC_NXDOMAIN, .want_aa = 1, .want_ns = 1, .want_opt = 1,
         .want_soa_ttl = 300},
        {"REFUSED with EDNS", ".", 2, 1, 0, .opt = OPT_ONE, .udp_size = 1232,
         .want_rcode = DNSWIRE_RC_REFUSED, .want_opt = 1},
        {"an option (cookie) is fine", "www.example.test", 1, 1, 0, .opt = OPT_COOKIE,
         .udp_size = 1232, .want_answers = 2, .want_aa = 1, .want_opt = 1},
        {"two OPT records: FORMERR with an OPT", "www.example.test", 1, 1, 0, .opt = OPT_TWO,
         .udp_size = 1232, .want_rcode = DNSWIRE_RC_FORMERR, .want_opt = 1},
        {"EDNS version 1: BADVERS", "www.example.test", 1, 1, 0, .opt = OPT_V1,
         .udp_size = 1232, .want_rcode = DNSWIRE_RC_BADVERS, .want_opt = 1},
        {"an option cut in its header", "www.example.test", 1, 1, 0, .opt = OPT_BAD_OPTION,
         .udp_size = 1232, .want_rcode = DNSWIRE_RC_FORMERR, .want_opt = 1},
        {"an option past its rdata", "www.example.test", 1, 1, 0, .opt = OPT_OPTION_PAST_END,
         .udp_size = 1232, .want_rcode = DNSWIRE_RC_FORMERR, .want_opt = 1},
        {"an OPT not owned by the root", "www.example.test", 1, 1, 0, .opt = OPT_NOT_ROOT,
         .udp_size = 1232, .want_rcode = DNSWIRE_RC_FORMERR, .want_opt = 1},
        {"an OPT in the answer section", "www.example.test", 1, 1, 0, .opt = OPT_IN_ANSWER,
         .udp_size = 1232, .want_rcode = DNSWIRE_RC_FORMERR, .want_opt = 1},
        {"a response", "www.example.test", 1, 1, DNSWIRE_F_QR, .want_rcode = -1},
        {"bad pointer", NULL, 0, 0, 0, garbage_qd1, sizeof garbage_qd1,
         .want_rcode = DNSWIRE_RC_FORMERR},
        {"two questions", NULL, 0, 0, 0, two_questions, sizeof two_questions,
         .want_rcode = DNSWIRE_RC_FORMERR},
        {"shorter than a header", NULL, 0, 0, 0, short_msg, sizeof short_msg, .want_rcode = -1},
    };
    struct zone *z = parse(zone_sample_text);
    struct dnswire_msg *m = malloc(sizeof *m), *r = malloc(sizeof *r);
    uint8_t q[600], out[DNSWIRE_MAX_MSG];
    char err[256], text[DNSWIRE_NAME_TEXT];
    assert_non_null(m);
    assert_non_null(r);

    for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++) {
        const struct respond_case *c = &rc[i];
        const uint8_t *qp = c->raw;
        size_t qlen = c->rawlen;
        if (c->qname) {
            struct dnswire_name n;
            assert_int_equal(dnswire_name_from_text(c->qname, &n), 0);
            int len = dnswire_encode_query(q, sizeof q, 0x4242, &n, c->qtype, 0);
            assert_true(len > 0);
            q[2] = (uint8_t)(c->flags >> 8);
            q[3] = (uint8_t)c->flags;
            q[len - 1] = (uint8_t)c->qclass;
            qp = q;
            qlen = add_opt(q, (size_t)len, c->opt, c->udp_size);
        }
        struct zone_limits lim = {c->tcp ? ZONE_TCP : ZONE_UDP,
                                  c->edns_size ? c->edns_size : DNSWIRE_EDNS_SIZE};
        size_t limit = c->tcp ? DNSWIRE_MAX_MSG
                       : c->opt == OPT_NONE ? 512
                       : c->udp_size < 512 ? 512 : c->udp_size < lim.edns_size ? c->udp_size
                                                                                 : lim.edns_size;
        int rcode = 99;
        size_t n = zone_respond(z, qp, qlen, &lim, out, sizeof out, m, &rcode);
        if (rcode != c->want_rcode)
            fail_msg("%s: rcode %d, want %d", c->what, rcode, c->want_rcode);
        if (c->want_rcode < 0) {
            assert_int_equal(n, 0);
            continue;
        }
        if (n > limit)
            fail_msg("%s: %zu bytes, over the %zu-byte limit", c->what, n, limit);
        if (dnswire_decode(out, n, r, err, sizeof err) != DNSWIRE_OK)
            fail_msg("%s: reply does not decode: %s", c->what, err);
        assert_true(r->h.flags & DNSWIRE_F_QR);
        if (dnswire_rcode(r) != c->want_rcode || r->h.ancount != c->want_answers ||
            !!(r->h.flags & DNSWIRE_F_TC) != c->want_tc ||
            !!(r->h.flags & DNSWIRE_F_AA) != c->want_aa || r->h.nscount != c->want_ns ||
            (int)r->edns.count != c->want_opt)
            fail_msg("%s: rcode %d answers %u tc %d aa %d authority %u opt %u", c->what,
                     dnswire_rcode(r), r->h.ancount, !!(r->h.flags & DNSWIRE_F_TC),
                     !!(r->h.flags & DNSWIRE_F_AA), r->h.nscount, r->edns.count);
        assert_int_equal(r->h.id, c->qname ? 0x4242 : 9);
        assert_int_equal(DNSWIRE_OPCODE(r->h.flags), DNSWIRE_OPCODE(c->flags));
        assert_int_equal(r->h.flags & DNSWIRE_F_RD, c->flags & DNSWIRE_F_RD);
        if (r->edns.count) { /* ours: version 0, our size, the rcode's upper bits */
            assert_int_equal(r->edns.version, 0);
            assert_int_equal(r->edns.udp_size, lim.edns_size);
            assert_true(r->edns.ok);
        }
        if (c->qname && c->want_rcode != DNSWIRE_RC_FORMERR) {
            /* The question comes back as asked, case included (dig checks it). */
            assert_int_equal(r->nq, 1);
            dnswire_name_to_text(&r->q[0].name, text, sizeof text);
            assert_string_equal(text, c->qname);
        }
        const struct dnswire_rr *soa = c->want_ns ? &r->ns[0] : NULL;
        for (size_t k = 0; k < r->nan; k++)
            if (r->an[k].type == DNSWIRE_T_SOA)
                soa = &r->an[k];
        if (c->want_soa_ttl) {
            assert_non_null(soa);
            assert_int_equal(soa->type, DNSWIRE_T_SOA);
            assert_int_equal(soa->ttl, c->want_soa_ttl);
            /* A pointer into the question: its case, any case is the same name. */
            struct dnswire_name origin;
            assert_int_equal(dnswire_name_from_text("example.test", &origin), 0);
            assert_true(dnswire_name_equal(&soa->name, &origin));
            dnswire_name_to_text(&soa->target, text, sizeof text);
            assert_string_equal(text, "ns1.example.test");
            const uint8_t *min = out + soa->rdata_off + soa->rdlen - 4;
            assert_int_equal((min[0] << 24) | (min[1] << 16) | (min[2] << 8) | min[3], 300);
        }
    }
    free(m);
    free(r);
    zone_free(z);
}

/* Answers to a query for name/qtype from z over UDP without EDNS, decoded into r. */
static void ask(const struct zone *z, const char *name, uint16_t qtype, struct dnswire_msg *r,
                uint8_t *out)
{
    static const struct zone_limits udp = {ZONE_UDP, DNSWIRE_EDNS_SIZE};
    struct dnswire_msg *m = malloc(sizeof *m);
    struct dnswire_name n;
    uint8_t q[600];
    char err[256];
    assert_non_null(m);
    assert_int_equal(dnswire_name_from_text(name, &n), 0);
    int len = dnswire_encode_query(q, sizeof q, 1, &n, qtype, 0);
    int rcode;
    size_t rl = zone_respond(z, q, (size_t)len, &udp, out, 512, m, &rcode);
    assert_true(rl > 0);
    assert_int_equal(dnswire_decode(out, rl, r, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(dnswire_rcode(r), rcode);
    free(m);
}

static void soa_owner_is(const struct dnswire_msg *r, const char *owner, uint32_t ttl)
{
    char text[DNSWIRE_NAME_TEXT];
    assert_int_equal(r->nns, 1);
    assert_int_equal(r->ns[0].type, DNSWIRE_T_SOA);
    dnswire_name_to_text(&r->ns[0].name, text, sizeof text);
    assert_string_equal(text, owner);
    assert_int_equal(r->ns[0].ttl, ttl);
}

/* A file without $ORIGIN (the format before origins) keeps loading: its origin is the longest
 * common suffix of its names, and its SOA is synthesised. */
static void test_origin_without_dollar_origin(void **state)
{
    (void)state;
    struct dnswire_msg *r = malloc(sizeof *r);
    uint8_t out[DNSWIRE_MAX_MSG];
    char text[DNSWIRE_NAME_TEXT];
    struct dnswire_name n;
    assert_non_null(r);
    struct zone *z = parse("www.zone.test 300 A 192.0.2.10\nMail.Zone.Test A 192.0.2.25\n"
                           "a.b.zone.test A 10.0.0.1\n");
    assert_int_equal(dnswire_name_from_text("x.y.ZONE.test", &n), 0);
    assert_non_null(zone_origin_of(z, &n));
    dnswire_name_to_text(zone_origin_of(z, &n), text, sizeof text);
    assert_string_equal(text, "zone.test");
    assert_int_equal(dnswire_name_from_text("test", &n), 0);
    assert_null(zone_origin_of(z, &n));

    ask(z, "nope.zone.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_NXDOMAIN);
    soa_owner_is(r, "zone.test", ZONE_SYNTH_MINIMUM);
    dnswire_name_to_text(&r->ns[0].target, text, sizeof text);
    assert_string_equal(text, "zone.test"); /* MNAME: the origin */
    ask(z, "b.zone.test", DNSWIRE_T_A, r, out); /* an empty non-terminal */
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_NOERROR);
    assert_int_equal(r->h.ancount, 0);
    soa_owner_is(r, "zone.test", ZONE_SYNTH_MINIMUM);
    ask(z, "zone.test", DNSWIRE_T_SOA, r, out);
    assert_int_equal(r->h.ancount, 1);
    assert_int_equal(r->an[0].ttl, ZONE_DEFAULT_TTL);
    ask(z, "other.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_REFUSED);
    assert_false(r->h.flags & DNSWIRE_F_AA);
    assert_int_equal(r->h.nscount, 0);
    zone_free(z);

    /* One name: the zone is that name. Names under two TLDs: the root. */
    z = parse("host.lab.test A 10.0.0.1\n");
    ask(z, "other.lab.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_REFUSED);
    ask(z, "x.host.lab.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_NXDOMAIN);
    zone_free(z);
    z = parse("a.test A 10.0.0.1\nb.example A 10.0.0.2\n");
    ask(z, ".", DNSWIRE_T_NS, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_NOERROR);
    soa_owner_is(r, ".", ZONE_SYNTH_MINIMUM);
    zone_free(z);
    /* Nothing at all: no zone, everything REFUSED. */
    z = parse("# empty\n");
    ask(z, "a.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_REFUSED);
    zone_free(z);
    free(r);
}

/* Several $ORIGIN zones in one file, nested too: each name is answered from the zone with the
 * longest origin above it; $TTL and IN; the SOA TTL is min(TTL, minimum). */
static void test_several_origins(void **state)
{
    (void)state;
    struct dnswire_msg *r = malloc(sizeof *r);
    uint8_t out[DNSWIRE_MAX_MSG];
    size_t n;
    assert_non_null(r);
    struct zone *z = parse("$ORIGIN a.test\n"
                           "@ 60 IN SOA ns.a.test. h.a.test. 7 1 2 3 30\n"
                           "$TTL 42\n"
                           "www.a.test IN A 1.1.1.1\n"
                           "$ORIGIN b.a.test.\n"
                           "x.b.a.test A 2.2.2.2\n"
                           "$ORIGIN c.test\n"
                           "@ 10 SOA ns.c.test h.c.test 1 1 1 1 99\n");
    assert_int_equal(zone_names(z), 5); /* 3 origins, www and x */
    assert_non_null(lookup(z, "www.a.test", &n));
    assert_int_equal(n, 1);
    ask(z, "www.a.test", DNSWIRE_T_A, r, out);
    assert_int_equal(r->an[0].ttl, 42);
    ask(z, "nope.a.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_NXDOMAIN);
    soa_owner_is(r, "a.test", 30); /* min(60, 30) */
    ask(z, "nope.b.a.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_NXDOMAIN);
    soa_owner_is(r, "b.a.test", ZONE_SYNTH_MINIMUM); /* its own, synthesised */
    ask(z, "b.a.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_NOERROR);
    soa_owner_is(r, "b.a.test", ZONE_SYNTH_MINIMUM);
    ask(z, "c.test", DNSWIRE_T_A, r, out);
    soa_owner_is(r, "c.test", 10); /* min(10, 99) */
    ask(z, "d.test", DNSWIRE_T_A, r, out);
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_REFUSED);
    ask(z, "test", DNSWIRE_T_A, r, out); /* above every origin, though names are below it */
    assert_int_equal(dnswire_rcode(r), DNSWIRE_RC_REFUSED);
    assert_null(lookup(z, "test", &n));
    zone_free(z);
    free(r);
}

/* A name whose A records cannot fit one 65,535-byte TCP answer is refused with the line of the
 * first record too many; the largest set that fits loads and is answered whole over TCP. */
static void test_record_set_limit(void **state)
{
    (void)state;
    /* 12 + (18 + 4) + 16 n + 11 <= 65535 for big.example.test (18 wire bytes): n <= 4093. */
    enum { MAX = (65535 - 12 - 22 - 11) / 16 };
    size_t cap = (MAX + 2) * 40, len = 0;
    char *text = malloc(cap), err[256];
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "# many\n");
    for (int i = 0; i < MAX; i++)
        len += (size_t)snprintf(text + len, cap - len, "big.example.test A 10.%d.%d.%d\n",
                                i >> 16, (i >> 8) & 255, i & 255);
    struct zone *z = zone_parse(text, len, err, sizeof err);
    if (z == NULL)
        fail_msg("%d records do not load: %s", MAX, err);
    struct dnswire_msg *m = malloc(sizeof *m), *r = malloc(sizeof *r);
    static uint8_t out[DNSWIRE_MAX_MSG];
    uint8_t q[600];
    struct dnswire_name n;
    assert_int_equal(dnswire_name_from_text("big.example.test", &n), 0);
    int ql = dnswire_encode_query(q, sizeof q, 1, &n, DNSWIRE_T_A, 0);
    ql = dnswire_append_opt(q, sizeof q, (size_t)ql, 1232, 0, 0);
    static const struct zone_limits tcp = {ZONE_TCP, DNSWIRE_EDNS_SIZE};
    size_t rl = zone_respond(z, q, (size_t)ql, &tcp, out, sizeof out, m, NULL);
    assert_int_equal(rl, 12 + 22 + 16 * MAX + 11);
    assert_int_equal(dnswire_decode(out, rl, r, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(r->h.ancount, MAX);
    assert_false(r->h.flags & DNSWIRE_F_TC);
    zone_free(z);
    free(m);
    free(r);

    len += (size_t)snprintf(text + len, cap - len, "big.example.test A 10.255.255.255\n");
    assert_null(zone_parse(text, len, err, sizeof err));
    char want[64];
    snprintf(want, sizeof want, "line %d: big.example.test has more A records", MAX + 2);
    if (strstr(err, want) == NULL)
        fail_msg("error '%s', want '%s'", err, want);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_lookup),
        cmocka_unit_test(test_empty_zone),
        cmocka_unit_test(test_fuzz_empty_input),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_sample_zone),
        cmocka_unit_test(test_respond),
        cmocka_unit_test(test_origin_without_dollar_origin),
        cmocka_unit_test(test_several_origins),
        cmocka_unit_test(test_record_set_limit),
        cmocka_unit_test(test_load_never_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
