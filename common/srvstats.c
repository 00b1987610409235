/* Server counters for the `stopped` line, shared by every thread of a server. */
#include "srvstats.h"

uint64_t srvstats_opened(struct srv_stats *st)
{
    atomic_fetch_add_explicit(&st->accepted, 1, memory_order_relaxed);
    uint64_t now = atomic_fetch_add_explicit(&st->current, 1, memory_order_relaxed) + 1;
    uint64_t peak = atomic_load_explicit(&st->peak, memory_order_relaxed);
    while (now > peak &&
           !atomic_compare_exchange_weak_explicit(&st->peak, &peak, now, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
    return now;
}

void srvstats_refused(struct srv_stats *st)
{
    atomic_fetch_add_explicit(&st->refused, 1, memory_order_relaxed);
}

void srvstats_closed(struct srv_stats *st, uint64_t bytes_in, uint64_t bytes_out)
{
    atomic_fetch_sub_explicit(&st->current, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_in, bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes_out, bytes_out, memory_order_relaxed);
}

uint64_t srvstats_current(const struct srv_stats *st)
{
    return atomic_load_explicit(&st->current, memory_order_relaxed);
}
