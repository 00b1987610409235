/* Integration tests of the echo servers in both models: real processes on port 0. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm.h"
#include "mono.h"
#include "testsrv.h"
#include "upper.h"

struct variant {
    const char *bin;
    const char *args[4];
};

/* scripts/check.sh sets TVSA_SANITIZED to asan or tsan: TSan makes each thread's start and exit
 * cost milliseconds and rewrites thread stack sizes, so the tests scale down under it. */
static int under_tsan(void)
{
    const char *s = getenv("TVSA_SANITIZED");
    return s && strcmp(s, "tsan") == 0;
}

/* Under any sanitizer the allocator keeps freed memory in quarantine, so RSS is no measure. */
static int sanitized(void)
{
    const char *s = getenv("TVSA_SANITIZED");
    return s && *s;
}

static const struct variant async_bev = {"async-echo", {NULL}};
static const struct variant async_raw = {"async-echo", {"--api", "event", NULL}};
static const struct variant threaded = {"threaded-echo", {NULL}};
static const struct variant threaded_pool = {"threaded-echo", {"--pool", "8", NULL}};

/* Starts the variant with extra args appended. */
static void start(struct testsrv *s, const struct variant *v, const char *const *extra)
{
    const char *args[16];
    size_t n = 0;
    for (size_t i = 0; v->args[i]; i++)
        args[n++] = v->args[i];
    for (size_t i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (testsrv_start(s, v->bin, args) < 0)
        fail_msg("could not start %s", v->bin);
}

/* Stops the server, checks it exited 0 with a stopped line, and returns that line. */
static json_t *stop_ok(struct testsrv *s)
{
    int status;
    json_t *stopped = testsrv_stop(s, SIGTERM, 3000, &status);
    assert_int_equal(status, 0);
    assert_non_null(stopped);
    return stopped;
}

static void expect_echo(int fd, const void *data, size_t len)
{
    uint8_t *reply = malloc(len);
    assert_non_null(reply);
    assert_int_equal(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
    assert_int_equal(testsrv_read_full(fd, reply, len, 5000), len);
    if (!upper_matches(data, reply, len))
        fail_msg("reply is not the uppercase of what was sent (%zu bytes)", len);
    free(reply);
}

/* Expects EOF (or a reset) on fd within timeout_ms. */
static void expect_closed(int fd, int timeout_ms)
{
    char b;
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, timeout_ms), 1);
    assert_true(recv(fd, &b, 1, 0) <= 0);
}

/* Expects no data on fd for ms milliseconds. */
static void expect_silent(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, ms), 0);
}

struct writer {
    int fd;
    const uint8_t *data;
    size_t len;
    int ok;
};

static void *write_all_then_half_close(void *arg)
{
    struct writer *w = arg;
    size_t off = 0;
    while (off < w->len) {
        ssize_t n = send(w->fd, w->data + off, w->len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return NULL;
        off += (size_t)n;
    }
    shutdown(w->fd, SHUT_WR);
    w->ok = 1;
    return NULL;
}

static void test_echo_short_binary_and_1mib(void **state)
{
    const struct variant *v = *state;
    struct testsrv s;
    start(&s, v, NULL);
    int fd = testsrv_connect(s.port);
    assert_true(fd >= 0);

    expect_echo(fd, "hello, World!\n", 14);
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    expect_echo(fd, all, sizeof all);

    /* 1 MiB written by one thread while this one reads: neither side may wait for the other. */
    size_t len = 1 << 20;
    uint8_t *data = malloc(len), *reply = malloc(len);
    assert_non_null(data);
    assert_non_null(reply);
    uint32_t x = 12345;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    struct writer w = {fd, data, len, 0};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, write_all_then_half_close, &w), 0);
    size_t got = testsrv_read_full(fd, reply, len, 10000);
    pthread_join(tid, NULL);
    assert_true(w.ok);
    assert_int_equal(got, len);
    assert_true(upper_matches(data, reply, len));
    /* After the half-close and the last reply, the server closes. */
    expect_closed(fd, 3000);
    close(fd);
    free(data);
    free(reply);

    json_t *stopped = stop_ok(&s);
    assert_int_equal(json_integer_value(json_object_get(stopped, "bytes_in")), 14 + 256 + len);
    assert_int_equal(json_integer_value(json_object_get(stopped, "bytes_out")), 14 + 256 + len);
    json_decref(stopped);
}

