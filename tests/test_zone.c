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

    assert_int_equal(zone_names(z), 4);
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
    assert_null(lookup(z, "example.test", &n));
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
        {"a.test\n", "line 1: expected"},
        {"a.test A\n", "line 1: expected"},
        {"a.test 1 2 A 1.2.3.4\n", "line 1: expected"},
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
struct respond_case {
    const char *what;
    const char *qname;   /* NULL: use raw */
    uint16_t qtype, qclass;
    uint16_t flags;      /* query header flags */
    const uint8_t *raw;
    size_t rawlen;
    size_t limit;
    int want_rcode;      /* -1: dropped */
    int want_answers;
    int want_tc;
};

static const uint8_t garbage_qd1[] = {0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 0x0C, 0, 1, 0, 1};
static const uint8_t short_msg[] = {0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0};
static const uint8_t two_questions[] = {0, 9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
                                        0, 0, 1, 0, 1, 0, 0, 1, 0, 1};

static void test_respond(void **state)
{
    (void)state;
    const struct respond_case rc[] = {
        {"A known", "www.example.test", 1, 1, DNSWIRE_F_RD, NULL, 0, 512, 0, 2, 0},
        {"A known, other case", "WWW.EXAMPLE.test", 1, 1, 0, NULL, 0, 512, 0, 2, 0},
        {"unknown name", "nope.example.test", 1, 1, 0, NULL, 0, 512, DNSWIRE_RC_NXDOMAIN, 0, 0},
        {"AAAA of known", "www.example.test", 28, 1, 0, NULL, 0, 512, 0, 0, 0},
        {"class CH", "www.example.test", 1, 3, 0, NULL, 0, 512, DNSWIRE_RC_REFUSED, 0, 0},
        {"opcode STATUS", "www.example.test", 1, 1, 2u << 11, NULL, 0, 512,
         DNSWIRE_RC_NOTIMP, 0, 0},
        {"big over UDP", "big.example.test", 1, 1, 0, NULL, 0, 512, 0, 0, 1},
        {"big over TCP", "big.example.test", 1, 1, 0, NULL, 0, 65535, 0, 40, 0},
        {"a response", "www.example.test", 1, 1, DNSWIRE_F_QR, NULL, 0, 512, -1, 0, 0},
        {"bad pointer", NULL, 0, 0, 0, garbage_qd1, sizeof garbage_qd1, 512,
         DNSWIRE_RC_FORMERR, 0, 0},
        {"two questions", NULL, 0, 0, 0, two_questions, sizeof two_questions, 512,
         DNSWIRE_RC_FORMERR, 0, 0},
        {"shorter than a header", NULL, 0, 0, 0, short_msg, sizeof short_msg, 512, -1, 0, 0},
    };
    struct zone *z = parse(zone_sample_text);
    struct dnswire_msg *m = malloc(sizeof *m), *r = malloc(sizeof *r);
    uint8_t q[600], out[DNSWIRE_MAX_MSG];
    char err[256];
    assert_non_null(m);
    assert_non_null(r);

    for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++) {
        const uint8_t *qp = rc[i].raw;
        size_t qlen = rc[i].rawlen;
        if (rc[i].qname) {
            struct dnswire_name n;
            assert_int_equal(dnswire_name_from_text(rc[i].qname, &n), 0);
            int len = dnswire_encode_query(q, sizeof q, 0x4242, &n, rc[i].qtype, 0);
            assert_true(len > 0);
            q[2] = (uint8_t)(rc[i].flags >> 8);
            q[3] = (uint8_t)rc[i].flags;
            q[len - 1] = (uint8_t)rc[i].qclass;
            qp = q;
            qlen = (size_t)len;
        }
        int rcode = 99;
        size_t n = zone_respond(z, qp, qlen, out, rc[i].limit, m, &rcode);
        if (rcode != rc[i].want_rcode)
            fail_msg("%s: rcode %d, want %d", rc[i].what, rcode, rc[i].want_rcode);
        if (rc[i].want_rcode < 0) {
            assert_int_equal(n, 0);
            continue;
        }
        assert_true(n <= rc[i].limit);
        if (dnswire_decode(out, n, r, err, sizeof err) != DNSWIRE_OK)
            fail_msg("%s: reply does not decode: %s", rc[i].what, err);
        assert_true(r->h.flags & DNSWIRE_F_QR);
        assert_int_equal(DNSWIRE_RCODE(r->h.flags), rc[i].want_rcode);
        assert_int_equal(r->h.ancount, rc[i].want_answers);
        assert_int_equal(!!(r->h.flags & DNSWIRE_F_TC), rc[i].want_tc);
        assert_int_equal(r->h.id, rc[i].qname ? 0x4242 : 9);
        assert_int_equal(DNSWIRE_OPCODE(r->h.flags), DNSWIRE_OPCODE(rc[i].flags));
        assert_int_equal(r->h.flags & DNSWIRE_F_RD, rc[i].flags & DNSWIRE_F_RD);
        if (rc[i].qname && rc[i].want_rcode != DNSWIRE_RC_FORMERR) {
            /* The question comes back as asked, case included (dig checks it). */
            assert_int_equal(r->nq, 1);
            char text[DNSWIRE_NAME_TEXT];
            dnswire_name_to_text(&r->q[0].name, text, sizeof text);
            assert_string_equal(text, rc[i].qname);
        }
        if (rc[i].want_rcode == DNSWIRE_RC_NOERROR || rc[i].want_rcode == DNSWIRE_RC_NXDOMAIN)
            assert_true(r->h.flags & DNSWIRE_F_AA);
    }
    free(m);
    free(r);
    zone_free(z);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
