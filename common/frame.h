/* Pure. The line framer both chat models use: bytes in, the length of the next complete line out. */
#ifndef TVSA_FRAME_H
#define TVSA_FRAME_H
#include <stddef.h>
#include <stdint.h>

/* Results of frame_next below zero (a complete line is always > 0). */
#define FRAME_NEED_MORE (-2L) /* no '\n' yet and the line may still fit: read more */
#define FRAME_TOO_LONG (-1L)  /* the line is longer than max_line bytes: close the connection */

/* Finds the next '\n'-terminated line at the start of buf[0..len). A line's length is counted
 * without its '\n' (a '\r' before it is an ordinary byte). Returns the bytes the line takes
 * including the '\n' (1..max_line+1), FRAME_TOO_LONG as soon as max_line+1 bytes have no '\n'
 * among them (whether or not more bytes would bring one), else FRAME_NEED_MORE. Looks at no more
 * than max_line+1 bytes, allocates nothing, and gives the same answer however the bytes were
 * split across reads. */
long frame_next(const uint8_t *buf, size_t len, size_t max_line);

#endif
