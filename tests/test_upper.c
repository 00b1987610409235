/* Unit tests of the uppercase transform: every byte value, in place, binary-safe. */
#include <string.h>

#include "cm.h"
#include "upper.h"

static void test_all_256_byte_values(void **state)
{
    (void)state;
    uint8_t buf[256];
    for (int i = 0; i < 256; i++)
        buf[i] = (uint8_t)i;
    upper_inplace(buf, sizeof buf);
    for (int i = 0; i < 256; i++) {
        uint8_t want = (i >= 'a' && i <= 'z') ? (uint8_t)(i - 32) : (uint8_t)i;
        assert_int_equal(buf[i], want);
    }
}

static void test_binary_with_nul_and_high_bytes(void **state)
{
    (void)state;
    const uint8_t in[] = {'a', 0, 'z', 0xe9, 0xff, '{', '`', 'A', 'm'};
    const uint8_t want[] = {'A', 0, 'Z', 0xe9, 0xff, '{', '`', 'A', 'M'};
    uint8_t buf[sizeof in];
    memcpy(buf, in, sizeof in);
    upper_inplace(buf, sizeof buf);
    assert_memory_equal(buf, want, sizeof want);
}

static void test_only_len_bytes_touched(void **state)
{
    (void)state;
    uint8_t buf[] = "abcdef";
    upper_inplace(buf, 3);
    assert_string_equal((char *)buf, "ABCdef");
    upper_inplace(buf, 0);
    assert_string_equal((char *)buf, "ABCdef");
}

static void test_long_buffer_every_offset(void **state)
{
    (void)state;
    /* Long enough for any vectorised path, checked at every start offset and length. */
    uint8_t src[300], buf[300];
    for (int i = 0; i < 300; i++)
        src[i] = (uint8_t)(i * 37 + 11);
    for (size_t off = 0; off < 40; off++) {
        size_t len = sizeof src - off;
        memcpy(buf, src, sizeof src);
        upper_inplace(buf + off, len);
        assert_memory_equal(buf, src, off);
        assert_true(upper_matches(src + off, buf + off, len));
    }
}

static void test_matches_detects_any_wrong_byte(void **state)
{
    (void)state;
    const uint8_t sent[] = "hello, World 42";
    uint8_t reply[sizeof sent];
    memcpy(reply, sent, sizeof sent);
    upper_inplace(reply, sizeof reply);
    assert_true(upper_matches(sent, reply, sizeof sent));
    for (size_t i = 0; i < sizeof sent; i++) {
        reply[i] ^= 0x01;
        assert_false(upper_matches(sent, reply, sizeof sent));
        reply[i] ^= 0x01;
    }
    /* The sent bytes themselves (lowercase) are not a valid reply. */
    assert_false(upper_matches(sent, sent, sizeof sent));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_256_byte_values),
        cmocka_unit_test(test_binary_with_nul_and_high_bytes),
        cmocka_unit_test(test_only_len_bytes_touched),
        cmocka_unit_test(test_long_buffer_every_offset),
        cmocka_unit_test(test_matches_detects_any_wrong_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
