/* Unit tests of the DNS server counters both models print in their stopped line. */
#include <string.h>

#include "cm.h"
#include "dnsstats.h"
#include "dnswire.h"

static void test_count_and_add(void **state)
{
    (void)state;
    struct dnsstats a = {0}, b = {0};
    uint8_t reply[12] = {0};
    dnsstats_count_reply(&a, 0, reply, sizeof reply);      /* NOERROR */
    dnsstats_count_reply(&a, 3, reply, sizeof reply);      /* NXDOMAIN */
    dnsstats_count_reply(&a, -1, NULL, 0);                  /* dropped */
    reply[2] = DNSWIRE_F_TC >> 8;
    dnsstats_count_reply(&a, 0, reply, sizeof reply);      /* NOERROR, truncated */
    dnsstats_count_reply(&a, 0, reply, 3);                  /* too short to carry TC */
    reply[2] = 0;
    reply[11] = 1;                                          /* an OPT in the additional */
    dnsstats_count_reply(&a, DNSWIRE_RC_BADVERS, reply, sizeof reply);
    dnsstats_count_reply(&a, 0, reply, 11);                 /* too short to carry ARCOUNT */
    assert_int_equal(a.rcode[0], 4);
    assert_int_equal(a.rcode[3], 1);
    assert_int_equal(a.rcode[DNSWIRE_RC_BADVERS], 1);
    assert_int_equal(a.edns_replies, 1);
    assert_int_equal(a.dropped, 1);
    assert_int_equal(a.truncated_replies, 1);
    a.udp = 4;
    a.tcp = 1;
    b.udp = 10;
    b.rcode[0] = 7;
    b.send_failures = 2;
    dnsstats_add(&b, &a);
    assert_int_equal(b.udp, 14);
    assert_int_equal(b.tcp, 1);
    assert_int_equal(b.rcode[0], 11);
    assert_int_equal(b.rcode[3], 1);
    assert_int_equal(b.rcode[DNSWIRE_RC_BADVERS], 1);
    assert_int_equal(b.edns_replies, 1);
    assert_int_equal(b.send_failures, 2);
    assert_int_equal(b.dropped, 1);
}

static void test_json(void **state)
{
    (void)state;
    struct dnsstats c = {0};
    c.udp = 5;
    c.tcp = 2;
    c.rcode[0] = 4;
    c.rcode[4] = 1;
    c.rcode[9] = 2; /* not one of the six named: appears as RCODE9 only when non-zero */
    json_t *o = dnsstats_json(&c);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "queries"), "udp")), 5);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "queries"), "tcp")), 2);
    json_t *rc = json_object_get(o, "rcodes");
    assert_int_equal(json_integer_value(json_object_get(rc, "NOERROR")), 4);
    assert_int_equal(json_integer_value(json_object_get(rc, "NOTIMP")), 1);
    assert_int_equal(json_integer_value(json_object_get(rc, "REFUSED")), 0);
    assert_int_equal(json_integer_value(json_object_get(rc, "RCODE9")), 2);
    assert_null(json_object_get(rc, "RCODE10"));
    assert_null(json_object_get(rc, "BADVERS")); /* zero: left out */
    json_decref(o);
    c.rcode[DNSWIRE_RC_BADVERS] = 3;
    c.edns_replies = 6;
    o = dnsstats_json(&c);
    rc = json_object_get(o, "rcodes");
    assert_int_equal(json_integer_value(json_object_get(rc, "BADVERS")), 3);
    assert_null(json_object_get(rc, "RCODE16"));
    assert_int_equal(json_integer_value(json_object_get(o, "edns_replies")), 6);
    assert_true(json_is_integer(json_object_get(o, "truncated_replies")));
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_and_add),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
