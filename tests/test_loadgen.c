/* Integration tests of bin/loadgen: JSON keys and types per scenario, clean runs against the
 * echo servers, mismatches caught against a corrupting server, --server-pid figures, bad input
 * and the signal exit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "testlg.h"
#include "testsrv.h"


/* ---- key/type checks ---- */

enum jt { JT_OBJ, JT_ARR, JT_STR, JT_INT, JT_NUM, JT_BOOL };

struct key_spec {
    const char *path;  /* dot-separated, inside one step unless it starts with "/" */
    enum jt type;
};

static int type_ok(json_t *v, enum jt t)
{
    switch (t) {
    case JT_OBJ: return json_is_object(v);
    case JT_ARR: return json_is_array(v);
    case JT_STR: return json_is_string(v);
    case JT_INT: return json_is_integer(v);
    case JT_NUM: return json_is_number(v);
    case JT_BOOL: return json_is_boolean(v);
    }
    return 0;
}

static void check_keys(json_t *root, const struct key_spec *keys, size_t nkeys, const char *what)
{
    for (size_t i = 0; i < nkeys; i++) {
        json_t *v = testlg_get(root, keys[i].path);
        if (v == NULL || !type_ok(v, keys[i].type))
            fail_msg("%s: key %s missing or of the wrong type", what, keys[i].path);
    }
}

static const struct key_spec top_keys[] = {
    {"schema", JT_STR}, {"scenario", JT_STR}, {"target", JT_STR}, {"config", JT_OBJ},
    {"steps", JT_ARR}, {"interrupted", JT_BOOL},
    {"config.connections", JT_ARR}, {"config.duration_s", JT_NUM}, {"config.threads", JT_INT},
    {"config.size", JT_INT}, {"config.rate", JT_NUM}, {"config.timeout_ms", JT_INT},
    {"config.connect_timeout_ms", JT_INT}, {"config.think_ms", JT_INT},
    {"config.source_ips", JT_STR}, {"config.opts", JT_OBJ},
};

static const struct key_spec step_keys[] = {
    {"connections", JT_OBJ}, {"connections.target", JT_INT},
    {"connections.established", JT_INT}, {"connections.failed", JT_INT},
    {"connections.failed_by_errno", JT_OBJ},
    {"duration_s", JT_NUM},
    {"requests.completed", JT_INT}, {"requests.per_sec", JT_NUM}, {"requests.errors", JT_INT},
    {"requests.timeouts", JT_INT}, {"requests.mismatches", JT_INT},
    {"latency_us.p50", JT_INT}, {"latency_us.p90", JT_INT}, {"latency_us.p99", JT_INT},
    {"latency_us.p999", JT_INT}, {"latency_us.max", JT_INT}, {"latency_us.mean", JT_NUM},
    {"loadgen.cpu_s.user", JT_NUM}, {"loadgen.cpu_s.sys", JT_NUM},
    {"server.rss_kib", JT_INT}, {"server.vsz_kib", JT_INT}, {"server.threads", JT_INT},
    {"server.ctx_switches.voluntary", JT_INT}, {"server.ctx_switches.involuntary", JT_INT},
    {"server.cpu_s.user", JT_NUM}, {"server.cpu_s.sys", JT_NUM},
    {"server.rss_per_conn_bytes", JT_NUM}, {"server.vsz_per_conn_bytes", JT_NUM},
    {"server.ctx_switches_per_request", JT_NUM}, {"server.ctx_switches_per_sec", JT_NUM},
    {"server.kernel_per_conn_bytes.kernel_stack", JT_NUM},
    {"server.kernel_per_conn_bytes.sock_mem", JT_NUM},
};

static const struct key_spec rate_keys[] = {
    {"latency_raw_us.p50", JT_INT}, {"latency_raw_us.p99", JT_INT},
    {"latency_raw_us.mean", JT_NUM}, {"rate.target", JT_NUM}, {"rate.achieved", JT_NUM},
};
static const struct key_spec hold_keys[] = {{"alive", JT_INT}};
static const struct key_spec churn_keys[] = {
    {"connects_per_sec", JT_NUM}, {"connect_latency_us.p99", JT_INT},
};

struct scenario_case {
    const char *name;
    const char *args[12];
    const struct key_spec *extra;
    size_t nextra;
    int min_completed;   /* requests that must have completed */
};

static const struct scenario_case scenario_cases[] = {
    {"echo closed", {"--scenario", "echo", "--connections", "20", "--duration", "0.5", NULL},
     NULL, 0, 100},
    {"echo open", {"--scenario", "echo", "--connections", "20", "--duration", "1", "--rate",
                   "2000", NULL}, rate_keys, 3, 500},
    {"hold", {"--scenario", "hold", "--connections", "30", "--duration", "0.5", NULL},
     hold_keys, 1, 30},
    {"churn", {"--scenario", "churn", "--connections", "5", "--duration", "0.5", NULL},
     churn_keys, 2, 10},
    {"echo ramp", {"--connections", "5,15", "--duration", "0.3", "--think-ms", "1", NULL},
     NULL, 0, 10},
};

static void test_json_per_scenario(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)srv.pid);
    for (size_t i = 0; i < sizeof scenario_cases / sizeof scenario_cases[0]; i++) {
        const struct scenario_case *sc = &scenario_cases[i];
        const char *args[20];
        int n = 0;
        for (int k = 0; sc->args[k]; k++)
            args[n++] = sc->args[k];
        args[n++] = "--server-pid";
        args[n++] = pid;
        args[n] = NULL;
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        if (rc != 0 || doc == NULL)
            fail_msg("%s: exit %d, JSON %s", sc->name, rc, doc ? "ok" : "unparsable");
        assert_string_equal(json_string_value(json_object_get(doc, "schema")), "tvsa-loadgen/1");
        check_keys(doc, top_keys, sizeof top_keys / sizeof top_keys[0], sc->name);
        json_t *steps = json_object_get(doc, "steps");
        json_t *cfgconns = testlg_get(doc, "config.connections");
        assert_int_equal(json_array_size(steps), json_array_size(cfgconns));
        for (size_t s = 0; s < json_array_size(steps); s++) {
            json_t *step = json_array_get(steps, s);
            check_keys(step, step_keys, sizeof step_keys / sizeof step_keys[0], sc->name);
            if (sc->extra)
                check_keys(step, sc->extra, sc->nextra, sc->name);
            assert_int_equal(json_integer_value(testlg_get(step, "requests.errors")), 0);
            assert_int_equal(json_integer_value(testlg_get(step, "requests.mismatches")), 0);
            assert_int_equal(json_integer_value(testlg_get(step, "connections.established")),
                             json_integer_value(json_array_get(cfgconns, s)));
            if (json_integer_value(testlg_get(step, "requests.completed")) < sc->min_completed)
                fail_msg("%s: only %lld requests", sc->name,
                         (long long)json_integer_value(testlg_get(step, "requests.completed")));
        }
        json_decref(doc);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

/* 200 connections for 2 s against both echo servers: no errors, no mismatches, sane figures. */
static const char *const echo_servers[] = {"async-echo", "threaded-echo"};

static void test_clean_run_against_echo_servers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof echo_servers / sizeof echo_servers[0]; i++) {
        struct testsrv srv;
        if (testsrv_start(&srv, echo_servers[i], NULL) < 0)
            fail_msg("cannot start %s", echo_servers[i]);
        char pid[16];
        snprintf(pid, sizeof pid, "%d", (int)srv.pid);
        const char *args[] = {"--connections", "200", "--duration", "2", "--server-pid", pid,
                              NULL};
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        int st;
        json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
        if (rc != 0 || doc == NULL)
            fail_msg("%s: exit %d", echo_servers[i], rc);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        assert_non_null(step);
        const char *zero[] = {"requests.errors", "requests.mismatches", "requests.timeouts",
                              "connections.failed"};
        for (size_t k = 0; k < 4; k++)
            if (json_integer_value(testlg_get(step, zero[k])) != 0)
                fail_msg("%s: %s = %lld", echo_servers[i], zero[k],
                         (long long)json_integer_value(testlg_get(step, zero[k])));
        assert_int_equal(json_integer_value(testlg_get(step, "connections.established")), 200);
        assert_true(json_integer_value(testlg_get(step, "requests.completed")) > 1000);
        /* Server figures: present and sane. */
        assert_true(json_integer_value(testlg_get(step, "server.rss_kib")) > 0);
        assert_true(json_integer_value(testlg_get(step, "server.vsz_kib")) >=
                    json_integer_value(testlg_get(step, "server.rss_kib")));
        assert_true(json_integer_value(testlg_get(step, "server.threads")) >= 1);
        assert_true(json_number_value(testlg_get(step, "server.cpu_s.user")) +
                    json_number_value(testlg_get(step, "server.cpu_s.sys")) > 0);
        assert_true(json_number_value(testlg_get(step, "server.ctx_switches_per_request")) >= 0);
        /* Latencies are ordered. */
        json_int_t p50 = json_integer_value(testlg_get(step, "latency_us.p50"));
        json_int_t p99 = json_integer_value(testlg_get(step, "latency_us.p99"));
        json_int_t mx = json_integer_value(testlg_get(step, "latency_us.max"));
        assert_true(p50 <= p99 && p99 <= mx);
        json_decref(doc);
    }
}