static void test_300_concurrent_clients(void **state)
{
    const struct variant *v = *state;
    enum { N = 300 };
    int fds[N];
    char msg[N][32];
    struct testsrv s;
    start(&s, v, NULL);
    for (int i = 0; i < N; i++) {
        fds[i] = testsrv_connect(s.port);
        assert_true(fds[i] >= 0);
    }
    /* Every client sends before any reads: all 300 must be served at the same time. */
    for (int i = 0; i < N; i++) {
        int len = snprintf(msg[i], sizeof msg[i], "client %d says hi", i);
        assert_int_equal(send(fds[i], msg[i], (size_t)len, 0), len);
    }
    for (int i = 0; i < N; i++) {
        char reply[32];
        size_t len = strlen(msg[i]);
        assert_int_equal(testsrv_read_full(fds[i], reply, len, 5000), len);
        assert_true(upper_matches((uint8_t *)msg[i], (uint8_t *)reply, len));
    }
    for (int i = 0; i < N; i++)
        close(fds[i]);
    json_t *stopped = stop_ok(&s);
    assert_int_equal(json_integer_value(json_object_get(stopped, "connections_accepted")), N);
    assert_int_equal(json_integer_value(json_object_get(stopped, "peak_concurrent")), N);
    json_decref(stopped);
}

/* fds come back to their baseline once clients leave: no error path leaks one. */
static void test_no_fd_left_after_clients_leave(void **state)
{
    const struct variant *v = *state;
    struct testsrv s;
    start(&s, v, NULL);
    int baseline = testsrv_fd_count(s.pid);
    assert_true(baseline > 0);
    int fds[20];
    for (int i = 0; i < 20; i++) {
        fds[i] = testsrv_connect(s.port);
        assert_true(fds[i] >= 0);
        expect_echo(fds[i], "x", 1);
    }
    /* Half of them leave with a reset instead of a FIN. */
    for (int i = 0; i < 20; i++) {
        if (i % 2) {
            struct linger lg = {1, 0};
            setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fds[i]);
    }
    int now = -1;
    for (int tries = 0; tries < 200; tries++) {
        now = testsrv_fd_count(s.pid);
        if (now == baseline)
            break;
        usleep(10000);
    }
    assert_int_equal(now, baseline);
    json_decref(stop_ok(&s));
}

/* A client that sends but never reads must not grow the server's memory without bound. */
static void test_write_backpressure(void **state)
{
    const struct variant *v = *state;
    struct testsrv s;
    start(&s, v, NULL);
    int fd = testsrv_connect(s.port);
    assert_true(fd >= 0);
    expect_echo(fd, "warm up", 7);
    long rss_before = testsrv_proc_status(s.pid, "VmRSS");

    static uint8_t chunk[65536];
    memset(chunk, 'a', sizeof chunk);
    size_t sent = 0;
    uint64_t end = mono_now_us() + 1500000;
    while (mono_now_us() < end) {
        ssize_t n = send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else
            usleep(5000);
    }
    long rss_after = testsrv_proc_status(s.pid, "VmRSS");
    /* Kernel buffers on both sides hold a few MiB; without back-pressure a loopback client
     * pushes hundreds of MiB in 1.5 s. */
    if (sent > (64u << 20))
        fail_msg("client could push %zu bytes without reading", sent);
    if (!sanitized() && rss_after - rss_before > 8 * 1024)
        fail_msg("server RSS grew by %ld KiB", rss_after - rss_before);

    /* Reading again drains everything, and the connection still works. */
    uint8_t *sink = malloc(sent);
    assert_non_null(sink);
    assert_int_equal(testsrv_read_full(fd, sink, sent, 10000), sent);
    for (size_t i = 0; i < sent; i++)
        if (sink[i] != 'A')
            fail_msg("byte %zu is %d", i, sink[i]);
    free(sink);
    expect_echo(fd, "still here", 10);
    close(fd);
    json_decref(stop_ok(&s));
}

