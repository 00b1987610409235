/* Pure (atomics, no I/O). Server counters for the `stopped` line, shared by every thread of a server. */
#ifndef TVSA_SRVSTATS_H
#define TVSA_SRVSTATS_H
#include <stdatomic.h>
#include <stdint.h>

/* Atomic because the threaded servers update it from every connection thread; per-byte
 * figures are added once per connection (at close), so the hot path never touches it. */
struct srv_stats {
    atomic_uint_fast64_t accepted;  /* connections taken into service */
    atomic_uint_fast64_t refused;   /* closed at once by --max-conns or a failed set-up */
    atomic_uint_fast64_t current;   /* open now */
    atomic_uint_fast64_t peak;      /* highest `current` seen */
    atomic_uint_fast64_t bytes_in;  /* of closed connections */
    atomic_uint_fast64_t bytes_out;
};

/* Counts an accepted connection and updates the peak; returns the new `current`. */
uint64_t srvstats_opened(struct srv_stats *st);
/* Counts a refused connection. */
void srvstats_refused(struct srv_stats *st);
/* Counts a closed connection and adds what it moved. */
void srvstats_closed(struct srv_stats *st, uint64_t bytes_in, uint64_t bytes_out);
/* Connections open now. */
uint64_t srvstats_current(const struct srv_stats *st);

#endif
