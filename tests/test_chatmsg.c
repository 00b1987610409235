/* Unit tests of the chat messages (common/chat.h): exact formats, parsing, every split. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "chat.h"
#include "frame.h"

enum fmt { F_JOINED, F_LEFT, F_LINE, F_TOO_LONG };

struct fmt_case {
    enum fmt fmt;
    const char *name;
    const char *text;
    size_t text_len;
    const char *want;
    size_t want_len;
};

#define S(lit) lit, sizeof(lit) - 1

static const struct fmt_case fmt_cases[] = {
    {F_JOINED, "127.0.0.1:40000", NULL, 0, S("*** 127.0.0.1:40000 joined ***\n")},
    {F_LEFT, "127.0.0.1:40000", NULL, 0, S("*** 127.0.0.1:40000 left ***\n")},
    {F_LINE, "127.0.0.1:40000", S("hello"), S("127.0.0.1:40000: hello\n")},
    {F_LINE, "127.0.0.1:1", S(""), S("127.0.0.1:1: \n")},
    {F_LINE, "[::1]:9", S("a: b"), S("[::1]:9: a: b\n")},
    {F_LINE, "10.0.0.1:5", S("x\0y\r"), S("10.0.0.1:5: x\0y\r\n")},
    {F_JOINED, "[::1]:65535", NULL, 0, S("*** [::1]:65535 joined ***\n")},
    {F_TOO_LONG, NULL, NULL, 0, S("*** line too long ***\n")},
};

static size_t run_fmt(const struct fmt_case *c, char *dst, size_t cap)
{
    switch (c->fmt) {
    case F_JOINED: return chat_fmt_joined(dst, cap, c->name);
    case F_LEFT: return chat_fmt_left(dst, cap, c->name);
    case F_LINE: return chat_fmt_line(dst, cap, c->name, (const uint8_t *)c->text, c->text_len);
    case F_TOO_LONG: return chat_fmt_too_long(dst, cap);
    }
    return 0;
}

static void test_chatmsg_formats(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof fmt_cases / sizeof fmt_cases[0]; i++) {
        const struct fmt_case *c = &fmt_cases[i];
        char buf[128];

        memset(buf, '#', sizeof buf);
        assert_int_equal(run_fmt(c, buf, sizeof buf), c->want_len);
        assert_memory_equal(buf, c->want, c->want_len);
        assert_int_equal(buf[c->want_len], '#'); /* no NUL, nothing past the message */

        /* One byte short: the length comes back and nothing is written. */
        memset(buf, '#', sizeof buf);
        assert_int_equal(run_fmt(c, buf, c->want_len - 1), c->want_len);
        for (size_t k = 0; k < sizeof buf; k++)
            assert_int_equal(buf[k], '#');
        /* Exactly enough room. */
        assert_int_equal(run_fmt(c, buf, c->want_len), c->want_len);
        assert_memory_equal(buf, c->want, c->want_len);
    }
}

struct parse_case {
    const char *line;
    size_t len;
    enum chat_kind kind;
    const char *name; /* expected name, NULL when none */
    const char *text; /* expected text, NULL when none */
};

static const struct parse_case parse_cases[] = {
    {S("*** 127.0.0.1:5 joined ***"), CHAT_JOINED, "127.0.0.1:5", NULL},
    {S("*** 127.0.0.1:5 left ***"), CHAT_LEFT, "127.0.0.1:5", NULL},
    {S("*** line too long ***"), CHAT_TOO_LONG, NULL, NULL},
    {S("127.0.0.1:5: hi there"), CHAT_LINE, "127.0.0.1:5", "hi there"},
    {S("[::1]:5: a: b"), CHAT_LINE, "[::1]:5", "a: b"},
    {S("127.0.0.1:5: "), CHAT_LINE, "127.0.0.1:5", ""},
    {S("127.0.0.1:5: *** x joined ***"), CHAT_LINE, "127.0.0.1:5", "*** x joined ***"},
    {S("*** joined ***"), CHAT_UNKNOWN, NULL, NULL},
    {S("*** something ***"), CHAT_UNKNOWN, NULL, NULL},
    {S(": nameless"), CHAT_UNKNOWN, NULL, NULL},
    {S("no separator"), CHAT_UNKNOWN, NULL, NULL},
    {S(""), CHAT_UNKNOWN, NULL, NULL},
};

