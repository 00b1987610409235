/* Integration tests of bin/threaded-dns and bin/async-dns on a temporary zone (the format
 * without $ORIGIN) and the sample zone: answers over UDP and TCP through bin/dnsq (both of its
 * models) and raw packets, NXDOMAIN, NOTIMP, FORMERR, EDNS(0) (sizes, two OPTs, BADVERS,
 * --edns-size), garbage that must not kill a server, zone errors at start-up, and dig and
 * dnsperf as real clients when installed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dnswire.h"
#include "testsrv.h"

static const char *const servers[] = {"threaded-dns", "async-dns"};

static const char zone_text[] =
    "# test zone\n"
    "www.zone.test 300 A 192.0.2.10\n"
    "www.zone.test 300 A 192.0.2.11\n"
    "Mail.Zone.Test A 192.0.2.25\n"
    "ttl0.zone.test 0 A 203.0.113.9\n";

static char zone_path[64];

/* The fake server a test forks (test_dnsq_matching_and_timeout, the TC over TCP one), while
 * it runs: killed by teardown_liar if an assertion fails. */
static pid_t liar_pid;

static int setup(void **state)
{
    (void)state;
    snprintf(zone_path, sizeof zone_path, "/tmp/tvsa-test-dns-XXXXXX");
    int fd = mkstemp(zone_path);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    fputs(zone_text, f);
    for (int i = 1; i <= 40; i++) /* more than a 512-byte UDP answer holds: TC, then TCP */
        fprintf(f, "big.zone.test 60 A 10.0.1.%d\n", i);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(zone_path);
    return 0;
}

static void start(struct testsrv *srv, const char *name)
{
    const char *args[] = {"--zone", zone_path, NULL};
    if (testsrv_start(srv, name, args) < 0)
        fail_msg("%s did not start", name);
}

static void stop(struct testsrv *srv)
{
    int status = -2;
    json_t *st = testsrv_stop(srv, SIGTERM, 3000, &status);
    assert_int_equal(status, 0);
    assert_non_null(st);
    assert_non_null(json_object_get(st, "rcodes"));
    json_decref(st);
}

/* The stderr of the last run3. */
static char run_err[8192];

/* Runs the command head + a + b (NULL-terminated lists; a and b may be NULL), stdout into
 * out, stderr into run_err; returns its exit status. */
static int run3(const char *const *head, const char *const *a, const char *const *b, char *out,
                size_t outlen)
{
    const char *const *parts[3] = {head, a, b};
    const char *argv[64];
    size_t n = 0;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; parts[k] && parts[k][i] && n < 63; i++)
            argv[n++] = parts[k][i];
    argv[n] = NULL;
    return testsrv_run(argv, out, outlen, run_err, sizeof run_err, 15000);
}

/* Runs bin/dnsq against the server with extra args and names; returns its exit status. */
static int dnsq(int port, const char *const *extra, const char *const *names, char *out,
                size_t outlen)
{
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", port);
    const char *head[] = {"dnsq", "--server", server, NULL};
    return run3(head, extra, names, out, outlen);
}

static const char *const ok_names[] = {"www.zone.test", "MAIL.zone.test", "ttl0.zone.test", NULL};
static const char ok_expected[] = "www.zone.test 192.0.2.10\n"
                                  "www.zone.test 192.0.2.11\n"
                                  "MAIL.zone.test 192.0.2.25\n"
                                  "ttl0.zone.test 203.0.113.9\n";

static void test_dnsq_answers(void **state)
{
    (void)state;
    static const char *const modes[][4] = {
        {NULL}, {"--tcp", NULL}, {"--model", "threaded", NULL},
        {"--model", "threaded", "--tcp", NULL},
    };
    char out[16384];
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        start(&srv, servers[s]);
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            int rc = dnsq(srv.port, modes[m], ok_names, out, sizeof out);
            if (rc != 0 || strcmp(out, ok_expected) != 0)
                fail_msg("%s, mode %zu: exit %d, output:\n%s", servers[s], m, rc, out);

            const char *const nx[] = {"www.zone.test", "nope.zone.test", NULL};
            rc = dnsq(srv.port, modes[m], nx, out, sizeof out);
            assert_int_equal(rc, 1);
            assert_string_equal(out, "www.zone.test 192.0.2.10\nwww.zone.test 192.0.2.11\n"
                                     "nope.zone.test NXDOMAIN\n");
        }
        stop(&srv);
    }
}

/* 40 records do not fit in 512 bytes: without EDNS the UDP answer is truncated and dnsq
 * retries over TCP; with its default EDNS (1232) they come whole over UDP. */
