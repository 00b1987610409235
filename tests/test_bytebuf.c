/* Unit tests of the byte queue used by the raw-event echo server. */
#include <string.h>

#include "bytebuf.h"
#include "cm.h"

static void test_append_peek_consume(void **state)
{
    (void)state;
    struct bytebuf b = BYTEBUF_INIT;
    size_t len;
    assert_int_equal(bytebuf_len(&b), 0);
    assert_int_equal(bytebuf_append(&b, "hello ", 6), 0);
    assert_int_equal(bytebuf_append(&b, "world", 5), 0);
    const uint8_t *p = bytebuf_peek(&b, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(p, "hello world", 11);
    bytebuf_consume(&b, 6);
    p = bytebuf_peek(&b, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "world", 5);
    bytebuf_consume(&b, 5);
    assert_int_equal(bytebuf_len(&b), 0);
    bytebuf_free(&b);
    assert_null(b.data);
}

static void test_reserve_commit(void **state)
{
    (void)state;
    struct bytebuf b = BYTEBUF_INIT;
    size_t avail, len;
    uint8_t *dst = bytebuf_reserve(&b, 100, &avail);
    assert_non_null(dst);
    assert_true(avail >= 100);
    memcpy(dst, "abc", 3);
    bytebuf_commit(&b, 3);
    assert_memory_equal(bytebuf_peek(&b, &len), "abc", 3);
    assert_int_equal(len, 3);
    bytebuf_free(&b);
}

/* A queue that is filled and drained in a steady pattern must keep its capacity, and its
 * content must stay exact through compaction and growth. */
static void test_fifo_order_through_growth_and_compaction(void **state)
{
    (void)state;
    struct bytebuf b = BYTEBUF_INIT;
    uint8_t expect_next = 0, write_next = 0;
    for (int round = 0; round < 2000; round++) {
        size_t add = (size_t)(round * 7919) % 3000 + 1;
        for (size_t i = 0; i < add; i++) {
            uint8_t c = write_next++;
            assert_int_equal(bytebuf_append(&b, &c, 1), 0);
        }
        size_t len;
        const uint8_t *p = bytebuf_peek(&b, &len);
        size_t take = len > 2500 ? len - 100 : len / 2;
        for (size_t i = 0; i < take; i++)
            assert_int_equal(p[i], expect_next++);
        bytebuf_consume(&b, take);
    }
    assert_true(b.cap <= 16384);
    bytebuf_free(&b);
}

static void test_large_reserve(void **state)
{
    (void)state;
    struct bytebuf b = BYTEBUF_INIT;
    size_t avail;
    assert_int_equal(bytebuf_append(&b, "x", 1), 0);
    assert_non_null(bytebuf_reserve(&b, 1 << 20, &avail));
    assert_true(avail >= (1 << 20));
    assert_int_equal(bytebuf_len(&b), 1);
    /* An impossible size fails and leaves the buffer as it was. */
    assert_null(bytebuf_reserve(&b, SIZE_MAX - 10, &avail));
    assert_int_equal(bytebuf_len(&b), 1);
    bytebuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_peek_consume),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_fifo_order_through_growth_and_compaction),
        cmocka_unit_test(test_large_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
