/* The steps of a loadgen run, phase by phase, for main() and the --procs workers. */
#ifndef TVSA_LG_RUN_H
#define TVSA_LG_RUN_H
#include <jansson.h>

#include "engine.h"
#include "procstat.h"
#include "result.h"
#include "scenario.h"

/* The wall clock in epoch seconds (--start-at, recorded instants; never an interval). */
double lg_wall_now(void);
/* Waits up to ms for a stop signal on stopfd. Returns 1 if one came. */
int lg_wait_stop(int stopfd, int ms);
/* The server's baseline once its thread count has settled. 0, or -1 with err filled. */
int lg_baseline_sample(const struct lg_config *cfg, struct proc_sample *base, char *err,
                       size_t errlen);
/* Waits until cfg->start_at (nothing when 0 or past). Returns 1 if a stop signal came first. */
int lg_wait_start_at(const struct lg_config *cfg, int stopfd);

/* Phase 1 of step `step`: sets its target and waits until every connection is established or
 * failed (or a generous deadline). Returns 1 if a stop signal came. */
int lg_step_settle(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                   struct lg_step_result *r);
/* Phases 2 and 3: the measurement (server and loadgen CPU sampled around it), the probes,
 * the figures read into *r. Returns 1 if a stop signal came (r->interrupted then). */
int lg_step_finish(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                   struct lg_stats *scratch, struct lg_step_result *r);
/* Both: one whole step. Returns 1 if a stop signal arrived (r->interrupted tells whether the
 * measurement had started), else 0. */
int lg_run_step(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                struct lg_stats *scratch, struct lg_step_result *r);
/* The one-line summary of a step on stderr. */
void lg_step_summary(const struct lg_config *cfg, const struct lg_step_result *r);

/* The document's `host` and `start` values. */
json_t *lg_host_json(const struct lg_config *cfg);
json_t *lg_start_json(const struct lg_config *cfg, double wall);
/* The whole tvsa-loadgen/1 document of a run (takes steps). */
json_t *lg_run_doc(const struct lg_config *cfg, json_t *steps, int interrupted,
                   double wall_start);

#endif
