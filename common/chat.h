/* Pure. The chat protocol's messages (docs/interfaces.md): formatting for servers, parsing
 * for clients. */
#ifndef TVSA_CHAT_H
#define TVSA_CHAT_H
#include <stddef.h>
#include <stdint.h>

/* Longest client name: "[IPv6]:PORT" with room to spare (sock_peer_name's output fits). */
#define CHAT_NAME_MAX 64
/* A buffer this big holds any message about a line of up to max_line bytes. */
#define CHAT_MSG_CAP(max_line) ((size_t)(max_line) + CHAT_NAME_MAX + 32)
/* Both servers: once a client is out of the room (its EOF, an idle timeout, a too-long line),
 * what is still queued for it and the discarding of its late input (after a too-long line)
 * together get this long, from one absolute deadline; then it is closed whatever it does. */
#define CHAT_FLUSH_TIMEOUT_S 5
/* Both servers, queued: each client socket's SO_SNDBUF and SO_RCVBUF. Fixed (the kernel
 * doubles it) rather than autotuned, which on loopback grows to MBs per socket: the room's log
 * is the buffer, and a client's distance in it is then what it really has not taken, so flow
 * control and --stall-ms act on the client, not on the kernel's buffers. */
#define CHAT_SOCK_BUF (64 * 1024)

/* The formatters write one whole message, '\n' included and no NUL, into dst[0..cap) and
 * return its length. When the length is more than cap they write nothing (like snprintf's
 * answer, without the truncation): the caller grows dst and calls again. */

/* "*** NAME joined ***\n" */
size_t chat_fmt_joined(char *dst, size_t cap, const char *name);
/* "*** NAME left ***\n" */
size_t chat_fmt_left(char *dst, size_t cap, const char *name);
/* "NAME: TEXT\n" where text[0..len) is the line without its '\n' (any bytes). */
size_t chat_fmt_line(char *dst, size_t cap, const char *name, const uint8_t *text, size_t len);
/* "*** line too long ***\n" */
size_t chat_fmt_too_long(char *dst, size_t cap);

enum chat_kind { CHAT_JOINED, CHAT_LEFT, CHAT_LINE, CHAT_TOO_LONG, CHAT_UNKNOWN };

/* One received message; name and text point into the parsed line (not NUL-terminated). */
struct chat_msg {
    enum chat_kind kind;
    const char *name;    /* JOINED, LEFT, LINE; else NULL */
    size_t name_len;
    const uint8_t *text; /* LINE; else NULL */
    size_t text_len;
};

/* Classifies one line as a client receives it (without its '\n'). Names never contain ": "
 * ("IP:PORT", "[IPv6]:PORT"), so a LINE's name ends at the first ": ". Fills *m and returns
 * m->kind; CHAT_UNKNOWN for anything the servers do not send. */
enum chat_kind chat_parse(const uint8_t *line, size_t len, struct chat_msg *m);

#endif
