/* Unit tests of the DNS wire format: hand-built packets, every malformed case, guard pages. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dnswire.h"

/* A query header with id 0x1234, RD, and the given section counts. */
#define HDR(qd, an, ns, ar) 0x12, 0x34, 0x01, 0x00, 0, qd, 0, an, 0, ns, 0, ar
#define WWW 3, 'w', 'w', 'w'
#define EXAMPLE 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e'
#define TEST 4, 't', 'e', 's', 't'
#define QTAIL 0, 1, 0, 1 /* type A, class IN */

struct wire_case {
    const char *what;
    uint8_t bytes[600];
    size_t len;
    int want;
};

/* len 0 in the table means "sizeof the initialiser" cannot be known; every row states it. */
static const struct wire_case cases[] = {
    {"empty", {0}, 0, DNSWIRE_ESHORT},
    {"11 bytes", {HDR(0, 0, 0, 0)}, 11, DNSWIRE_ESHORT},
    {"bare header", {HDR(0, 0, 0, 0)}, 12, DNSWIRE_OK},
    {"qdcount 1, no body", {HDR(1, 0, 0, 0)}, 12, DNSWIRE_EMALFORMED},
    {"qdcount 65535, one question", {0x12, 0x34, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, WWW, 0,
                                     QTAIL}, 21, DNSWIRE_EMALFORMED},
    {"simple question", {HDR(1, 0, 0, 0), WWW, EXAMPLE, TEST, 0, QTAIL}, 12 + 18 + 4,
     DNSWIRE_OK},
    {"root question", {HDR(1, 0, 0, 0), 0, QTAIL}, 17, DNSWIRE_OK},
    {"label past the end", {HDR(1, 0, 0, 0), 3, 'w', 'w'}, 15, DNSWIRE_EMALFORMED},
    {"label length 63 past the end", {HDR(1, 0, 0, 0), 63, 'a'}, 14, DNSWIRE_EMALFORMED},
    {"name without its 0", {HDR(1, 0, 0, 0), WWW}, 16, DNSWIRE_EMALFORMED},
    {"question without type/class", {HDR(1, 0, 0, 0), WWW, 0}, 17, DNSWIRE_EMALFORMED},
    {"question with half its class", {HDR(1, 0, 0, 0), WWW, 0, 0, 1, 0}, 20,
     DNSWIRE_EMALFORMED},
    {"forward pointer", {HDR(1, 0, 0, 0), 0xC0, 30, QTAIL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                         0, 0}, 32, DNSWIRE_EMALFORMED},
    {"self pointer", {HDR(1, 0, 0, 0), 0xC0, 12, QTAIL}, 18, DNSWIRE_EMALFORMED},
    {"pointer to itself after a label", {HDR(1, 0, 0, 0), 1, 'a', 0xC0, 14, QTAIL}, 20,
     DNSWIRE_EMALFORMED},
    {"pointer to its own label", {HDR(1, 0, 0, 0), 1, 'a', 0xC0, 12, QTAIL}, 20,
     DNSWIRE_EMALFORMED},
    /* Question 1 at 12 ends with a pointer forward to question 2 at 20, which points back to
     * 12: a loop if both directions were allowed. */
    {"two-name loop", {HDR(2, 0, 0, 0), 1, 'a', 0xC0, 20, QTAIL, 1, 'b', 0xC0, 12, QTAIL}, 28,
     DNSWIRE_EMALFORMED},
    {"pointer into the header", {HDR(1, 0, 0, 0), 0xC0, 4, QTAIL}, 18, DNSWIRE_EMALFORMED},
    {"pointer cut short", {HDR(1, 0, 0, 0), 0xC0}, 13, DNSWIRE_EMALFORMED},
    {"label type 0x40", {HDR(1, 0, 0, 0), 0x41, 'a', 0, QTAIL}, 19, DNSWIRE_EMALFORMED},
    {"label type 0x80", {HDR(1, 0, 0, 0), 0x81, 'a', 0, QTAIL}, 19, DNSWIRE_EMALFORMED},
    {"trailing byte", {HDR(1, 0, 0, 0), WWW, 0, QTAIL, 0}, 22, DNSWIRE_EMALFORMED},
    {"ancount 1, no record", {HDR(1, 1, 0, 0), WWW, 0, QTAIL}, 21, DNSWIRE_EMALFORMED},
    {"record cut in its fixed part", {HDR(0, 1, 0, 0), 0, 0, 1, 0, 1, 0, 0}, 19,
     DNSWIRE_EMALFORMED},
    {"rdata past the end", {HDR(0, 1, 0, 0), 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 100, 1, 2, 3, 4}, 27,
     DNSWIRE_EMALFORMED},
    {"rdlength 65535", {HDR(0, 1, 0, 0), 0, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}, 27,
     DNSWIRE_EMALFORMED},
    {"A record with 5 bytes", {HDR(0, 1, 0, 0), 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5},
     28, DNSWIRE_EMALFORMED},
    {"A record ok", {HDR(0, 1, 0, 0), 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4}, 27,
     DNSWIRE_OK},
    {"additional record cut", {HDR(0, 0, 0, 1), 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 4, 1}, 24,
     DNSWIRE_EMALFORMED},
    {"authority record ok (unknown type)", {HDR(0, 0, 1, 0), 0, 0x12, 0x34, 0, 1, 0, 0, 0, 0, 0,
                                            2, 9, 9}, 25, DNSWIRE_OK},
    /* CNAME at 12 (root owner) whose rdata name (2 bytes declared) does not end in it. */
    {"CNAME name longer than rdata", {HDR(0, 1, 0, 0), 0, 0, 5, 0, 1, 0, 0, 0, 0, 0, 2, 1, 'a',
                                      0}, 26, DNSWIRE_EMALFORMED},
    {"CNAME name shorter than rdata", {HDR(0, 1, 0, 0), 0, 0, 5, 0, 1, 0, 0, 0, 0, 0, 4, 1, 'a',
                                       0, 0}, 27, DNSWIRE_EMALFORMED},
    {"CNAME ok", {HDR(0, 1, 0, 0), 0, 0, 5, 0, 1, 0, 0, 0, 0, 0, 3, 1, 'a', 0}, 26, DNSWIRE_OK},
};

