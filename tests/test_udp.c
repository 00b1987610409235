/* Integration tests of bin/threaded-udp and bin/async-udp: exact uppercase echo of 1- to
 * 8,000-byte datagrams, counters in the stopped line, graceful stop, bad flags. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "testsrv.h"
#include "upper.h"

static const char *const servers[] = {"threaded-udp", "async-udp"};
static const size_t sizes[] = {1, 2, 3, 63, 64, 100, 511, 512, 1024, 1400, 1472, 1473, 1500,
                               2048, 4000, 4096, 6000, 7999, 8000};

static int udp_socket(int port)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Waits up to timeout_ms for one datagram. Returns its length or -1. */
static ssize_t recv_timeout(int fd, void *buf, size_t len, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    return recv(fd, buf, len, 0);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    /* Every byte value, lowercase letters included, so a wrong transform is visible. */
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 7 + seed * 13 + (i >> 3)) & 0xFF);
}

/* Sends a datagram of n bytes and checks that its exact uppercase comes back (UDP may lose
 * one on a busy machine: up to 3 tries). */
static void echo_one(int fd, size_t n, unsigned seed)
{
    static uint8_t out[9000], want[9000], in[70000];
    fill(out, n, seed);
    memcpy(want, out, n);
    upper_inplace(want, n);
    for (int attempt = 0; attempt < 3; attempt++) {
        assert_int_equal(send(fd, out, n, 0), (ssize_t)n);
        ssize_t r = recv_timeout(fd, in, sizeof in, 2000);
        if (r < 0)
            continue;
        if ((size_t)r != n)
            fail_msg("sent %zu bytes, got %zd back", n, r);
        assert_memory_equal(in, want, n);
        assert_true(upper_matches(out, in, n));
        return;
    }
    fail_msg("no reply to a %zu-byte datagram after 3 tries", n);
}

static void test_exact_echo(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof servers / sizeof servers[0]; s++) {
        struct testsrv srv;
        int status = -2;
        if (testsrv_start(&srv, servers[s], NULL) < 0)
            fail_msg("%s did not start", servers[s]);
        int fd = udp_socket(srv.port);
        assert_true(fd >= 0);
        uint64_t total = 0;
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            echo_one(fd, sizes[i], (unsigned)i);
            total += sizes[i];
        }
        /* Every size from 1 to 300, then a sweep to 8,000 in odd steps. */
        for (size_t n = 1; n <= 8000; n += n < 300 ? 1 : 97) {
            echo_one(fd, n, (unsigned)n);
            total += n;
        }
        /* Several sockets at once, interleaved: replies go to the right sender. */
        int fds[4];
        for (int k = 0; k < 4; k++) {
            fds[k] = udp_socket(srv.port);
            assert_true(fds[k] >= 0);
            char msg[32];
            int len = snprintf(msg, sizeof msg, "socket %d says hi", k);
            assert_int_equal(send(fds[k], msg, (size_t)len, 0), len);
        }
        for (int k = 0; k < 4; k++) {
            char msg[32], want[32], got[64];
            int len = snprintf(msg, sizeof msg, "socket %d says hi", k);
            memcpy(want, msg, (size_t)len);
            upper_inplace((uint8_t *)want, (size_t)len);
            ssize_t r = recv_timeout(fds[k], got, sizeof got, 2000);
            assert_int_equal(r, len);
            assert_memory_equal(got, want, (size_t)len);
            close(fds[k]);
        }
        close(fd);
        json_t *stopped = testsrv_stop(&srv, SIGTERM, 3000, &status);
        assert_int_equal(status, 0);
        assert_non_null(stopped);
        assert_string_equal(json_string_value(json_object_get(stopped, "server")), servers[s]);
        json_int_t rx = json_integer_value(json_object_get(stopped, "datagrams_received"));
        json_int_t tx = json_integer_value(json_object_get(stopped, "datagrams_sent"));
        assert_true(rx >= 4 + 300 + (json_int_t)(sizeof sizes / sizeof sizes[0]));
        assert_int_equal(rx, tx);
        assert_true(json_is_integer(json_object_get(stopped, "send_failures")));
        assert_int_equal(json_integer_value(json_object_get(stopped, "bytes_in")),
                         json_integer_value(json_object_get(stopped, "bytes_out")));
        assert_true(json_integer_value(json_object_get(stopped, "bytes_in")) >= (json_int_t)total);
        json_decref(stopped);
    }
}

/* The largest IPv4 UDP payload comes back whole. */
static void test_largest_datagram(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof servers / sizeof servers[0]; s++) {
        struct testsrv srv;
        int status;
        static uint8_t out[65507], in[70000];
        assert_int_equal(testsrv_start(&srv, servers[s], NULL), 0);
        int fd = udp_socket(srv.port);
        int big = 1 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        fill(out, sizeof out, 5);
        assert_int_equal(send(fd, out, sizeof out, 0), (ssize_t)sizeof out);
        ssize_t r = recv_timeout(fd, in, sizeof in, 2000);
        assert_int_equal(r, (ssize_t)sizeof out);
        assert_true(upper_matches(out, in, sizeof out));
        close(fd);
        json_decref(testsrv_stop(&srv, SIGINT, 3000, &status));
        assert_int_equal(status, 0);
    }
}

