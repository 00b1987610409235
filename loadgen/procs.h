/* loadgen --procs N: N worker processes, each with its own engine (--threads), its share of
 * every step's connections and of --rate, and its share of --source-ips; a supervisor keeps
 * their steps in lock-step and writes one JSON of exact merges. */
#ifndef TVSA_LG_PROCS_H
#define TVSA_LG_PROCS_H
#include "scenario.h"

#define LG_MAX_PROCS 64

/* Runs the whole --procs run (target already probed) and writes the JSON. Returns the exit
 * status: 0, 1 (a worker failed, the JSON could not be written), 130 (stopped by a signal). */
int lg_procs_main(const struct lg_config *cfg);

/* Worker k's configuration out of the whole run's: its share of each step's connections
 * (n/N, the first n%N one more), of --rate (R/N), of --source-ips (a contiguous block when
 * there are at least N addresses, else all of them), no --server-pid, quiet. */
void lg_procs_share(const struct lg_config *cfg, int k, struct lg_config *w);

#endif