static void test_table(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    char err[256];
    assert_non_null(m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = dnswire_decode(cases[i].bytes, cases[i].len, m, err, sizeof err);
        if (rc != cases[i].want)
            fail_msg("case '%s': got %d (%s), want %d", cases[i].what, rc, err, cases[i].want);
        if (rc != DNSWIRE_OK)
            assert_true(strlen(err) > 0);
        if (rc != DNSWIRE_ESHORT)
            assert_int_equal(m->h.id, 0x1234);
    }
    free(m);
}

/* Appends a name of `labels` labels of `ll` bytes each ('x') and its final 0. */
static size_t put_long_name(uint8_t *p, int labels, int ll)
{
    size_t n = 0;
    for (int i = 0; i < labels; i++) {
        p[n++] = (uint8_t)ll;
        memset(p + n, 'x', (size_t)ll);
        n += (size_t)ll;
    }
    p[n++] = 0;
    return n;
}

static int decode_question(const uint8_t *name, size_t nlen, struct dnswire_msg *m)
{
    uint8_t buf[1024] = {HDR(1, 0, 0, 0)};
    char err[256];
    memcpy(buf + 12, name, nlen);
    memcpy(buf + 12 + nlen, (uint8_t[]){QTAIL}, 4);
    return dnswire_decode(buf, 12 + nlen + 4, m, err, sizeof err);
}

static void test_name_limits(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    uint8_t name[600];
    size_t n;
    assert_non_null(m);

    n = put_long_name(name, 3, 63); /* 193 bytes */
    n--;
    n += put_long_name(name + n, 1, 61); /* total 255: the longest name */
    assert_int_equal(n, 255);
    assert_int_equal(decode_question(name, n, m), DNSWIRE_OK);
    assert_int_equal(m->q[0].name.len, 255);

    n = put_long_name(name, 4, 63); /* 257 bytes */
    assert_int_equal(decode_question(name, n, m), DNSWIRE_EMALFORMED);

    n = put_long_name(name, 127, 1); /* 255 bytes, 127 labels: allowed */
    assert_int_equal(decode_question(name, n, m), DNSWIRE_OK);
    n = put_long_name(name, 128, 1); /* 128 labels */
    assert_int_equal(decode_question(name, n, m), DNSWIRE_EMALFORMED);
    free(m);
}