static void test_truncation_falls_back_to_tcp(void **state)
{
    (void)state;
    static const char *const modes[][6] = {
        {"--json", "--edns", "0", NULL}, {"--json", "--model", "threaded", "--edns", "0", NULL},
        {"--json", NULL}, {"--json", "--model", "threaded", NULL},
    };
    const char *names[] = {"big.zone.test", NULL};
    char out[65536];
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        start(&srv, servers[s]);
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            int edns = m >= 2;
            assert_int_equal(dnsq(srv.port, modes[m], names, out, sizeof out), 0);
            json_t *j = json_loads(out, 0, NULL);
            assert_non_null(j);
            json_t *r = json_array_get(json_object_get(j, "results"), 0);
            json_t *addrs = json_object_get(r, "addresses");
            assert_string_equal(json_string_value(json_object_get(r, "status")), "NOERROR");
            assert_int_equal(json_array_size(addrs), 40);
            assert_int_equal(json_is_true(json_object_get(r, "truncated_udp")), !edns);
            assert_int_equal(json_is_true(json_object_get(r, "tcp")), !edns);
            assert_int_equal(json_integer_value(json_object_get(r, "tries")), edns ? 1 : 2);
            assert_string_equal(json_string_value(json_array_get(addrs, 39)), "10.0.1.40");
            json_t *se = json_object_get(r, "server_edns");
            if (edns)
                assert_int_equal(json_integer_value(se), 1232);
            else
                assert_true(json_is_null(se)); /* no OPT asked, none given */
            json_decref(j);
        }
        /* The summary on stderr says what happened, for people. */
        const char *plain[] = {"--edns", "0", NULL}, *quiet[] = {"--quiet", NULL};
        assert_int_equal(dnsq(srv.port, plain, names, out, sizeof out), 0);
        if (strstr(run_err, ";; big.zone.test: NOERROR, flags: qr aa rd; udp (no edns), "
                            "truncated (tc): retried over tcp, 2 tries") == NULL)
            fail_msg("%s: stderr '%s'", servers[s], run_err);
        assert_int_equal(dnsq(srv.port, NULL, names, out, sizeof out), 0);
        if (strstr(run_err, ";; big.zone.test: NOERROR, flags: qr aa rd; udp (edns 1232), 1 try; "
                            "server edns 1232") == NULL)
            fail_msg("%s: stderr '%s'", servers[s], run_err);
        assert_int_equal(dnsq(srv.port, quiet, names, out, sizeof out), 0);
        assert_string_equal(run_err, "");
        stop(&srv);
    }
}

static int udp_socket(int port)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one datagram, waits up to timeout_ms for a reply. Returns its length, -1 if none. */
static ssize_t udp_ask(int fd, const void *q, size_t qlen, uint8_t *r, size_t rcap,
                       int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (send(fd, q, qlen, 0) < 0)
        return -1;
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    return recv(fd, r, rcap, 0);
}

struct raw_case {
    const char *what;
    uint8_t bytes[64];
    size_t len;
    int want_rcode; /* -1: no reply at all */
};

/* Raw packets with a known verdict: each gets the right rcode, or no reply. */
static const struct raw_case raw_cases[] = {
    {"opcode STATUS", {0, 1, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 4, 'z', 'o',
                       'n', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}, 31, DNSWIRE_RC_NOTIMP},
    {"opcode 15, no question", {0, 2, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 12, DNSWIRE_RC_NOTIMP},
    {"forward pointer", {0, 3, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 40, 0, 1, 0, 1}, 18,
     DNSWIRE_RC_FORMERR},
    {"label past the end", {0, 4, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 60, 'a', 'b'}, 15,
     DNSWIRE_RC_FORMERR},
    {"no question", {0, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 12, DNSWIRE_RC_FORMERR},
    {"trailing junk", {0, 6, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0xEE}, 18,
     DNSWIRE_RC_FORMERR},
    {"class CHAOS", {0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3}, 17, DNSWIRE_RC_REFUSED},
    {"AAAA of a known name", {0, 8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 4, 'z', 'o',
                              'n', 'e', 4, 't', 'e', 's', 't', 0, 0, 28, 0, 1}, 31,
     DNSWIRE_RC_NOERROR},
    {"11 bytes", {0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0}, 11, -1},
    {"a response (QR set)", {0, 10, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 12, -1},
};

static void check_raw_reply(const struct raw_case *c, const uint8_t *r, ssize_t n,
                            const char *server, const char *transport)
{
    if (c->want_rcode < 0) {
        if (n >= 0)
            fail_msg("%s %s '%s': got a %zd-byte reply, want none", server, transport, c->what, n);
        return;
    }
    if (n < DNSWIRE_HDR_LEN)
        fail_msg("%s %s '%s': no reply", server, transport, c->what);
    struct dnswire_header h;
    assert_int_equal(dnswire_decode_header(r, (size_t)n, &h), 0);
    assert_int_equal(h.id, (c->bytes[0] << 8) | c->bytes[1]);
    assert_true(h.flags & DNSWIRE_F_QR);
    if ((int)DNSWIRE_RCODE(h.flags) != c->want_rcode)
        fail_msg("%s %s '%s': rcode %u, want %d", server, transport, c->what,
                 DNSWIRE_RCODE(h.flags), c->want_rcode);
    assert_int_equal(h.ancount, 0);
}

static void test_raw_udp(void **state)
{
    (void)state;
    uint8_t r[600];
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        start(&srv, servers[s]);
        int fd = udp_socket(srv.port);
        assert_true(fd >= 0);
        for (size_t i = 0; i < sizeof raw_cases / sizeof raw_cases[0]; i++) {
            const struct raw_case *c = &raw_cases[i];
            ssize_t n = udp_ask(fd, c->bytes, c->len, r, sizeof r, c->want_rcode < 0 ? 300 : 2000);
            check_raw_reply(c, r, n, servers[s], "udp");
        }
        close(fd);
        stop(&srv);
    }
}

/* Every raw case over one TCP connection, first all in one write, then byte by byte: the
 * replies come back in order, none for the dropped ones. */
static void test_raw_tcp_pipelined_and_split(void **state)
{
    (void)state;
    uint8_t all[2048], r[2 + 600];
    size_t len = 0;
    for (size_t i = 0; i < sizeof raw_cases / sizeof raw_cases[0]; i++) {
        dnswire_tcp_prefix(all + len, raw_cases[i].len);
        memcpy(all + len + 2, raw_cases[i].bytes, raw_cases[i].len);
        len += 2 + raw_cases[i].len;
    }
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        start(&srv, servers[s]);
        for (int split = 0; split < 2; split++) {
            int fd = testsrv_connect(srv.port);
            assert_true(fd >= 0);
            if (split) {
                for (size_t k = 0; k < len; k++)
                    assert_int_equal(send(fd, all + k, 1, MSG_NOSIGNAL), 1);
            } else {
                assert_int_equal(send(fd, all, len, MSG_NOSIGNAL), (ssize_t)len);
            }
            for (size_t i = 0; i < sizeof raw_cases / sizeof raw_cases[0]; i++) {
                if (raw_cases[i].want_rcode < 0)
                    continue;
                assert_int_equal(testsrv_read_full(fd, r, 2, 3000), 2);
                size_t n = ((size_t)r[0] << 8) | r[1];
                assert_true(n <= 600);
                assert_int_equal(testsrv_read_full(fd, r, n, 3000), n);
                check_raw_reply(&raw_cases[i], r, (ssize_t)n, servers[s], "tcp");
            }
            /* Nothing more: the dropped messages got no reply. */
            struct pollfd p = {fd, POLLIN, 0};
            assert_int_equal(poll(&p, 1, 200), 0);
            close(fd);
        }
        stop(&srv);
    }
}

/* Many pipelined queries, then a half-close before reading: every answer still arrives, from
 * both models (the async server drains its queued replies before it closes). */
static void test_tcp_half_close_gets_every_answer(void **state)
{
    (void)state;
    /* ~4.7 MB of answers: more than the kernel's socket buffers hold, so some must still be
     * queued in the server when it sees the EOF. */
    enum { N = 100000 };
    struct dnswire_name qname;
    uint8_t q[2 + 512];
    assert_int_equal(dnswire_name_from_text("www.zone.test", &qname), 0);
    int qlen = dnswire_encode_query(q + 2, sizeof q - 2, 0x1234, &qname, 1 /* A */, 0);
    assert_true(qlen > 0);
    dnswire_tcp_prefix(q, (size_t)qlen);
    size_t one = 2 + (size_t)qlen;
    uint8_t *all = malloc(one * N);
    assert_non_null(all);
    for (int i = 0; i < N; i++)
        memcpy(all + one * (size_t)i, q, one);
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        start(&srv, servers[s]);
        int fd = testsrv_connect(srv.port);
        assert_true(fd >= 0);
        assert_int_equal(send(fd, all, one * N, MSG_NOSIGNAL), (ssize_t)(one * N));
        shutdown(fd, SHUT_WR);
        int answers = 0;
        uint8_t r[2 + 600];
        while (testsrv_read_full(fd, r, 2, 3000) == 2) {
            size_t n = ((size_t)r[0] << 8) | r[1];
            if (n > 600 || testsrv_read_full(fd, r + 2, n, 3000) != n)
                break;
            answers++;
        }
        if (answers != N)
            fail_msg("%s: %d answers to %d queries after a half-close", servers[s], answers, N);
        close(fd);
        stop(&srv);
    }
    free(all);
}

