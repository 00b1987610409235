/* Integration tests of --procs N (common/procs.c, every TCP and UDP server of both models) and
 * async-echo --loops N: every worker listens, SIGTERM stops them all, the summed stopped
 * counters equal the workers' own, a killed worker is reported, SO_REUSEPORT spreads
 * connections over the workers. */
#include "cm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "procs.h"
#include "testsrv.h"

static json_int_t get_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    assert_non_null(v);
    return json_integer_value(v);
}

/* One uppercase round trip on a fresh connection; the fd is returned still open. */
static int echo_conn(int port)
{
    int fd = testsrv_connect(port);
    char reply[6];
    assert_true(fd >= 0);
    assert_int_equal(send(fd, "hello\n", 6, MSG_NOSIGNAL), 6);
    assert_int_equal(testsrv_read_full(fd, reply, 6, 5000), 6);
    assert_memory_equal(reply, "HELLO\n", 6);
    return fd;
}

/* Starts bin/name --procs n and checks the one listening line: procs, n live worker pids
 * that are not the parent. */
static void start_procs(struct testsrv *s, const char *name, const char *n, const char *more)
{
    const char *args[] = {"--procs", n, more, NULL};
    assert_int_equal(testsrv_start(s, name, args), 0);
    json_t *l = s->listening;
    assert_int_equal(get_int(l, "pid"), s->pid);
    assert_int_equal(get_int(l, "procs"), atoi(n));
    json_t *pids = json_object_get(l, "worker_pids");
    assert_int_equal(json_array_size(pids), (size_t)atoi(n));
    for (size_t i = 0; i < json_array_size(pids); i++) {
        pid_t p = (pid_t)json_integer_value(json_array_get(pids, i));
        assert_true(p > 0 && p != s->pid);
        assert_int_equal(kill(p, 0), 0);
    }
}

/* 1 once pid has exited (gone, or a zombie its parent has not reaped yet). */
static int exited(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p == NULL || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X';
}

static pid_t worker_pid(const struct testsrv *s, size_t i)
{
    return (pid_t)json_integer_value(json_array_get(json_object_get(s->listening, "worker_pids"), i));
}

/* Each worker's stopped object sums to the parent's, key by key, for these counters. */
static void expect_sums(json_t *stopped, const char *const *keys)
{
    json_t *ws = json_object_get(stopped, "workers");
    assert_true(json_is_array(ws));
    for (const char *const *k = keys; *k; k++) {
        json_int_t sum = 0;
        for (size_t i = 0; i < json_array_size(ws); i++)
            sum += get_int(json_array_get(ws, i), *k);
        assert_int_equal(get_int(stopped, *k), sum);
    }
}

/* Every worker's stopped object has key > 0. */
static void expect_each_got_some(json_t *stopped, const char *key)
{
    json_t *ws = json_object_get(stopped, "workers");
    assert_true(json_array_size(ws) > 1);
    for (size_t i = 0; i < json_array_size(ws); i++) {
        json_int_t n = get_int(json_array_get(ws, i), key);
        print_message("  worker %zu: %lld %s\n", i, (long long)n, key);
        assert_true(n > 0);
    }
}

/* SIGTERM: every worker and the parent end within 1 s, exit 0; the stopped line. */
static json_t *stop_clean(struct testsrv *s)
{
    int status;
    json_t *st = testsrv_stop(s, SIGTERM, 1000, &status);
    assert_int_equal(status, 0);
    assert_non_null(st);
    assert_int_equal(get_int(st, "workers_failed"), 0);
    return st;
}

/* 200 connections reach every worker (SO_REUSEPORT spreads them by hash); the parent's
 * counters are the workers' sums; SIGTERM ends every worker within 1 s. */
