/* A step's result and its JSON (schema tvsa-loadgen/1), written by a run and read back by
 * `loadgen merge` and by the --procs supervisor, so that merged figures are exact. */
#ifndef TVSA_LG_RESULT_H
#define TVSA_LG_RESULT_H
#include <jansson.h>
#include <stddef.h>

#include "procstat.h"
#include "scenario.h"

struct lg_step_result {
    long target, established, failed;
    double duration;          /* measured seconds (monotonic) */
    double wall_start;        /* wall clock (epoch seconds) when the measurement started */
    struct lg_stats st;
    double cpu_user, cpu_sys; /* loadgen's own over the window */
    int have_server;
    struct proc_sample s0, s1;
    int interrupted;
};

/* Epoch seconds as integer microseconds, the JSON's form of a wall-clock instant. */
json_int_t lg_wall_us(double epoch_s);
/* config: every option as used. */
json_t *lg_config_json(const struct lg_config *cfg);
/* One step's object; base is the server's baseline (used when r->have_server). */
json_t *lg_step_json(const struct lg_config *cfg, const struct lg_step_result *r,
                     const struct proc_sample *base);
/* Reads a step written by lg_step_json back into *r (no server samples: have_server 0):
 * counters, histograms, connections, duration, loadgen CPU. 0, or -1 with err filled. */
int lg_step_read(const json_t *step, struct lg_step_result *r, char *err, size_t errlen);
/* Sums src into dst as if one loadgen had made both: counters and histograms added,
 * connections added, duration and wall start the largest and the earliest. */
void lg_step_add(struct lg_step_result *dst, const struct lg_step_result *src);
/* A copy of a step's `server` object with its per-request and per-connection figures
 * recomputed for `completed` requests over `established` connections (the server served
 * every input of a merge: its totals stay, the divisors change). */
json_t *lg_server_rescale(const json_t *server, long old_established, uint64_t completed,
                          long established);

#endif