/* A query for name/qtype with nopt OPT records offering udp_size, the first of EDNS version
 * `version`. Returns its length. */
static size_t edns_query(uint8_t *q, size_t cap, uint16_t id, const char *name, uint16_t qtype,
                         int nopt, uint8_t version, uint16_t udp_size)
{
    struct dnswire_name n;
    assert_int_equal(dnswire_name_from_text(name, &n), 0);
    int len = dnswire_encode_query(q, cap, id, &n, qtype, 1);
    assert_true(len > 0);
    for (int i = 0; i < nopt; i++) {
        int opt_at = len;
        len = dnswire_append_opt(q, cap, (size_t)len, udp_size, 0, 0);
        assert_true(len > 0);
        if (i == 0)
            q[opt_at + 6] = version; /* root, type, class, then the TTL: ext rcode, version */
    }
    return (size_t)len;
}

struct edns_case {
    const char *what, *name;
    int nopt;
    uint8_t version;
    uint16_t udp_size;
    int want_rcode;
    int big; /* the 40 A records of big.zone.test, when they fit */
};

/* EDNS(0) on the wire, both servers, UDP and TCP: the client's size honoured up to the
 * server's (1232 by default, --edns-size 700 for the second run), truncation at the advertised
 * size, FORMERR for two OPT records, BADVERS for version 1; every reply carries an OPT. */