static void spread_and_sum(const char *name)
{
    enum { N = 200, PROCS = 3 };
    static int fds[N];
    static const char *const keys[] = {"connections_accepted", "bytes_in", "bytes_out",
                                       "connections_refused", NULL};
    struct testsrv s;
    start_procs(&s, name, "3", NULL);
    pid_t pids[PROCS];
    for (size_t i = 0; i < PROCS; i++)
        pids[i] = worker_pid(&s, i);
    for (int i = 0; i < N; i++)
        fds[i] = echo_conn(s.port);
    for (int i = 0; i < N; i++)
        close(fds[i]);

    json_t *st = stop_clean(&s);
    for (size_t i = 0; i < PROCS; i++)
        assert_true(kill(pids[i], 0) < 0 && errno == ESRCH);
    assert_int_equal(get_int(st, "procs"), PROCS);
    assert_int_equal(get_int(st, "connections_accepted"), N);
    assert_int_equal(get_int(st, "bytes_in"), N * 6);
    expect_sums(st, keys);
    expect_each_got_some(st, "connections_accepted");
    json_t *ws = json_object_get(st, "workers");
    assert_int_equal(json_array_size(ws), PROCS);
    for (size_t i = 0; i < PROCS; i++) {
        json_t *w = json_array_get(ws, i);
        assert_int_equal(get_int(w, "pid"), pids[i]);
        assert_string_equal(json_string_value(json_object_get(w, "exit")), "exited 0");
    }
    json_decref(st);
}

static void test_spread(void **state)
{
    spread_and_sum(*state);
}

static void test_spread_threaded_dns_tcp(void **state)
{
    (void)state;
    /* Not an echo: only the spread of connections and the sums are checked. */
    enum { N = 200 };
    static int fds[N];
    static const char *const keys[] = {"connections_accepted", NULL};
    struct testsrv s;
    start_procs(&s, "threaded-dns", "2", NULL);
    for (int i = 0; i < N; i++)
        assert_true((fds[i] = testsrv_connect(s.port)) >= 0);
    /* Every connection accepted before the stop: a query answered on each would need dns
     * framing here; the close makes the workers count it at once. */
    usleep(200000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    json_t *st = stop_clean(&s);
    expect_sums(st, keys);
    expect_each_got_some(st, "connections_accepted");
    json_decref(st);
}

/* UDP: datagrams from many source ports reach both workers; the sums match. */
static void udp_spread(const char *name)
{
    enum { N = 200 };
    static const char *const keys[] = {"datagrams_received", "datagrams_sent", "bytes_in", NULL};
    struct testsrv s;
    start_procs(&s, name, "2", NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int answered = 0;
    for (int i = 0; i < N; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        char reply[4];
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(send(fd, "abc", 3, 0), 3);
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) == 1 && recv(fd, reply, sizeof reply, 0) == 3 &&
            memcmp(reply, "ABC", 3) == 0)
            answered++;
        close(fd);
    }
    assert_true(answered >= N - 5); /* UDP on a busy machine may lose one */
    json_t *st = stop_clean(&s);
    expect_sums(st, keys);
    assert_true(get_int(st, "datagrams_received") >= answered);
    expect_each_got_some(st, "datagrams_received");
    json_decref(st);
}

static void test_udp(void **state)
{
    udp_spread(*state);
}

/* A worker killed by SIGKILL: the others go on serving, the stopped line reports it, and the
 * parent exits 1. */
static void test_killed_worker_reported(void **state)
{
    (void)state;
    struct testsrv s;
    /* The server's stderr goes to a file (the child inherits fd 2), to read the report. */
    char path[] = "/tmp/tvsa-procs-stderr-XXXXXX";
    int errfd = mkstemp(path), saved = dup(2);
    assert_true(errfd >= 0 && saved >= 0);
    unlink(path);
    dup2(errfd, 2);
    start_procs(&s, "async-echo", "2", NULL);
    dup2(saved, 2);
    close(saved);
    pid_t victim = worker_pid(&s, 0);
    assert_int_equal(kill(victim, SIGKILL), 0);
    for (int i = 0; i < 500 && !exited(victim); i++)
        usleep(10000);
    assert_true(exited(victim));
    /* Served by the survivor: the kernel drops the dead listener from the reuseport group. */
    for (int i = 0; i < 20; i++)
        close(echo_conn(s.port));
    int status;
    json_t *st = testsrv_stop(&s, SIGTERM, 1000, &status);
    assert_int_equal(status, 1);
    assert_non_null(st);
    assert_int_equal(get_int(st, "workers_failed"), 1);
    json_t *w0 = json_array_get(json_object_get(st, "workers"), 0);
    assert_int_equal(get_int(w0, "pid"), victim);
    assert_non_null(strstr(json_string_value(json_object_get(w0, "exit")), "signal 9"));
    assert_null(json_object_get(w0, "connections_accepted"));
    assert_int_equal(get_int(st, "connections_accepted"), 20);
    json_decref(st);
    char err[4096], want[96];
    ssize_t n = pread(errfd, err, sizeof err - 1, 0);
    close(errfd);
    assert_true(n > 0);
    err[n] = '\0';
    snprintf(want, sizeof want, "async-echo: worker 0 (pid %d) killed by signal 9", (int)victim);
    assert_non_null(strstr(err, want));
}

