/* A step's result and its JSON: see result.h. Field meanings: docs/metrics.md. */
#include "result.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/* The histograms a step carries, by name: the ones merge needs to recompute every figure. */
static const struct {
    const char *name;
    size_t offset;
} step_hists[] = {
    {"latency", offsetof(struct lg_stats, latency)},
    {"latency_raw", offsetof(struct lg_stats, latency_raw)},
    {"connect", offsetof(struct lg_stats, connect)},
    {"aux", offsetof(struct lg_stats, aux)},
};
#define NHISTS (sizeof step_hists / sizeof step_hists[0])

static struct hist *stats_hist(struct lg_stats *st, size_t i)
{
    return (struct hist *)((char *)st + step_hists[i].offset);
}

static json_t *hists_json(const struct lg_stats *st)
{
    json_t *o = json_object();
    for (size_t i = 0; i < NHISTS; i++)
        json_object_set_new(o, step_hists[i].name,
                            hist_to_json(stats_hist((struct lg_stats *)st, i)));
    return o;
}

/* The counters the rest of the step does not show as they are. */
static json_t *raw_json(const struct lg_stats *st)
{
    json_t *ctr = json_array();
    for (int i = 0; i < LG_COUNTERS; i++)
        json_array_append_new(ctr, json_integer((json_int_t)st->counter[i]));
    return json_pack("{s:I, s:I, s:I, s:o}", "connects_ok", (json_int_t)st->connects_ok,
                     "connects_failed", (json_int_t)st->connects_failed,
                     "unsent_at_stop", (json_int_t)st->unsent_at_stop, "counters", ctr);
}

json_int_t lg_wall_us(double epoch_s)
{
    return (json_int_t)(epoch_s * 1e6 + 0.5);
}

json_t *lg_config_json(const struct lg_config *cfg)
{
    json_t *conns = json_array();
    for (int i = 0; i < cfg->nsteps; i++)
        json_array_append_new(conns, json_integer(cfg->connections[i]));
    json_t *opts = json_object();
    for (int i = 0; i < cfg->nopts; i++)
        json_object_set_new(opts, cfg->opt_key[i], json_string(cfg->opt_val[i]));
    return json_pack("{s:s, s:s, s:o, s:f, s:I, s:I, s:I, s:f, s:s, s:I, s:I, s:I, s:I, s:s,"
                     " s:o, s:o, s:b, s:o, s:o, s:I}",
                     "scenario", cfg->scn->name, "target", cfg->target,
                     "connections", conns, "duration_s", cfg->duration_s,
                     "threads", (json_int_t)cfg->threads, "size", (json_int_t)cfg->size,
                     "think_ms", (json_int_t)cfg->think_ms, "rate", cfg->rate,
                     "mode", cfg->rate > 0 ? "open" : "closed",
                     "connect_rate", (json_int_t)cfg->connect_rate,
                     "max_connecting", (json_int_t)cfg->max_connecting,
                     "connect_timeout_ms", (json_int_t)cfg->connect_timeout_ms,
                     "timeout_ms", (json_int_t)cfg->timeout_ms,
                     "source_ips", cfg->source_ips,
                     "server_pid", cfg->server_pid ? json_integer(cfg->server_pid) : json_null(),
                     "json", cfg->json_path ? json_string(cfg->json_path) : json_null(),
                     "quiet", cfg->quiet, "opts", opts, "start_at_us",
                     cfg->start_at > 0 ? json_integer(lg_wall_us(cfg->start_at)) : json_null(),
                     "procs", (json_int_t)(cfg->procs > 0 ? cfg->procs : 1));
}

static json_t *errno_json(const struct lg_stats *st)
{
    json_t *o = json_object();
    for (int i = 0; i < LG_ERRNO_MAX; i++) {
        if (st->failed_by_errno[i] == 0)
            continue;
        const char *name = strerrorname_np(i);
        char buf[32];
        if (name == NULL) {
            snprintf(buf, sizeof buf, "errno%d", i);
            name = buf;
        }
        json_object_set_new(o, name, json_integer((json_int_t)st->failed_by_errno[i]));
    }
    return o;
}

static double per_conn(double delta, long conns)
{
    return conns > 0 ? delta / (double)conns : 0.0;
}