static void test_edns_raw(void **state)
{
    (void)state;
    /* big.zone.test (15 wire bytes): 12 + 15 + 4 + 40 * 16 + 11 = 682 bytes with the OPT. */
    enum { BIG = 682 };
    const struct edns_case cases[] = {
        {"big, EDNS 1232", "big.zone.test", 1, 0, 1232, 0, 1},
        {"big, EDNS exactly its size", "big.zone.test", 1, 0, BIG, 0, 1},
        {"big, EDNS one byte short", "big.zone.test", 1, 0, BIG - 1, 0, 1},
        {"big, EDNS 512", "big.zone.test", 1, 0, 512, 0, 1},
        {"big, EDNS 65535", "big.zone.test", 1, 0, 65535, 0, 1},
        {"two OPT records", "www.zone.test", 2, 0, 1232, DNSWIRE_RC_FORMERR, 0},
        {"EDNS version 1", "www.zone.test", 1, 1, 1232, DNSWIRE_RC_BADVERS, 0},
        {"NXDOMAIN", "nope.zone.test", 1, 0, 1232, DNSWIRE_RC_NXDOMAIN, 0},
    };
    struct dnswire_msg *m = malloc(sizeof *m);
    uint8_t q[600], r[2 + 4096];
    char err[256];
    assert_non_null(m);
    for (int run = 0; run < 2; run++) {
        size_t server_max = run ? 700 : 1232;
        const char *args[] = {"--zone", zone_path, "--edns-size", "700", NULL};
        if (run == 0)
            args[2] = NULL;
        for (size_t s = 0; s < 2; s++) {
            struct testsrv srv;
            if (testsrv_start(&srv, servers[s], args) < 0)
                fail_msg("%s did not start", servers[s]);
            int ufd = udp_socket(srv.port);
            assert_true(ufd >= 0);
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                const struct edns_case *c = &cases[i];
                for (int tcp = 0; tcp < 2; tcp++) {
                    uint16_t id = (uint16_t)(i * 2 + (size_t)tcp + 1);
                    size_t ql = edns_query(q + 2, sizeof q - 2, id, c->name, DNSWIRE_T_A,
                                           c->nopt, c->version, c->udp_size);
                    ssize_t n;
                    if (tcp) {
                        int t = testsrv_connect(srv.port);
                        assert_true(t >= 0);
                        dnswire_tcp_prefix(q, ql);
                        assert_int_equal(send(t, q, ql + 2, MSG_NOSIGNAL), (ssize_t)(ql + 2));
                        assert_int_equal(testsrv_read_full(t, r, 2, 3000), 2);
                        n = (r[0] << 8) | r[1];
                        assert_int_equal(testsrv_read_full(t, r, (size_t)n, 3000), n);
                        close(t);
                    } else {
                        n = udp_ask(ufd, q + 2, ql, r, sizeof r, 2000);
                    }
                    if (n <= 0 || dnswire_decode(r, (size_t)n, m, err, sizeof err) != 0)
                        fail_msg("%s %s %s: no reply that decodes (%zd bytes)", servers[s],
                                 tcp ? "tcp" : "udp", c->what, n);
                    /* The limit: all of 65,535 over TCP; over UDP the client's size, 512 at
                     * least, the server's at most. Only big.zone.test can miss it. */
                    size_t limit = tcp ? 65535
                                   : c->udp_size < 512 ? 512
                                   : c->udp_size < server_max ? c->udp_size : server_max;
                    int fits = !c->big || BIG <= limit;
                    unsigned want_an = c->big && fits ? 40 : 0;
                    int want_tc = !fits;
                    if (m->h.id != id || dnswire_rcode(m) != c->want_rcode ||
                        m->h.ancount != want_an || !!(m->h.flags & DNSWIRE_F_TC) != want_tc ||
                        m->edns.count != 1 || m->edns.udp_size != server_max ||
                        (size_t)n > limit)
                        fail_msg("%s %s %s (server %zu): rcode %d, %u answers, tc %d, %u OPT "
                                 "(size %u), %zd bytes", servers[s], tcp ? "tcp" : "udp",
                                 c->what, server_max, dnswire_rcode(m), m->h.ancount,
                                 !!(m->h.flags & DNSWIRE_F_TC), m->edns.count, m->edns.udp_size,
                                 n);
                }
            }
            close(ufd);
            stop(&srv);
        }
    }
    free(m);
}

/* A fake TCP server on fd: answers every query of one connection with TC set and no records
 * (what a server would do with an answer over 65,535 bytes). Runs in a child until killed. */
static void tc_over_tcp_server(int fd)
{
    for (;;) {
        int c = accept(fd, NULL, NULL);
        uint8_t b[2 + 600];
        if (c < 0)
            continue;
        if (testsrv_read_full(c, b, 2, 3000) == 2) {
            size_t n = ((size_t)b[0] << 8) | b[1];
            if (n >= 12 && n <= 600 && testsrv_read_full(c, b + 2, n, 3000) == n) {
                b[4] |= 0x82; /* QR and TC */
                memset(b + 2 + 4, 0, 8); /* no question, no records */
                dnswire_tcp_prefix(b, 12);
                if (send(c, b, 14, MSG_NOSIGNAL) < 0) {
                }
            }
        }
        close(c);
    }
}

/* TC over TCP is an error for dnsq (exit 1, status ERROR, the reason), in both its models. */
static void test_dnsq_tc_over_tcp_is_an_error(void **state)
{
    (void)state;
    struct sockaddr_in sa = {0};
    socklen_t slen = sizeof sa;
    char out[4096], err[4096], server[32];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&sa, &slen);
    snprintf(server, sizeof server, "127.0.0.1:%d", ntohs(sa.sin_port));
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        tc_over_tcp_server(fd);
        _exit(0);
    }
    liar_pid = child;
    for (int m = 0; m < 2; m++) {
        const char *argv[] = {"dnsq", "--server", server, "--tcp", "--timeout", "2000",
                              "--retries", "0", "--json", "--model", m ? "threaded" : "async",
                              "a.test", NULL};
        assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 10000), 1);
        json_t *j = json_loads(out, 0, NULL);
        json_t *r = json_array_get(json_object_get(j, "results"), 0);
        assert_non_null(r);
        assert_string_equal(json_string_value(json_object_get(r, "status")), "ERROR");
        assert_non_null(strstr(json_string_value(json_object_get(r, "error")),
                               "TC set over TCP"));
        json_decref(j);
    }
    const char *lines[] = {"dnsq", "--server", server, "--tcp", "--retries", "0", "a.test", NULL};
    assert_int_equal(testsrv_run(lines, out, sizeof out, err, sizeof err, 10000), 1);
    assert_string_equal(out, "a.test ERROR\n");
    assert_non_null(strstr(err, "TC set over TCP"));
    liar_pid = 0;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(fd);
    const char *bad[][6] = {{"dnsq", "--edns", "100", "a.test", NULL},
                            {"dnsq", "--edns", "65536", "a.test", NULL},
                            {"dnsq", "--edns", "x", "a.test", NULL}};
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(testsrv_run(bad[i], out, sizeof out, err, sizeof err, 5000), 2);
}

