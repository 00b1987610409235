/* CPU-bound work for --work-us: models a handler that computes instead of waiting. */
#include "burn.h"

#include <time.h>

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t burn_cpu_us(unsigned us)
{
    if (us == 0)
        return 0;
    /* Thread CPU time, not wall time: a thread preempted by another one must still do its
     * full share of work, or the CPU-bound row would flatter whichever model switches more. */
    uint64_t deadline = thread_cpu_ns() + (uint64_t)us * 1000u;
    uint64_t h = 0x9e3779b97f4a7c15u;
    do {
        /* ~1 µs of splitmix64 between clock reads keeps the clock's own cost small. */
        for (int i = 0; i < 256; i++) {
            h += 0x9e3779b97f4a7c15u;
            uint64_t z = h;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
            h ^= z ^ (z >> 31);
        }
    } while (thread_cpu_ns() < deadline);
    return h;
}
