/* Pure. The echo protocol: ASCII uppercase, the one transform both models apply to every byte. */
#ifndef TVSA_UPPER_H
#define TVSA_UPPER_H
#include <stddef.h>
#include <stdint.h>

/* Uppercases ASCII a-z in buf[0..len) in place; every other byte (including NUL and bytes
 * >= 0x80) is left as it is. Pure and binary-safe. */
void upper_inplace(uint8_t *buf, size_t len);

/* Returns 1 if reply[0..len) is exactly the uppercase of sent[0..len), else 0. */
int upper_matches(const uint8_t *sent, const uint8_t *reply, size_t len);

/* A datagram service's answer (serve.h's serve_dgram.answer): the reply is buf itself,
 * uppercased in place. Returns len. */
size_t upper_answer(void *worker, uint8_t *buf, size_t len, int truncated, uint8_t *reply);

#endif