/* Random datagrams and TCP junk; the server must still answer and stop cleanly. */
static void test_garbage_never_kills(void **state)
{
    (void)state;
    uint8_t junk[700], r[600];
    unsigned seed = 12345;
    char out[4096];
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        start(&srv, servers[s]);
        int fd = udp_socket(srv.port);
        for (int i = 0; i < 400; i++) {
            size_t n = (size_t)(rand_r(&seed) % (int)sizeof junk);
            for (size_t k = 0; k < n; k++)
                junk[k] = (uint8_t)rand_r(&seed);
            if (i % 3 == 0 && n >= 12)
                junk[2] &= 0x7F; /* a query, so it is parsed and not dropped as a response */
            if (send(fd, junk, n, 0) < 0) {
            }
            while (recv(fd, r, sizeof r, MSG_DONTWAIT) > 0) {
            }
        }
        close(fd);
        for (int i = 0; i < 20; i++) {
            int t = testsrv_connect(srv.port);
            assert_true(t >= 0);
            size_t n = (size_t)(rand_r(&seed) % (int)sizeof junk);
            for (size_t k = 0; k < n; k++)
                junk[k] = (uint8_t)rand_r(&seed);
            if (i == 0 && n >= 2)
                junk[0] = junk[1] = 0xFF; /* claims 65,535 bytes, then hangs up */
            if (send(t, junk, n, MSG_NOSIGNAL) < 0) {
            }
            close(t);
        }
        assert_int_equal(dnsq(srv.port, NULL, ok_names, out, sizeof out), 0);
        assert_string_equal(out, ok_expected);
        assert_int_equal(kill(srv.pid, 0), 0);
        stop(&srv);
    }
}

static void test_zone_errors_exit_2(void **state)
{
    (void)state;
    char path[] = "/tmp/tvsa-test-badzone-XXXXXX", out[4096], err[4096];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("ok.test A 1.2.3.4\n# fine\nbad.test A 300.1.1.1\n", f);
    fclose(f);
    for (size_t s = 0; s < 2; s++) {
        const char *argv[] = {servers[s], "--port", "0", "--zone", path, NULL};
        assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 5000), 2);
        assert_non_null(strstr(err, "line 3"));
        assert_non_null(strstr(err, path));
        assert_string_equal(out, ""); /* no listening line */
        const char *missing[] = {servers[s], "--port", "0", "--zone", "/nonexistent.zone", NULL};
        assert_int_equal(testsrv_run(missing, out, sizeof out, err, sizeof err, 5000), 2);
    }
    /* 5,000 A records for one name: no 65,535-byte answer holds them (4,093 at most). */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("# too many\n", f);
    for (int i = 0; i < 5000; i++)
        fprintf(f, "many.zone.test A 10.0.%d.%d\n", i / 256, i % 256);
    fclose(f);
    /* A FIFO nobody writes to: the servers used to block in open() for ever. */
    char fifo[] = "/tmp/tvsa-test-fifo-XXXXXX", fifo_path[64];
    assert_non_null(mkdtemp(fifo));
    snprintf(fifo_path, sizeof fifo_path, "%s/zone", fifo);
    assert_int_equal(mkfifo(fifo_path, 0600), 0);
    for (size_t s = 0; s < 2; s++) {
        const char *argv[] = {servers[s], "--port", "0", "--zone", path, NULL};
        assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 5000), 2);
        if (strstr(err, "line 4095: many.zone.test has more A records") == NULL)
            fail_msg("%s: '%s'", servers[s], err);
        const char *fifo_argv[] = {servers[s], "--port", "0", "--zone", fifo_path, NULL};
        assert_int_equal(testsrv_run(fifo_argv, out, sizeof out, err, sizeof err, 5000), 2);
        assert_non_null(strstr(err, "not a regular file"));
        const char *bad_edns[] = {servers[s], "--port", "0", "--edns-size", "511", NULL};
        assert_int_equal(testsrv_run(bad_edns, out, sizeof out, err, sizeof err, 5000), 2);
    }
    /* loadgen loads zones with the same function: no hang either. */
    char opt[96];
    snprintf(opt, sizeof opt, "zone=%s", fifo_path);
    const char *lg[] = {"loadgen", "--scenario", "dns", "--duration", "1", "--opt", opt, NULL};
    assert_int_equal(testsrv_run(lg, out, sizeof out, err, sizeof err, 5000), 2);
    assert_non_null(strstr(err, "not a regular file"));
    unlink(fifo_path);
    rmdir(fifo);
    unlink(path);
}

/* Without --zone the sample zone is served. */
static void test_sample_zone_default(void **state)
{
    (void)state;
    char out[4096];
    const char *names[] = {"www.example.test", NULL};
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        assert_int_equal(testsrv_start(&srv, servers[s], NULL), 0);
        assert_int_equal(dnsq(srv.port, NULL, names, out, sizeof out), 0);
        assert_string_equal(out, "www.example.test 192.0.2.10\nwww.example.test 192.0.2.11\n");
        stop(&srv);
    }
}

