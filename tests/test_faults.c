/* Faults the echo servers must survive, in both models: fd exhaustion, failed thread
 * creation, clients that reset mid-transfer. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cm.h"
#include "testsrv.h"
#include "upper.h"

struct variant {
    const char *bin;
    const char *args[4];
};

static const struct variant async_bev = {"async-echo", {NULL}};
static const struct variant async_raw = {"async-echo", {"--api", "event", NULL}};
static const struct variant threaded = {"threaded-echo", {NULL}};
static const struct variant threaded_pool = {"threaded-echo", {"--pool", "4", NULL}};

static json_t *stop_ok(struct testsrv *s)
{
    int status;
    json_t *stopped = testsrv_stop(s, SIGTERM, 5000, &status);
    assert_int_equal(status, 0);
    assert_non_null(stopped);
    return stopped;
}

/* One exchange on a fresh connection; 1 if the server answered correctly. */
static int served(int port)
{
    int fd = testsrv_connect(port);
    if (fd < 0)
        return 0;
    char reply[5];
    int ok = send(fd, "alive", 5, MSG_NOSIGNAL) == 5 &&
             testsrv_read_full(fd, reply, 5, 2000) == 5 && memcmp(reply, "ALIVE", 5) == 0;
    close(fd);
    return ok;
}

/* Waits up to ~5 s for the server to serve a new client again. */
static int served_again(int port)
{
    for (int i = 0; i < 50; i++) {
        if (served(port))
            return 1;
        usleep(100000);
    }
    return 0;
}

/* After a wall: the clients leave, the server serves again by itself, and its stopped line
 * counted what hit the wall (counter > 0). */
static void leave_and_expect(struct testsrv *s, const int *fds, int n, const char *counter)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
    assert_true(served_again(s->port));
    json_t *stopped = stop_ok(s);
    assert_true(json_integer_value(json_object_get(stopped, counter)) > 0);
    json_decref(stopped);
}

/* With 128 fds and 300 clients, accept() fails with EMFILE. The server must not spin on its
 * readable listener, and must serve again by itself once the clients leave. */
static void test_fd_exhaustion(void **state)
{
    const struct variant *v = *state;
    enum { N = 300 };
    int fds[N];
    struct testsrv s;
    assert_int_equal(testsrv_start_rlimit(&s, v->bin, v->args, RLIMIT_NOFILE, 128), 0);
    for (int i = 0; i < N; i++) {
        fds[i] = testsrv_connect(s.port); /* the kernel completes them into the backlog */
        assert_true(fds[i] >= 0);
    }
    usleep(300000);
    /* A busy loop on EMFILE burns a whole core (1.0 s) in every second; pausing burns almost
     * nothing once the connections it did accept have started (their threads, slow under
     * TSan): so up to 5 one-second windows, and one must stay under 0.3 s. */
    double cpu = 1.0;
    for (int w = 0; w < 5 && cpu >= 0.3; w++) {
        double cpu0 = testsrv_cpu_seconds(s.pid);
        sleep(1);
        cpu = testsrv_cpu_seconds(s.pid) - cpu0;
        print_message("  %s: %.2f s of CPU in 1 s while out of fds\n", v->bin, cpu);
    }
    assert_true(cpu < 0.3);
    /* Both models count the pauses (issue 14: out of fds is a wall the line must name). */
    leave_and_expect(&s, fds, N, "accept_pauses");
}

/* pthread_create fails once the address space is used up by 8 MiB stacks; each such
 * connection is closed and the server goes on. (RLIMIT_AS, because root ignores ulimit -u.) */
static void test_thread_creation_failure(void **state)
{
    (void)state;
    const char *san = getenv("TVSA_SANITIZED");
    if (san && *san)
        skip(); /* sanitizers reserve terabytes of shadow memory: no room under RLIMIT_AS */
    enum { N = 80 };
    int fds[N];
    struct testsrv s;
    assert_int_equal(
        testsrv_start_rlimit(&s, "threaded-echo", NULL, RLIMIT_AS, 256ul * 1024 * 1024), 0);
    int closed_at_once = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = testsrv_connect(s.port);
        assert_true(fds[i] >= 0);
        char reply[1];
        if (send(fds[i], "x", 1, MSG_NOSIGNAL) != 1 ||
            testsrv_read_full(fds[i], reply, 1, 2000) != 1)
            closed_at_once++;
    }
    print_message("  %d of %d connections found no thread\n", closed_at_once, N);
    assert_true(closed_at_once > 0);
    leave_and_expect(&s, fds, N, "thread_create_failures");
}

/* Clients that reset while the server is writing to them, or vanish with data in flight: no
 * crash, no SIGPIPE death, no fd left behind. */
static void test_reset_mid_transfer(void **state)
{
    const struct variant *v = *state;
    struct testsrv s;
    assert_int_equal(testsrv_start(&s, v->bin, v->args), 0);
    int baseline = testsrv_fd_count(s.pid); /* before any client, so none is half-closed */
    assert_true(served(s.port));
    static char chunk[65536];
    memset(chunk, 'q', sizeof chunk);
    for (int round = 0; round < 3; round++) {
        int fd = testsrv_connect(s.port);
        assert_true(fd >= 0);
        for (int i = 0; i < 32; i++)
            if (send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL) <= 0)
                break;
        usleep(50000);
        struct linger lg = {1, 0};
        if (round != 2) /* rounds 0 and 1 reset; round 2 is a plain close with unread data */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    int now = -1;
    for (int tries = 0; tries < 300 && now != baseline; tries++) {
        usleep(10000);
        now = testsrv_fd_count(s.pid);
    }
    assert_int_equal(now, baseline);
    assert_true(served(s.port));
    json_decref(stop_ok(&s));
}

/* A server whose stdout cannot be written (/dev/full) must not exit 0 at its stop: scripts
 * read its stopped line, and an exit 0 without it would pass for a clean stop. Plain fork and
 * exec: there is no listening line to wait for, so the test waits a fixed 300 ms. */
static void test_stopped_line_unwritable(void **state)
{
    const struct variant *v = *state;
    char path[512], err[4096];
    int errpipe[2];
    snprintf(path, sizeof path, "%s/%s", testsrv_bin_dir(), v->bin);
    assert_int_equal(pipe(errpipe), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int full = open("/dev/full", O_WRONLY);
        if (full < 0 || dup2(full, 1) < 0 || dup2(errpipe[1], 2) < 0)
            _exit(99);
        const char *argv[8] = {v->bin, "--port", "0"};
        for (int i = 0; v->args[i] != NULL && i < 4; i++)
            argv[3 + i] = v->args[i];
        execv(path, (char *const *)argv);
        _exit(98);
    }
    close(errpipe[1]);
    usleep(300000);
    kill(pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    ssize_t n = read(errpipe[0], err, sizeof err - 1);
    close(errpipe[0]);
    err[n > 0 ? n : 0] = '\0';
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_non_null(strstr(err, "could not write the stopped line"));
}

#define EACH(fn)                                                                     \
    cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&async_bev),                              \
        cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&async_raw),                          \
        cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&threaded),                           \
        cmocka_unit_test_prestate_setup_teardown(fn, NULL, testsrv_teardown, (void *)&threaded_pool)

int main(void)
{
    const struct CMUnitTest tests[] = {
        EACH(test_fd_exhaustion),
        cmocka_unit_test_teardown(test_thread_creation_failure, testsrv_teardown),
        EACH(test_reset_mid_transfer),
        EACH(test_stopped_line_unwritable),
    };
    return cmocka_run_group_tests(tests, NULL, testsrv_teardown);
}
