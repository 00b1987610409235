/* Unit tests of the line framer (common/frame.h): table cases, guard page, every split. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "frame.h"

struct frame_case {
    const char *in;
    size_t len;
    size_t max_line;
    long want;
};

#define S(lit) lit, sizeof(lit) - 1

static const struct frame_case cases[] = {
    {S(""), 4, FRAME_NEED_MORE},
    {S("\n"), 4, 1},
    {S("abc\n"), 4, 4},
    {S("abcd\n"), 4, 5},           /* exactly max_line: accepted */
    {S("abcde\n"), 4, FRAME_TOO_LONG},
    {S("abcd"), 4, FRAME_NEED_MORE}, /* may still end at max_line */
    {S("abcde"), 4, FRAME_TOO_LONG}, /* max_line+1 bytes, no '\n' */
    {S("ab\ncd\n"), 4, 3},           /* only the first line */
    {S("ab\r\n"), 4, 4},             /* '\r' is an ordinary byte */
    {S("a\0b\n"), 4, 4},             /* binary-safe */
    {S("\n\n"), 4, 1},
    {S("abcd\nefghij"), 4, 5},       /* a too-long tail does not hide a good head */
    {S("\n"), 0, 1},
    {S("a"), 0, FRAME_TOO_LONG},
    {S(""), 0, FRAME_NEED_MORE},
    {S("hello world\n"), 4096, 12},
};

/* Copies len bytes to the end of a page followed by an inaccessible one: any read past the
 * input faults. */
static const uint8_t *guarded(uint8_t *area, long page, const char *in, size_t len)
{
    uint8_t *dst = area + page - len;
    memcpy(dst, in, len);
    return dst;
}

static void test_frame_table(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *area = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(area != MAP_FAILED);
    assert_int_equal(mprotect(area + page, (size_t)page, PROT_NONE), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct frame_case *c = &cases[i];
        const uint8_t *p = guarded(area, page, c->in, c->len);
        long got = frame_next(p, c->len, c->max_line);
        if (got != c->want)
            fail_msg("case %zu: frame_next = %ld, want %ld", i, got, c->want);
    }
    munmap(area, (size_t)page * 2);
}

/* A reader's view of a stream: the lines it framed, then whether it saw a too-long line. */
struct framed {
    char lines[64][64];
    size_t nlines;
    int too_long;
};

/* Feeds in[0..len) as chunks ending at the offsets in cut[0..ncut), framing after every chunk
 * the way the servers do (buffer, frame every complete line, keep the rest). */
static void feed(const char *in, size_t len, const size_t *cut, size_t ncut, size_t max_line,
                 struct framed *out)
{
    uint8_t buf[512];
    size_t have = 0, pos = 0;

    memset(out, 0, sizeof *out);
    for (size_t k = 0; k <= ncut && !out->too_long; k++) {
        size_t end = k < ncut ? cut[k] : len;
        memcpy(buf + have, in + pos, end - pos);
        have += end - pos;
        pos = end;
        for (;;) {
            long r = frame_next(buf, have, max_line);
            if (r == FRAME_NEED_MORE)
                break;
            if (r == FRAME_TOO_LONG) {
                out->too_long = 1;
                break;
            }
            assert_true(out->nlines < 64 && r <= 64);
            memcpy(out->lines[out->nlines], buf, (size_t)r - 1);
            out->lines[out->nlines++][r - 1] = '\0';
            memmove(buf, buf + r, have - (size_t)r);
            have -= (size_t)r;
        }
    }
}

static void assert_same(const struct framed *a, const struct framed *b, size_t where)
{
    if (a->nlines != b->nlines || a->too_long != b->too_long)
        fail_msg("split at %zu: %zu lines/too_long %d, whole input %zu/%d", where, a->nlines,
                 a->too_long, b->nlines, b->too_long);
    for (size_t i = 0; i < a->nlines; i++)
        assert_string_equal(a->lines[i], b->lines[i]);
}

struct stream_case {
    const char *in;
    size_t len;
    size_t max_line;
    size_t want_lines;
    int want_too_long;
};

static const struct stream_case streams[] = {
    {S("one\ntwo\n\nthree\n"), 8, 4, 0},
    {S("12345678\nabc\n"), 8, 2, 0},
    {S("ok\n123456789\nnever\n"), 8, 1, 1},
    {S("ok\nno newline and too long"), 8, 1, 1},
    {S("partial"), 8, 0, 0},
};

/* Every split into two reads, and one byte per read, frame exactly like the whole input. */
static void test_frame_every_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        const struct stream_case *c = &streams[i];
        struct framed whole, split;
        size_t bytewise[128];

        feed(c->in, c->len, NULL, 0, c->max_line, &whole);
        assert_int_equal(whole.nlines, c->want_lines);
        assert_int_equal(whole.too_long, c->want_too_long);
        for (size_t k = 0; k <= c->len; k++) {
            feed(c->in, c->len, &k, 1, c->max_line, &split);
            assert_same(&split, &whole, k);
        }
        for (size_t k = 0; k < c->len; k++)
            bytewise[k] = k + 1;
        feed(c->in, c->len, bytewise, c->len, c->max_line, &split);
        assert_same(&split, &whole, 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_table),
        cmocka_unit_test(test_frame_every_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