/* A fake server on fd: each query gets a reply with the wrong id and one with the right id but
 * another name; the real answer too when honest. Runs in a child until killed. */
static void liar(int fd, int honest)
{
    struct dnswire_msg *m = malloc(sizeof *m);
    uint8_t q[600], r[600];
    char err[128];
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, q, sizeof q, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0 || dnswire_decode(q, (size_t)n, m, err, sizeof err) != 0 || m->nq != 1)
            continue;
        struct dnswire_header h = m->h;
        struct dnswire_question question = m->q[0];
        struct dnswire_a a = {{10, 0, 0, 1}, 5};
        h.id++;
        int len = dnswire_encode_response(r, sizeof r, &h, &question, 0, 1, &a, 1);
        sendto(fd, r, (size_t)len, 0, (struct sockaddr *)&peer, plen);
        h.id--;
        struct dnswire_question other = question;
        dnswire_name_from_text("other.test", &other.name);
        len = dnswire_encode_response(r, sizeof r, &h, &other, 0, 1, &a, 1);
        sendto(fd, r, (size_t)len, 0, (struct sockaddr *)&peer, plen);
        if (honest) {
            len = dnswire_encode_response(r, sizeof r, &h, &question, 0, 1, &a, 1);
            sendto(fd, r, (size_t)len, 0, (struct sockaddr *)&peer, plen);
        }
    }
}

/* dnsq matches replies on id and name: lies are ignored (a timeout when nothing else comes),
 * the honest reply after them is taken. A port where nobody answers times out too. */

static int teardown_liar(void **state)
{
    if (liar_pid > 0) {
        kill(liar_pid, SIGKILL);
        waitpid(liar_pid, NULL, 0);
        liar_pid = 0;
    }
    return testsrv_teardown(state);
}

static void test_dnsq_matching_and_timeout(void **state)
{
    (void)state;
    char out[4096], err[4096], server[32];
    for (int mode = 0; mode < 3; mode++) { /* 0 silent, 1 liar, 2 liar then honest */
        struct sockaddr_in sa = {0};
        socklen_t slen = sizeof sa;
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        getsockname(fd, (struct sockaddr *)&sa, &slen);
        snprintf(server, sizeof server, "127.0.0.1:%d", ntohs(sa.sin_port));
        pid_t child = -1;
        if (mode > 0) {
            child = fork();
            assert_true(child >= 0);
            if (child == 0) {
                liar(fd, mode == 2);
                _exit(0);
            }
            liar_pid = child; /* killed by the teardown if an assertion fails */
        }
        for (int m = 0; m < 2; m++) {
            const char *argv[] = {"dnsq", "--server", server, "--timeout", "150", "--retries",
                                  "2", "--json", "--model", m ? "threaded" : "async", "a.test",
                                  NULL};
            int rc = testsrv_run(argv, out, sizeof out, err, sizeof err, 5000);
            json_t *j = json_loads(out, 0, NULL);
            json_t *r = json_array_get(json_object_get(j, "results"), 0);
            assert_non_null(r);
            if (mode == 2) {
                assert_int_equal(rc, 0);
                assert_string_equal(json_string_value(json_object_get(r, "status")), "NOERROR");
                assert_string_equal(json_string_value(json_array_get(
                                        json_object_get(r, "addresses"), 0)), "10.0.0.1");
                assert_true(json_integer_value(json_object_get(r, "ignored_replies")) >= 1);
            } else {
                assert_int_equal(rc, 1);
                assert_string_equal(json_string_value(json_object_get(r, "status")), "ERROR");
                assert_int_equal(json_integer_value(json_object_get(r, "tries")), 3);
                assert_non_null(strstr(json_string_value(json_object_get(r, "error")),
                                       "timed out"));
                if (mode == 1)
                    assert_true(json_integer_value(json_object_get(r, "ignored_replies")) >= 2);
            }
            json_decref(j);
        }
        if (child > 0) {
            liar_pid = 0;
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
        }
        close(fd);
    }
    const char *bad[] = {"dnsq", "--retries", "x", "a.test", NULL};
    assert_int_equal(testsrv_run(bad, out, sizeof out, err, sizeof err, 5000), 2);
    const char *none[] = {"dnsq", NULL};
    assert_int_equal(testsrv_run(none, out, sizeof out, err, sizeof err, 5000), 2);
    const char *badsrv[] = {"dnsq", "--server", "localhost:53", "a.test", NULL};
    assert_int_equal(testsrv_run(badsrv, out, sizeof out, err, sizeof err, 5000), 2);
}

/* Runs dig against 127.0.0.1:port with args; its output into out. Returns its exit status. */
static int dig(int port, const char *const *args, char *out, size_t outlen)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    const char *head[] = {"/usr/bin/dig", "@127.0.0.1", "-p", p, "+time=2", "+tries=2", NULL};
    return run3(head, args, NULL, out, outlen);
}

static void skip_without(const char *path, const char *package)
{
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "%s not installed: skipping (apt-get install %s)\n", path, package);
        skip();
    }
}

/* Fails unless out holds every one of the NULL-terminated strings, and none of the nots. */
static void expect(const char *what, const char *out, const char *const *has,
                   const char *const *nots)
{
    for (size_t i = 0; has && has[i]; i++)
        if (strstr(out, has[i]) == NULL)
            fail_msg("%s: no '%s' in:\n%s", what, has[i], out);
    for (size_t i = 0; nots && nots[i]; i++)
        if (strstr(out, nots[i]) != NULL)
            fail_msg("%s: '%s' in:\n%s", what, nots[i], out);
}