/* SIGTERM with clients connected — idle ones and one blocked on a full socket — exits 0 with a
 * stopped line, every handler accounted for. */
static void test_sigterm_with_clients(void **state)
{
    const struct variant *v = *state;
    enum { MAX_CLIENTS = 2000 };
    static int fds[MAX_CLIENTS];
    const int N = under_tsan() ? 200 : MAX_CLIENTS;
    struct testsrv s;
    start(&s, v, NULL);
    for (int i = 0; i < N; i++) {
        fds[i] = testsrv_connect(s.port);
        assert_true(fds[i] >= 0);
    }
    expect_echo(fds[0], "ping", 4);
    /* fds[1] fills both directions and never reads: the server's side is stuck writing. */
    static uint8_t chunk[65536];
    for (int i = 0; i < 200; i++)
        if (send(fds[1], chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL) <= 0)
            break;
    usleep(100000);

    uint64_t t0 = mono_now_us();
    json_t *stopped = stop_ok(&s);
    print_message("  stop with %d clients took %.0f ms\n", N, (mono_now_us() - t0) / 1000.0);
    json_t *unfinished = json_object_get(stopped, "handlers_unfinished");
    if (unfinished)
        assert_int_equal(json_integer_value(unfinished), 0);
    assert_true(json_integer_value(json_object_get(stopped, "connections_accepted")) >= 2);
    /* Every client sees its connection closed. */
    expect_closed(fds[0], 1000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    json_decref(stopped);
}

static void test_max_conns(void **state)
{
    const struct variant *v = *state;
    const char *extra[] = {"--max-conns", "2", NULL};
    struct testsrv s;
    start(&s, v, extra);
    int a = testsrv_connect(s.port), b = testsrv_connect(s.port);
    expect_echo(a, "a", 1);
    expect_echo(b, "b", 1);
    int c = testsrv_connect(s.port);
    assert_true(c >= 0);
    expect_closed(c, 2000); /* accepted and closed at once */
    close(c);
    close(a);
    usleep(100000);
    int d = testsrv_connect(s.port);
    expect_echo(d, "d", 1); /* a slot is free again */
    close(b);
    close(d);
    json_t *stopped = stop_ok(&s);
    assert_int_equal(json_integer_value(json_object_get(stopped, "connections_refused")), 1);
    json_decref(stopped);
}

static void test_idle_timeout(void **state)
{
    const struct variant *v = *state;
    const char *extra[] = {"--idle-timeout", "1", NULL};
    struct testsrv s;
    start(&s, v, extra);
    int fd = testsrv_connect(s.port);
    expect_echo(fd, "hi", 2);
    expect_closed(fd, 4000);
    close(fd);
    json_decref(stop_ok(&s));
}

/* A client that sends and never reads is idle too: its data waits in the server's output, no
 * read happens, and --idle-timeout must still close it (the server's fd count comes back). */
static void test_idle_timeout_write_blocked(void **state)
{
    const struct variant *v = *state;
    const char *extra[] = {"--idle-timeout", "1", NULL};
    struct testsrv s;
    start(&s, v, extra);
    int baseline = testsrv_fd_count(s.pid);
    int fd = testsrv_connect(s.port);
    assert_true(fd >= 0);
    static uint8_t chunk[65536];
    memset(chunk, 'w', sizeof chunk);
    for (int i = 0; i < 400; i++)
        if (send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL) <= 0)
            break;
    int now = -1;
    for (int tries = 0; tries < 60 && now != baseline; tries++) {
        usleep(100000);
        now = testsrv_fd_count(s.pid);
    }
    assert_int_equal(now, baseline);
    close(fd);
    json_decref(stop_ok(&s));
}

