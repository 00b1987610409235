/* Unit tests of the shared server option parser. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"
#include "opts.h"

static const struct opts_spec threaded_spec = {"threaded-x", "test", 9000,
                                               OPTS_THREADED | OPTS_WORK};
static const struct opts_spec async_spec = {"async-x", "test", 9002, OPTS_API | OPTS_CHAT};
static const struct opts_spec dns_spec = {"dns-x", "test", 9053,
                                          OPTS_ZONE | OPTS_THREADS | OPTS_RCVBUF};

/* Parses a space-separated command line (program name first). */
static enum opts_result parse(const struct opts_spec *spec, const char *line,
                              struct server_opts *o, char *err, size_t errlen)
{
    static char storage[512];
    char *argv[32];
    int argc = 0;

    snprintf(storage, sizeof storage, "%s", line);
    for (char *tok = strtok(storage, " "); tok && argc < 31; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    return opts_parse(spec, argc, argv, o, err, errlen);
}

static void test_defaults(void **state)
{
    (void)state;
    struct server_opts o;
    char err[256] = "";
    assert_int_equal(parse(&threaded_spec, "prog", &o, err, sizeof err), OPTS_OK);
    assert_string_equal(o.bind, "127.0.0.1");
    assert_int_equal(o.port, 9000);
    assert_int_equal(o.max_conns, 0);
    assert_int_equal(o.idle_timeout_s, 0);
    assert_int_equal(o.stack_kb, 0);
    assert_int_equal(o.pool, 0);
    assert_int_equal(o.work_us, 0);
    assert_int_equal(o.max_line, 4096);
    assert_int_equal(o.max_backlog_kib, 1024);
    assert_int_equal(o.api, OPTS_API_BUFFEREVENT);
    assert_int_equal(o.broadcast, OPTS_BROADCAST_QUEUED);
    assert_null(o.zone);
    assert_int_equal(o.rcvbuf, 4L << 20);
    assert_int_equal(parse(&async_spec, "prog", &o, err, sizeof err), OPTS_OK);
    assert_int_equal(o.port, 9002);
}

static void test_every_flag(void **state)
{
    (void)state;
    struct server_opts o;
    char err[256] = "";
    assert_int_equal(parse(&threaded_spec,
                           "prog --bind 127.0.0.2 --port 0 --max-conns 10 --idle-timeout 5 "
                           "--stack-kb 64 --pool 50 --work-us 100",
                           &o, err, sizeof err),
                     OPTS_OK);
    assert_string_equal(o.bind, "127.0.0.2");
    assert_int_equal(o.port, 0);
    assert_int_equal(o.max_conns, 10);
    assert_int_equal(o.idle_timeout_s, 5);
    assert_int_equal(o.stack_kb, 64);
    assert_int_equal(o.pool, 50);
    assert_int_equal(o.work_us, 100);
    assert_int_equal(parse(&async_spec,
                           "prog --api event --max-line 100 --max-backlog 8 --broadcast naive "
                           "--bind ::1",
                           &o, err, sizeof err),
                     OPTS_OK);
    assert_int_equal(o.api, OPTS_API_EVENT);
    assert_int_equal(o.max_line, 100);
    assert_int_equal(o.max_backlog_kib, 8);
    assert_int_equal(o.broadcast, OPTS_BROADCAST_NAIVE);
    assert_string_equal(o.bind, "::1");
    assert_int_equal(parse(&dns_spec, "prog --zone /tmp/z --threads 3 --rcvbuf 16384", &o, err,
                           sizeof err),
                     OPTS_OK);
    assert_string_equal(o.zone, "/tmp/z");
    assert_int_equal(o.threads, 3);
    assert_int_equal(o.rcvbuf, 16384);
    /* --flag=value works too (getopt_long). */
    assert_int_equal(parse(&threaded_spec, "prog --port=1234", &o, err, sizeof err), OPTS_OK);
    assert_int_equal(o.port, 1234);
}

static void test_help(void **state)
{
    (void)state;
    struct server_opts o;
    char err[256] = "";
    assert_int_equal(parse(&threaded_spec, "prog --help", &o, err, sizeof err), OPTS_HELP);
    assert_int_equal(parse(&threaded_spec, "prog -h", &o, err, sizeof err), OPTS_HELP);
}

/* Each line must be rejected, and the message must name what was wrong. */
static void test_bad_input(void **state)
{
    (void)state;
    static const struct {
        const struct opts_spec *spec;
        const char *line;
        const char *in_message;
    } cases[] = {
        {&threaded_spec, "prog --port 65536", "--port"},
        {&threaded_spec, "prog --port -1", "--port"},
        {&threaded_spec, "prog --port 12x", "12x"},
        {&threaded_spec, "prog --port ''", "--port"},
        {&threaded_spec, "prog --port 99999999999999999999", "--port"},
        {&threaded_spec, "prog --port", "needs a value"},
        {&threaded_spec, "prog --pool -5", "--pool"},
        {&threaded_spec, "prog --pool abc", "--pool"},
        {&threaded_spec, "prog --stack-kb 8", "--stack-kb"},
        {&threaded_spec, "prog --work-us 1.5", "--work-us"},
        {&threaded_spec, "prog --max-conns -1", "--max-conns"},
        {&threaded_spec, "prog --idle-timeout 1e3", "--idle-timeout"},
        {&threaded_spec, "prog --bind localhost", "--bind"},
        {&threaded_spec, "prog --bind 300.1.1.1", "--bind"},
        {&threaded_spec, "prog --nope", "unknown option '--nope'"},
        {&threaded_spec, "prog -x", "unknown option"},
        {&threaded_spec, "prog stray", "unexpected argument 'stray'"},
        {&threaded_spec, "prog --api event", "unknown option '--api'"},   /* not in its groups */
        {&async_spec, "prog --pool 4", "unknown option '--pool'"},
        {&async_spec, "prog --api fibers", "--api"},
        {&async_spec, "prog --broadcast loud", "--broadcast"},
        {&async_spec, "prog --max-line 0", "--max-line"},
        {&dns_spec, "prog --threads 5000", "--threads"},
        {&dns_spec, "prog --rcvbuf 1023", "--rcvbuf"},
        {&dns_spec, "prog --rcvbuf 2147483648", "--rcvbuf"},
        {&threaded_spec, "prog --rcvbuf 65536", "unknown option '--rcvbuf'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct server_opts o;
        char err[256] = "";
        enum opts_result r = parse(cases[i].spec, cases[i].line, &o, err, sizeof err);
        if (r != OPTS_ERROR || strstr(err, cases[i].in_message) == NULL)
            fail_msg("'%s': result %d, message '%s'", cases[i].line, r, err);
    }
}

static void test_parse_long(void **state)
{
    (void)state;
    long v = 7;
    assert_int_equal(opts_parse_long("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(opts_parse_long("10", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(opts_parse_long("-3", -5, 10, &v), 0);
    assert_int_equal(v, -3);
    v = 7;
    const char *bad[] = {"", " 1", "+1", "1 ", "11", "-6", "0x10", "1.0", "9223372036854775808",
                         "abc", "-"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (opts_parse_long(bad[i], -5, 10, &v) != -1)
            fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(v, 7);
    }
    assert_int_equal(opts_parse_long(NULL, 0, 1, &v), -1);
}

static void test_usage_lists_only_accepted_flags(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    opts_usage(&threaded_spec, f);
    fclose(f);
    assert_non_null(strstr(text, "Usage: threaded-x"));
    assert_non_null(strstr(text, "--stack-kb"));
    assert_non_null(strstr(text, "--pool"));
    assert_non_null(strstr(text, "(default 9000)"));
    assert_null(strstr(text, "--api"));
    assert_null(strstr(text, "--zone"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_flag),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_usage_lists_only_accepted_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
