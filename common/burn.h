/* Pure (no I/O; spends CPU time). CPU-bound work for --work-us: models a handler that computes instead of waiting. */
#ifndef TVSA_BURN_H
#define TVSA_BURN_H
#include <stdint.h>

/* Computes (a hash chain, not a sleep) until the calling thread has used `us` microseconds
 * of CPU time. Returns the hash so the work cannot be optimised away. burn_cpu_us(0) is free. */
uint64_t burn_cpu_us(unsigned us);

#endif
