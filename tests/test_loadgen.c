/* Integration tests of bin/loadgen: JSON keys and types per scenario, clean runs against the
 * echo servers, mismatches caught against a corrupting server, --server-pid figures, bad input
 * and the signal exit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testsrv.h"

#define OUT_MAX (256 * 1024)
#define RUN_TIMEOUT_MS 30000

static char out_buf[OUT_MAX], err_buf[OUT_MAX];

/* Runs bin/loadgen with args against port (port 0: no --target), --quiet. Returns the exit
 * status; the parsed stdout JSON in *doc (NULL when stdout is not JSON). */
static int run_loadgen(int port, const char *const *args, json_t **doc)
{
    const char *argv[64];
    char target[32];
    int n = 0;
    argv[n++] = "loadgen";
    if (port > 0) {
        snprintf(target, sizeof target, "127.0.0.1:%d", port);
        argv[n++] = "--target";
        argv[n++] = target;
    }
    argv[n++] = "--quiet";
    for (int i = 0; args && args[i] && n < 62; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = testsrv_run(argv, out_buf, sizeof out_buf, err_buf, sizeof err_buf, RUN_TIMEOUT_MS);
    if (doc) {
        json_error_t jerr;
        *doc = json_loads(out_buf, 0, &jerr);
    }
    if (rc != 0 && rc != 130 && rc != 2)
        fprintf(stderr, "loadgen exited %d; stderr:\n%s\n", rc, err_buf);
    return rc;
}

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

static json_t *lookup(json_t *root, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
        v = json_object_get(v, tok);
    return v;
}

static void check_keys(json_t *root, const struct key_spec *keys, size_t nkeys, const char *what)
{
    for (size_t i = 0; i < nkeys; i++) {
        json_t *v = lookup(root, keys[i].path);
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
        int rc = run_loadgen(srv.port, args, &doc);
        if (rc != 0 || doc == NULL)
            fail_msg("%s: exit %d, JSON %s", sc->name, rc, doc ? "ok" : "unparsable");
        assert_string_equal(json_string_value(json_object_get(doc, "schema")), "tvsa-loadgen/1");
        check_keys(doc, top_keys, sizeof top_keys / sizeof top_keys[0], sc->name);
        json_t *steps = json_object_get(doc, "steps");
        json_t *cfgconns = lookup(doc, "config.connections");
        assert_int_equal(json_array_size(steps), json_array_size(cfgconns));
        for (size_t s = 0; s < json_array_size(steps); s++) {
            json_t *step = json_array_get(steps, s);
            check_keys(step, step_keys, sizeof step_keys / sizeof step_keys[0], sc->name);
            if (sc->extra)
                check_keys(step, sc->extra, sc->nextra, sc->name);
            assert_int_equal(json_integer_value(lookup(step, "requests.errors")), 0);
            assert_int_equal(json_integer_value(lookup(step, "requests.mismatches")), 0);
            assert_int_equal(json_integer_value(lookup(step, "connections.established")),
                             json_integer_value(json_array_get(cfgconns, s)));
            if (json_integer_value(lookup(step, "requests.completed")) < sc->min_completed)
                fail_msg("%s: only %lld requests", sc->name,
                         (long long)json_integer_value(lookup(step, "requests.completed")));
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
        int rc = run_loadgen(srv.port, args, &doc);
        int st;
        json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
        if (rc != 0 || doc == NULL)
            fail_msg("%s: exit %d", echo_servers[i], rc);
        json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
        assert_non_null(step);
        const char *zero[] = {"requests.errors", "requests.mismatches", "requests.timeouts",
                              "connections.failed"};
        for (size_t k = 0; k < 4; k++)
            if (json_integer_value(lookup(step, zero[k])) != 0)
                fail_msg("%s: %s = %lld", echo_servers[i], zero[k],
                         (long long)json_integer_value(lookup(step, zero[k])));
        assert_int_equal(json_integer_value(lookup(step, "connections.established")), 200);
        assert_true(json_integer_value(lookup(step, "requests.completed")) > 1000);
        /* Server figures: present and sane. */
        assert_true(json_integer_value(lookup(step, "server.rss_kib")) > 0);
        assert_true(json_integer_value(lookup(step, "server.vsz_kib")) >=
                    json_integer_value(lookup(step, "server.rss_kib")));
        assert_true(json_integer_value(lookup(step, "server.threads")) >= 1);
        assert_true(json_number_value(lookup(step, "server.cpu_s.user")) +
                    json_number_value(lookup(step, "server.cpu_s.sys")) > 0);
        assert_true(json_number_value(lookup(step, "server.ctx_switches_per_request")) >= 0);
        /* Latencies are ordered. */
        json_int_t p50 = json_integer_value(lookup(step, "latency_us.p50"));
        json_int_t p99 = json_integer_value(lookup(step, "latency_us.p99"));
        json_int_t mx = json_integer_value(lookup(step, "latency_us.max"));
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
    int rc = run_loadgen(srv.port, args, &doc);
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    assert_int_equal(rc, 0);
    assert_non_null(doc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    json_int_t mism = json_integer_value(lookup(step, "requests.mismatches"));
    json_int_t done = json_integer_value(lookup(step, "requests.completed"));
    /* 64-byte requests, one bad byte per 1000: about one request in 15.6 is wrong. */
    assert_true(mism > 0);
    assert_true(done > 0);
    assert_true(mism * 5 < done);
    assert_true(mism * 40 > done);
    json_decref(doc);
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
    int rc = run_loadgen(ntohs(sa.sin_port), args, &doc);
    close(lfd);
    assert_int_equal(rc, 0);
    assert_non_null(doc);
    json_t *step = json_array_get(json_object_get(doc, "steps"), 0);
    assert_int_equal(json_integer_value(lookup(step, "requests.completed")), 0);
    /* 4 connections, 200-300 ms each: at least one round of timeouts per connection. */
    assert_true(json_integer_value(lookup(step, "requests.timeouts")) >= 4);
    assert_int_equal(json_integer_value(lookup(step, "requests.mismatches")), 0);
    json_decref(doc);
}

struct bad_case {
    const char *name;
    const char *args[8];
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
        const char *args[16];
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
        int rc = run_loadgen(bc->live_target ? srv.port : 0, args, NULL);
        if (rc != 2)
            fail_msg("%s: exit %d, want 2", bc->name, rc);
        if (strstr(out_buf, "tvsa-loadgen") != NULL)
            fail_msg("%s: JSON written on bad input", bc->name);
        if (strlen(err_buf) == 0)
            fail_msg("%s: no message on stderr", bc->name);
    }
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
}

/* SIGINT mid-step: exit 130 and the JSON of what was measured, marked interrupted. */
static void test_sigint_writes_partial_json(void **state)
{
    (void)state;
    struct testsrv srv;
    assert_int_equal(testsrv_start(&srv, "async-echo", NULL), 0);
    char target[32], path[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", srv.port);
    snprintf(path, sizeof path, "/tmp/test_loadgen_%d.json", (int)getpid());
    unlink(path);
    char bin[512];
    snprintf(bin, sizeof bin, "%s/loadgen", testsrv_bin_dir());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(bin, "loadgen", "--target", target, "--connections", "10,20", "--duration", "20",
              "--quiet", "--json", path, (char *)NULL);
        _exit(127);
    }
    struct timespec ts = {1, 500000000};
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
    int st;
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    unlink(path);
    assert_non_null(doc);
    assert_true(json_is_true(json_object_get(doc, "interrupted")));
    json_t *steps = json_object_get(doc, "steps");
    assert_int_equal(json_array_size(steps), 1);
    json_t *step = json_array_get(steps, 0);
    assert_true(json_is_true(json_object_get(step, "interrupted")));
    assert_true(json_integer_value(lookup(step, "requests.completed")) > 0);
    assert_true(json_number_value(json_object_get(step, "duration_s")) < 10.0);
    json_decref(doc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_json_per_scenario),
        cmocka_unit_test(test_clean_run_against_echo_servers),
        cmocka_unit_test(test_mismatches_counted),
        cmocka_unit_test(test_timeouts_counted),
        cmocka_unit_test(test_sigint_writes_partial_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