/* The listening line means "ready": a pool whose workers cannot start must not print it. */
static void test_no_listening_line_when_pool_fails(void **state)
{
    (void)state;
    const char *san = getenv("TVSA_SANITIZED");
    if (san && *san)
        skip(); /* sanitizers cannot run under a small address-space limit */
    char cmd[600], out[4096], err[4096];
    snprintf(cmd, sizeof cmd, "ulimit -v 300000; exec %s/threaded-echo --pool 200 --port 0",
             testsrv_bin_dir());
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 10000), 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "starting worker"));
}

/* --pool 2: the third client is connected but unserved until a worker frees up. */
static void test_pool_third_client_waits(void **state)
{
    (void)state;
    const char *args[] = {"--pool", "2", NULL};
    struct testsrv s;
    assert_int_equal(testsrv_start(&s, "threaded-echo", args), 0);
    int a = testsrv_connect(s.port), b = testsrv_connect(s.port), c = testsrv_connect(s.port);
    expect_echo(a, "a", 1);
    expect_echo(b, "b", 1);
    assert_int_equal(send(c, "waiting", 7, 0), 7);
    expect_silent(c, 500);
    close(a);
    char reply[7];
    assert_int_equal(testsrv_read_full(c, reply, 7, 3000), 7);
    assert_memory_equal(reply, "WAITING", 7);
    close(b);
    close(c);
    json_decref(stop_ok(&s));
}

/* Virtual size added per idle connection: each thread's stack is mapped, touched or not. */
static long vsz_kib_per_conn(const char *const *args, int n, long *stack_bytes)
{
    struct testsrv s;
    int fds[64];
    assert_int_equal(testsrv_start(&s, "threaded-echo", args), 0);
    long before = testsrv_proc_status(s.pid, "VmSize");
    for (int i = 0; i < n; i++) {
        fds[i] = testsrv_connect(s.port);
        expect_echo(fds[i], "s", 1); /* its thread exists once it answered */
    }
    long after = testsrv_proc_status(s.pid, "VmSize");
    for (int i = 0; i < n; i++)
        close(fds[i]);
    json_t *stopped = stop_ok(&s);
    *stack_bytes = (long)json_integer_value(json_object_get(stopped, "thread_stack_bytes"));
    json_decref(stopped);
    return (after - before) / n;
}

static void test_stack_kb_sets_the_stack(void **state)
{
    (void)state;
    if (under_tsan())
        skip(); /* TSan enlarges every thread stack to fit its own shadow state */
    const char *small[] = {"--stack-kb", "64", NULL};
    long stack_small, stack_default;
    long per_conn_small = vsz_kib_per_conn(small, 32, &stack_small);
    long per_conn_default = vsz_kib_per_conn(NULL, 32, &stack_default);
    print_message("  VmSize per connection: %ld KiB with --stack-kb 64, %ld KiB by default\n",
                  per_conn_small, per_conn_default);
    /* Measured inside a connection thread with pthread_getattr_np. */
    assert_int_equal(stack_small, 64 * 1024);
    assert_true(stack_default >= 8 * 1024 * 1024 - 65536);
    /* And visible in the mappings: the stack (plus its guard page) is what each thread adds. */
    assert_true(per_conn_small < 1024);
    assert_true(per_conn_default >= 8192);
}

