/* CPU-bound work for --work-us: models a handler that computes instead of waiting. */
#include "burn.h"

#include <time.h>

/* A system call, not the vDSO: the kernel keeps a thread's CPU time. */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One batch: 256 rounds of splitmix64, about a microsecond. */
static uint64_t mix(uint64_t h)
{
    for (int i = 0; i < 256; i++) {
        h += 0x9e3779b97f4a7c15u;
        uint64_t z = h;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        h ^= z ^ (z >> 31);
    }
    return h;
}

uint64_t burn_cpu_us_counted(unsigned us, unsigned *clock_reads)
{
    unsigned reads = 0;
    uint64_t h = 0x9e3779b97f4a7c15u;
    if (us > 0) {
        /* Thread CPU time, not wall time: a thread preempted by another one must still do its
         * full share of work, or the CPU-bound row would flatter whichever model switches
         * more. Reading that clock is a system call (1-3 us on a VM with page-table
         * isolation), so it is read O(log us) times, not once a batch: each time, half of
         * what is left is done in batches at the pace measured so far. */
        uint64_t now = thread_cpu_ns(), deadline = now + (uint64_t)us * 1000u;
        uint64_t batches = 1;
        reads++;
        for (;;) {
            for (uint64_t b = 0; b < batches; b++)
                h = mix(h);
            uint64_t t = thread_cpu_ns();
            reads++;
            if (t >= deadline)
                break;
            uint64_t per_batch = (t - now) / batches + 1; /* the clock read included */
            now = t;
            batches = (deadline - now) / (2 * per_batch);
            if (batches == 0)
                batches = 1;
        }
    }
    if (clock_reads)
        *clock_reads = reads;
    return h;
}

uint64_t burn_cpu_us(unsigned us)
{
    return burn_cpu_us_counted(us, NULL);
}