/* The `server` object of a step: sample at the end vs the baseline (memory) and vs the start
 * of the measurement (CPU, switches). */
/* Each process of the server's tree at the step's end, its CPU over the window (a process
 * born during the window counts all of its CPU). */
static json_t *workers_json(const struct proc_sample *s0, const struct proc_sample *s1)
{
    json_t *a = json_array();
    for (size_t i = 0; i < s1->nprocs; i++) {
        const struct proc_one *p = &s1->procs[i], *q = NULL;
        for (size_t k = 0; k < s0->nprocs && q == NULL; k++)
            if (s0->procs[k].pid == p->pid)
                q = &s0->procs[k];
        json_array_append_new(
            a, json_pack("{s:I, s:I, s:I, s:I, s:{s:f, s:f}}", "pid", (json_int_t)p->pid,
                         "rss_kib", (json_int_t)p->rss_kib, "vsz_kib", (json_int_t)p->vsz_kib,
                         "threads", (json_int_t)p->threads, "cpu_s", "user",
                         p->user_s - (q ? q->user_s : 0), "sys", p->sys_s - (q ? q->sys_s : 0)));
    }
    return a;
}

static json_t *server_json(const struct proc_sample *base, const struct proc_sample *s0,
                           const struct proc_sample *s1, long established, uint64_t completed,
                           double duration)
{
    /* Per thread, over the threads alive at both samples: a thread that exits mid-step
     * (a ramp down of a threaded server) takes its switches out of the total. */
    uint64_t vol, invol;
    int incomplete = procstat_ctx_delta(s0, s1, &vol, &invol);
    double sw = (double)(vol + invol);
    double cpu = (s1->user_s - s0->user_s) + (s1->sys_s - s0->sys_s);
    double kstack = (double)(s1->kernel_stack_kib - base->kernel_stack_kib) * 1024.0;
    double smem = (double)(s1->sock_mem_pages - base->sock_mem_pages) * (double)sysconf(_SC_PAGESIZE);
    json_t *o = json_pack(
        "{s:I, s:I, s:I, s:{s:I, s:I}, s:b, s:{s:f, s:f}, s:f, s:f, s:f, s:f, s:f,"
        " s:{s:f, s:f, s:f}, s:{s:I, s:I, s:I}}",
        "rss_kib", (json_int_t)s1->rss_kib, "vsz_kib", (json_int_t)s1->vsz_kib,
        "threads", (json_int_t)s1->threads,
        "ctx_switches", "voluntary", (json_int_t)vol, "involuntary", (json_int_t)invol,
        "ctx_switches_incomplete", incomplete,
        "cpu_s", "user", s1->user_s - s0->user_s, "sys", s1->sys_s - s0->sys_s,
        "rss_per_conn_bytes", per_conn((double)(s1->rss_kib - base->rss_kib) * 1024.0, established),
        "vsz_per_conn_bytes", per_conn((double)(s1->vsz_kib - base->vsz_kib) * 1024.0, established),
        "ctx_switches_per_request", completed ? sw / (double)completed : 0.0,
        "ctx_switches_per_sec", duration > 0 ? sw / duration : 0.0,
        "cpu_us_per_request", completed ? cpu * 1e6 / (double)completed : 0.0,
        "kernel_per_conn_bytes", "kernel_stack", per_conn(kstack, established),
        "sock_mem", per_conn(smem, established), "total", per_conn(kstack + smem, established),
        "baseline", "rss_kib", (json_int_t)base->rss_kib, "vsz_kib", (json_int_t)base->vsz_kib,
        "threads", (json_int_t)base->threads);
    if (o == NULL)
        return NULL;
    /* The tree under the pid: one process, or a supervisor and its workers. */
    json_object_set_new(o, "processes", json_integer((json_int_t)s1->nprocs));
    if (s1->nprocs > 1)
        json_object_set_new(o, "workers", workers_json(s0, s1));
    return o;
}