static void test_bad_flags_exit_2(void **state)
{
    (void)state;
    static const char *const cases[][4] = {
        {"threaded-echo", "--pool", "-1", NULL},
        {"threaded-echo", "--stack-kb", "1", NULL},
        {"threaded-echo", "--api", "event", NULL},
        {"threaded-echo", "--bogus", NULL, NULL},
        {"async-echo", "--api", "fibers", NULL},
        {"async-echo", "--port", "70000", NULL},
        {"async-echo", "--pool", "50", NULL},
        {"async-echo", "extra", NULL, NULL},
    };
    char out[4096], err[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = testsrv_run(cases[i], out, sizeof out, err, sizeof err, 5000);
        if (rc != 2 || strstr(err, "--help") == NULL || out[0] != '\0')
            fail_msg("%s %s: exit %d, stderr '%s', stdout '%s'", cases[i][0], cases[i][1], rc,
                     err, out);
    }
    const char *help[] = {"async-echo", "--help", NULL};
    assert_int_equal(testsrv_run(help, out, sizeof out, err, sizeof err, 5000), 0);
    assert_non_null(strstr(out, "--api"));
    /* A port that is taken: a clear message and a non-zero exit, no listening line. */
    struct testsrv s;
    assert_int_equal(testsrv_start(&s, "async-echo", NULL), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", s.port);
    const char *taken[] = {"threaded-echo", "--port", port, NULL};
    assert_int_equal(testsrv_run(taken, out, sizeof out, err, sizeof err, 5000), 1);
    assert_non_null(strstr(err, "bind"));
    assert_string_equal(out, "");
    json_decref(stop_ok(&s));
}

/* ---- --api coro (issue 15): one coroutine per connection -------------------------------- */
/* The shared cases above run for it too (registered in CORO_CASES below); these check what only
 * the coroutine model has: its counters, its stacks, many coroutines parked at once. */

static const struct variant async_coro = {"async-echo", {"--api", "coro", NULL}};

static json_int_t stopped_int(json_t *stopped, const char *key)
{
    json_t *v = json_object_get(stopped, key);
    if (!json_is_integer(v))
        fail_msg("stopped line has no integer '%s'", key);
    return json_integer_value(v);
}

/* Connects n clients and makes each one echo once, so that each coroutine has run and is parked
 * in coio_read. The clients all send first, then all read: n coroutines are live at once. */
static void coro_connect_and_echo(int port, int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = testsrv_connect(port);
        assert_true(fds[i] >= 0);
        char msg[24];
        int len = snprintf(msg, sizeof msg, "coro %d", i);
        assert_int_equal(send(fds[i], msg, (size_t)len, 0), len);
    }
    for (int i = 0; i < n; i++) {
        char msg[24], reply[24];
        size_t len = (size_t)snprintf(msg, sizeof msg, "coro %d", i);
        assert_int_equal(testsrv_read_full(fds[i], reply, len, 10000), len);
        assert_true(upper_matches((uint8_t *)msg, (uint8_t *)reply, len));
    }
}

