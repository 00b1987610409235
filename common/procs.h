/* I/O. --procs N: N worker processes, each its own SO_REUSEPORT listener, runtime and fd
 * budget (the prefork shape), under a parent that only supervises: it forwards SIGINT and
 * SIGTERM, prints one `listening` line once every worker listens and one `stopped` line whose
 * counters are the workers' sums, and reports a worker that dies. */
#ifndef TVSA_PROCS_H
#define TVSA_PROCS_H
#include <jansson.h>
#include <stddef.h>

#include "serve.h"

/* Picks the port (sv->port; 0 picks a free one for every socket of sv->transport), forks n workers and
 * supervises them. In a worker it returns -1 with sv->worker and sv->port set and stdout a
 * pipe to the parent (call it before any thread or event base exists). In the parent it
 * returns when every worker has ended: 0 if all of them stopped cleanly, else 1. sv->stop_fd
 * must be installed. */
int procs_run(struct serve *sv, long n);

/* Pure. The sum of the workers' `stopped` objects: integers and reals summed key by key
 * (nested objects too), strings and the rest from the first; the settings "pid",
 * "thread_stack_bytes", "loops" and "threads" are not summed (the first's is kept). NULL if n
 * is 0. New reference. */
json_t *procs_sum(json_t *const *objs, size_t n);

#endif