/* One reply byte in a thousand is wrong: the mismatches are counted, and not as completed. */
static void test_mismatches_counted(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "tests/corrupt-echo", NULL), 0);
    const char *args[] = {"--connections", "20", "--duration", "1", NULL};
    json_t *doc;
    int rc = testlg_run(srv.port, args, &doc);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    assert_int_equal(rc, 0);
    assert_non_null(doc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    json_int_t mism = json_integer_value(testlg_get(step, "requests.mismatches"));
    json_int_t done = json_integer_value(testlg_get(step, "requests.completed"));
    /* 64-byte requests, one bad byte per 1000: about one request in 15.6 is wrong. */
    assert_true(mism > 0);
    assert_true(done > 0);
    assert_true(mism * 5 < done);
    assert_true(mism * 40 > done);
    json_decref(doc);
}

/* Replies with a byte too many (tests/extra-echo): each such request is one mismatch, never
 * also completed, and a reply both wrong and too long is still one mismatch. */
struct extra_case {
    const char *name;
    const char *every, *flip;
    int good_per_bad;    /* replies between two long ones: completed ~ good_per_bad x bad */
};

static const struct extra_case extra_cases[] = {
    {"every reply long", "1", "0", 0},
    {"every reply long and wrong", "1", "1", 0},
    {"every 5th reply long", "5", "0", 4},
};

#define EXTRA_CONNS 10

static void test_extra_bytes_one_mismatch(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof extra_cases / sizeof extra_cases[0]; i++) {
        const struct extra_case *ec = &extra_cases[i];
        setenv("TVSA_EXTRA_EVERY", ec->every, 1);
        setenv("TVSA_EXTRA_FLIP", ec->flip, 1);
        setenv("TVSA_REQ_SIZE", "64", 1);
        struct testsrv srv;
        if (testsrv_start(&srv, "tests/extra-echo", NULL) < 0)
            fail_msg("%s: cannot start tests/extra-echo", ec->name);
        const char *args[] = {"--connections", "10", "--duration", "0.5", "--size", "64", NULL};
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        int st;
        json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
        if (rc != 0 || doc == NULL)
            fail_msg("%s: exit %d", ec->name, rc);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        json_int_t mism = json_integer_value(testlg_get(step, "requests.mismatches"));
        json_int_t done = json_integer_value(testlg_get(step, "requests.completed"));
        json_int_t sent = json_integer_value(testlg_get(step, "requests.bytes_out")) / 64;
        json_decref(doc);
        if (mism < 10)
            fail_msg("%s: only %lld mismatches", ec->name, (long long)mism);
        /* Every request sent in the window is answered at most once: completed + mismatches
         * never exceed the requests sent (plus the ones already in flight at the start). */
        if (done + mism > sent + EXTRA_CONNS)
            fail_msg("%s: %lld completed + %lld mismatches > %lld sent", ec->name,
                     (long long)done, (long long)mism, (long long)sent);
        long long g = ec->good_per_bad;
        if (done > g * mism + g * EXTRA_CONNS || done < g * mism - g * EXTRA_CONNS)
            fail_msg("%s: %lld completed for %lld mismatches, want about %lld x", ec->name,
                     (long long)done, (long long)mism, g);
    }
    unsetenv("TVSA_EXTRA_EVERY");
    unsetenv("TVSA_EXTRA_FLIP");
    unsetenv("TVSA_REQ_SIZE");
}

/* A ramp down against threaded-echo: 190 server threads exit around the start of the second
 * step. The context-switch figures stay non-negative and unwrapped (per-thread deltas). */
static void test_ctx_switches_ramp_down(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "threaded-echo", NULL), 0);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)srv.pid);
    const char *args[] = {"--connections", "200,10,200,10", "--duration", "0.3",
                          "--server-pid", pid, NULL};
    json_t *doc;
    int rc = testlg_run(srv.port, args, &doc);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d", rc);
    json_t *steps = json_object_get(doc, "steps");
    assert_int_equal(json_array_size(steps), 4);
    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *step = json_array_get(steps, i);
        static const char *const keys[] = {"server.ctx_switches.voluntary",
                                           "server.ctx_switches.involuntary"};
        for (size_t k = 0; k < 2; k++) {
            json_t *v = testlg_get(step, keys[k]);
            assert_non_null(v);
            json_int_t x = json_integer_value(v);
            /* A wrapped delta reads as negative, or as a figure no 0.3 s step reaches. */
            if (x < 0 || x > 100000000)
                fail_msg("step %zu: %s = %lld", i + 1, keys[k], (long long)x);
        }
        assert_true(json_is_boolean(testlg_get(step, "server.ctx_switches_incomplete")));
        assert_true(json_number_value(testlg_get(step, "server.ctx_switches_per_sec")) >= 0);
    }
    json_decref(doc);
}

/* Open loop with more threads than connections (or an uneven spread): the achieved rate is
 * the asked one, not the connected threads' even share of it. */
struct rate_case {
    const char *threads, *connections, *rate;
};

static const struct rate_case rate_cases[] = {
    {"2", "1", "1000"},
    {"4", "3", "1200"},
};

