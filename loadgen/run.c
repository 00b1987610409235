/* A loadgen run's steps, phase by phase (settle, measure, probe), and what main and the
 * --procs workers share around them: see run.h. */
#include "run.h"

#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mono.h"
#include "stopsig.h"

#define SETTLE_POLL_MS 50
#define PROBE_WAIT_MS 5000    /* hold's probes, when --timeout is 0 */
#define BASELINE_POLL_MS 20   /* the server's thread count, polled before the baseline... */
#define BASELINE_STABLE 4     /* ...until this many samples in a row agree... */
#define BASELINE_MAX_MS 2000  /* ...or this long */

/* The wall clock in epoch seconds: only for --start-at and the start instants recorded for a
 * multi-host merge, never for an interval. */
double lg_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The server's baseline once its thread count has settled (the probe connection's thread
 * gone): Threads polled until BASELINE_STABLE samples in a row agree, BASELINE_MAX_MS at
 * most. 0, or -1 with err filled. */
int lg_baseline_sample(const struct lg_config *cfg, struct proc_sample *base, char *err,
                           size_t errlen)
{
    long prev = -1;
    int same = 0;
    for (int waited = 0; waited <= BASELINE_MAX_MS; waited += BASELINE_POLL_MS) {
        long threads = procstat_threads((pid_t)cfg->server_pid);
        if (threads < 0)
            break;
        same = threads == prev ? same + 1 : 0;
        prev = threads;
        if (same + 1 >= BASELINE_STABLE)
            break;
        poll(NULL, 0, BASELINE_POLL_MS);
    }
    return procstat_sample((pid_t)cfg->server_pid, base, err, errlen);
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Waits up to ms for a stop signal. Returns 1 if one came. */
int lg_wait_stop(int stopfd, int ms)
{
    struct pollfd p = {.fd = stopfd, .events = POLLIN};
    if (ms < 0)
        ms = 0;
    return poll(&p, 1, ms) > 0 || stopsig_received() != 0;
}

static void progress(const struct lg_config *cfg, int step, const char *phase,
                     const struct lg_status *s, double rps, const struct lg_stats *st)
{
    if (cfg->quiet)
        return;
    fprintf(stderr, "loadgen %s step %d/%d %-9s conns %ld/%ld (connecting %ld, failed %ld)",
            cfg->scn->name, step + 1, cfg->nsteps, phase, s->open, s->target, s->connecting,
            s->failed);
    if (st)
        fprintf(stderr, "  %.0f req/s  p99 %llu us  errors %llu timeouts %llu mismatches %llu",
                rps, (unsigned long long)hist_percentile(&st->latency, 99),
                (unsigned long long)st->errors, (unsigned long long)st->timeouts,
                (unsigned long long)st->mismatches);
    fputc('\n', stderr);
}

/* Phase 1, set-up: every wanted connection established or failed, or the deadline: a
 * generous bound (connect timeout twice, the paced connect time, 1 ms a connection, 5 s at
 * least) so a server that keeps closing connections cannot hold the run forever. Returns 1 if
 * a stop signal came. */
static int phase_settle(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                        long target)
{
    struct lg_status s;
    uint64_t last = mono_now_ns();
    double setup_s = 2.0 * (double)cfg->connect_timeout_ms / 1000.0 + (double)target / 1000.0 +
                     (cfg->connect_rate ? (double)target / (double)cfg->connect_rate : 0.0);
    uint64_t deadline = last + (uint64_t)((setup_s < 5.0 ? 5.0 : setup_s) * 1e9);
    for (;;) {
        lg_engine_status(e, &s, NULL);
        if (lg_engine_settled(&s) || mono_now_ns() >= deadline)
            return 0;
        if (lg_wait_stop(stopfd, SETTLE_POLL_MS))
            return 1;
        if (mono_now_ns() - last >= 1000000000ull) {
            last = mono_now_ns();
            progress(cfg, step, "connecting", &s, 0, NULL);
        }
    }
}

/* Phase 2, measurement: --duration seconds of requests from t0 (r->established is the open
 * connections at the start), a progress line a second. Sets r->duration; returns 1 if a stop
 * signal came. */
static int phase_measure(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                         struct lg_stats *scratch, struct lg_step_result *r)
{
    struct lg_status s;
    r->wall_start = lg_wall_now();
    uint64_t t0 = mono_now_ns();
    lg_engine_measure_start(e, &s);
    r->established = s.open;
    uint64_t end = t0 + (uint64_t)(cfg->duration_s * 1e9);
    uint64_t prev_done = 0, prev_t = t0;
    int stopped = 0;
    for (;;) {
        uint64_t now = mono_now_ns();
        if (now >= end)
            break;
        uint64_t next = prev_t + 1000000000ull;
        if (next > end)
            next = end;
        if (lg_wait_stop(stopfd, (int)((next - now + 999999) / 1000000))) {
            stopped = 1;
            break;
        }
        now = mono_now_ns();
        if (now - prev_t >= 1000000000ull && !cfg->quiet) {
            lg_engine_status(e, &s, scratch);
            progress(cfg, step, "measuring", &s,
                     (double)(scratch->completed - prev_done) * 1e9 / (double)(now - prev_t),
                     scratch);
            prev_done = scratch->completed;
            prev_t = now;
        } else if (now - prev_t >= 1000000000ull) {
            prev_t = now;
        }
    }
    lg_engine_measure_stop(e);
    r->duration = (double)(mono_now_ns() - t0) / 1e9;
    return stopped;
}

/* Phase 3, probes (scenarios with probe_at_end): every connection answers or times out.
 * Returns 1 if a stop signal came. */
static int phase_probe(const struct lg_config *cfg, struct lg_engine *e, int stopfd)
{
    struct lg_status s;
    if (!cfg->scn->probe_at_end)
        return 0;
    long wait_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms + 200 : PROBE_WAIT_MS;
    uint64_t deadline = mono_now_ns() + (uint64_t)wait_ms * 1000000ull;
    for (;;) {
        lg_engine_status(e, &s, NULL);
        if (s.pending == 0 || mono_now_ns() >= deadline)
            return 0;
        if (lg_wait_stop(stopfd, 20))
            return 1;
    }
}

int lg_step_settle(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                   struct lg_step_result *r)
{
    r->target = cfg->connections[step];
    lg_engine_set_target(e, r->target);
    return phase_settle(cfg, e, stopfd, step, r->target);
}

int lg_step_finish(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                   struct lg_stats *scratch, struct lg_step_result *r)
{
    struct lg_status s;
    char err[160];
    if (cfg->server_pid)
        r->have_server = procstat_sample((pid_t)cfg->server_pid, &r->s0, err, sizeof err) == 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    int stopped = phase_measure(cfg, e, stopfd, step, scratch, r);
    if (!stopped)
        stopped = phase_probe(cfg, e, stopfd);

    lg_engine_status(e, &s, &r->st);
    getrusage(RUSAGE_SELF, &ru1);
    r->cpu_user = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime);
    r->cpu_sys = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime);
    if (r->have_server)
        r->have_server = procstat_sample((pid_t)cfg->server_pid, &r->s1, err, sizeof err) == 0;
    if (cfg->server_pid && !r->have_server)
        fprintf(stderr, "loadgen: step %d has no server figures: %s\n", step + 1, err);
    r->failed = s.failed;
    r->interrupted = stopped;
    return stopped;
}