static void test_coro_2000_concurrent_clients(void **state)
{
    (void)state;
    enum { MAX_CLIENTS = 2000 };
    static int fds[MAX_CLIENTS];
    /* Under TSan (make check) 200, as in the tests above. TSan gives every coroutine a fiber
     * of its own (__tsan_create_fiber: ~1 MiB of state, memset and faulted in, 5-7 ms each
     * here; perf, 2026-12-03), and libevent's listener accepts the whole backlog in one
     * callback before the loop first switches into any coroutine: with 2,000 clients
     * connection 0 got its echo after 12.5 s, past the 10 s read timeout below (500 clients:
     * 2.6 s), and every other one at once. The plain build creates a coroutine in microseconds. */
    const int N = under_tsan() ? 200 : MAX_CLIENTS;
    struct testsrv s;
    start(&s, &async_coro, NULL);
    json_t *api = json_object_get(s.listening, "api");
    assert_string_equal(json_string_value(api), "coro");
    assert_int_equal(json_integer_value(json_object_get(s.listening, "coro_stack_kb")), 32);
    int baseline = testsrv_fd_count(s.pid);
    coro_connect_and_echo(s.port, fds, N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* Every coroutine sees its EOF and finishes (its socket closed): none is left to discard. */
    int now = -1;
    for (int tries = 0; tries < 500 && now != baseline; tries++) {
        usleep(10000);
        now = testsrv_fd_count(s.pid);
    }
    assert_int_equal(now, baseline);
    json_t *stopped = stop_ok(&s);
    assert_int_equal(stopped_int(stopped, "peak_concurrent"), N);
    assert_int_equal(stopped_int(stopped, "coroutines_started"), N);
    assert_int_equal(stopped_int(stopped, "coroutines_finished"), N);
    assert_int_equal(stopped_int(stopped, "coroutines_discarded"), 0);
    /* In and out at the start (it reads the message then) and at the EOF, at least. */
    assert_true(stopped_int(stopped, "coro_switches") >= 4 * N);
    json_decref(stopped);
}

/* SIGTERM with 2,000 coroutines parked in a read, and one parked in a write to a client that
 * never reads: a clean exit, every coroutine discarded, every client sees its end. */
static void test_coro_sigterm_2000_parked(void **state)
{
    (void)state;
    enum { MAX_CLIENTS = 2000 };
    static int fds[MAX_CLIENTS + 1];
    const int N = under_tsan() ? 200 : MAX_CLIENTS;
    struct testsrv s;
    start(&s, &async_coro, NULL);
    coro_connect_and_echo(s.port, fds, N);
    int blocked = testsrv_connect(s.port);
    assert_true(blocked >= 0);
    static uint8_t chunk[65536];
    for (int i = 0; i < 200; i++)
        if (send(blocked, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL) <= 0)
            break;
    usleep(100000);

    uint64_t t0 = mono_now_us();
    json_t *stopped = stop_ok(&s);
    print_message("  stop with %d parked coroutines took %.0f ms\n", N + 1,
                  (mono_now_us() - t0) / 1000.0);
    assert_int_equal(stopped_int(stopped, "coroutines_started"), N + 1);
    assert_int_equal(stopped_int(stopped, "coroutines_discarded"), N + 1);
    assert_int_equal(stopped_int(stopped, "coroutines_finished"), 0);
    for (int i = 0; i < N; i++) {
        expect_closed(fds[i], 2000);
        close(fds[i]);
    }
    close(blocked);
    json_decref(stopped);
}

/* Address space per connection is the coroutine's stack plus its guard page, whatever it
 * touches; resident memory is only the pages it touched plus the connection's record. */
static void coro_per_conn_kib(const char *stack_kb, long *vsz, long *rss)
{
    enum { N = 200 };
    int fds[N];
    const char *extra[] = {"--coro-stack-kb", stack_kb, NULL};
    struct testsrv s;
    start(&s, &async_coro, extra);
    assert_int_equal(json_integer_value(json_object_get(s.listening, "coro_stack_kb")),
                     atol(stack_kb));
    long vsz0 = testsrv_proc_status(s.pid, "VmSize"), rss0 = testsrv_proc_status(s.pid, "VmRSS");
    coro_connect_and_echo(s.port, fds, N);
    *vsz = (testsrv_proc_status(s.pid, "VmSize") - vsz0) / N;
    *rss = (testsrv_proc_status(s.pid, "VmRSS") - rss0) / N;
    for (int i = 0; i < N; i++)
        close(fds[i]);
    json_decref(stop_ok(&s));
}

static void test_coro_stack_kb_sets_the_stack(void **state)
{
    (void)state;
    if (under_tsan())
        skip(); /* TSan maps ~1 MiB of its own state per coroutine (one fiber each) */
    long vsz_small, rss_small, vsz_big, rss_big;
    coro_per_conn_kib("32", &vsz_small, &rss_small);
    coro_per_conn_kib("256", &vsz_big, &rss_big);
    print_message("  per connection: VmSize %ld KiB, VmRSS %ld KiB (32 KiB stacks); "
                  "VmSize %ld KiB, VmRSS %ld KiB (256 KiB stacks)\n",
                  vsz_small, rss_small, vsz_big, rss_big);
    assert_true(vsz_small >= 32 && vsz_small < 64);
    assert_true(vsz_big >= 256 && vsz_big < 300);
    if (!sanitized()) {
        /* Two or three touched stack pages and the record, however big the stack. */
        assert_true(rss_small <= 16);
        assert_true(rss_big <= 16);
    }
}

static void test_coro_bad_flags_exit_2(void **state)
{
    (void)state;
    static const char *const cases[][6] = {
        {"async-echo", "--api", "coro", "--coro-stack-kb", "8", NULL},
        {"async-echo", "--coro-stack-kb", "x", NULL},
        {"threaded-echo", "--coro-stack-kb", "64", NULL},
    };
    char out[4096], err[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = testsrv_run(cases[i], out, sizeof out, err, sizeof err, 5000);
        if (rc != 2 || strstr(err, "--help") == NULL || out[0] != '\0')
            fail_msg("%s %s %s: exit %d, stderr '%s'", cases[i][0], cases[i][1], cases[i][2],
                     rc, err);
    }
}

#define CORO_CASE(fn) \
    cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&async_coro)