/* The real dig, over UDP and +tcp, on the zone without $ORIGIN (origin zone.test). */
static void test_dig(void **state)
{
    (void)state;
    skip_without("/usr/bin/dig", "dnsutils");
    char out[16384];
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        start(&srv, servers[s]);
        const char *udp[] = {"+short", "www.zone.test", NULL};
        assert_int_equal(dig(srv.port, udp, out, sizeof out), 0);
        assert_string_equal(out, "192.0.2.10\n192.0.2.11\n");
        const char *tcp[] = {"+tcp", "+short", "mail.zone.test", NULL};
        assert_int_equal(dig(srv.port, tcp, out, sizeof out), 0);
        assert_string_equal(out, "192.0.2.25\n");
        const char *nx[] = {"nope.zone.test", NULL};
        assert_int_equal(dig(srv.port, nx, out, sizeof out), 0);
        /* The synthesised SOA: origin zone.test, minimum 300. */
        expect("nx", out, (const char *const[]){"status: NXDOMAIN", "flags: qr aa rd;",
                                                "AUTHORITY: 1", "zone.test.\t\t300\tIN\tSOA\t"
                                                "zone.test. hostmaster.zone.test. 1 3600 600 "
                                                "86400 300", NULL}, NULL);
        const char *out_of_zone[] = {"www.other.test", NULL};
        assert_int_equal(dig(srv.port, out_of_zone, out, sizeof out), 0);
        expect("outside", out, (const char *const[]){"status: REFUSED", "flags: qr rd;", NULL},
               NULL);
        stop(&srv);
    }
}

/* Issue 17's cases with dig against the sample zone, both models: big.example.test whole over
 * UDP with EDNS, TC and the TCP retry without; the root REFUSED without AA; NXDOMAIN and NODATA
 * with the SOA (minimum as TTL); the empty non-terminal internal.example.test NOERROR; BADVERS. */
static void test_dig_sample_zone(void **state)
{
    (void)state;
    skip_without("/usr/bin/dig", "dnsutils");
    static const char soa[] = "example.test.\t\t300\tIN\tSOA\tns1.example.test. "
                              "hostmaster.example.test. 2026120201 3600 600 86400 300";
    struct {
        const char *what;
        const char *args[6];
        const char *has[8], *nots[4];
    } cases[] = {
        {"EDNS 4096: all 40 A over UDP", {"+bufsize=4096", "+ignore", "big.example.test", NULL},
         {"status: NOERROR", "flags: qr aa rd;", "ANSWER: 40,",
          "; EDNS: version: 0, flags:; udp: 1232", "MSG SIZE  rcvd: 685", "10.0.1.40", NULL},
         {"Truncated", " tc", NULL}},
        {"dig's default EDNS (1232): no TC either", {"big.example.test", NULL},
         {"ANSWER: 40,", "udp: 1232", NULL}, {"Truncated", NULL}},
        {"no EDNS: TC, then the TCP retry", {"+noedns", "big.example.test", NULL},
         {"Truncated, retrying in TCP mode", "ANSWER: 40,", "MSG SIZE  rcvd: 674", NULL},
         {"EDNS:", NULL}},
        {"no EDNS, +ignore: the truncated UDP answer", {"+noedns", "+ignore", "big.example.test",
                                                        NULL},
         {"flags: qr aa tc rd;", "ANSWER: 0,", NULL}, {"EDNS:", NULL}},
        {"the root: REFUSED, not authoritative", {".", "NS", NULL},
         {"status: REFUSED", "flags: qr rd;", "AUTHORITY: 0,", NULL}, {NULL}},
        {"NXDOMAIN with the SOA", {"nope.example.test", NULL},
         {"status: NXDOMAIN", "flags: qr aa rd;", "ANSWER: 0, AUTHORITY: 1,", soa, NULL},
         {NULL}},
        {"NODATA with the SOA", {"www.example.test", "AAAA", NULL},
         {"status: NOERROR", "flags: qr aa rd;", "ANSWER: 0, AUTHORITY: 1,", soa, NULL}, {NULL}},
        {"empty non-terminal", {"internal.example.test", NULL},
         {"status: NOERROR", "flags: qr aa rd;", "ANSWER: 0, AUTHORITY: 1,", soa, NULL}, {NULL}},
        {"SOA of the origin", {"example.test", "SOA", NULL},
         {"status: NOERROR", "ANSWER: 1, AUTHORITY: 0,", "example.test.\t\t3600\tIN\tSOA\t",
          NULL}, {NULL}},
        {"EDNS version 1: BADVERS", {"+edns=1", "+noednsneg", "www.example.test", NULL},
         {"status: BADVERS", "; EDNS: version: 0,", NULL}, {NULL}},
    };
    char out[16384];
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        assert_int_equal(testsrv_start(&srv, servers[s], NULL), 0);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char what[128];
            snprintf(what, sizeof what, "%s, %s", servers[s], cases[i].what);
            if (dig(srv.port, cases[i].args, out, sizeof out) != 0)
                fail_msg("%s: dig failed:\n%s", what, out);
            expect(what, out, cases[i].has, cases[i].nots);
        }
        stop(&srv);
    }
}