static void test_open_loop_rate_by_connections(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    for (size_t i = 0; i < sizeof rate_cases / sizeof rate_cases[0]; i++) {
        const struct rate_case *rc = &rate_cases[i];
        const char *args[] = {"--threads", rc->threads, "--connections", rc->connections,
                              "--rate", rc->rate, "--duration", "1", NULL};
        json_t *doc;
        int rcode = testlg_run(srv.port, args, &doc);
        if (rcode != 0 || doc == NULL)
            fail_msg("threads %s conns %s: exit %d", rc->threads, rc->connections, rcode);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        double want = atof(rc->rate);
        double got = json_number_value(testlg_get(step, "rate.achieved"));
        json_decref(doc);
        /* An even split per thread would reach want x connections / threads at most. */
        if (got < 0.85 * want || got > 1.1 * want)
            fail_msg("threads %s conns %s rate %s: achieved %.0f", rc->threads,
                     rc->connections, rc->rate, got);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

/* A UDP echo that changes a digit of the sequence number in every 10th reply: those replies
 * are mismatches, not late replies to other datagrams (and their requests not lost). */
static void test_udp_corrupt_digit_is_mismatch(void **state)
{
    (void)state;
    setenv("TVSA_CORRUPT_EVERY", "10", 1);
    struct testsrv srv;
    int started = testsrv_start(&srv, "tests/corrupt-udp", NULL);
    unsetenv("TVSA_CORRUPT_EVERY");
    assert_int_equal(started, 0);
    const char *args[] = {"--scenario", "udp", "--connections", "4", "--size", "32",
                          "--timeout", "500", "--duration", "0.5", NULL};
    json_t *doc;
    int rc = testlg_run(srv.port, args, &doc);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d", rc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    json_int_t mism = json_integer_value(testlg_get(step, "datagrams.mismatched"));
    json_int_t late = json_integer_value(testlg_get(step, "datagrams.late"));
    json_int_t lost = json_integer_value(testlg_get(step, "datagrams.lost"));
    json_int_t done = json_integer_value(testlg_get(step, "requests.completed"));
    json_decref(doc);
    if (mism < 10 || late != 0 || lost != 0)
        fail_msg("mismatched %lld late %lld lost %lld", (long long)mism, (long long)late,
                 (long long)lost);
    /* Nine good replies for one corrupted one, give or take the window's edges. */
    if (done < 8 * mism || done > 10 * mism + 40)
        fail_msg("%lld completed for %lld mismatched", (long long)done, (long long)mism);
}

/* A DNS server answering from the sample zone with a wrong address in every 2nd reply that
 * has an A record: those replies are mismatches, not completed requests. */
static void test_dns_wrong_address_is_mismatch(void **state)
{
    (void)state;
    setenv("TVSA_LIE_EVERY", "2", 1);
    struct testsrv srv;
    int started = testsrv_start(&srv, "tests/lying-dns", NULL);
    unsetenv("TVSA_LIE_EVERY");
    assert_int_equal(started, 0);
    const char *args[] = {"--scenario", "dns", "--connections", "4", "--timeout", "500",
                          "--duration", "0.5", NULL};
    json_t *doc;
    int rc = testlg_run(srv.port, args, &doc);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d", rc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    json_int_t mism = json_integer_value(testlg_get(step, "requests.mismatches"));
    json_int_t done = json_integer_value(testlg_get(step, "requests.completed"));
    json_int_t late = json_integer_value(testlg_get(step, "queries.late"));
    json_decref(doc);
    /* About one reply in two lies (the truncated ones carry no A to change): at least a
     * quarter of the answered queries are mismatches. */
    if (mism * 4 < done || mism < 10 || late != 0)
        fail_msg("%lld mismatches, %lld completed, %lld late", (long long)mism,
                 (long long)done, (long long)late);
}

/* async-dns serving its own zone: dns-tcp with --opt zone=THAT_FILE finds every answer right;
 * without it the answers are checked against the sample zone and do not match. */
static void test_dns_tcp_zone_in_use(void **state)
{
    (void)state;
    char zpath[] = "/tmp/tvsa-test-lgzone-XXXXXX", opt[64];
    int fd = mkstemp(zpath);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("a.lg.test 60 A 192.0.2.1\na.lg.test 60 A 192.0.2.2\nb.lg.test A 198.51.100.7\n", f);
    fclose(f);
    snprintf(opt, sizeof opt, "zone=%s", zpath);
    const char *sargs[] = {"--zone", zpath, NULL};
    struct testsrv srv;
    if (testsrv_start(&srv, "async-dns", sargs) < 0) {
        unlink(zpath);
        fail_msg("cannot start async-dns");
    }
    static const struct {
        int with_zone;
        int want_mismatches;
    } cases[] = {{1, 0}, {0, 1}};
    for (size_t i = 0; i < 2; i++) {
        const char *with[] = {"--scenario", "dns-tcp", "--connections", "2", "--duration", "0.3",
                              "--opt", opt, NULL};
        const char *without[] = {"--scenario", "dns-tcp", "--connections", "2", "--duration",
                                 "0.3", NULL};
        json_t *doc;
        int rc = testlg_run(srv.port, cases[i].with_zone ? with : without, &doc);
        if (rc != 0 || doc == NULL)
            fail_msg("exit %d", rc);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        json_int_t mism = json_integer_value(testlg_get(step, "requests.mismatches"));
        json_int_t done = json_integer_value(testlg_get(step, "requests.completed"));
        int checked = json_is_true(testlg_get(step, "answers_checked"));
        json_decref(doc);
        if (!checked || (cases[i].want_mismatches ? mism < 10 || done > 0 : mism != 0 || done < 10))
            fail_msg("zone %d: %lld mismatches, %lld completed", cases[i].with_zone,
                     (long long)mism, (long long)done);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    unlink(zpath);
}

/* The baseline is taken once the probe connection's server thread has gone: its thread count
 * is the idle server's. (The probe's thread exits at its own pace, so a baseline taken right
 * after the probe often counted it: several runs make that show.) */
static void test_baseline_after_probe(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "threaded-echo", NULL), 0);
    long idle = testsrv_proc_status(srv.pid, "Threads");
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)srv.pid);
    const char *args[] = {"--connections", "1", "--duration", "0.05", "--server-pid", pid,
                          NULL};
    for (int i = 0; i < 8; i++) {
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        if (rc != 0 || doc == NULL)
            fail_msg("run %d: exit %d", i, rc);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        json_int_t base = json_integer_value(testlg_get(step, "server.baseline.threads"));
        json_decref(doc);
        if (base != idle)
            fail_msg("run %d: baseline threads %lld, idle server %ld", i, (long long)base, idle);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

/* hold against a server that closes idle connections after 1 s: every connection is lost
 * and reopened during a 1.6 s hold, so none is alive at the end, though the reopened ones
 * answer their probes. (--idle-timeout 0 = none: all 20 held and alive.) */
static void test_hold_alive_only_held(void **state)
{
    (void)state;
    static const struct {
        const char *idle;
        json_int_t want_alive;
    } cases[] = {{"1", 0}, {"0", 20}};
    for (size_t i = 0; i < 2; i++) {
        const char *sargs[] = {"--idle-timeout", cases[i].idle, NULL};
        struct testsrv srv;
        assert_int_equal(testsrv_start(&srv, "threaded-echo", sargs), 0);
        const char *args[] = {"--scenario", "hold", "--connections", "20", "--duration", "1.6",
                              NULL};
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        int st;
        json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
        if (rc != 0 || doc == NULL)
            fail_msg("exit %d", rc);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        json_int_t alive = json_integer_value(testlg_get(step, "alive"));
        json_int_t done = json_integer_value(testlg_get(step, "requests.completed"));
        json_decref(doc);
        if (alive != cases[i].want_alive || done != 20)
            fail_msg("idle-timeout %s: alive %lld, probes answered %lld", cases[i].idle,
                     (long long)alive, (long long)done);
    }
}

/* churn against a server that drops every 20th connection unread: each drop pauses that slot
 * 100 ms before it reconnects. The other slots must keep churning meanwhile; when a paused
 * slot at the head of one connect queue held up the rest, a thread's 4 slots managed one
 * drop per 100 ms between them (10 a second), however fast the server was. */
static void test_churn_delayed_retry_does_not_block(void **state)
{
    (void)state;
    setenv("TVSA_CLOSE_EVERY", "20", 1);
    setenv("TVSA_EXTRA_EVERY", "1000000", 1);
    struct testsrv srv;
    int started = testsrv_start(&srv, "tests/extra-echo", NULL);
    unsetenv("TVSA_CLOSE_EVERY");
    unsetenv("TVSA_EXTRA_EVERY");
    assert_int_equal(started, 0);
    const char *args[] = {"--scenario", "churn", "--connections", "4", "--threads", "1",
                          "--duration", "1", NULL};
    json_t *doc;
    int rc = testlg_run(srv.port, args, &doc);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d", rc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    json_int_t errors = json_integer_value(testlg_get(step, "requests.errors"));
    double cps = json_number_value(testlg_get(step, "connects_per_sec"));
    json_decref(doc);
    /* 4 slots, each paused 100 ms per drop: up to 40 drops a second, 10 when serialized. */
    if (errors < 20)
        fail_msg("%lld drops in 1 s (%.0f connects/s): retries serialized", (long long)errors,
                 cps);
}

/* Open loop against a server that never answers: each of the 2 connections sends one request
 * and waits; the other ~98 requests due in the 1 s window are never sent. They are recorded at
 * the stop as having waited since their intended time (wrk2's correction, at the window's
 * end), so the percentiles show the stall instead of an empty histogram. */
static void test_open_loop_stall_recorded(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 64), 0);
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    const char *args[] = {"--connections", "2", "--threads", "1", "--rate", "100",
                          "--duration", "1", "--timeout", "0", NULL};
    json_t *doc;
    int rc = testlg_run(ntohs(sa.sin_port), args, &doc);
    close(lfd);
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d", rc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    json_int_t unsent = json_integer_value(testlg_get(step, "latency_us.unsent_at_stop"));
    json_int_t mx = json_integer_value(testlg_get(step, "latency_us.max"));
    json_int_t p50 = json_integer_value(testlg_get(step, "latency_us.p50"));
    int has_timeouts = json_is_integer(testlg_get(step, "latency_us.timeouts"));
    json_int_t done = json_integer_value(testlg_get(step, "requests.completed"));
    json_decref(doc);
    assert_int_equal(done, 0);
    assert_true(has_timeouts);
    /* 100 due in [t0, t0 + 1 s], 2 of them sent; the stop comes at t0 + 1 s or later, so the
     * third request (intended at t0 + 20 ms) waited at least 980 ms. */
    if (unsent < 90 || unsent > 110 || mx < 950000 || p50 < 400000)
        fail_msg("unsent %lld, max %lld us, p50 %lld us", (long long)unsent, (long long)mx,
                 (long long)p50);
}