/* Every worker gone: the parent does not hang, it prints its stopped line and exits 1. */
static void test_all_workers_killed(void **state)
{
    (void)state;
    struct testsrv s;
    char line[8192];
    start_procs(&s, "threaded-udp", "2", NULL);
    kill(worker_pid(&s, 0), SIGKILL);
    kill(worker_pid(&s, 1), SIGKILL);
    int n = testsrv_read_line(s.out_fd, line, sizeof line, 5000);
    assert_true(n > 0);
    json_t *st = json_loads(line, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(st, "event")), "stopped");
    assert_int_equal(get_int(st, "workers_failed"), 2);
    json_decref(st);
    int status;
    json_decref(testsrv_stop(&s, SIGTERM, 2000, &status));
    assert_int_equal(status, 1);
}

/* --loops 2: two event loops (threads) in one process, each with its own listener. */
static void test_async_loops(void **state)
{
    (void)state;
    enum { N = 100 };
    static int fds[N];
    const char *args[] = {"--loops", "2", NULL};
    struct testsrv s;
    assert_int_equal(testsrv_start(&s, "async-echo", args), 0);
    assert_int_equal(get_int(s.listening, "loops"), 2);
    assert_int_equal(testsrv_proc_status(s.pid, "Threads"), 2);
    for (int i = 0; i < N; i++)
        fds[i] = echo_conn(s.port);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    int status;
    json_t *st = testsrv_stop(&s, SIGTERM, 1000, &status);
    assert_int_equal(status, 0);
    assert_int_equal(get_int(st, "connections_accepted"), N);
    assert_int_equal(get_int(st, "bytes_out"), N * 6);
    assert_int_equal(get_int(st, "loops"), 2);
    json_decref(st);
}

/* --loops 256 in 256 MiB of address space: pthread_create fails once the stacks have used it
 * up. The loops that got no thread must take no connection: every connection is answered,
 * or closed by a running loop that found no memory for it, and none waits unanswered (their
 * listeners once stayed in the SO_REUSEPORT group, and the connections the kernel gave them
 * waited forever). The lines count the loops that run. */
static void test_async_loops_thread_failure(void **state)
{
    (void)state;
    const char *san = getenv("TVSA_SANITIZED");
    if (san && *san)
        skip(); /* sanitizers reserve terabytes of shadow memory: no room under RLIMIT_AS */
    enum { N = 64 };
    const char *args[] = {"--loops", "256", NULL};
    struct testsrv s;
    assert_int_equal(testsrv_start_rlimit(&s, "async-echo", args, RLIMIT_AS, 256ul << 20), 0);
    json_t *l = json_object_get(s.listening, "loops");
    json_int_t loops = l ? json_integer_value(l) : 1;
    print_message("  %lld of 256 loops started\n", (long long)loops);
    assert_true(loops >= 1 && loops < 256);
    assert_int_equal(testsrv_proc_status(s.pid, "Threads"), loops);
    int answered = 0;
    for (int i = 0; i < N; i++) {
        int fd = testsrv_connect(s.port);
        assert_true(fd >= 0);
        char reply[6];
        if (send(fd, "hello\n", 6, MSG_NOSIGNAL) == 6) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 3000) != 1)
                fail_msg("connection %d: no answer and no close within 3 s", i);
            answered += recv(fd, reply, sizeof reply, MSG_WAITALL) == 6;
        }
        close(fd);
    }
    print_message("  %d of %d connections answered (the others found no memory)\n", answered,
                  N);
    int status;
    json_decref(testsrv_stop(&s, SIGTERM, 2000, &status));
    assert_int_equal(status, 0);
}

