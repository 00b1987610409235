/* A growable byte queue: append at the tail, consume from the head. Pure; no I/O. */
#include "bytebuf.h"

#include <stdlib.h>
#include <string.h>

size_t bytebuf_len(const struct bytebuf *b)
{
    return b->tail - b->head;
}

uint8_t *bytebuf_reserve(struct bytebuf *b, size_t want, size_t *avail)
{
    size_t len = b->tail - b->head;

    if (b->cap - b->tail < want) {
        if (b->head > 0) {
            /* Slide the live bytes down before growing: a queue that drains keeps its size. */
            memmove(b->data, b->data + b->head, len);
            b->head = 0;
            b->tail = len;
        }
        if (b->cap - b->tail < want) {
            size_t cap = b->cap ? b->cap : 4096;
            while (cap - len < want) {
                if (cap > SIZE_MAX / 2)
                    return NULL;
                cap *= 2;
            }
            uint8_t *p = realloc(b->data, cap);
            if (p == NULL)
                return NULL;
            b->data = p;
            b->cap = cap;
        }
    }
    *avail = b->cap - b->tail;
    return b->data + b->tail;
}

void bytebuf_commit(struct bytebuf *b, size_t n)
{
    b->tail += n;
}

const uint8_t *bytebuf_peek(const struct bytebuf *b, size_t *len)
{
    *len = b->tail - b->head;
    return b->data + b->head;
}

void bytebuf_consume(struct bytebuf *b, size_t n)
{
    b->head += n;
    if (b->head == b->tail)
        b->head = b->tail = 0;
}

int bytebuf_append(struct bytebuf *b, const void *p, size_t len)
{
    size_t avail;
    uint8_t *dst = bytebuf_reserve(b, len, &avail);
    if (dst == NULL)
        return -1;
    if (len > 0)
        memcpy(dst, p, len);
    bytebuf_commit(b, len);
    return 0;
}

void bytebuf_free(struct bytebuf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->head = b->tail = 0;
}
