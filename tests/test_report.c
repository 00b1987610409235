/* Unit tests of the JSON event lines and the server counters behind them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cm.h"
#include "report.h"
#include "srvstats.h"

static json_t *emit_and_parse(json_t *obj)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(report_emit(f, obj), 0);
    fclose(f);
    /* Exactly one line. */
    assert_true(len > 1);
    assert_int_equal(text[len - 1], '\n');
    assert_null(memchr(text, '\n', len - 1));
    json_t *back = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(back);
    return back;
}

static void test_listening_line(void **state)
{
    (void)state;
    json_t *o = emit_and_parse(report_listening("async-echo", "async", "127.0.0.1", 9000,
                                                json_pack("{s:s}", "api", "event")));
    assert_string_equal(json_string_value(json_object_get(o, "event")), "listening");
    assert_string_equal(json_string_value(json_object_get(o, "server")), "async-echo");
    assert_string_equal(json_string_value(json_object_get(o, "model")), "async");
    assert_string_equal(json_string_value(json_object_get(o, "addr")), "127.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(o, "port")), 9000);
    assert_int_equal(json_integer_value(json_object_get(o, "pid")), getpid());
    assert_string_equal(json_string_value(json_object_get(o, "api")), "event");
    json_decref(o);
}

static void test_counters_and_stopped_line(void **state)
{
    (void)state;
    struct srv_stats st = {0};
    assert_int_equal(srvstats_opened(&st), 1);
    assert_int_equal(srvstats_opened(&st), 2);
    srvstats_closed(&st, 10, 20);
    assert_int_equal(srvstats_opened(&st), 2);
    srvstats_closed(&st, 1, 2);
    srvstats_closed(&st, 100, 200);
    srvstats_refused(&st);
    assert_int_equal(srvstats_current(&st), 0);

    json_t *o = emit_and_parse(report_stopped("threaded-echo", "threaded", &st, NULL));
    assert_string_equal(json_string_value(json_object_get(o, "event")), "stopped");
    assert_int_equal(json_integer_value(json_object_get(o, "connections_accepted")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "connections_refused")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "peak_concurrent")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "bytes_in")), 111);
    assert_int_equal(json_integer_value(json_object_get(o, "bytes_out")), 222);
    json_t *ru = json_object_get(o, "rusage");
    assert_true(json_is_number(json_object_get(ru, "user_s")));
    assert_true(json_is_number(json_object_get(ru, "sys_s")));
    assert_true(json_integer_value(json_object_get(ru, "maxrss_kib")) > 0);
    json_t *cs = json_object_get(ru, "ctx_switches");
    assert_true(json_is_integer(json_object_get(cs, "voluntary")));
    assert_true(json_is_integer(json_object_get(cs, "involuntary")));
    json_decref(o);
}

static void test_emit_null_fails(void **state)
{
    (void)state;
    assert_int_equal(report_emit(stdout, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listening_line),
        cmocka_unit_test(test_counters_and_stopped_line),
        cmocka_unit_test(test_emit_null_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
