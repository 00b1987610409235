/* Pure (no I/O; spends CPU time). CPU-bound work for --work-us: models a handler that computes instead of waiting. */
#ifndef TVSA_BURN_H
#define TVSA_BURN_H
#include <stdint.h>

/* Computes (a hash chain, not a sleep) until the calling thread has used `us` microseconds
 * of CPU time. Returns the hash so the work cannot be optimised away. burn_cpu_us(0) is free. */
uint64_t burn_cpu_us(unsigned us);

/* burn_cpu_us, and *clock_reads (if not NULL) set to how many times it read the thread's CPU
 * clock: about log2(us) + 2, so the clock (a system call) costs little of the work. */
uint64_t burn_cpu_us_counted(unsigned us, unsigned *clock_reads);

#endif
