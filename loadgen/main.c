/* bin/loadgen: drives a tvsa server with many connections, checks every reply, and writes the
 * tvsa-loadgen/1 JSON (docs/interfaces.md, docs/metrics.md). main reads: parse -> probe -> run the
 * steps -> write the JSON -> free. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "engine.h"
#include "lgjson.h"
#include "mono.h"
#include "opts.h"
#include "procstat.h"
#include "scenario.h"
#include "sock.h"
#include "stopsig.h"

#define FD_RESERVE 64         /* fds beyond the connections: stdio, event bases, pipes */
#define SETTLE_POLL_MS 50
#define PROBE_WAIT_MS 5000    /* hold's probes, when --timeout is 0 */
#define LG_MAX_REQUEST_BYTES (2ULL << 30) /* --size x the largest step, at most */
#define BASELINE_POLL_MS 20   /* the server's thread count, polled before the baseline... */
#define BASELINE_STABLE 4     /* ...until this many samples in a row agree... */
#define BASELINE_MAX_MS 2000  /* ...or this long */

static const struct option longopts[] = {
    {"target", required_argument, NULL, 't'},
    {"scenario", required_argument, NULL, 's'},
    {"connections", required_argument, NULL, 'c'},
    {"duration", required_argument, NULL, 'd'},
    {"threads", required_argument, NULL, 'T'},
    {"size", required_argument, NULL, 'z'},
    {"think-ms", required_argument, NULL, 'k'},
    {"rate", required_argument, NULL, 'r'},
    {"connect-rate", required_argument, NULL, 'R'},
    {"max-connecting", required_argument, NULL, 'm'},
    {"connect-timeout", required_argument, NULL, 'C'},
    {"timeout", required_argument, NULL, 'o'},
    {"source-ips", required_argument, NULL, 'S'},
    {"server-pid", required_argument, NULL, 'p'},
    {"json", required_argument, NULL, 'j'},
    {"opt", required_argument, NULL, 'O'},
    {"kind", required_argument, NULL, 'K'},
    {"abusers", required_argument, NULL, 'A'},
    {"good", required_argument, NULL, 'G'},
    {"senders", required_argument, NULL, 'M'},
    {"stalled", required_argument, NULL, 'L'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: loadgen [options]\n"
            "  --target HOST:PORT      server (numeric IPv4 or localhost; default 127.0.0.1:9000)\n"
            "  --scenario NAME         default echo; one of:\n");
    for (int i = 0; lg_scenarios[i]; i++)
        fprintf(out, "                            %-8s %s\n", lg_scenarios[i]->name,
                lg_scenarios[i]->summary);
    fprintf(out,
            "  --connections N[,N...]  one step per value, connections reused upward (default 100)\n"
            "  --duration SEC          measurement time of each step (default 10)\n"
            "  --threads N             event-loop threads (default: the CPUs loadgen may run on)\n"
            "  --size BYTES            request size (default 64)\n"
            "  --think-ms MS           closed loop: pause after each reply (default 0)\n"
            "  --rate R                open loop: R requests/s over all connections (chat: lines/s\n"
            "                          over all senders, = --opt rate=R)\n"
            "  --connect-rate N        connects/s (default unlimited)\n"
            "  --max-connecting N      connects in flight at once (default 256)\n"
            "  --connect-timeout MS    default 2000\n"
            "  --timeout MS            per request, 0 = none (default 5000)\n"
            "  --source-ips A-B        bind connections over 127.0.0.1-127.0.0.8 style ranges\n"
            "  --server-pid PID        sample the server's /proc figures\n"
            "  --json FILE             write the JSON there (default stdout)\n"
            "  --opt KEY=VALUE         scenario-specific setting (repeatable); a key the scenario\n"
            "                          does not read is refused. dns, dns-tcp: names=FILE,\n"
            "                          zone=FILE; chat: senders, stalled, rate; abuse: below\n"
            "  --senders M             chat: clients that send (default 1; = --opt senders=M)\n"
            "  --stalled K             chat: extra clients that join and never read (default 0;\n"
            "                          = --opt stalled=K)\n"
            "  --kind K                abuse: slowloris|garbage|reset|flood (= --opt kind=K)\n"
            "  --abusers N             abuse: misbehaving connections (default 50; = --opt abusers=N)\n"
            "  --good N                abuse: well-behaved echo connections that measure the\n"
            "                          service (default 4; = --opt good=N); the abuse scenario\n"
            "                          opens N + abusers connections and takes no --connections.\n"
            "                          Also --opt interval-ms=MS (slowloris: between bytes, 2000;\n"
            "                          reset: before the RST, 10; garbage/flood: between bursts, 1)\n"
            "                          and --opt line=BYTES (garbage's over-long line, 65536)\n"
            "  --quiet                 no progress line\n");
}

