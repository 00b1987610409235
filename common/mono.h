/* Pure (reads the clock, no I/O). Monotonic time: the one clock tvsa measures intervals with. */
#ifndef TVSA_MONO_H
#define TVSA_MONO_H
#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC (arbitrary epoch; only differences mean anything). */
uint64_t mono_now_ns(void);
/* Microseconds on CLOCK_MONOTONIC. */
uint64_t mono_now_us(void);

#endif