static void test_chatmsg_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        const struct parse_case *c = &parse_cases[i];
        struct chat_msg m;

        if (chat_parse((const uint8_t *)c->line, c->len, &m) != c->kind)
            fail_msg("case %zu (%s): kind %d, want %d", i, c->line, m.kind, c->kind);
        if (c->name) {
            assert_int_equal(m.name_len, strlen(c->name));
            assert_memory_equal(m.name, c->name, m.name_len);
        } else {
            assert_null(m.name);
        }
        if (c->text) {
            assert_int_equal(m.text_len, strlen(c->text));
            assert_memory_equal(m.text, c->text, m.text_len);
        } else {
            assert_null(m.text);
        }
    }
}

/* What a client made of a stream: the kind, name and text of every message. */
struct seen {
    enum chat_kind kind[16];
    char name[16][CHAT_NAME_MAX];
    char text[16][32];
    size_t n;
};

/* Frames and parses stream[0..len) delivered as two reads split at `cut`. */
static void receive(const char *stream, size_t len, size_t cut, struct seen *out)
{
    uint8_t buf[512];
    size_t have = 0;
    size_t ends[2] = {cut, len};
    size_t pos = 0;

    memset(out, 0, sizeof *out);
    for (int k = 0; k < 2; k++) {
        memcpy(buf + have, stream + pos, ends[k] - pos);
        have += ends[k] - pos;
        pos = ends[k];
        long r;
        while ((r = frame_next(buf, have, 200)) > 0) {
            struct chat_msg m;
            assert_true(out->n < 16);
            out->kind[out->n] = chat_parse(buf, (size_t)r - 1, &m);
            if (m.name)
                memcpy(out->name[out->n], m.name, m.name_len);
            if (m.text)
                memcpy(out->text[out->n], m.text, m.text_len);
            out->n++;
            memmove(buf, buf + r, have - (size_t)r);
            have -= (size_t)r;
        }
        assert_int_equal(r, FRAME_NEED_MORE);
    }
}

/* A stream of formatted messages parses back to what was formatted, however it is split. */
static void test_chatmsg_stream_every_split(void **state)
{
    (void)state;
    char stream[512];
    size_t len = 0;
    const char *a = "127.0.0.1:1000", *b = "[::1]:2000";

    len += chat_fmt_joined(stream + len, sizeof stream - len, a);
    len += chat_fmt_line(stream + len, sizeof stream - len, a, (const uint8_t *)"first", 5);
    len += chat_fmt_line(stream + len, sizeof stream - len, b, (const uint8_t *)"x: y", 4);
    len += chat_fmt_left(stream + len, sizeof stream - len, a);
    len += chat_fmt_too_long(stream + len, sizeof stream - len);
    assert_true(len < sizeof stream);

    static const enum chat_kind kinds[] = {CHAT_JOINED, CHAT_LINE, CHAT_LINE, CHAT_LEFT,
                                           CHAT_TOO_LONG};
    for (size_t cut = 0; cut <= len; cut++) {
        struct seen s;
        receive(stream, len, cut, &s);
        assert_int_equal(s.n, 5);
        for (size_t i = 0; i < 5; i++)
            assert_int_equal(s.kind[i], kinds[i]);
        assert_string_equal(s.name[0], a);
        assert_string_equal(s.name[1], a);
        assert_string_equal(s.text[1], "first");
        assert_string_equal(s.name[2], b);
        assert_string_equal(s.text[2], "x: y");
        assert_string_equal(s.name[3], a);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatmsg_formats),
        cmocka_unit_test(test_chatmsg_parse),
        cmocka_unit_test(test_chatmsg_stream_every_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