int lg_run_step(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                struct lg_stats *scratch, struct lg_step_result *r)
{
    return lg_step_settle(cfg, e, stopfd, step, r) ||
           lg_step_finish(cfg, e, stopfd, step, scratch, r);
}

void lg_step_summary(const struct lg_config *cfg, const struct lg_step_result *r)
{
    const struct lg_stats *st = &r->st;
    fprintf(stderr,
            "loadgen %s %s: %ld/%ld connections (%ld failed), %.1f s: %llu requests, %.0f/s, "
            "latency p50 %llu p99 %llu p99.9 %llu max %llu us, errors %llu timeouts %llu "
            "mismatches %llu%s\n",
            cfg->scn->name, cfg->target, r->established, r->target, r->failed, r->duration,
            (unsigned long long)st->completed,
            r->duration > 0 ? (double)st->completed / r->duration : 0.0,
            (unsigned long long)hist_percentile(&st->latency, 50),
            (unsigned long long)hist_percentile(&st->latency, 99),
            (unsigned long long)hist_percentile(&st->latency, 99.9),
            (unsigned long long)st->latency.max, (unsigned long long)st->errors,
            (unsigned long long)st->timeouts, (unsigned long long)st->mismatches,
            r->interrupted ? " (interrupted)" : "");
}

/* Waits until the wall clock reaches cfg->start_at (nothing when it is 0 or past). Returns 1
 * if a stop signal came first. */
int lg_wait_start_at(const struct lg_config *cfg, int stopfd)
{
    for (;;) {
        double left = cfg->start_at - lg_wall_now();
        if (left <= 0)
            return 0;
        /* At most a second at a time: the wall clock may be stepped meanwhile. */
        if (lg_wait_stop(stopfd, left > 1.0 ? 1000 : (int)(left * 1000.0) + 1))
            return 1;
    }
}

/* When this run started, for a multi-host merge (epoch microseconds: a double of seconds would
 * lose them at the JSON's 10 digits): the --start-at instant asked for, this host's wall clock
 * when the first step began, and how late that was by its own clock. */
json_t *lg_start_json(const struct lg_config *cfg, double wall)
{
    return json_pack("{s:o, s:I, s:o}", "at_us",
                     cfg->start_at > 0 ? json_integer(lg_wall_us(cfg->start_at)) : json_null(),
                     "wall_us", lg_wall_us(wall), "late_us",
                     cfg->start_at > 0 ? json_integer(lg_wall_us(wall) - lg_wall_us(cfg->start_at))
                                       : json_null());
}

json_t *lg_host_json(const struct lg_config *cfg)
{
    if (cfg->host_name[0])
        return json_string(cfg->host_name);
    char name[256];
    if (gethostname(name, sizeof name) < 0)
        snprintf(name, sizeof name, "unknown");
    name[sizeof name - 1] = '\0';
    return json_string(name);
}


json_t *lg_run_doc(const struct lg_config *cfg, json_t *steps, int interrupted,
                   double wall_start)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:o, s:o}", "schema", "tvsa-loadgen/1",
                     "scenario", cfg->scn->name, "target", cfg->target,
                     "config", lg_config_json(cfg), "steps", steps, "interrupted", interrupted,
                     "host", lg_host_json(cfg), "start", lg_start_json(cfg, wall_start));
}