/* A chat relay that corrupts every 5th line, by its padding or by the sender's name in front:
 * those deliveries are mismatches, the other 4 of 5 delivered. */
static void test_chat_padding_and_prefix_checked(void **state)
{
    (void)state;
    static const char *const modes[] = {"pad", "name"};
    for (size_t i = 0; i < 2; i++) {
        setenv("TVSA_LIE", modes[i], 1);
        setenv("TVSA_LIE_EVERY", "5", 1);
        struct testsrv srv;
        int started = testsrv_start(&srv, "tests/lying-chat", NULL);
        unsetenv("TVSA_LIE");
        unsetenv("TVSA_LIE_EVERY");
        assert_int_equal(started, 0);
        const char *args[] = {"--scenario", "chat", "--connections", "4", "--senders", "2",
                              "--rate", "200", "--duration", "1", NULL};
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        int st;
        json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
        if (rc != 0 || doc == NULL)
            fail_msg("%s: exit %d", modes[i], rc);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        json_int_t mism = json_integer_value(testlg_get(step, "requests.mismatches"));
        json_int_t done = json_integer_value(testlg_get(step, "chat.delivered"));
        json_decref(doc);
        if (mism < 10 || done < 3 * mism || done > 5 * mism)
            fail_msg("%s: %lld mismatches, %lld delivered", modes[i], (long long)mism,
                     (long long)done);
    }
}

/* A TCP port on 127.0.0.1 with nothing listening (bound, then closed). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

/* A server that never answers: a listening socket nobody accepts from (the kernel completes
 * the handshakes into the backlog). Every request times out; the connection is reopened. */
static void test_timeouts_counted(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 1024), 0);
    getsockname(lfd, (struct sockaddr *)&sa, &len);
    const char *args[] = {"--connections", "4", "--duration", "1", "--timeout", "200", NULL};
    json_t *doc;
    int rc = testlg_run(ntohs(sa.sin_port), args, &doc);
    close(lfd);
    assert_int_equal(rc, 0);
    assert_non_null(doc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    assert_int_equal(json_integer_value(testlg_get(step, "requests.completed")), 0);
    /* 4 connections, 200-300 ms each: at least one round of timeouts per connection. */
    assert_true(json_integer_value(testlg_get(step, "requests.timeouts")) >= 4);
    assert_int_equal(json_integer_value(testlg_get(step, "requests.mismatches")), 0);
    json_decref(doc);
}

struct bad_case {
    const char *name;
    const char *args[12];
    int live_target;     /* 1: --target the running server; 0: args carry their own */
};

static const struct bad_case bad_cases[] = {
    {"unknown scenario", {"--scenario", "nope", NULL}, 1},
    {"target without port", {"--target", "127.0.0.1", NULL}, 0},
    {"target not numeric", {"--target", "example.invalid:80", NULL}, 0},
    {"port out of range", {"--target", "127.0.0.1:70000", NULL}, 0},
    {"zero connections", {"--connections", "0", NULL}, 1},
    {"negative connections", {"--connections", "-5", NULL}, 1},
    {"bad ramp", {"--connections", "10,,x", NULL}, 1},
    {"zero duration", {"--duration", "0", NULL}, 1},
    {"zero size", {"--size", "0", NULL}, 1},
    {"zero threads", {"--threads", "0", NULL}, 1},
    {"bad source ips", {"--source-ips", "127.0.0.9-127.0.0.1", NULL}, 1},
    {"unknown flag", {"--frobnicate", NULL}, 1},
    {"rate with hold", {"--scenario", "hold", "--rate", "10", NULL}, 1},
    {"udp size below the sequence number", {"--scenario", "udp", "--size", "9", NULL}, 1},
    {"unknown --opt key", {"--opt", "frob=1", NULL}, 1},
    {"dns key on echo", {"--opt", "names=/dev/null", NULL}, 1},
    {"--kind on echo", {"--kind", "flood", NULL}, 1},
    {"--abusers on echo", {"--abusers", "3", NULL}, 1},
    {"--good on hold", {"--scenario", "hold", "--good", "3", NULL}, 1},
    {"--senders on echo", {"--senders", "2", NULL}, 1},
    {"--stalled on dns", {"--scenario", "dns", "--stalled", "2", NULL}, 1},
    {"chat: --rate and --opt rate", {"--scenario", "chat", "--connections", "3", "--rate", "5",
                                     "--opt", "rate=5", NULL}, 1},
    {"no such server pid", {"--server-pid", "4000000", NULL}, 1},
    {"too many connections for the fd limit", {"--connections", "1000000", NULL}, 1},
    {"unwritable --json", {"--json", "/nonexistent-dir/x.json", NULL}, 1},
    {"server not there", {NULL}, 0},
};