/* The CPUs this process may run on (its affinity mask), not the online ones: pinned to one
 * core (taskset -c 1), two threads would share it and cost more CPU per request. */
static long affinity_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? cpus : 1;
}

/* Fills cfg with every default. */
static void config_defaults(struct lg_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->scn = lg_scenarios[0];
    snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
    cfg->port = 9000;
    snprintf(cfg->target, sizeof cfg->target, "127.0.0.1:9000");
    cfg->connections[0] = 100;
    cfg->nsteps = 1;
    cfg->duration_s = 10.0;
    cfg->threads = affinity_cpus();
    cfg->size = 64;
    cfg->max_connecting = 256;
    cfg->connect_timeout_ms = 2000;
    cfg->timeout_ms = 5000;
}

static int parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_target(struct lg_config *cfg, const char *s, char *err, size_t errlen)
{
    const char *colon = strrchr(s, ':');
    long port;
    struct in_addr a;
    if (colon == NULL || (size_t)(colon - s) >= sizeof cfg->host || colon == s ||
        opts_parse_long(colon + 1, 1, 65535, &port) < 0) {
        snprintf(err, errlen, "--target: want HOST:PORT (e.g. 127.0.0.1:9000), got '%s'", s);
        return -1;
    }
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a) != 1) {
        snprintf(err, errlen, "--target: '%s' is not a numeric IPv4 address", host);
        return -1;
    }
    snprintf(cfg->host, sizeof cfg->host, "%s", host);
    cfg->port = (int)port;
    snprintf(cfg->target, sizeof cfg->target, "%s:%ld", host, port);
    return 0;
}

static int parse_connections(struct lg_config *cfg, const char *s, char *err, size_t errlen)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    cfg->nsteps = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long v;
        if (cfg->nsteps == LG_MAX_STEPS || opts_parse_long(tok, 1, 1000000, &v) < 0) {
            snprintf(err, errlen,
                     "--connections: want up to %d positive counts like 100,1000, got '%s'",
                     LG_MAX_STEPS, s);
            return -1;
        }
        cfg->connections[cfg->nsteps++] = v;
    }
    if (cfg->nsteps == 0) {
        snprintf(err, errlen, "--connections: empty list");
        return -1;
    }
    return 0;
}

static int parse_source_ips(struct lg_config *cfg, const char *s, char *err, size_t errlen)
{
    char a[64], b[64];
    struct in_addr x, y;
    const char *dash = strchr(s, '-');
    snprintf(cfg->source_ips, sizeof cfg->source_ips, "%s", s);
    if (dash == NULL) {
        snprintf(a, sizeof a, "%s", s);
        snprintf(b, sizeof b, "%s", s);
    } else {
        snprintf(a, sizeof a, "%.*s", (int)(dash - s), s);
        snprintf(b, sizeof b, "%s", dash + 1);
    }
    if (inet_pton(AF_INET, a, &x) != 1 || inet_pton(AF_INET, b, &y) != 1 ||
        ntohl(y.s_addr) < ntohl(x.s_addr) || ntohl(y.s_addr) - ntohl(x.s_addr) >= 256) {
        snprintf(err, errlen, "--source-ips: want A.B.C.D-A.B.C.E (up to 256), got '%s'", s);
        return -1;
    }
    cfg->src_first = ntohl(x.s_addr);
    cfg->src_count = ntohl(y.s_addr) - ntohl(x.s_addr) + 1;
    return 0;
}

