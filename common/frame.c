/* The line framer both chat models use: bytes in, the length of the next complete line out. */
#include "frame.h"

#include <string.h>

long frame_next(const uint8_t *buf, size_t len, size_t max_line)
{
    /* A line of max_line bytes has its '\n' at index max_line, so that many bytes + 1 decide. */
    size_t window = len < max_line + 1 ? len : max_line + 1;
    const uint8_t *nl = window > 0 ? memchr(buf, '\n', window) : NULL;

    if (nl != NULL)
        return (long)(nl - buf) + 1;
    return len > max_line ? FRAME_TOO_LONG : FRAME_NEED_MORE;
}