/* A worker that cannot start (a fixed port already taken by a listener without
 * SO_REUSEPORT): no listening line, exit 1, no worker left behind. */
static void test_worker_start_failure(void **state)
{
    (void)state;
    struct testsrv blocker;
    assert_int_equal(testsrv_start(&blocker, "async-echo", NULL), 0);
    char port[16], out[4096], err[4096];
    snprintf(port, sizeof port, "%d", blocker.port);
    const char *argv[] = {"threaded-echo", "--procs", "2", "--port", port, NULL};
    int rc = testsrv_run(argv, out, sizeof out, err, sizeof err, 5000);
    assert_int_equal(rc, 1);
    assert_null(strstr(out, "listening"));
    assert_non_null(strstr(err, "threaded-echo: "));
    int status;
    json_decref(testsrv_stop(&blocker, SIGTERM, 2000, &status));
}

/* procs_sum: counters summed key by key (nested too), settings and strings from the first. */
static void test_sum_rules(void **state)
{
    (void)state;
    json_t *a = json_pack("{s:s, s:I, s:I, s:f, s:{s:I, s:f}, s:I, s:I}", "server", "x",
                          "pid", (json_int_t)10, "bytes_in", (json_int_t)5, "user_s", 0.5,
                          "rusage", "maxrss_kib", (json_int_t)100, "sys_s", 0.25, "loops",
                          (json_int_t)2, "threads", (json_int_t)3);
    json_t *b = json_pack("{s:s, s:I, s:I, s:f, s:{s:I, s:f}, s:I, s:I}", "server", "y",
                          "pid", (json_int_t)11, "bytes_in", (json_int_t)7, "user_s", 1.0,
                          "rusage", "maxrss_kib", (json_int_t)50, "sys_s", 0.5, "loops",
                          (json_int_t)2, "threads", (json_int_t)3);
    json_t *objs[] = {a, b};
    json_t *sum = procs_sum(objs, 2);
    assert_string_equal(json_string_value(json_object_get(sum, "server")), "x");
    assert_int_equal(get_int(sum, "pid"), 10);
    assert_int_equal(get_int(sum, "bytes_in"), 12);
    assert_true(json_real_value(json_object_get(sum, "user_s")) == 1.5);
    json_t *ru = json_object_get(sum, "rusage");
    assert_int_equal(get_int(ru, "maxrss_kib"), 150);
    assert_true(json_real_value(json_object_get(ru, "sys_s")) == 0.75);
    assert_int_equal(get_int(sum, "loops"), 2);
    assert_int_equal(get_int(sum, "threads"), 3);
    assert_null(procs_sum(objs, 0));
    json_decref(sum);
    json_decref(a);
    json_decref(b);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sum_rules),
        cmocka_unit_test_prestate_setup_teardown(test_spread, NULL, testsrv_teardown,
                                                 (void *)"async-echo"),
        cmocka_unit_test_prestate_setup_teardown(test_spread, NULL, testsrv_teardown,
                                                 (void *)"threaded-echo"),
        cmocka_unit_test_teardown(test_spread_threaded_dns_tcp, testsrv_teardown),
        cmocka_unit_test_prestate_setup_teardown(test_udp, NULL, testsrv_teardown,
                                                 (void *)"async-udp"),
        cmocka_unit_test_prestate_setup_teardown(test_udp, NULL, testsrv_teardown,
                                                 (void *)"threaded-udp"),
        cmocka_unit_test_teardown(test_killed_worker_reported, testsrv_teardown),
        cmocka_unit_test_teardown(test_all_workers_killed, testsrv_teardown),
        cmocka_unit_test_teardown(test_async_loops, testsrv_teardown),
        cmocka_unit_test_teardown(test_async_loops_thread_failure, testsrv_teardown),
        cmocka_unit_test_teardown(test_worker_start_failure, testsrv_teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, testsrv_teardown);
}