/* dnsperf for 2 s against each model, without and with EDNS, on the names: 0 lost. */
static void test_dnsperf(void **state)
{
    (void)state;
    skip_without("/usr/bin/dnsperf", "dnsperf");
    char qpath[] = "/tmp/tvsa-test-dnsperf-XXXXXX", port[16];
    static char out[65536], err[65536];
    int fd = mkstemp(qpath);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("www.example.test A\nbig.example.test A\nnope.example.test A\n"
          "internal.example.test A\n. NS\nwww.example.test AAAA\n", f);
    fclose(f);
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        assert_int_equal(testsrv_start(&srv, servers[s], NULL), 0);
        snprintf(port, sizeof port, "%d", srv.port);
        for (int edns = 0; edns < 2; edns++) {
            const char *argv[] = {"/usr/bin/dnsperf", "-s", "127.0.0.1", "-p", port, "-d", qpath,
                                  "-l", "2", "-c", "4", "-q", "50", edns ? "-e" : NULL, NULL};
            assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 30000), 0);
            char *lost = strstr(out, "Queries lost:");
            char *done = strstr(out, "Queries completed:");
            if (lost == NULL || done == NULL || strncmp(lost, "Queries lost:         0 ", 24) != 0)
                fail_msg("%s, edns %d: dnsperf says:\n%s", servers[s], edns, out);
            assert_true(strtol(done + strlen("Queries completed:"), NULL, 10) > 1000);
            expect("dnsperf rcodes", out,
                   (const char *const[]){"NOERROR", "NXDOMAIN", "REFUSED", NULL}, NULL);
            fprintf(stderr, "%s, %s: %.*s\n", servers[s], edns ? "EDNS" : "no EDNS",
                    (int)(strchr(done, '\n') - done), done);
        }
        stop(&srv);
    }
    unlink(qpath);
}

/* The loadgen dns and dns-tcp scenarios against both servers, on a names file with a name the
 * zone lacks: every reply matched, both rcodes counted. */
static void test_loadgen_dns(void **state)
{
    (void)state;
    static char out[65536], err[65536];
    char names[] = "/tmp/tvsa-test-names-XXXXXX", opt[64];
    int fd = mkstemp(names);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("www.zone.test\n# comment\nnope.zone.test\nMAIL.zone.test\n", f);
    fclose(f);
    snprintf(opt, sizeof opt, "names=%s", names);
    /* The server's zone too, so loadgen checks every answer against it, not just its id. */
    char zone_opt[96];
    snprintf(zone_opt, sizeof zone_opt, "zone=%s", zone_path);
    for (size_t s = 0; s < 2; s++) {
        struct testsrv srv;
        char target[32];
        start(&srv, servers[s]);
        snprintf(target, sizeof target, "127.0.0.1:%d", srv.port);
        for (int tcp = 0; tcp < 2; tcp++) {
            const char *argv[] = {"loadgen", "--scenario", tcp ? "dns-tcp" : "dns", "--target",
                                  target, "--connections", "10", "--duration", "1",
                                  "--threads", "1", "--timeout", "1000", "--opt", opt, "--opt",
                                  zone_opt, "--quiet", NULL};
            assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 30000), 0);
            json_t *j = json_loads(out, 0, NULL);
            assert_non_null(j);
            json_t *step = json_array_get(json_object_get(j, "steps"), 0);
            json_t *req = json_object_get(step, "requests");
            json_t *rc = json_object_get(step, "rcodes"), *q = json_object_get(step, "queries");
            assert_true(json_integer_value(json_object_get(req, "completed")) > 100);
            assert_int_equal(json_integer_value(json_object_get(req, "mismatches")), 0);
            assert_int_equal(json_integer_value(json_object_get(req, "errors")), 0);
            assert_int_equal(json_integer_value(json_object_get(step, "names")), 3);
            assert_true(json_integer_value(json_object_get(rc, "NOERROR")) > 0);
            assert_true(json_integer_value(json_object_get(rc, "NXDOMAIN")) > 0);
            assert_int_equal(json_integer_value(json_object_get(rc, "other")), 0);
            assert_true(json_integer_value(json_object_get(q, "lost")) * 100 <=
                        json_integer_value(json_object_get(q, "sent")));
            json_decref(j);
        }
        stop(&srv);
    }
    const char *bad[] = {"loadgen", "--scenario", "dns", "--opt", "names=/nonexistent", NULL};
    assert_int_equal(testsrv_run(bad, out, sizeof out, err, sizeof err, 10000), 2);
    unlink(names);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_dnsq_answers, testsrv_teardown),
        cmocka_unit_test_teardown(test_truncation_falls_back_to_tcp, testsrv_teardown),
        cmocka_unit_test_teardown(test_raw_udp, testsrv_teardown),
        cmocka_unit_test_teardown(test_raw_tcp_pipelined_and_split, testsrv_teardown),
        cmocka_unit_test_teardown(test_edns_raw, testsrv_teardown),
        cmocka_unit_test_teardown(test_dnsq_tc_over_tcp_is_an_error, teardown_liar),
        cmocka_unit_test_teardown(test_tcp_half_close_gets_every_answer, testsrv_teardown),
        cmocka_unit_test_teardown(test_garbage_never_kills, testsrv_teardown),
        cmocka_unit_test_teardown(test_zone_errors_exit_2, testsrv_teardown),
        cmocka_unit_test_teardown(test_sample_zone_default, testsrv_teardown),
        cmocka_unit_test_teardown(test_dnsq_matching_and_timeout, teardown_liar),
        cmocka_unit_test_teardown(test_dig, testsrv_teardown),
        cmocka_unit_test_teardown(test_dig_sample_zone, testsrv_teardown),
        cmocka_unit_test_teardown(test_dnsperf, testsrv_teardown),
        cmocka_unit_test_teardown(test_loadgen_dns, testsrv_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