/* Parses argv into cfg. Returns 0, 1 for --help, or -1 with err filled. */
static int parse_args(int argc, char **argv, struct lg_config *cfg, char *err, size_t errlen)
{
    const char *scenario = "echo", *rate_arg = NULL;
    const char *opt_flag[LG_MAX_OPTS]; /* the flag each setting came from, for messages */
    char name[48];
    long v;
    int opt, li, conns_given = 0;
    config_defaults(cfg);
    optind = 1;
    opterr = 0;
    while ((li = -1, opt = getopt_long(argc, argv, "", longopts, &li)) != -1) {
        /* The option's own name, never its value (--rate 0 is "--rate: bad value '0'"). */
        if (li >= 0)
            snprintf(name, sizeof name, "--%s", longopts[li].name);
        else
            snprintf(name, sizeof name, "%.40s", optind > 1 ? argv[optind - 1] : "?");
        switch (opt) {
        case 't':
            if (parse_target(cfg, optarg, err, errlen) < 0)
                return -1;
            break;
        case 's': scenario = optarg; break;
        case 'c':
            if (parse_connections(cfg, optarg, err, errlen) < 0)
                return -1;
            conns_given = 1;
            break;
        case 'd':
            if (parse_double(optarg, 0.001, 86400, &cfg->duration_s) < 0)
                goto bad_value;
            break;
        case 'T':
            if (opts_parse_long(optarg, 1, 256, &cfg->threads) < 0)
                goto bad_value;
            break;
        case 'z':
            if (opts_parse_long(optarg, 1, 1 << 20, &cfg->size) < 0)
                goto bad_value;
            break;
        case 'k':
            if (opts_parse_long(optarg, 0, 3600000, &cfg->think_ms) < 0)
                goto bad_value;
            break;
        case 'r':
            if (parse_double(optarg, 0.001, 1e9, &cfg->rate) < 0)
                goto bad_value;
            rate_arg = optarg;
            break;
        case 'R':
            if (opts_parse_long(optarg, 1, 10000000, &cfg->connect_rate) < 0)
                goto bad_value;
            break;
        case 'm':
            if (opts_parse_long(optarg, 1, 100000, &cfg->max_connecting) < 0)
                goto bad_value;
            break;
        case 'C':
            if (opts_parse_long(optarg, 1, 3600000, &cfg->connect_timeout_ms) < 0)
                goto bad_value;
            break;
        case 'o':
            if (opts_parse_long(optarg, 0, 3600000, &cfg->timeout_ms) < 0)
                goto bad_value;
            break;
        case 'S':
            if (parse_source_ips(cfg, optarg, err, errlen) < 0)
                return -1;
            break;
        case 'p':
            if (opts_parse_long(optarg, 1, 1L << 22, &v) < 0)
                goto bad_value;
            cfg->server_pid = v;
            break;
        case 'j': cfg->json_path = optarg; break;
        case 'O': {
            char *eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg || cfg->nopts == LG_MAX_OPTS) {
                snprintf(err, errlen, "--opt: want KEY=VALUE (at most %d), got '%s'",
                         LG_MAX_OPTS, optarg);
                return -1;
            }
            *eq = '\0';
            opt_flag[cfg->nopts] = "--opt";
            cfg->opt_key[cfg->nopts] = optarg;
            cfg->opt_val[cfg->nopts++] = eq + 1;
            break;
        }
        case 'K':
        case 'A':
        case 'G':
        case 'M':
        case 'L':
            /* Shorthands for --opt kind=, abusers=, good= (abuse), senders=, stalled= (chat). */
            if (cfg->nopts == LG_MAX_OPTS) {
                snprintf(err, errlen, "%s: more than %d scenario settings", name, LG_MAX_OPTS);
                return -1;
            }
            opt_flag[cfg->nopts] = longopts[li].name;
            cfg->opt_key[cfg->nopts] = longopts[li].name;
            cfg->opt_val[cfg->nopts++] = optarg;
            break;
        case 'q': cfg->quiet = 1; break;
        case 'h': return 1;
        default:
            snprintf(err, errlen, "unknown option or missing value: %s", name);
            return -1;
        bad_value:
            snprintf(err, errlen, "%s: bad value '%s'", name, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    cfg->scn = NULL;
    for (int i = 0; lg_scenarios[i]; i++)
        if (strcmp(lg_scenarios[i]->name, scenario) == 0)
            cfg->scn = lg_scenarios[i];
    if (cfg->scn == NULL) {
        snprintf(err, errlen, "--scenario: unknown scenario '%s'", scenario);
        return -1;
    }
    if (rate_arg && cfg->scn->rate_opt) {
        /* The scenario's own rate (chat: lines/s), not the engine's request loop. */
        if (lg_config_opt(cfg, cfg->scn->rate_opt) != NULL) {
            snprintf(err, errlen, "--rate and --opt %s= both given", cfg->scn->rate_opt);
            return -1;
        }
        if (cfg->nopts == LG_MAX_OPTS) {
            snprintf(err, errlen, "--rate: more than %d scenario settings", LG_MAX_OPTS);
            return -1;
        }
        opt_flag[cfg->nopts] = "--rate";
        cfg->opt_key[cfg->nopts] = cfg->scn->rate_opt;
        cfg->opt_val[cfg->nopts++] = rate_arg;
        cfg->rate = 0;
    }
    for (int i = 0; i < cfg->nopts; i++) {
        int known = 0;
        for (int k = 0; cfg->scn->opt_keys && cfg->scn->opt_keys[k] && !known; k++)
            known = strcmp(cfg->scn->opt_keys[k], cfg->opt_key[i]) == 0;
        if (!known) {
            if (strcmp(opt_flag[i], "--opt") == 0)
                snprintf(err, errlen, "--opt %s: the %s scenario has no such setting",
                         cfg->opt_key[i], cfg->scn->name);
            else
                snprintf(err, errlen, "--%s: not a setting of the %s scenario", opt_flag[i],
                         cfg->scn->name);
            return -1;
        }
    }
    if (cfg->rate > 0 && cfg->scn->drive != LG_DRIVE_LOOP) {
        snprintf(err, errlen, "--rate: the %s scenario does not send a request loop",
                 cfg->scn->name);
        return -1;
    }
    if (cfg->scn->check && cfg->scn->check(cfg, err, errlen) < 0)
        return -1;
    if (cfg->scn->fixed_connections) {
        if (conns_given) {
            snprintf(err, errlen, "--connections: the %s scenario sets its own (see --help)",
                     cfg->scn->name);
            return -1;
        }
        cfg->connections[0] = cfg->scn->fixed_connections(cfg);
        cfg->nsteps = 1;
    }
    /* Every connection keeps a request of --size bytes (or more) in its state: refuse a
     * run whose requests alone would take more memory than a test machine has to spare. */
    long most = 0;
    for (int i = 0; i < cfg->nsteps; i++)
        if (cfg->connections[i] > most)
            most = cfg->connections[i];
    if ((unsigned long long)most * (unsigned long long)cfg->size > LG_MAX_REQUEST_BYTES) {
        snprintf(err, errlen, "--size %ld x --connections %ld: more than %llu GiB of requests",
                 cfg->size, most, LG_MAX_REQUEST_BYTES >> 30);
        return -1;
    }
    return 0;
}

/* Raises the fd limit to the hard limit and checks that the largest step fits in it. */
static int check_fd_limit(const struct lg_config *cfg, char *err, size_t errlen)
{
    long most = 0;
    for (int i = 0; i < cfg->nsteps; i++)
        if (cfg->connections[i] > most)
            most = cfg->connections[i];
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY &&
            (rlim_t)(most + FD_RESERVE + 4 * cfg->threads) > rl.rlim_cur) {
            snprintf(err, errlen,
                     "--connections %ld needs more fds than the limit (%llu) allows",
                     most, (unsigned long long)rl.rlim_cur);
            return -1;
        }
    }
    return 0;
}