static void test_bad_input(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    int dead = dead_port();
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *bc = &bad_cases[i];
        const char *args[20];
        char target[32];
        int n = 0;
        if (!bc->live_target && bc->args[0] == NULL) {
            snprintf(target, sizeof target, "127.0.0.1:%d", dead);
            args[n++] = "--target";
            args[n++] = target;
        }
        for (int k = 0; bc->args[k]; k++)
            args[n++] = bc->args[k];
        args[n++] = "--duration";
        args[n++] = "0.2";
        /* The case's own --duration comes last so it wins. */
        if (strcmp(bc->name, "zero duration") == 0) {
            args[n++] = "--duration";
            args[n++] = "0";
        }
        args[n] = NULL;
        int rc = testlg_run(bc->live_target ? srv.port : 0, args, NULL);
        if (rc != 2)
            fail_msg("%s: exit %d, want 2", bc->name, rc);
        if (strstr(testlg_out, "tvsa-loadgen") != NULL)
            fail_msg("%s: JSON written on bad input", bc->name);
        if (strlen(testlg_err) == 0)
            fail_msg("%s: no message on stderr", bc->name);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

#define BIG_ZONE "/tmp/tvsa-test-loadgen-big.zone"

/* A bad value is reported under the option's name, not as the value itself. */
struct msg_case {
    const char *args[8];
    const char *want;    /* in stderr */
};

static const struct msg_case msg_cases[] = {
    {{"--rate", "0", NULL}, "--rate: bad value '0'"},
    {{"--threads", "0", NULL}, "--threads: bad value '0'"},
    {{"--size", "0", NULL}, "--size: bad value '0'"},
    {{"--opt", "frob=1", NULL}, "--opt frob"},
    {{"--kind", "flood", NULL}, "--kind"},
    /* Ranges from the scenarios' tables, under the name the value came by. */
    {{"--scenario", "abuse", "--kind", "flood", "--good", "x", NULL}, "--good: want 0..100000"},
    {{"--scenario", "abuse", "--kind", "flood", "--opt", "line=-1", NULL}, "--opt line: want"},
    {{"--scenario", "chat", "--senders", "0", NULL}, "--senders: want 1..100000"},
    {{"--scenario", "dns", "--senders", "2", NULL}, "--senders: not a setting of the dns"},
    {{"--size", "1048576", "--connections", "4096", NULL}, "GiB"},
    {{"--scenario", "dns", "--opt", "zone=/dev/zero", NULL}, "not a regular file"},
    {{"--scenario", "dns", "--opt", "zone=/tmp", NULL}, "not a regular file"},
    {{"--scenario", "dns", "--opt", "zone=" BIG_ZONE, NULL}, "larger than 64 MiB"},
};

static void test_bad_value_names_option(void **state)
{
    (void)state;
    /* A sparse file just over 64 MiB: the size alone must be refused, before any read. */
    int fd = open(BIG_ZONE, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 64 * 1024 * 1024 + 1), 0);
    close(fd);
    for (size_t i = 0; i < sizeof msg_cases / sizeof msg_cases[0]; i++) {
        int rc = testlg_run(1, msg_cases[i].args, NULL);
        if (rc != 2 || strstr(testlg_err, msg_cases[i].want) == NULL)
            fail_msg("%s %s: exit %d, stderr: %.200s", msg_cases[i].args[0],
                     msg_cases[i].args[1], rc, testlg_err);
    }
    unlink(BIG_ZONE);
}

/* The chat aliases: --senders, --stalled and --rate are --opt senders=, stalled=, rate=. */
static void test_chat_aliases(void **state)
{
    (void)state;
    const char *args[] = {"--scenario", "chat", "--connections", "4", "--duration", "0.5",
                          "--senders", "2", "--stalled", "1", "--rate", "40", NULL};
    json_t *doc;
    int rc = testlg_run_server("async-chat", args, &doc);
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d: %.300s", rc, testlg_err);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    assert_int_equal(json_integer_value(testlg_get(step, "chat.senders")), 2);
    assert_int_equal(json_integer_value(testlg_get(step, "chat.stalled")), 1);
    assert_true(json_number_value(testlg_get(step, "chat.rate")) == 40.0);
    assert_string_equal(json_string_value(testlg_get(doc, "config.opts.senders")), "2");
    assert_string_equal(json_string_value(testlg_get(doc, "config.opts.rate")), "40");
    /* The chat's rate is not the engine's open loop. */
    assert_string_equal(json_string_value(testlg_get(doc, "config.mode")), "closed");
    json_decref(doc);
}

/* The bench programs refuse a --port that is not a port (atoi took "9x" as 9, "-1" as a
 * wrapped 65535), with exit 2 and a message. */
static void test_bench_bad_port(void **state)
{
    (void)state;
    static const char *const progs[] = {"bench/bare-epoll-echo", "bench/bare-thread-echo",
                                        "bench/epoll-client"};
    static const char *const ports[] = {"9x", "-1", "70000", "", "0x10"};
    char path[512];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", testsrv_bin_dir(), progs[i]);
        for (size_t k = 0; k < sizeof ports / sizeof ports[0]; k++) {
            const char *argv[] = {path, "--port", ports[k], NULL};
            int rc = testsrv_run(argv, testlg_out, sizeof testlg_out, testlg_err, sizeof testlg_err, 5000);
            if (rc != 2 || strlen(testlg_err) == 0)
                fail_msg("%s --port '%s': exit %d", progs[i], ports[k], rc);
        }
    }
}

/* A result that cannot be written is an exit other than 0, whether stdout is a full device, a
 * pipe whose reader is gone, or --json names a full device. */
