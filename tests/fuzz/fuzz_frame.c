/* libFuzzer harness for the line framer (scripts/fuzz.sh): its contract holds for any bytes and
 * any max_line, and its answer does not depend on how the bytes were split across reads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_frame: invariant broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_line = 1 + ((size_t)data[0] << 8 | data[1]) % 512;
    const uint8_t *buf = data + 2;
    size_t len = size - 2;

    long r = frame_next(buf, len, max_line);
    const uint8_t *nl = memchr(buf, '\n', len);
    size_t first_nl = nl ? (size_t)(nl - buf) : len;
    if (r > 0) {
        check((size_t)r == first_nl + 1, "a line ends at the first newline");
        check((size_t)r <= max_line + 1, "a line fits max_line");
    } else if (r == FRAME_TOO_LONG) {
        check(first_nl > max_line && len > max_line, "too long means no newline in max_line+1");
    } else {
        check(r == FRAME_NEED_MORE, "only the three kinds of answer");
        check(nl == NULL && len <= max_line, "need more means no newline and room left");
    }
    /* Every shorter prefix must say "need more" until the answer is decided. */
    for (size_t k = 0; k < len; k++) {
        long rk = frame_next(buf, k, max_line);
        if (r > 0 && k < (size_t)r)
            check(rk == FRAME_NEED_MORE || (rk == FRAME_TOO_LONG && k > max_line),
                  "a prefix of a line needs more");
        if (r > 0 && k >= (size_t)r)
            check(rk == r, "more bytes after a line do not change it");
        if (r == FRAME_TOO_LONG && k > max_line)
            check(rk == FRAME_TOO_LONG, "too long stays too long");
    }
    return 0;
}
