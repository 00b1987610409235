/* The echo protocol: ASCII uppercase, the one transform both models apply to every byte. */
#include "upper.h"

static inline uint8_t upper_byte(uint8_t c)
{
    /* Unsigned wrap turns the range test into one compare, which lets the compiler
     * vectorise the loop below. */
    return (uint8_t)(c - 'a') < 26u ? (uint8_t)(c - ('a' - 'A')) : c;
}

void upper_inplace(uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = upper_byte(buf[i]);
}

int upper_matches(const uint8_t *sent, const uint8_t *reply, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (reply[i] != upper_byte(sent[i]))
            return 0;
    return 1;
}

size_t upper_answer(void *worker, uint8_t *buf, size_t len, int truncated, uint8_t *reply)
{
    (void)worker;
    (void)truncated;
    (void)reply;
    upper_inplace(buf, len);
    return len;
}