static void test_lost_result_exits_nonzero(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    const char *args[] = {"--connections", "2", "--duration", "0.2", NULL};
    int full = open("/dev/full", O_WRONLY);
    assert_true(full >= 0);
    int rc = testlg_run_fd(srv.port, args, full);
    close(full);
    if (rc == 0 || rc == -1 || strstr(testlg_err, "cannot write") == NULL)
        fail_msg("stdout /dev/full: exit %d, stderr %.200s", rc, testlg_err);
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    rc = testlg_run_fd(srv.port, args, p[1]);
    close(p[1]);
    if (rc == 0 || rc == -1 || strstr(testlg_err, "cannot write") == NULL)
        fail_msg("stdout closed pipe: exit %d, stderr %.200s", rc, testlg_err);
    const char *jargs[] = {"--connections", "2", "--duration", "0.2", "--json", "/dev/full",
                           NULL};
    rc = testlg_run(srv.port, jargs, NULL);
    if (rc == 0 || strstr(testlg_err, "cannot write") == NULL)
        fail_msg("--json /dev/full: exit %d, stderr %.200s", rc, testlg_err);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

/* The default --threads is the number of CPUs in loadgen's affinity mask: pinned to one CPU
 * it runs one thread, not one per online CPU. */
static void test_threads_default_affinity(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    cpu_set_t saved, one;
    assert_int_equal(sched_getaffinity(0, sizeof saved, &saved), 0);
    int first = 0;
    while (!CPU_ISSET(first, &saved))
        first++;
    const char *args[] = {"--connections", "2", "--duration", "0.1", NULL};
    for (int pinned = 0; pinned < 2; pinned++) {
        CPU_ZERO(&one);
        CPU_SET(first, &one);
        /* The child inherits the mask; the test's own is put back at once. */
        if (pinned)
            assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        sched_setaffinity(0, sizeof saved, &saved);
        if (rc != 0 || doc == NULL)
            fail_msg("pinned %d: exit %d", pinned, rc);
        long want = pinned ? 1 : CPU_COUNT(&saved);
        assert_int_equal(json_integer_value(testlg_get(doc, "config.threads")), want);
        json_decref(doc);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

/* The step's histogram in the run's JSON, read back (fails the test when it is not there). */
static void step_hist(json_t *doc, int step, const char *name, struct hist *h)
{
    char err[128];
    json_t *st = json_array_get(json_object_get(doc, "steps"), (size_t)step);
    json_t *j = json_object_get(json_object_get(st, "histograms"), name);
    if (hist_from_json(h, j, err, sizeof err) < 0)
        fail_msg("step %d histograms.%s: %s", step + 1, name, err);
}

static json_int_t step_int(json_t *doc, int step, const char *path)
{
    json_t *v = testlg_get(json_array_get(json_object_get(doc, "steps"), (size_t)step), path);
    if (!json_is_integer(v))
        fail_msg("step %d: no integer %s", step + 1, path);
    return json_integer_value(v);
}

/* `loadgen merge FILES...` into testlg_out; returns the exit status, *doc the JSON. */
static int run_merge(const char *const *files, json_t **doc)
{
    const char *argv[8] = {"loadgen", "merge"};
    int n = 2;
    for (int i = 0; files[i] && n < 7; i++)
        argv[n++] = files[i];
    argv[n] = NULL;
    int rc = testsrv_run(argv, testlg_out, sizeof testlg_out, testlg_err, sizeof testlg_err,
                         10000);
    *doc = json_loads(testlg_out, 0, NULL);
    return rc;
}

/* Two runs merged equal one run made of both: counters summed, every histogram bucket the
 * sum of the two, the percentiles those of the merged histogram; a file merged with itself
 * keeps its percentiles and doubles its counts; inputs that do not go together are refused. */
static void test_merge_exact(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    char a[64], b[64];
    snprintf(a, sizeof a, "/tmp/test_loadgen_%d_a.json", (int)getpid());
    snprintf(b, sizeof b, "/tmp/test_loadgen_%d_b.json", (int)getpid());
    const char *aargs[] = {"--connections", "3,5", "--duration", "0.3", "--json", a,
                           "--host-name", "ns1", NULL};
    const char *bargs[] = {"--connections", "2,4", "--duration", "0.3", "--think-ms", "1",
                           "--json", b, NULL};
    assert_int_equal(testlg_run(srv.port, aargs, NULL), 0);
    assert_int_equal(testlg_run(srv.port, bargs, NULL), 0);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    json_t *da = json_load_file(a, 0, NULL), *db = json_load_file(b, 0, NULL), *dm;
    assert_non_null(da);
    assert_non_null(db);
    const char *ab[] = {a, b, NULL};
    if (run_merge(ab, &dm) != 0 || dm == NULL)
        fail_msg("merge: %.300s", testlg_err);
    static struct hist ha, hb, hm;
    static const char *const counts[] = {"requests.completed", "requests.errors",
                                         "requests.timeouts", "requests.mismatches",
                                         "requests.bytes_out", "connections.target",
                                         "connections.established"};
    static const char *const hists[] = {"latency", "latency_raw", "connect", "aux"};
    for (int i = 0; i < 2; i++) {
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
            assert_int_equal(step_int(dm, i, counts[k]),
                             step_int(da, i, counts[k]) + step_int(db, i, counts[k]));
        for (size_t k = 0; k < sizeof hists / sizeof hists[0]; k++) {
            step_hist(da, i, hists[k], &ha);
            step_hist(db, i, hists[k], &hb);
            step_hist(dm, i, hists[k], &hm);
            hist_merge(&ha, &hb);
            assert_memory_equal(&ha, &hm, sizeof hm);
        }
        /* A run's latency histogram holds exactly its completed requests (closed loop). */
        step_hist(da, i, "latency", &ha);
        assert_int_equal(ha.total, step_int(da, i, "requests.completed"));
        step_hist(dm, i, "latency", &hm);
        assert_true(hm.total > 0);
        assert_int_equal(step_int(dm, i, "latency_us.p50"), hist_percentile(&hm, 50));
        assert_int_equal(step_int(dm, i, "latency_us.p99"), hist_percentile(&hm, 99));
        assert_int_equal(step_int(dm, i, "latency_us.p999"), hist_percentile(&hm, 99.9));
        assert_int_equal(step_int(dm, i, "latency_us.max"), hm.max);
    }
    assert_int_equal(json_integer_value(testlg_get(dm, "merged.count")), 2);
    assert_string_equal(json_string_value(json_object_get(da, "host")), "ns1");
    assert_string_equal(json_string_value(json_array_get(testlg_get(dm, "merged.hosts"), 0)),
                        "ns1");
    assert_string_equal(json_string_value(json_array_get(testlg_get(dm, "merged.hosts"), 1)),
                        json_string_value(json_object_get(db, "host")));
    assert_string_equal(json_string_value(testlg_get(
                            json_array_get(testlg_get(dm, "merged.inputs"), 1), "file")), b);
    /* A merge of a merge stays exact and keeps every host. */
    char m[64];
    snprintf(m, sizeof m, "/tmp/test_loadgen_%d_m.json", (int)getpid());
    assert_int_equal(json_dump_file(dm, m, 0), 0);
    json_decref(dm);
    const char *ma[] = {m, a, NULL};
    assert_int_equal(run_merge(ma, &dm), 0);
    assert_int_equal(json_array_size(testlg_get(dm, "merged.hosts")), 3);
    for (int i = 0; i < 2; i++)
        assert_int_equal(step_int(dm, i, "requests.completed"),
                         2 * step_int(da, i, "requests.completed") +
                             step_int(db, i, "requests.completed"));
    json_decref(dm);
    unlink(m);

    const char *aa[] = {a, a, NULL};
    assert_int_equal(run_merge(aa, &dm), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(step_int(dm, i, "requests.completed"),
                         2 * step_int(da, i, "requests.completed"));
        assert_int_equal(step_int(dm, i, "latency_us.p99"), step_int(da, i, "latency_us.p99"));
    }
    json_decref(dm);

    /* A merged result that cannot be written is exit 1, not a silent 0. */
    const char *full[] = {"--json", "/dev/full", a, b, NULL};
    assert_int_equal(run_merge(full, &dm), 1);
    json_decref(dm);

    /* Refused: a file that is not a run, and runs with different numbers of steps. */
    char c[64];
    snprintf(c, sizeof c, "/tmp/test_loadgen_%d_c.json", (int)getpid());
    FILE *f = fopen(c, "w");
    assert_non_null(f);
    fputs("{\"schema\": \"other\"}\n", f);
    fclose(f);
    const char *ac[] = {a, c, NULL};
    assert_int_equal(run_merge(ac, &dm), 2);
    json_decref(dm);
    json_array_remove(json_object_get(db, "steps"), 1);
    assert_int_equal(json_dump_file(db, c, 0), 0);
    assert_int_equal(run_merge(ac, &dm), 2);
    json_decref(dm);
    /* Refused: a crafted count whose sum would overflow. */
    json_object_set_new(json_object_get(json_array_get(json_object_get(da, "steps"), 0),
                                        "connections"),
                        "target", json_integer((json_int_t)1 << 62));
    assert_int_equal(json_dump_file(da, c, 0), 0);
    assert_int_equal(run_merge(ac, &dm), 2);
    json_decref(dm);
    json_decref(da);
    json_decref(db);
    unlink(a);
    unlink(b);
    unlink(c);
}

/* --start-at: nothing starts before the instant, which the JSON records with the wall clock
 * at the start. */
static void test_start_at_waits(void **state)
{
    (void)state;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long at_us = ((long long)now.tv_sec + 1) * 1000000LL + now.tv_nsec / 1000 + 500000;
    char at[32];
    snprintf(at, sizeof at, "%lld.%06lld", at_us / 1000000, at_us % 1000000);
    const char *args[] = {"--connections", "2", "--duration", "0.1", "--start-at", at, NULL};
    json_t *doc;
    int rc = testlg_run_server("async-echo", args, &doc);
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d: %.300s", rc, testlg_err);
    long long got_at = json_integer_value(testlg_get(doc, "start.at_us"));
    long long wall = json_integer_value(testlg_get(doc, "start.wall_us"));
    if (got_at < at_us - 1 || got_at > at_us + 1)
        fail_msg("start.at_us %lld, asked %lld", got_at, at_us);
    if (wall < at_us || json_integer_value(testlg_get(doc, "start.late_us")) != wall - got_at)
        fail_msg("started at %lld, before %lld", wall, at_us);
    assert_true(step_int(doc, 0, "start_wall_us") >= at_us);
    json_decref(doc);
    const char *bad[] = {"--start-at", "soon", NULL};
    assert_int_equal(testlg_run(1, bad, NULL), 2);
}

/* A process tree like a supervisor with two workers: the parent forks two children, all
 * three wait for SIGKILL. Returns the parent's pid; *kids gets the children's. */
static pid_t start_tree(pid_t kids[2])
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t top = fork();
    if (top == 0) {
        close(p[0]);
        for (int i = 0; i < 2; i++) {
            pid_t k = fork();
            if (k == 0) {
                for (;;)
                    pause();
            }
            if (write(p[1], &k, sizeof k) != sizeof k)
                _exit(1);
        }
        close(p[1]);
        for (;;)
            pause();
    }
    close(p[1]);
    for (int i = 0; i < 2; i++)
        assert_int_equal(read(p[0], &kids[i], sizeof kids[i]), sizeof kids[i]);
    close(p[0]);
    return top;
}

/* --server-pid samples the whole tree under the pid: the figures are the sums of every
 * process, each one listed. */
static void test_server_pid_tree(void **state)
{
    (void)state;
    pid_t kids[2];
    pid_t top = start_tree(kids);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)top);
    const char *args[] = {"--scenario", "hold", "--connections", "3", "--duration", "0.2",
                          "--server-pid", pid, NULL};
    json_t *doc;
    int rc = testlg_run_server("async-echo", args, &doc);
    for (int i = 0; i < 2; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, WNOHANG);
    }
    kill(top, SIGKILL);
    waitpid(top, NULL, 0);
    if (rc != 0 || doc == NULL)
        fail_msg("exit %d: %.300s", rc, testlg_err);
    json_t *server = testlg_get(json_array_get(json_object_get(doc, "steps"), 0), "server");
    assert_int_equal(json_integer_value(json_object_get(server, "processes")), 3);
    json_t *workers = json_object_get(server, "workers");
    assert_int_equal(json_array_size(workers), 3);
    long long rss = 0, threads = 0;
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < 3; i++) {
        json_t *w = json_array_get(workers, i);
        pid_t wp = (pid_t)json_integer_value(json_object_get(w, "pid"));
        seen[0] |= wp == top;
        seen[1] |= wp == kids[0];
        seen[2] |= wp == kids[1];
        rss += json_integer_value(json_object_get(w, "rss_kib"));
        threads += json_integer_value(json_object_get(w, "threads"));
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    assert_int_equal(json_integer_value(json_object_get(server, "rss_kib")), rss);
    assert_int_equal(json_integer_value(json_object_get(server, "threads")), threads);
    assert_int_equal(threads, 3);
    json_decref(doc);
}

