/* Pure. A growable byte queue: append at the tail, consume from the head. */
#ifndef TVSA_BYTEBUF_H
#define TVSA_BYTEBUF_H
#include <stddef.h>
#include <stdint.h>

struct bytebuf {
    uint8_t *data;
    size_t cap;
    size_t head;  /* first unconsumed byte */
    size_t tail;  /* one past the last byte */
};

#define BYTEBUF_INIT {NULL, 0, 0, 0}

/* Bytes held. */
size_t bytebuf_len(const struct bytebuf *b);
/* A pointer to at least `want` writable bytes at the tail (compacting or growing), and in
 * *avail how many there are. NULL when memory runs out (the buffer is left as it was). */
uint8_t *bytebuf_reserve(struct bytebuf *b, size_t want, size_t *avail);
/* Makes n bytes written at the reserved tail part of the queue (n <= *avail). */
void bytebuf_commit(struct bytebuf *b, size_t n);
/* The held bytes, contiguous; *len gets their count. */
const uint8_t *bytebuf_peek(const struct bytebuf *b, size_t *len);
/* Drops n bytes from the head (n <= length). */
void bytebuf_consume(struct bytebuf *b, size_t n);
/* Appends len bytes. 0, or -1 when memory runs out. */
int bytebuf_append(struct bytebuf *b, const void *p, size_t len);
/* Frees the storage; the buffer is empty and reusable after. */
void bytebuf_free(struct bytebuf *b);

#endif
