/* The load generator's engine as main() sees it: worker threads with one event_base each,
 * driven step by step (set the target, wait, measure, stop, read the figures). */
#ifndef TVSA_LG_ENGINE_H
#define TVSA_LG_ENGINE_H
#include <stddef.h>
#include <stdint.h>

#include "scenario.h"

struct lg_engine;

/* Where the workers stand, summed over threads. */
struct lg_status {
    long target;          /* connections wanted now */
    long open;            /* established now */
    long connecting;      /* connects in flight */
    long queued;          /* slots waiting for a connect */
    long failed;          /* connect failures since the last lg_engine_set_target */
    long pending;         /* requests outstanding */
};

/* Starts cfg->threads workers (evthread_use_pthreads first). NULL with err filled. */
struct lg_engine *lg_engine_start(const struct lg_config *cfg, char *err, size_t errlen);
/* Opens or closes connections so that n are wanted, spread evenly over the threads. Slots
 * that failed to connect are tried again. Returns at once. */
void lg_engine_set_target(struct lg_engine *e, long n);
/* Current status; with sum != NULL also the figures of the measurement window so far. */
void lg_engine_status(struct lg_engine *e, struct lg_status *st, struct lg_stats *sum);
/* 1 when every wanted slot is established or failed and no connect is in flight. */
int lg_engine_settled(const struct lg_status *st);
/* Resets the figures and starts the measurement (requests flow); *st is the status at the
 * start (its `open` is the step's established connections). */
void lg_engine_measure_start(struct lg_engine *e, struct lg_status *st);
/* Stops starting requests; scenarios with probe_at_end send their probes now. */
void lg_engine_measure_stop(struct lg_engine *e);
/* Closes everything, joins the threads, frees. */
void lg_engine_free(struct lg_engine *e);

/* Sums src into dst (counters and histograms). */
void lg_stats_add(struct lg_stats *dst, const struct lg_stats *src);

#endif