json_t *lg_step_json(const struct lg_config *cfg, const struct lg_step_result *r,
                     const struct proc_sample *base)
{
    const struct lg_stats *st = &r->st;
    double lu = r->cpu_user, ls = r->cpu_sys;
    json_t *step = json_pack(
        "{s:{s:I, s:I, s:I, s:o}, s:f, s:{s:I, s:f, s:I, s:I, s:I, s:I, s:I},"
        " s:o, s:{s:{s:f, s:f}, s:f}, s:b}",
        "connections", "target", (json_int_t)r->target, "established", (json_int_t)r->established,
        "failed", (json_int_t)r->failed, "failed_by_errno", errno_json(st),
        "duration_s", r->duration,
        "requests", "completed", (json_int_t)st->completed,
        "per_sec", r->duration > 0 ? (double)st->completed / r->duration : 0.0,
        "errors", (json_int_t)st->errors, "timeouts", (json_int_t)st->timeouts,
        "mismatches", (json_int_t)st->mismatches, "bytes_out", (json_int_t)st->bytes_out,
        "bytes_in", (json_int_t)st->bytes_in,
        "latency_us", lg_latency_json(&st->latency),
        "loadgen", "cpu_s", "user", lu, "sys", ls,
        "cpu_us_per_request", st->completed ? (lu + ls) * 1e6 / (double)st->completed : 0.0,
        "interrupted", r->interrupted);
    if (step == NULL)
        return NULL;
    /* Next to the percentiles: what they leave out (timed out) or put in without a reply
     * (due but never sent by the stop, recorded as stop - intended). */
    json_t *lat = json_object_get(step, "latency_us");
    json_object_set_new(lat, "timeouts", json_integer((json_int_t)st->timeouts));
    if (cfg->rate > 0)
        json_object_set_new(lat, "unsent_at_stop", json_integer((json_int_t)st->unsent_at_stop));
    if (cfg->rate > 0) {
        json_object_set_new(step, "latency_raw_us", lg_latency_json(&st->latency_raw));
        json_object_set_new(step, "rate", json_pack("{s:f, s:f}", "target", cfg->rate,
                                                    "achieved", r->duration > 0 ?
                                                    (double)st->completed / r->duration : 0.0));
    }
    if (r->have_server)
        json_object_set_new(step, "server", server_json(base, &r->s0, &r->s1, r->established,
                                                        st->completed, r->duration));
    if (cfg->scn->json_step)
        cfg->scn->json_step(cfg, st, r->duration, step);
    json_object_set_new(step, "start_wall_us", json_integer(lg_wall_us(r->wall_start)));
    json_object_set_new(step, "raw", raw_json(st));
    json_object_set_new(step, "histograms", hists_json(st));
    return step;
}