static void test_threads_flag(void **state)
{
    (void)state;
    struct testsrv srv;
    int status;
    const char *args[] = {"--threads", "3", "--stack-kb", "64", NULL};
    assert_int_equal(testsrv_start(&srv, "threaded-udp", args), 0);
    assert_int_equal(json_integer_value(json_object_get(srv.listening, "threads")), 3);
    /* main + 3; a sanitizer (make check) may add a thread of its own. */
    long threads = testsrv_proc_status(srv.pid, "Threads");
    if (getenv("TVSA_SANITIZED") == NULL)
        assert_int_equal(threads, 4);
    else
        assert_true(threads >= 4 && threads <= 5);
    int fd = udp_socket(srv.port);
    echo_one(fd, 10, 1);
    close(fd);
    json_t *st = testsrv_stop(&srv, SIGTERM, 3000, &status);
    assert_int_equal(status, 0);
    assert_int_equal(json_integer_value(json_object_get(st, "threads")), 3);
    json_decref(st);
}

/* --rcvbuf reaches the socket: the listening line reports what the kernel granted, and a small
 * request gets a smaller buffer than the default. */
static void test_rcvbuf_flag(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof servers / sizeof servers[0]; s++) {
        struct testsrv srv;
        int status;
        assert_int_equal(testsrv_start(&srv, servers[s], NULL), 0);
        json_int_t dflt = json_integer_value(json_object_get(srv.listening, "rcvbuf"));
        json_decref(testsrv_stop(&srv, SIGTERM, 3000, &status));
        const char *args[] = {"--rcvbuf", "8192", NULL};
        assert_int_equal(testsrv_start(&srv, servers[s], args), 0);
        json_int_t small = json_integer_value(json_object_get(srv.listening, "rcvbuf"));
        int fd = udp_socket(srv.port);
        echo_one(fd, 100, 2);
        close(fd);
        json_decref(testsrv_stop(&srv, SIGTERM, 3000, &status));
        assert_int_equal(status, 0);
        /* Linux caps the request at net.core.rmem_max, then doubles it (bookkeeping). */
        assert_true(small >= 8192 && small <= 2 * 8192);
        assert_true(dflt > small);
    }
}

static void test_bad_flags(void **state)
{
    (void)state;
    char out[4096], err[4096];
    for (size_t s = 0; s < sizeof servers / sizeof servers[0]; s++) {
        const char *bad[] = {servers[s], "--port", "99999", NULL};
        assert_int_equal(testsrv_run(bad, out, sizeof out, err, sizeof err, 5000), 2);
        assert_non_null(strstr(err, "--port"));
        const char *tiny[] = {servers[s], "--rcvbuf", "100", NULL};
        assert_int_equal(testsrv_run(tiny, out, sizeof out, err, sizeof err, 5000), 2);
        assert_non_null(strstr(err, "--rcvbuf"));
        const char *help[] = {servers[s], "--help", NULL};
        assert_int_equal(testsrv_run(help, out, sizeof out, err, sizeof err, 5000), 0);
        assert_non_null(strstr(out, "Usage"));
    }
    const char *pool[] = {"threaded-udp", "--pool", "2", NULL};
    assert_int_equal(testsrv_run(pool, out, sizeof out, err, sizeof err, 5000), 2);
    const char *nothreads[] = {"async-udp", "--threads", "2", NULL};
    assert_int_equal(testsrv_run(nothreads, out, sizeof out, err, sizeof err, 5000), 2);
}

/* The loadgen udp scenario against both servers: every reply right, counts consistent. */
static void test_loadgen_udp(void **state)
{
    (void)state;
    static char out[65536], err[65536];
    for (size_t s = 0; s < sizeof servers / sizeof servers[0]; s++) {
        struct testsrv srv;
        int status;
        char target[32], pid[16];
        assert_int_equal(testsrv_start(&srv, servers[s], NULL), 0);
        snprintf(target, sizeof target, "127.0.0.1:%d", srv.port);
        snprintf(pid, sizeof pid, "%d", (int)srv.pid);
        const char *argv[] = {"loadgen", "--scenario", "udp", "--target", target,
                              "--connections", "10", "--duration", "1", "--size", "700",
                              "--threads", "1", "--timeout", "1000", "--server-pid", pid,
                              "--quiet", NULL};
        assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 30000), 0);
        json_t *j = json_loads(out, 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "scenario")), "udp");
        json_t *step = json_array_get(json_object_get(j, "steps"), 0);
        json_t *req = json_object_get(step, "requests"), *dg = json_object_get(step, "datagrams");
        json_int_t completed = json_integer_value(json_object_get(req, "completed"));
        json_int_t sent = json_integer_value(json_object_get(dg, "sent"));
        json_int_t received = json_integer_value(json_object_get(dg, "received"));
        assert_true(completed > 100);
        assert_int_equal(json_integer_value(json_object_get(req, "mismatches")), 0);
        assert_int_equal(json_integer_value(json_object_get(dg, "mismatched")), 0);
        assert_true(sent >= received && received >= completed);
        assert_true(json_integer_value(json_object_get(dg, "lost")) * 100 <= sent);
        json_decref(j);
        json_t *st = testsrv_stop(&srv, SIGTERM, 3000, &status);
        assert_int_equal(status, 0);
        assert_true(json_integer_value(json_object_get(st, "datagrams_received")) >= sent);
        json_decref(st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_exact_echo, testsrv_teardown),
        cmocka_unit_test_teardown(test_largest_datagram, testsrv_teardown),
        cmocka_unit_test_teardown(test_threads_flag, testsrv_teardown),
        cmocka_unit_test_teardown(test_rcvbuf_flag, testsrv_teardown),
        cmocka_unit_test_teardown(test_bad_flags, testsrv_teardown),
        cmocka_unit_test_teardown(test_loadgen_udp, testsrv_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