#define CORO_CASES                                                           \
    CORO_CASE(test_echo_short_binary_and_1mib), CORO_CASE(test_300_concurrent_clients), \
        CORO_CASE(test_no_fd_left_after_clients_leave), CORO_CASE(test_write_backpressure), \
        CORO_CASE(test_sigterm_with_clients), CORO_CASE(test_max_conns),                   \
        CORO_CASE(test_idle_timeout), CORO_CASE(test_idle_timeout_write_blocked),          \
        cmocka_unit_test_teardown(test_coro_2000_concurrent_clients, testsrv_teardown),     \
        cmocka_unit_test_teardown(test_coro_sigterm_2000_parked, testsrv_teardown),         \
        cmocka_unit_test_teardown(test_coro_stack_kb_sets_the_stack, testsrv_teardown),     \
        cmocka_unit_test_teardown(test_coro_bad_flags_exit_2, testsrv_teardown)

/* ---- end of --api coro ------------------------------------------------------------------ */

#define EACH_MODEL(fn)                                                   \
    cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&async_bev),                  \
        cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&async_raw),              \
        cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&threaded)

int main(void)
{
    const struct CMUnitTest tests[] = {
        EACH_MODEL(test_echo_short_binary_and_1mib),
        cmocka_unit_test_prestate_setup_teardown(test_echo_short_binary_and_1mib, NULL, testsrv_teardown,
                                                 (void *)&threaded_pool),
        EACH_MODEL(test_300_concurrent_clients),
        EACH_MODEL(test_no_fd_left_after_clients_leave),
        EACH_MODEL(test_write_backpressure),
        EACH_MODEL(test_sigterm_with_clients),
        cmocka_unit_test_prestate_setup_teardown(test_sigterm_with_clients, NULL, testsrv_teardown,
                                                 (void *)&threaded_pool),
        EACH_MODEL(test_max_conns),
        EACH_MODEL(test_idle_timeout),
        EACH_MODEL(test_idle_timeout_write_blocked),
        cmocka_unit_test_teardown(test_no_listening_line_when_pool_fails, testsrv_teardown),
        cmocka_unit_test_teardown(test_pool_third_client_waits, testsrv_teardown),
        cmocka_unit_test_teardown(test_stack_kb_sets_the_stack, testsrv_teardown),
        cmocka_unit_test_teardown(test_bad_flags_exit_2, testsrv_teardown),
        CORO_CASES,
    };
    return cmocka_run_group_tests(tests, NULL, testsrv_teardown);
}