/* A name within limits on its own becomes too long through a pointer to another name. */
static void test_long_name_through_pointer(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    uint8_t buf[1024] = {HDR(2, 0, 0, 0)};
    char err[256];
    size_t n = 12;
    assert_non_null(m);

    n += put_long_name(buf + n, 3, 63); /* 193 bytes at 12 */
    memcpy(buf + n, (uint8_t[]){QTAIL}, 4);
    n += 4;
    size_t second = n;
    n += put_long_name(buf + n, 1, 62) - 1; /* 63 bytes, no final 0 */
    buf[n++] = 0xC0;
    buf[n++] = 12;
    memcpy(buf + n, (uint8_t[]){QTAIL}, 4);
    n += 4;
    assert_int_equal(dnswire_decode(buf, n, m, err, sizeof err), DNSWIRE_EMALFORMED);
    assert_non_null(strstr(err, "longer"));

    /* One byte shorter fits: 62 + 193 = 255. */
    n = second;
    n += put_long_name(buf + n, 1, 61) - 1;
    buf[n++] = 0xC0;
    buf[n++] = 12;
    memcpy(buf + n, (uint8_t[]){QTAIL}, 4);
    n += 4;
    assert_int_equal(dnswire_decode(buf, n, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(m->nq, 2);
    assert_int_equal(m->q[1].name.len, 255);
    free(m);
}

/* Pointer chains: question 0 at 12 is "a." and question k's name is a pointer to question
 * k-1's name, so it takes k jumps. A name may take at most 16 (DNSWIRE_MAX_JUMPS in
 * dnswire.c): 16 decode, 17 are refused. The whole 64 KiB message of such questions (about
 * 10,900; past 16 KiB each takes ~2,700 jumps, ~25 million in all) is refused at its 18th
 * question: the work is bounded by 16 jumps a name, checked by counting, not timing. */
#define CHAIN_MAX_JUMPS 16

static size_t build_chain(uint8_t *buf, size_t cap, unsigned *nq)
{
    size_t n = 12;
    unsigned q = 0;
    size_t prev = n;
    memcpy(buf + n, (uint8_t[]){1, 'a', 0, QTAIL}, 7);
    n += 7;
    q++;
    while (n + 6 <= cap && q < 65535) {
        size_t here = n;
        buf[n++] = (uint8_t)(0xC0 | (prev >> 8));
        buf[n++] = (uint8_t)(prev & 0xFF);
        memcpy(buf + n, (uint8_t[]){QTAIL}, 4);
        n += 4;
        /* Pointers hold 14 bits: past 16 KiB every question points at the last reachable
         * one, a chain of ~2,700 jumps each. */
        if (here < 0x4000)
            prev = here;
        q++;
    }
    uint8_t hdr[12] = {HDR(0, 0, 0, 0)};
    memcpy(buf, hdr, 12);
    buf[4] = (uint8_t)(q >> 8);
    buf[5] = (uint8_t)(q & 0xFF);
    *nq = q;
    return n;
}

static void test_pointer_chain_bounded(void **state)
{
    (void)state;
    uint8_t *buf = malloc(DNSWIRE_MAX_MSG);
    struct dnswire_msg *m = malloc(sizeof *m);
    assert_non_null(buf);
    assert_non_null(m);
    unsigned nq;
    size_t len = build_chain(buf, DNSWIRE_MAX_MSG, &nq);
    assert_true(nq > 10000);
    char err[256];
    /* Question k (k >= 1) starts at 19 + 6 (k - 1) and takes k jumps. */
    for (unsigned k = 1; k <= CHAIN_MAX_JUMPS + 1; k++) {
        size_t pos = 19 + 6 * (size_t)(k - 1);
        struct dnswire_name name;
        int rc = dnswire_read_name(buf, len, &pos, &name, err, sizeof err);
        if (k <= CHAIN_MAX_JUMPS) {
            if (rc != 0 || name.len != 3)
                fail_msg("%u jumps: rc %d (%s)", k, rc, err);
            assert_int_equal(pos, 19 + 6 * (size_t)(k - 1) + 2);
        } else if (rc != -1 || strstr(err, "pointers") == NULL) {
            fail_msg("%u jumps accepted", k);
        }
    }
    /* The message with only the questions a name may reach decodes; the whole one does not. */
    size_t short_len = 19 + 6 * CHAIN_MAX_JUMPS;
    buf[4] = 0;
    buf[5] = CHAIN_MAX_JUMPS + 1;
    assert_int_equal(dnswire_decode(buf, short_len, m, err, sizeof err), DNSWIRE_OK);
    buf[4] = (uint8_t)(nq >> 8);
    buf[5] = (uint8_t)(nq & 0xFF);
    assert_int_equal(dnswire_decode(buf, len, m, err, sizeof err), DNSWIRE_EMALFORMED);
    assert_non_null(strstr(err, "pointers"));
    free(m);
    free(buf);
}

/* A response as a real server writes it: owner names and a CNAME target compressed. */
static const uint8_t response[] = {
    0xab, 0xcd, 0x85, 0x80, 0, 1, 0, 3, 0, 0, 0, 0,
    WWW, EXAMPLE, TEST, 0, QTAIL,                            /* question at 12 */
    0xC0, 12, 0, 5, 0, 1, 0, 0, 0x0e, 0x10, 0, 6,            /* www CNAME web.<example.test> */
    3, 'w', 'e', 'b', 0xC0, 16,
    0xC0, 46, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1,   /* web.example.test A */
    0xC0, 46, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2,
};

static void test_compressed_response(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    char err[256], text[DNSWIRE_NAME_TEXT];
    assert_non_null(m);

    assert_int_equal(dnswire_decode(response, sizeof response, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(m->h.id, 0xabcd);
    assert_true(m->h.flags & DNSWIRE_F_QR);
    assert_true(m->h.flags & DNSWIRE_F_AA);
    assert_int_equal(DNSWIRE_RCODE(m->h.flags), 0);
    assert_int_equal(m->nq, 1);
    assert_int_equal(m->nan, 3);
    dnswire_name_to_text(&m->q[0].name, text, sizeof text);
    assert_string_equal(text, "www.example.test");
    assert_int_equal(m->an[0].type, DNSWIRE_T_CNAME);
    assert_int_equal(m->an[0].ttl, 3600);
    dnswire_name_to_text(&m->an[0].target, text, sizeof text);
    assert_string_equal(text, "web.example.test");
    dnswire_name_to_text(&m->an[2].name, text, sizeof text);
    assert_string_equal(text, "web.example.test");
    assert_int_equal(m->an[2].rdlen, 4);
    assert_memory_equal(response + m->an[2].rdata_off, ((uint8_t[]){192, 0, 2, 2}), 4);
    free(m);
}

/* picohttpparser's trick: every strict prefix must fail cleanly, and the message placed right
 * before an unmapped page must decode without touching it. */
/* Every prefix of msg, and every single-byte corruption of it, placed right before a
 * PROT_NONE page: a decoder read past the end faults. */
static void check_before_guard_page(const uint8_t *msg, size_t msglen)
{
    struct dnswire_msg *m = malloc(sizeof *m);
    char err[256];
    long pg = sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_non_null(m);
    assert_true(map != MAP_FAILED);
    assert_true(msglen <= (size_t)pg);
    assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);

    for (size_t len = 0; len <= msglen; len++) {
        uint8_t *p = map + pg - len;
        memcpy(p, msg, len);
        int rc = dnswire_decode(p, len, m, err, sizeof err);
        if (len == msglen)
            assert_int_equal(rc, DNSWIRE_OK);
        else if (len < DNSWIRE_HDR_LEN)
            assert_int_equal(rc, DNSWIRE_ESHORT);
        else
            assert_int_equal(rc, DNSWIRE_EMALFORMED);
    }
    /* Every single-byte corruption either decodes or fails; it never reads past the end. */
    for (size_t i = 0; i < msglen; i++) {
        for (int v = 0; v < 256; v += 7) {
            uint8_t *p = map + pg - msglen;
            memcpy(p, msg, msglen);
            p[i] = (uint8_t)v;
            int rc = dnswire_decode(p, msglen, m, err, sizeof err);
            assert_true(rc == DNSWIRE_OK || rc == DNSWIRE_EMALFORMED);
        }
    }
    munmap(map, (size_t)pg * 2);
    free(m);
}

/* A question for name (type A) as a decoded header and question, for the encoders. */
static void make_question(const char *name, struct dnswire_header *qh,
                          struct dnswire_question *q)
{
    struct dnswire_msg *m = malloc(sizeof *m);
    uint8_t qbuf[300];
    char err[256];
    struct dnswire_name n;
    assert_non_null(m);
    assert_int_equal(dnswire_name_from_text(name, &n), 0);
    int qlen = dnswire_encode_query(qbuf, sizeof qbuf, 7, &n, DNSWIRE_T_A, 1);
    assert_int_equal(dnswire_decode(qbuf, (size_t)qlen, m, err, sizeof err), DNSWIRE_OK);
    *qh = m->h;
    *q = m->q[0];
    free(m);
}

static const struct dnswire_soa test_soa = {
    .mname = {5, {3, 'n', 's', '1', 0}}, .rname = {4, {2, 'h', 'm', 0}},
    .serial = 2026, .refresh = 1, .retry = 2, .expire = 3, .minimum = 60,
};

/* A negative answer: NXDOMAIN, the SOA in authority (owner a pointer into the question), OPT. */
static int negative_answer(uint8_t *buf, size_t limit, struct dnswire_name *owner)
{
    struct dnswire_header qh;
    struct dnswire_question q;
    make_question("nope.example.test", &qh, &q);
    assert_int_equal(dnswire_name_from_text("Example.TEST", owner), 0);
    const struct dnswire_reply r = {.rcode = DNSWIRE_RC_NXDOMAIN, .aa = 1, .soa = &test_soa,
                                    .soa_owner = owner, .soa_ttl = 60, .edns = 1,
                                    .edns_size = 1232};
    return dnswire_encode_reply(buf, limit, &qh, &q, &r);
}

static void test_prefixes_before_guard_page(void **state)
{
    (void)state;
    uint8_t neg[600];
    struct dnswire_name owner;
    check_before_guard_page(response, sizeof response);
    int n = negative_answer(neg, sizeof neg, &owner);
    assert_true(n > 0);
    check_before_guard_page(neg, (size_t)n);
}

struct text_case {
    const char *text;
    int ok;
    uint8_t len;
};

static void test_name_from_text(void **state)
{
    (void)state;
    static char long_ok[300], long_bad[300];
    /* 4 labels: 63+63+63+61 chars -> 255 wire bytes; one more char -> 256. */
    snprintf(long_ok, sizeof long_ok, "%063d.%063d.%063d.%061d", 0, 0, 0, 0);
    snprintf(long_bad, sizeof long_bad, "%063d.%063d.%063d.%062d", 0, 0, 0, 0);
    const struct text_case tc[] = {
        {"www.example.test", 1, 18}, {"www.example.test.", 1, 18}, {".", 1, 1},
        {"a", 1, 3}, {"", 0, 0}, {"..", 0, 0}, {"a..b", 0, 0}, {".a", 0, 0},
        {"a.b..", 0, 0}, {long_ok, 1, 255}, {long_bad, 0, 0},
        {"0123456789012345678901234567890123456789012345678901234567890123.x", 0, 0},
    };
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
        struct dnswire_name n;
        int rc = dnswire_name_from_text(tc[i].text, &n);
        if ((rc == 0) != tc[i].ok)
            fail_msg("'%s': rc %d", tc[i].text, rc);
        if (rc == 0)
            assert_int_equal(n.len, tc[i].len);
    }
}

static void test_name_text_and_case(void **state)
{
    (void)state;
    struct dnswire_name a, b;
    char text[DNSWIRE_NAME_TEXT];
    const uint8_t odd[] = {4, 'a', '.', '\\', 0x07, 1, ' ', 0};

    assert_int_equal(dnswire_name_from_text("WwW.Example.TEST", &a), 0);
    assert_int_equal(dnswire_name_from_text("www.example.test.", &b), 0);
    assert_true(dnswire_name_equal(&a, &b));
    dnswire_name_to_text(&a, text, sizeof text);
    assert_string_equal(text, "WwW.Example.TEST");
    dnswire_name_lower(&a);
    assert_memory_equal(a.wire, b.wire, b.len);
    assert_int_equal(dnswire_name_from_text("www.example.tesu", &b), 0);
    assert_false(dnswire_name_equal(&a, &b));

    memcpy(a.wire, odd, sizeof odd);
    a.len = sizeof odd;
    dnswire_name_to_text(&a, text, sizeof text);
    assert_string_equal(text, "a\\.\\\\\\007.\\032");
    /* Truncation keeps the NUL and reports the full length. */
    char small[4];
    assert_int_equal(dnswire_name_to_text(&a, small, sizeof small), strlen("a\\.\\\\\\007.\\032"));
    assert_string_equal(small, "a\\.");
    a.len = 1;
    a.wire[0] = 0;
    dnswire_name_to_text(&a, text, sizeof text);
    assert_string_equal(text, ".");
}

static void test_query_roundtrip(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    struct dnswire_name n;
    uint8_t buf[600];
    char err[256];
    assert_non_null(m);

    assert_int_equal(dnswire_name_from_text("mail.example.test", &n), 0);
    int len = dnswire_encode_query(buf, sizeof buf, 0xbeef, &n, DNSWIRE_T_A, 1);
    assert_int_equal(len, 12 + 19 + 4);
    assert_int_equal(dnswire_encode_query(buf, (size_t)len - 1, 1, &n, 1, 1), -1);
    assert_int_equal(dnswire_decode(buf, (size_t)len, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(m->h.id, 0xbeef);
    assert_int_equal(m->h.flags, DNSWIRE_F_RD);
    assert_int_equal(m->nq, 1);
    assert_true(dnswire_name_equal(&m->q[0].name, &n));
    assert_int_equal(m->q[0].qtype, DNSWIRE_T_A);
    assert_int_equal(m->q[0].qclass, DNSWIRE_C_IN);
    free(m);
}

static void test_response_encoding(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    struct dnswire_a recs[40];
    uint8_t qbuf[300], buf[DNSWIRE_MAX_MSG];
    char err[256];
    struct dnswire_name n;
    assert_non_null(m);

    for (int i = 0; i < 40; i++)
        recs[i] = (struct dnswire_a){{10, 0, 1, (uint8_t)(i + 1)}, (uint32_t)(100 + i)};
    assert_int_equal(dnswire_name_from_text("big.example.test", &n), 0);
    int qlen = dnswire_encode_query(qbuf, sizeof qbuf, 7, &n, DNSWIRE_T_A, 1);
    assert_int_equal(dnswire_decode(qbuf, (size_t)qlen, m, err, sizeof err), DNSWIRE_OK);
    struct dnswire_header qh = m->h;
    struct dnswire_question q = m->q[0];

    /* All 40 fit in a TCP-sized message. */
    int len = dnswire_encode_response(buf, sizeof buf, &qh, &q, 0, 1, recs, 40);
    assert_int_equal(len, 12 + 18 + 4 + 40 * 16);
    assert_int_equal(dnswire_decode(buf, (size_t)len, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(m->h.id, 7);
    assert_int_equal(m->h.flags, DNSWIRE_F_QR | DNSWIRE_F_AA | DNSWIRE_F_RD);
    assert_int_equal(m->nan, 40);
    for (int i = 0; i < 40; i++) {
        assert_true(dnswire_name_equal(&m->an[i].name, &n));
        assert_int_equal(m->an[i].ttl, 100 + i);
        assert_memory_equal(buf + m->an[i].rdata_off, recs[i].addr, 4);
    }
    /* Not in 512 bytes: no answers, TC set. */
    len = dnswire_encode_response(buf, DNSWIRE_UDP_LIMIT, &qh, &q, 0, 1, recs, 40);
    assert_int_equal(len, 12 + 18 + 4);
    assert_int_equal(dnswire_decode(buf, (size_t)len, m, err, sizeof err), DNSWIRE_OK);
    assert_true(m->h.flags & DNSWIRE_F_TC);
    assert_int_equal(m->h.ancount, 0);
    /* Exactly as many as fit. */
    len = dnswire_encode_response(buf, 12 + 18 + 4 + 3 * 16, &qh, &q, 0, 1, recs, 3);
    assert_int_equal(len, 12 + 18 + 4 + 3 * 16);
    /* rcode and opcode carried; header-only when there is no question. */
    qh.flags = (uint16_t)(qh.flags | (2u << 11));
    len = dnswire_encode_response(buf, sizeof buf, &qh, NULL, DNSWIRE_RC_NOTIMP, 0, NULL, 0);
    assert_int_equal(len, 12);
    assert_int_equal(dnswire_decode(buf, (size_t)len, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(DNSWIRE_RCODE(m->h.flags), DNSWIRE_RC_NOTIMP);
    assert_int_equal(DNSWIRE_OPCODE(m->h.flags), 2);
    /* Too small for header + question. */
    assert_int_equal(dnswire_encode_response(buf, 20, &qh, &q, 0, 1, recs, 1), -1);
    free(m);
}

/* The OPT record: what the decoder reports of it, well formed or not. */
static void test_opt_decoding(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    char err[256];
    assert_non_null(m);
    /* Header (ARCOUNT 1), root question, then the OPT from its owner on. */
#define OPTQ(ar) 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, ar, 0, QTAIL
    static const struct {
        const char *what;
        uint8_t bytes[64];
        size_t len;
        int want, count, ok;
    } rows[] = {
        {"plain OPT", {OPTQ(1), 0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0}, 28, DNSWIRE_OK, 1, 1},
        {"cookie option", {OPTQ(1), 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4,
                           5, 6, 7, 8}, 40, DNSWIRE_OK, 1, 1},
        {"empty option", {OPTQ(1), 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 0}, 32,
         DNSWIRE_OK, 1, 1},
        {"option header cut", {OPTQ(1), 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 3, 0, 10, 0}, 31,
         DNSWIRE_OK, 1, 0},
        {"option data past the rdata", {OPTQ(1), 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 5, 0, 10, 0, 2,
                                        1}, 33, DNSWIRE_OK, 1, 0},
        {"owner not the root", {OPTQ(1), 1, 'a', 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 0}, 30,
         DNSWIRE_OK, 1, 0},
        {"two OPT records", {OPTQ(2), 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 41, 2, 0, 0, 0, 0,
                             0, 0, 0}, 39, DNSWIRE_OK, 2, 1},
        {"OPT in the answer section", {0x12, 0x34, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, QTAIL, 0, 0,
                                       41, 2, 0, 0, 0, 0, 0, 0, 0}, 28, DNSWIRE_OK, 1, 0},
        {"rdata past the message", {OPTQ(1), 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 9, 0, 10, 0, 5}, 32,
         DNSWIRE_EMALFORMED, 1, 1},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int rc = dnswire_decode(rows[i].bytes, rows[i].len, m, err, sizeof err);
        if (rc != rows[i].want || (rc == DNSWIRE_OK && ((int)m->edns.count != rows[i].count ||
                                                         m->edns.ok != rows[i].ok)))
            fail_msg("%s: rc %d (%s), count %u, ok %d", rows[i].what, rc, err, m->edns.count,
                     m->edns.ok);
    }
    /* The fields of the first row: size 1232, version 0, DO set. */
    assert_int_equal(dnswire_decode(rows[0].bytes, rows[0].len, m, err, sizeof err), 0);
    assert_int_equal(m->edns.udp_size, 1232);
    assert_int_equal(m->edns.version, 0);
    assert_int_equal(m->edns.ext_rcode, 0);
    assert_int_equal(m->edns.flags, 0x8000);
    assert_int_equal(m->nan, 0);
    /* Without an OPT: count 0, and the limits and rcode of plain DNS. */
    static const uint8_t plain[] = {0x12, 0x34, 1, 0x83, 0, 1, 0, 0, 0, 0, 0, 0, 0, QTAIL};
    assert_int_equal(dnswire_decode(plain, sizeof plain, m, err, sizeof err), 0);
    assert_int_equal(m->edns.count, 0);
    assert_int_equal(dnswire_rcode(m), 3);
    assert_int_equal(dnswire_udp_limit(m, 4096), 512);
    free(m);
#undef OPTQ
}

static void test_udp_limit(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    assert_non_null(m);
    static const struct {
        uint16_t client;
        size_t server, want;
    } rows[] = {
        {4096, 1232, 1232}, {800, 1232, 800}, {1232, 1232, 1232}, {100, 1232, 512},
        {0, 1232, 512}, {65535, 65535, 65535}, {4096, 100, 512},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        memset(&m->edns, 0, sizeof m->edns);
        m->edns.count = 1;
        m->edns.udp_size = rows[i].client;
        assert_int_equal(dnswire_udp_limit(m, rows[i].server), rows[i].want);
    }
    free(m);
}

/* dnswire_append_opt after a query: ARCOUNT 1, 11 more bytes, and the decoder reads it back. */
static void test_append_opt(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    uint8_t q[64];
    char err[256];
    struct dnswire_name n;
    assert_non_null(m);
    assert_int_equal(dnswire_name_from_text("a.test", &n), 0);
    int len = dnswire_encode_query(q, sizeof q, 9, &n, DNSWIRE_T_A, 1);
    assert_int_equal(len, 12 + 8 + 4);
    assert_int_equal(dnswire_append_opt(q, (size_t)len + 10, (size_t)len, 1232, 0, 0), -1);
    int l2 = dnswire_append_opt(q, sizeof q, (size_t)len, 4000, 1, 0x8000);
    assert_int_equal(l2, len + DNSWIRE_OPT_LEN);
    assert_int_equal(dnswire_decode(q, (size_t)l2, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(m->h.arcount, 1);
    assert_int_equal(m->edns.count, 1);
    assert_true(m->edns.ok);
    assert_int_equal(m->edns.udp_size, 4000);
    assert_int_equal(m->edns.ext_rcode, 1);
    assert_int_equal(m->edns.flags, 0x8000);
    assert_int_equal(dnswire_rcode(m), DNSWIRE_RC_BADVERS); /* 1 << 4 | 0 */
    free(m);
}

/* SOA records: the encoder's compression and sections, the decoder's checks of the rdata. */
static void test_soa_encoding(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    uint8_t buf[600];
    char err[256], text[DNSWIRE_NAME_TEXT];
    struct dnswire_name owner;
    assert_non_null(m);

    /* 12 + question 19+4 + SOA (pointer 2, 10, 5 + 4 + 20) + OPT 11 */
    enum { NEG = 12 + 23 + 41 + 11 };
    int n = negative_answer(buf, sizeof buf, &owner);
    assert_int_equal(n, NEG);
    assert_int_equal(dnswire_decode(buf, (size_t)n, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(dnswire_rcode(m), DNSWIRE_RC_NXDOMAIN);
    assert_int_equal(m->h.flags & DNSWIRE_F_AA, DNSWIRE_F_AA);
    assert_int_equal(m->h.nscount, 1);
    assert_int_equal(m->nns, 1);
    assert_int_equal(m->ns[0].type, DNSWIRE_T_SOA);
    assert_int_equal(m->ns[0].ttl, 60);
    assert_int_equal(buf[12 + 23], 0xC0); /* a pointer ... */
    assert_int_equal(buf[12 + 23 + 1], 12 + 5); /* ... to "example.test" in "nope.example.test" */
    dnswire_name_to_text(&m->ns[0].name, text, sizeof text);
    assert_string_equal(text, "example.test");
    dnswire_name_to_text(&m->ns[0].target, text, sizeof text);
    assert_string_equal(text, "ns1");
    assert_int_equal(m->edns.count, 1);
    assert_int_equal(m->edns.udp_size, 1232);

    /* Truncation at the limit: all of it in NEG bytes; one less and the SOA goes, TC is set,
     * the question and the OPT stay. */
    assert_int_equal(negative_answer(buf, NEG, &owner), NEG);
    n = negative_answer(buf, NEG - 1, &owner);
    assert_int_equal(n, 12 + 23 + 11);
    assert_int_equal(dnswire_decode(buf, (size_t)n, m, err, sizeof err), DNSWIRE_OK);
    assert_true(m->h.flags & DNSWIRE_F_TC);
    assert_int_equal(m->h.nscount, 0);
    assert_int_equal(m->h.qdcount, 1);
    assert_int_equal(m->edns.count, 1);
    assert_int_equal(dnswire_rcode(m), DNSWIRE_RC_NXDOMAIN);
    /* Not even header, question and OPT: -1. */
    assert_int_equal(negative_answer(buf, 12 + 23 + 10, &owner), -1);

    /* An owner that is not a suffix of the question is written out; an SOA in the answer
     * follows the A records; BADVERS goes in two parts. */
    struct dnswire_header qh;
    struct dnswire_question q;
    const struct dnswire_a a = {{192, 0, 2, 1}, 5};
    make_question("example.test", &qh, &q);
    assert_int_equal(dnswire_name_from_text("other.test", &owner), 0);
    struct dnswire_reply r = {.rcode = DNSWIRE_RC_BADVERS, .aa = 1, .a = &a, .na = 1,
                              .soa = &test_soa, .soa_owner = &owner, .soa_ttl = 99,
                              .soa_in_answer = 1, .edns = 1, .edns_size = 700};
    n = dnswire_encode_reply(buf, sizeof buf, &qh, &q, &r);
    assert_int_equal(n, 12 + 18 + 16 + (12 + 10 + 29) + 11);
    assert_int_equal(dnswire_decode(buf, (size_t)n, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(DNSWIRE_RCODE(m->h.flags), 0);
    assert_int_equal(m->edns.ext_rcode, 1);
    assert_int_equal(dnswire_rcode(m), DNSWIRE_RC_BADVERS);
    assert_int_equal(m->nan, 2);
    assert_int_equal(m->an[0].type, DNSWIRE_T_A);
    assert_int_equal(m->an[1].type, DNSWIRE_T_SOA);
    assert_int_equal(m->an[1].ttl, 99);
    dnswire_name_to_text(&m->an[1].name, text, sizeof text);
    assert_string_equal(text, "other.test");

    /* SOA rdata that is not two names and 20 bytes is malformed. */
    size_t soa_rdlen = m->an[1].rdata_off - 2; /* the rdlength field before the rdata */
    buf[soa_rdlen + 1]--;                       /* 28 bytes: the names and 19 */
    assert_int_equal(dnswire_decode(buf, (size_t)n, m, err, sizeof err), DNSWIRE_EMALFORMED);
    assert_non_null(strstr(err, "SOA rdata"));
    free(m);
}

/* More records than the decoder keeps: all validated, DNSWIRE_MAX_RR kept. */
static void test_many_records(void **state)
{
    (void)state;
    struct dnswire_msg *m = malloc(sizeof *m);
    static uint8_t buf[DNSWIRE_MAX_MSG];
    char err[256];
    size_t n = 12, count = DNSWIRE_MAX_RR + 10;
    assert_non_null(m);

    memcpy(buf, (uint8_t[]){HDR(0, 0, 0, 0)}, 12);
    buf[6] = (uint8_t)(count >> 8);
    buf[7] = (uint8_t)count;
    for (size_t i = 0; i < count; i++) {
        const uint8_t rr[] = {0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, (uint8_t)i};
        memcpy(buf + n, rr, sizeof rr);
        n += sizeof rr;
    }
    assert_int_equal(dnswire_decode(buf, n, m, err, sizeof err), DNSWIRE_OK);
    assert_int_equal(m->nan, DNSWIRE_MAX_RR);
    assert_int_equal(m->h.ancount, count);
    buf[n - 5] = 5; /* the last record's rdlength: not 4 for an A record */
    assert_int_equal(dnswire_decode(buf, n, m, err, sizeof err), DNSWIRE_EMALFORMED);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_name_limits),
        cmocka_unit_test(test_long_name_through_pointer),
        cmocka_unit_test(test_pointer_chain_bounded),
        cmocka_unit_test(test_compressed_response),
        cmocka_unit_test(test_prefixes_before_guard_page),
        cmocka_unit_test(test_name_from_text),
        cmocka_unit_test(test_name_text_and_case),
        cmocka_unit_test(test_query_roundtrip),
        cmocka_unit_test(test_response_encoding),
        cmocka_unit_test(test_many_records),
        cmocka_unit_test(test_opt_decoding),
        cmocka_unit_test(test_udp_limit),
        cmocka_unit_test(test_append_opt),
        cmocka_unit_test(test_soa_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