/* The unsigned integer at a dotted path below root, or -1. */
static int get_u64(const json_t *root, const char *path, uint64_t *out)
{
    char buf[96];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = root;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
        v = json_object_get(v, tok);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static double get_num(const json_t *o, const char *k1, const char *k2)
{
    const json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    return json_number_value(v);
}

/* errno from the name errno_json wrote (strerrorname_np, or "errnoN"), or -1. */
static int errno_from_name(const char *name)
{
    for (int i = 0; i < LG_ERRNO_MAX; i++) {
        const char *n = strerrorname_np(i);
        if (n && strcmp(n, name) == 0)
            return i;
    }
    int v;
    char extra;
    if (sscanf(name, "errno%d%c", &v, &extra) == 1 && v >= 0 && v < LG_ERRNO_MAX)
        return v;
    return -1;
}

int lg_step_read(const json_t *step, struct lg_step_result *r, char *err, size_t errlen)
{
    static const struct {
        const char *path;
        size_t offset;
    } u64s[] = {
        {"requests.completed", offsetof(struct lg_stats, completed)},
        {"requests.errors", offsetof(struct lg_stats, errors)},
        {"requests.timeouts", offsetof(struct lg_stats, timeouts)},
        {"requests.mismatches", offsetof(struct lg_stats, mismatches)},
        {"requests.bytes_out", offsetof(struct lg_stats, bytes_out)},
        {"requests.bytes_in", offsetof(struct lg_stats, bytes_in)},
        {"raw.connects_ok", offsetof(struct lg_stats, connects_ok)},
        {"raw.connects_failed", offsetof(struct lg_stats, connects_failed)},
        {"raw.unsent_at_stop", offsetof(struct lg_stats, unsent_at_stop)},
    };
    memset(r, 0, sizeof *r);
    uint64_t v;
    for (size_t i = 0; i < sizeof u64s / sizeof u64s[0]; i++) {
        if (get_u64(step, u64s[i].path, (uint64_t *)((char *)&r->st + u64s[i].offset)) < 0) {
            snprintf(err, errlen, "step without %s (written before histograms were?)",
                     u64s[i].path);
            return -1;
        }
    }
    json_t *ctr = json_object_get(json_object_get(step, "raw"), "counters");
    if (json_array_size(ctr) != LG_COUNTERS) {
        snprintf(err, errlen, "step without raw.counters[%d]", LG_COUNTERS);
        return -1;
    }
    for (int i = 0; i < LG_COUNTERS; i++)
        r->st.counter[i] = (uint64_t)json_integer_value(json_array_get(ctr, (size_t)i));
    json_t *hists = json_object_get(step, "histograms");
    for (size_t i = 0; i < NHISTS; i++) {
        char e2[128];
        if (hist_from_json(stats_hist(&r->st, i), json_object_get(hists, step_hists[i].name),
                           e2, sizeof e2) < 0) {
            snprintf(err, errlen, "histograms.%s: %s", step_hists[i].name, e2);
            return -1;
        }
    }
    const char *key;
    json_t *n;
    json_object_foreach(json_object_get(json_object_get(step, "connections"), "failed_by_errno"),
                        key, n) {
        int e = errno_from_name(key);
        if (e < 0 || !json_is_integer(n)) {
            snprintf(err, errlen, "connections.failed_by_errno: unknown '%s'", key);
            return -1;
        }
        r->st.failed_by_errno[e] += (uint64_t)json_integer_value(n);
    }
    if (get_u64(step, "connections.target", &v) < 0)
        goto missing;
    r->target = (long)v;
    if (get_u64(step, "connections.established", &v) < 0)
        goto missing;
    r->established = (long)v;
    if (get_u64(step, "connections.failed", &v) < 0)
        goto missing;
    r->failed = (long)v;
    r->duration = get_num(step, "duration_s", NULL);
    r->wall_start = get_num(step, "start_wall_us", NULL) / 1e6;
    json_t *cpu = json_object_get(json_object_get(step, "loadgen"), "cpu_s");
    r->cpu_user = get_num(cpu, "user", NULL);
    r->cpu_sys = get_num(cpu, "sys", NULL);
    r->interrupted = json_is_true(json_object_get(step, "interrupted"));
    return 0;
missing:
    snprintf(err, errlen, "step without connections.target/established/failed");
    return -1;
}

void lg_step_add(struct lg_step_result *dst, const struct lg_step_result *src)
{
    lg_stats_add(&dst->st, &src->st);
    dst->target += src->target;
    dst->established += src->established;
    dst->failed += src->failed;
    if (src->duration > dst->duration)
        dst->duration = src->duration;
    if (dst->wall_start == 0 || (src->wall_start > 0 && src->wall_start < dst->wall_start))
        dst->wall_start = src->wall_start;
    dst->cpu_user += src->cpu_user;
    dst->cpu_sys += src->cpu_sys;
    dst->interrupted |= src->interrupted;
}

json_t *lg_server_rescale(const json_t *server, long old_established, uint64_t completed,
                          long established)
{
    json_t *s = json_deep_copy(server);
    if (s == NULL)
        return NULL;
    double cpu = get_num(s, "cpu_s", "user") + get_num(s, "cpu_s", "sys");
    double sw = get_num(s, "ctx_switches", "voluntary") + get_num(s, "ctx_switches", "involuntary");
    double per = completed ? 1.0 / (double)completed : 0.0;
    json_object_set_new(s, "cpu_us_per_request", json_real(cpu * 1e6 * per));
    json_object_set_new(s, "ctx_switches_per_request", json_real(sw * per));
    /* Per connection: the same memory over the merged connections. */
    double scale = established > 0 ? (double)old_established / (double)established : 0.0;
    static const char *const per_conn_keys[] = {"rss_per_conn_bytes", "vsz_per_conn_bytes"};
    for (size_t i = 0; i < 2; i++)
        json_object_set_new(s, per_conn_keys[i],
                            json_real(get_num(s, per_conn_keys[i], NULL) * scale));
    json_t *k = json_object_get(s, "kernel_per_conn_bytes");
    const char *key;
    json_t *v;
    json_object_foreach(k, key, v)
        json_real_set(v, json_number_value(v) * scale);
    return s;
}