/* The port-exhaustion check: a step needing more connections than one source address has
 * ephemeral ports (ip_local_port_range) is refused before anything starts, exit 2, unless
 * --source-ips gives enough addresses (then the port check passes; the fd limit may still
 * refuse it, with its own message). */
static void test_port_exhaustion_refused(void **state)
{
    (void)state;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    long lo, hi;
    if (f == NULL || fscanf(f, "%ld %ld", &lo, &hi) != 2) {
        if (f)
            fclose(f);
        skip();
    }
    fclose(f);
    char conns[32];
    snprintf(conns, sizeof conns, "%ld", hi - lo + 2);
    const char *args[] = {"--connections", conns, "--duration", "0.1", NULL};
    int rc = testlg_run(1, args, NULL);
    if (rc != 2 || strstr(testlg_err, "ephemeral ports") == NULL)
        fail_msg("%s connections from one address: exit %d, %.300s", conns, rc, testlg_err);
    const char *two[] = {"--connections", conns, "--duration", "0.1", "--source-ips",
                         "127.0.0.1-127.0.0.2", NULL};
    rc = testlg_run(1, two, NULL);
    if (strstr(testlg_err, "ephemeral ports") != NULL)
        fail_msg("two addresses still refused for ports: %.300s", testlg_err);
}

/* hold's accounting is exact: one probe per connection. */
static void check_hold_exact(json_t *doc, long conns, long procs)
{
    if (doc == NULL)
        fail_msg("--procs %ld: no JSON: %.300s", procs, testlg_err);
    assert_int_equal(json_integer_value(testlg_get(doc, "config.procs")), procs);
    assert_int_equal(step_int(doc, 0, "connections.target"), conns);
    assert_int_equal(step_int(doc, 0, "connections.established"), conns);
    assert_int_equal(step_int(doc, 0, "requests.completed"), conns);
    assert_int_equal(step_int(doc, 0, "alive"), conns);
    assert_int_equal(step_int(doc, 0, "histograms.latency.total"), conns);
    assert_int_equal(step_int(doc, 0, "requests.errors") + step_int(doc, 0, "requests.timeouts") +
                         step_int(doc, 0, "requests.mismatches"), 0);
}

/* --procs 2 against one server accounts for requests as --procs 1 does: every connection
 * opened and probed once (the server's own counters agree: nothing counted twice or lost),
 * the merged histograms hold exactly the completed requests; bad combinations refused. */
static void test_procs_same_accounting(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)srv.pid);
    const long conns = 41;
    for (long procs = 1; procs <= 2; procs++) {
        char p[24];  /* any long: -O1 (make check) cannot see procs stays 1..2 */
        snprintf(p, sizeof p, "%ld", procs);
        const char *args[] = {"--scenario", "hold", "--connections", "41", "--duration", "0.2",
                              "--procs", p, "--server-pid", pid, NULL};
        json_t *doc;
        int rc = testlg_run(srv.port, args, &doc);
        if (rc != 0)
            fail_msg("--procs %ld: exit %d", procs, rc);
        check_hold_exact(doc, conns, procs);
        assert_non_null(testlg_get(json_array_get(json_object_get(doc, "steps"), 0), "server"));
        json_decref(doc);
    }
    /* The same over source addresses spread over the workers. */
    const char *sargs[] = {"--scenario", "hold", "--connections", "41", "--duration", "0.2",
                           "--procs", "2", "--source-ips", "127.0.0.1-127.0.0.4", NULL};
    json_t *sdoc;
    assert_int_equal(testlg_run(srv.port, sargs, &sdoc), 0);
    check_hold_exact(sdoc, conns, 2);
    json_decref(sdoc);
    /* Closed-loop echo over two workers, two steps: the merged figures are consistent. */
    const char *eargs[] = {"--connections", "6,9", "--duration", "0.3", "--procs", "2",
                           "--threads", "1", NULL};
    json_t *doc;
    assert_int_equal(testlg_run(srv.port, eargs, &doc), 0);
    assert_non_null(doc);
    long long echoed = 0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(step_int(doc, i, "connections.established"), i ? 9 : 6);
        assert_true(step_int(doc, i, "requests.completed") > 0);
        assert_int_equal(step_int(doc, i, "histograms.latency.total"),
                         step_int(doc, i, "requests.completed"));
        echoed += step_int(doc, i, "requests.completed");
    }
    json_decref(doc);
    int st;
    json_t *stopped = testsrv_stop(&srv, SIGTERM, 5000, &st);
    assert_non_null(stopped);
    /* Each of the 3 hold runs: its probe connection and 41 held ones; the echo run: a probe
     * and 9. */
    assert_int_equal(json_integer_value(json_object_get(stopped, "connections_accepted")),
                     3 * (1 + conns) + 1 + 9);
    long long in = json_integer_value(json_object_get(stopped, "bytes_in"));
    if (in < 3 * conns * 64 + echoed * 64)
        fail_msg("server read %lld bytes, fewer than loadgen's completed requests need", in);
    json_decref(stopped);
    const char *few[] = {"--connections", "2", "--procs", "3", NULL};
    assert_int_equal(testlg_run(1, few, NULL), 2);
    const char *chat[] = {"--scenario", "chat", "--connections", "4", "--procs", "2", NULL};
    assert_int_equal(testlg_run(1, chat, NULL), 2);
}

