/* The chat protocol's messages (docs/interfaces.md): formatting for servers, parsing for clients. */
#include "chat.h"

#include <string.h>

static const char too_long_msg[] = "*** line too long ***\n";

/* Concatenates the pieces into dst if they fit; returns their total length either way. */
static size_t put(char *dst, size_t cap, const void *const *piece, const size_t *plen, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += plen[i];
    if (total > cap)
        return total;
    for (int i = 0; i < n; i++) {
        if (plen[i] > 0)
            memcpy(dst, piece[i], plen[i]);
        dst += plen[i];
    }
    return total;
}

static size_t notice(char *dst, size_t cap, const char *name, const char *verb)
{
    const void *p[] = {"*** ", name, verb};
    size_t l[] = {4, strlen(name), strlen(verb)};
    return put(dst, cap, p, l, 3);
}

size_t chat_fmt_joined(char *dst, size_t cap, const char *name)
{
    return notice(dst, cap, name, " joined ***\n");
}

size_t chat_fmt_left(char *dst, size_t cap, const char *name)
{
    return notice(dst, cap, name, " left ***\n");
}

size_t chat_fmt_line(char *dst, size_t cap, const char *name, const uint8_t *text, size_t len)
{
    const void *p[] = {name, ": ", text, "\n"};
    size_t l[] = {strlen(name), 2, len, 1};
    return put(dst, cap, p, l, 4);
}

size_t chat_fmt_too_long(char *dst, size_t cap)
{
    const void *p[] = {too_long_msg};
    size_t l[] = {sizeof too_long_msg - 1};
    return put(dst, cap, p, l, 1);
}

static int has_suffix(const uint8_t *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

enum chat_kind chat_parse(const uint8_t *line, size_t len, struct chat_msg *m)
{
    memset(m, 0, sizeof *m);
    m->kind = CHAT_UNKNOWN;
    if (len == sizeof too_long_msg - 2 && memcmp(line, too_long_msg, len) == 0) {
        m->kind = CHAT_TOO_LONG;
    } else if (len > 4 && memcmp(line, "*** ", 4) == 0) {
        /* A notice: a LINE cannot start this way, its name comes first. */
        if (has_suffix(line, len, " joined ***") && len > 4 + 11) {
            m->kind = CHAT_JOINED;
            m->name_len = len - 4 - 11;
        } else if (has_suffix(line, len, " left ***") && len > 4 + 9) {
            m->kind = CHAT_LEFT;
            m->name_len = len - 4 - 9;
        } else {
            return m->kind;
        }
        m->name = (const char *)line + 4;
    } else {
        for (size_t i = 0; i + 1 < len; i++) {
            if (line[i] == ':' && line[i + 1] == ' ') {
                if (i == 0)
                    break;
                m->kind = CHAT_LINE;
                m->name = (const char *)line;
                m->name_len = i;
                m->text = line + i + 2;
                m->text_len = len - i - 2;
                break;
            }
        }
    }
    return m->kind;
}