/* --json FILE must be writable before a run, not discovered unwritable after it. The file
 * itself is only created at the end, so bad input never leaves one behind. */
static int check_json_path(const struct lg_config *cfg, char *err, size_t errlen)
{
    if (cfg->json_path == NULL)
        return 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", cfg->json_path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK) < 0 || (access(cfg->json_path, F_OK) == 0 &&
                                  access(cfg->json_path, W_OK) < 0)) {
        snprintf(err, errlen, "--json: cannot write %s: %s", cfg->json_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* "Is there a server?": one blocking connect before anything starts (TCP scenarios). */
static int probe_target(const struct lg_config *cfg, char *err, size_t errlen)
{
    if (cfg->scn->transport != LG_TCP)
        return 0;
    char e2[160];
    int fd = sock_connect_tcp(cfg->host, cfg->port, e2, sizeof e2);
    if (fd < 0) {
        snprintf(err, errlen, "no server at %s: %s", cfg->target, e2);
        return -1;
    }
    close(fd);
    return 0;
}

/* The server's baseline once its thread count has settled (the probe connection's thread
 * gone): Threads polled until BASELINE_STABLE samples in a row agree, BASELINE_MAX_MS at
 * most. 0, or -1 with err filled. */
static int baseline_sample(const struct lg_config *cfg, struct proc_sample *base, char *err,
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

/* ---- JSON --------------------------------------------------------------------------------- */

static json_t *config_json(const struct lg_config *cfg)
{
    json_t *conns = json_array();
    for (int i = 0; i < cfg->nsteps; i++)
        json_array_append_new(conns, json_integer(cfg->connections[i]));
    json_t *opts = json_object();
    for (int i = 0; i < cfg->nopts; i++)
        json_object_set_new(opts, cfg->opt_key[i], json_string(cfg->opt_val[i]));
    return json_pack("{s:s, s:s, s:o, s:f, s:I, s:I, s:I, s:f, s:s, s:I, s:I, s:I, s:I, s:s,"
                     " s:o, s:o, s:b, s:o}",
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
                     "quiet", cfg->quiet, "opts", opts);
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
    return json_pack(
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
}

struct step_result {
    long target, established, failed;
    double duration;
    struct lg_stats st;
    struct rusage ru0, ru1;
    int have_server;
    struct proc_sample s0, s1;
    int interrupted;
};

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static json_t *step_json(const struct lg_config *cfg, const struct step_result *r,
                         const struct proc_sample *base)
{
    const struct lg_stats *st = &r->st;
    double lu = tv_s(r->ru1.ru_utime) - tv_s(r->ru0.ru_utime);
    double ls = tv_s(r->ru1.ru_stime) - tv_s(r->ru0.ru_stime);
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
    return step;
}

/* Writes the JSON to --json FILE or stdout; every write checked, the flush and the close
 * included (/dev/full, a closed pipe): a lost result is -1 and a message, never a silent 0. */
static int write_json(const struct lg_config *cfg, json_t *doc)
{
    int rc = lg_json_write(doc, cfg->json_path);
    if (rc < 0)
        fprintf(stderr, "loadgen: cannot write the JSON to %s: %s\n",
                cfg->json_path ? cfg->json_path : "stdout", strerror(errno));
    return rc;
}

/* ---- the run ------------------------------------------------------------------------------ */

/* Waits up to ms for a stop signal. Returns 1 if one came. */
static int wait_stop(int stopfd, int ms)
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

/* Runs one step into *r. Returns 1 if a stop signal arrived (r->interrupted tells whether the
 * measurement had started), else 0. */
static int run_step(const struct lg_config *cfg, struct lg_engine *e, int stopfd, int step,
                    struct lg_stats *scratch, struct step_result *r)
{
    struct lg_status s;
    char err[160];
    r->target = cfg->connections[step];
    lg_engine_set_target(e, r->target);

    /* Set-up: every wanted connection established or failed, or the deadline: a generous
     * bound (connect timeout twice, the paced connect time, 1 ms a connection, 5 s at least)
     * so a server that keeps closing connections cannot hold the run forever. */
    uint64_t last = mono_now_ns();
    double setup_s = 2.0 * (double)cfg->connect_timeout_ms / 1000.0 + (double)r->target / 1000.0 +
                     (cfg->connect_rate ? (double)r->target / (double)cfg->connect_rate : 0.0);
    uint64_t deadline = last + (uint64_t)((setup_s < 5.0 ? 5.0 : setup_s) * 1e9);
    for (;;) {
        lg_engine_status(e, &s, NULL);
        if (lg_engine_settled(&s) || mono_now_ns() >= deadline)
            break;
        if (wait_stop(stopfd, SETTLE_POLL_MS))
            return 1;
        if (mono_now_ns() - last >= 1000000000ull) {
            last = mono_now_ns();
            progress(cfg, step, "connecting", &s, 0, NULL);
        }
    }

    /* Measurement. */
    if (cfg->server_pid)
        r->have_server = procstat_sample((pid_t)cfg->server_pid, &r->s0, err, sizeof err) == 0;
    getrusage(RUSAGE_SELF, &r->ru0);
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
        if (wait_stop(stopfd, (int)((next - now + 999999) / 1000000))) {
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
    uint64_t t1 = mono_now_ns();
    if (cfg->scn->probe_at_end) {
        /* Wait for the probes: every connection answers or times out. */
        long wait_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms + 200 : PROBE_WAIT_MS;
        uint64_t deadline = mono_now_ns() + (uint64_t)wait_ms * 1000000ull;
        for (;;) {
            lg_engine_status(e, &s, NULL);
            if (s.pending == 0 || mono_now_ns() >= deadline)
                break;
            if (wait_stop(stopfd, 20)) {
                stopped = 1;
                break;
            }
        }
    }
    lg_engine_status(e, &s, &r->st);
    getrusage(RUSAGE_SELF, &r->ru1);
    if (r->have_server)
        r->have_server = procstat_sample((pid_t)cfg->server_pid, &r->s1, err, sizeof err) == 0;
    if (cfg->server_pid && !r->have_server)
        fprintf(stderr, "loadgen: step %d has no server figures: %s\n", step + 1, err);
    r->failed = s.failed;
    r->duration = (double)(t1 - t0) / 1e9;
    r->interrupted = stopped;
    return stopped;
}

static void summary(const struct lg_config *cfg, const struct step_result *r)
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

int main(int argc, char **argv)
{
    struct lg_config cfg;
    char err[256];
    int rc = parse_args(argc, argv, &cfg, err, sizeof err);
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        usage(stderr);
        return 2;
    }
    struct proc_sample base;
    memset(&base, 0, sizeof base);
    if (check_fd_limit(&cfg, err, sizeof err) < 0 || check_json_path(&cfg, err, sizeof err) < 0 ||
        (cfg.server_pid &&
         procstat_sample((pid_t)cfg.server_pid, &base, err, sizeof err) < 0)) {
        fprintf(stderr, "loadgen: %s\n", err);
        procstat_free(&base);
        return 2;
    }
    procstat_free(&base);
    int stopfd = stopsig_install(err, sizeof err);
    if (stopfd < 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 1;
    }
    /* The engine's threads first, then the probe connection, then the baseline: loadgen's
     * own start-up and the probe (a thread in a threaded server, until it exits) must not
     * count as the first step's memory. */
    struct lg_engine *e = lg_engine_start(&cfg, err, sizeof err);
    if (e == NULL) {
        fprintf(stderr, "loadgen: %s\n", err);
        close(stopfd);
        return 1;
    }
    if (probe_target(&cfg, err, sizeof err) < 0 ||
        (cfg.server_pid && baseline_sample(&cfg, &base, err, sizeof err) < 0)) {
        fprintf(stderr, "loadgen: %s\n", err);
        lg_engine_free(e);
        close(stopfd);
        return 2;
    }

    json_t *steps = json_array();
    struct lg_stats *scratch = malloc(sizeof *scratch);
    struct step_result *r = malloc(sizeof *r);
    int interrupted = 0;
    for (int i = 0; i < cfg.nsteps && scratch && r && !interrupted; i++) {
        memset(r, 0, sizeof *r);
        interrupted = run_step(&cfg, e, stopfd, i, scratch, r);
        /* A step cut short during its set-up measured nothing: it is left out. */
        if (!interrupted || r->interrupted) {
            json_array_append_new(steps, step_json(&cfg, r, &base));
            summary(&cfg, r);
        }
        procstat_free(&r->s0);
        procstat_free(&r->s1);
    }
    lg_engine_free(e);

    json_t *doc = json_pack("{s:s, s:s, s:s, s:o, s:o, s:b}", "schema", "tvsa-loadgen/1",
                            "scenario", cfg.scn->name, "target", cfg.target,
                            "config", config_json(&cfg), "steps", steps,
                            "interrupted", interrupted);
    rc = doc ? write_json(&cfg, doc) : -1;
    json_decref(doc);
    free(scratch);
    free(r);
    procstat_free(&base);
    close(stopfd);
    if (interrupted)
        return 130;
    return rc < 0 ? 1 : 0;
}
