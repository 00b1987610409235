/* Unit tests of the graceful-stop signal pipe and of the time and CPU-burn helpers. */
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "burn.h"
#include "cm.h"
#include "mono.h"
#include "stopsig.h"

static void test_sigterm_makes_fd_readable(void **state)
{
    (void)state;
    char err[256];
    int fd = stopsig_install(err, sizeof err);
    assert_true(fd >= 0);
    assert_int_equal(stopsig_received(), 0);
    struct pollfd p = {fd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 0), 0); /* nothing yet */

    /* SIGPIPE is ignored: raising it must not kill the test. */
    raise(SIGPIPE);
    raise(SIGTERM);
    assert_int_equal(poll(&p, 1, 1000), 1);
    assert_int_equal(stopsig_received(), SIGTERM);
    raise(SIGINT);
    assert_int_equal(stopsig_received(), SIGINT);
    close(fd);
}

static uint64_t thread_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* burn_cpu_us must spend CPU, not sleep: thread CPU time grows by at least what was asked. */
static void test_burn_spends_cpu(void **state)
{
    (void)state;
    uint64_t before = thread_cpu_us();
    burn_cpu_us(3000);
    assert_true(thread_cpu_us() - before >= 3000);
    before = thread_cpu_us();
    burn_cpu_us(0);
    assert_true(thread_cpu_us() - before < 3000);
}

/* The clock it stops by is a system call: read a few times per burn, not once a microsecond
 * (an earlier version read it ~3,000 times for 3 ms, which made "CPU-bound" work half system
 * time on a VM). Preemption can add a read or two; 3,000 us needs about 14. */
static void test_burn_reads_the_clock_rarely(void **state)
{
    (void)state;
    unsigned reads = 0;
    uint64_t before = thread_cpu_us();
    burn_cpu_us_counted(3000, &reads);
    assert_true(thread_cpu_us() - before >= 3000);
    assert_in_range(reads, 2, 40);
    burn_cpu_us_counted(1, &reads);
    assert_in_range(reads, 2, 4);
    burn_cpu_us_counted(0, &reads);
    assert_int_equal(reads, 0);
}

static void test_mono_advances(void **state)
{
    (void)state;
    uint64_t a = mono_now_ns();
    usleep(2000);
    uint64_t b = mono_now_ns();
    assert_true(b - a >= 2000000u);
    uint64_t us = mono_now_us();
    assert_true(us >= b / 1000u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_makes_fd_readable),
        cmocka_unit_test(test_burn_spends_cpu),
        cmocka_unit_test(test_burn_reads_the_clock_rarely),
        cmocka_unit_test(test_mono_advances),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