/* Runs loadgen against srv with --quiet --json PATH and args, sends SIGINT after delay_ms,
 * checks the exit 130 and returns the JSON written (the caller decrefs). */
static json_t *sigint_run(const struct testsrv *srv, const char *const *args, long delay_ms)
{
    char target[32], path[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", srv->port);
    snprintf(path, sizeof path, "/tmp/test_loadgen_%d.json", (int)getpid());
    unlink(path);
    char bin[512];
    snprintf(bin, sizeof bin, "%s/loadgen", testsrv_bin_dir());
    const char *argv[24] = {"loadgen", "--target", target, "--quiet", "--json", path};
    int n = 6;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
    int status = 0, waited = 0;
    for (int i = 0; i < 100 && !waited; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            waited = 1;
        else
            poll(NULL, 0, 100);
    }
    if (!waited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("loadgen did not exit after SIGINT");
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    unlink(path);
    assert_non_null(doc);
    assert_true(json_is_true(json_object_get(doc, "interrupted")));
    return doc;
}

/* SIGINT mid-step: exit 130 and the JSON of what was measured, marked interrupted; the same
 * through --procs 2 (the supervisor forwards it); and during a --start-at wait, no step. */
static void test_sigint_writes_partial_json(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    static const char *const one[] = {"--connections", "10,20", "--duration", "20", NULL};
    static const char *const two[] = {"--connections", "10,20", "--duration", "20", "--procs",
                                      "2", "--threads", "1", NULL};
    const char *const *runs[] = {one, two};
    for (int k = 0; k < 2; k++) {
        json_t *doc = sigint_run(&srv, runs[k], 1500);
        json_t *steps = json_object_get(doc, "steps");
        assert_int_equal(json_array_size(steps), 1);
        json_t *step = json_array_get(steps, 0);
        assert_true(json_is_true(json_object_get(step, "interrupted")));
        assert_true(json_integer_value(testlg_get(step, "requests.completed")) > 0);
        assert_true(json_number_value(json_object_get(step, "duration_s")) < 10.0);
        json_decref(doc);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char at[32];
    snprintf(at, sizeof at, "%lld", (long long)now.tv_sec + 60);
    const char *wait[] = {"--connections", "2", "--start-at", at, NULL};
    json_t *doc = sigint_run(&srv, wait, 500);
    assert_int_equal(json_array_size(json_object_get(doc, "steps")), 0);
    json_decref(doc);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

/* The children of pid (/proc/PID/task/PID/children), at most max. */
static int children_of(pid_t pid, pid_t *kids, int max)
{
    char path[64];
    long k;
    int n = 0;
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (n < max && fscanf(f, "%ld", &k) == 1)
        kids[n++] = (pid_t)k;
    fclose(f);
    return n;
}

/* 1 when pid's main thread is blocked in read(2) (/proc/PID/syscall): a --procs worker that
 * said "ready" waits for its first command there. */
static int blocked_in_read(pid_t pid)
{
    char path[64];
    long nr = -1;
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%ld", &nr) != 1)
        nr = -1;
    fclose(f);
    return nr == SYS_read;
}

/* --procs 2 with a worker killed once its engine runs, before step 0 (held back by
 * --start-at): the supervisor reports it and exits 1. malloc's memory is perturbed
 * (MALLOC_PERTURB_), so a step result left uninitialised, whose server samples that failure
 * path frees, makes it crash instead. */
static void test_procs_worker_lost_before_first_step(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char target[32], at[32], bin[512];
    snprintf(target, sizeof target, "127.0.0.1:%d", srv.port);
    snprintf(at, sizeof at, "%lld", (long long)now.tv_sec + 3);
    snprintf(bin, sizeof bin, "%s/loadgen", testsrv_bin_dir());
    const char *argv[] = {"loadgen", "--target", target, "--quiet", "--connections", "2",
                          "--duration", "0.2", "--procs", "2", "--threads", "1",
                          "--start-at", at, NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        setenv("MALLOC_PERTURB_", "165", 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    /* A worker has said "ready" once its engine's thread runs and it reads its commands. */
    pid_t kids[2];
    int ready = 0;
    for (int i = 0; i < 300 && !ready; i++) {
        ready = children_of(pid, kids, 2) == 2 && testsrv_proc_status(kids[1], "Threads") > 1 &&
                blocked_in_read(kids[1]);
        if (!ready)
            poll(NULL, 0, 10);
    }
    if (ready)
        kill(kids[1], SIGKILL);
    int status = 0, waited = 0;
    for (int i = 0; i < 150 && !waited; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            waited = 1;
        else
            poll(NULL, 0, 100);
    }
    if (!waited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    if (!ready)
        fail_msg("no --procs worker came to wait for its first command");
    if (!waited)
        fail_msg("loadgen did not exit after its worker was killed");
    if (WIFSIGNALED(status))
        fail_msg("loadgen died of signal %d", WTERMSIG(status));
    assert_int_equal(WEXITSTATUS(status), 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_bad_input, testsrv_teardown),
        cmocka_unit_test_teardown(test_bad_value_names_option, testsrv_teardown),
        cmocka_unit_test_teardown(test_chat_aliases, testsrv_teardown),
        cmocka_unit_test_teardown(test_json_per_scenario, testsrv_teardown),
        cmocka_unit_test_teardown(test_clean_run_against_echo_servers, testsrv_teardown),
        cmocka_unit_test_teardown(test_mismatches_counted, testsrv_teardown),
        cmocka_unit_test_teardown(test_extra_bytes_one_mismatch, testsrv_teardown),
        cmocka_unit_test_teardown(test_ctx_switches_ramp_down, testsrv_teardown),
        cmocka_unit_test_teardown(test_open_loop_rate_by_connections, testsrv_teardown),
        cmocka_unit_test_teardown(test_udp_corrupt_digit_is_mismatch, testsrv_teardown),
        cmocka_unit_test_teardown(test_dns_wrong_address_is_mismatch, testsrv_teardown),
        cmocka_unit_test_teardown(test_dns_tcp_zone_in_use, testsrv_teardown),
        cmocka_unit_test_teardown(test_baseline_after_probe, testsrv_teardown),
        cmocka_unit_test_teardown(test_hold_alive_only_held, testsrv_teardown),
        cmocka_unit_test_teardown(test_churn_delayed_retry_does_not_block, testsrv_teardown),
        cmocka_unit_test_teardown(test_open_loop_stall_recorded, testsrv_teardown),
        cmocka_unit_test_teardown(test_chat_padding_and_prefix_checked, testsrv_teardown),
        cmocka_unit_test_teardown(test_bench_bad_port, testsrv_teardown),
        cmocka_unit_test_teardown(test_timeouts_counted, testsrv_teardown),
        cmocka_unit_test_teardown(test_sigint_writes_partial_json, testsrv_teardown),
        cmocka_unit_test_teardown(test_lost_result_exits_nonzero, testsrv_teardown),
        cmocka_unit_test_teardown(test_threads_default_affinity, testsrv_teardown),
        cmocka_unit_test_teardown(test_merge_exact, testsrv_teardown),
        cmocka_unit_test_teardown(test_start_at_waits, testsrv_teardown),
        cmocka_unit_test_teardown(test_server_pid_tree, testsrv_teardown),
        cmocka_unit_test_teardown(test_port_exhaustion_refused, testsrv_teardown),
        cmocka_unit_test_teardown(test_procs_same_accounting, testsrv_teardown),
        cmocka_unit_test_teardown(test_procs_worker_lost_before_first_step, testsrv_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
