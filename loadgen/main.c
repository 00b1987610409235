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
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "lgjson.h"
#include "merge.h"
#include "procs.h"
#include "mono.h"
#include "opts.h"
#include "procstat.h"
#include "result.h"
#include "run.h"
#include "scenario.h"
#include "sock.h"
#include "stopsig.h"

#define FD_RESERVE 64         /* fds beyond the connections: stdio, event bases, pipes */
#define LG_MAX_REQUEST_BYTES (2ULL << 30) /* --size x the largest step, at most */
#define PORT_RANGE_PATH "/proc/sys/net/ipv4/ip_local_port_range"
#define START_AT_MAX_AHEAD_S 86400.0 /* --start-at further ahead is a mistake */

/* The flags of every run; each scenario's shorthand flags are added from its table (below). */
static const struct option base_opts[] = {
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
    {"start-at", required_argument, NULL, 'a'},
    {"procs", required_argument, NULL, 'P'},
    {"host-name", required_argument, NULL, 'H'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
};
#define NBASE (int)(sizeof base_opts / sizeof base_opts[0])
#define OPT_SCENARIO_FLAG 1000 /* getopt's value for every flag from a scenario's table */
#define MAX_LONGOPTS (NBASE + 64)

/* base_opts, then one entry per distinct flag name in the scenarios' tables, then the end
 * marker, into out[MAX_LONGOPTS]. */
static void build_longopts(struct option *out)
{
    int n = 0;
    for (int i = 0; i < NBASE; i++)
        out[n++] = base_opts[i];
    for (int i = 0; lg_scenarios[i]; i++)
        for (const struct lg_opt_def *d = lg_scenarios[i]->opts; d && d->name; d++) {
            int dup = 0;
            for (int k = 0; k < n && !dup; k++)
                dup = strcmp(out[k].name, d->name) == 0;
            if (d->flag && !dup && n < MAX_LONGOPTS - 1)
                out[n++] = (struct option){d->name, required_argument, NULL, OPT_SCENARIO_FLAG};
        }
    out[n] = (struct option){NULL, 0, NULL, 0};
}

/* Prints text from column `indent` on, wrapped at spaces before column 96. */
static void usage_wrap(FILE *out, const char *text, int indent)
{
    const int width = 96 - indent;
    while ((int)strlen(text) > width) {
        int cut = width;
        while (cut > 0 && text[cut] != ' ')
            cut--;
        if (cut == 0)
            break;
        fprintf(out, "%.*s\n%*s", cut, text, indent, "");
        text += cut + 1;
    }
    fprintf(out, "%s\n", text);
}

/* The scenarios' settings for --help, from their tables. */
static void usage_scenario_opts(FILE *out)
{
    fprintf(out, "scenario settings: --opt KEY=VALUE (repeatable; a key the scenario does not "
                 "read is refused),\nor the flag shown:\n");
    for (int i = 0; lg_scenarios[i]; i++)
        for (const struct lg_opt_def *d = lg_scenarios[i]->opts; d && d->name; d++) {
            char left[64];
            if (d->flag)
                snprintf(left, sizeof left, "--%s %s", d->name, d->metavar);
            else
                snprintf(left, sizeof left, "--opt %s=%s", d->name, d->metavar);
            fprintf(out, "  %-8s %-20s ", d == lg_scenarios[i]->opts ? lg_scenarios[i]->name : "",
                    left);
            usage_wrap(out, d->help, 32);
        }
}

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
            "  --opt KEY=VALUE         a scenario's setting (below)\n"
            "  --start-at EPOCH        wait until this wall-clock time (seconds since 1970, may be\n"
            "                          fractional) before the first step: a synchronized start of\n"
            "                          loadgens on several hosts (scripts/cluster.sh)\n"
            "  --procs N               N worker processes (each with --threads), every step's\n"
            "                          connections and --rate split among them, one JSON\n"
            "  --host-name NAME        this host's name in the JSON (default: gethostname; network\n"
            "                          namespaces share one, so scripts/cluster.sh names each)\n"
            "  --quiet                 no progress line\n");
    usage_scenario_opts(out);
    fprintf(out, "usage: loadgen merge [--json OUT] A.json B.json ...  (one JSON of several runs)\n");
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
    cfg->procs = 1;
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

static long largest_step(const struct lg_config *cfg)
{
    long most = 0;
    for (int i = 0; i < cfg->nsteps; i++)
        if (cfg->connections[i] > most)
            most = cfg->connections[i];
    return most;
}

/* Every setting given (opt_flag[i]: "--opt", or the flag it came from) is one the scenario's
 * table declares, as a flag when it came as one, and a number in its range when declared so.
 * 0, or -1 with err filled. */
static int check_scenario_opts(const struct lg_config *cfg, const char *const *opt_flag,
                               char *err, size_t errlen)
{
    for (int i = 0; i < cfg->nopts; i++) {
        const struct lg_opt_def *d = cfg->scn->opts;
        while (d && d->name && strcmp(d->name, cfg->opt_key[i]) != 0)
            d++;
        int via_opt = strcmp(opt_flag[i], "--opt") == 0;
        if (d == NULL || d->name == NULL || (!via_opt && opt_flag[i][0] != '-' && !d->flag)) {
            if (via_opt)
                snprintf(err, errlen, "--opt %s: the %s scenario has no such setting",
                         cfg->opt_key[i], cfg->scn->name);
            else
                snprintf(err, errlen, "--%s: not a setting of the %s scenario", opt_flag[i],
                         cfg->scn->name);
            return -1;
        }
        double v;
        long iv;
        int bad = d->type == LG_OPT_INT
                      ? opts_parse_long(cfg->opt_val[i], (long)d->min, (long)d->max, &iv) < 0
                  : d->type == LG_OPT_NUM
                      ? parse_double(cfg->opt_val[i], d->min, d->max, &v) < 0
                      : 0;
        if (bad) {
            /* Named as it was given: --opt KEY, --rate, or the shorthand --KEY. */
            const char *given = via_opt ? d->name : opt_flag[i];
            if (given[0] == '-')
                given += 2;
            snprintf(err, errlen, "%s%s: want %.17g..%.17g, got '%s'", via_opt ? "--opt " : "--",
                     given, d->min, d->max, cfg->opt_val[i]);
            return -1;
        }
    }
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
    struct option longopts[MAX_LONGOPTS];
    build_longopts(longopts);
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
        case OPT_SCENARIO_FLAG:
            /* A scenario's shorthand: --NAME V is --opt NAME=V (checked below). */
            if (cfg->nopts == LG_MAX_OPTS) {
                snprintf(err, errlen, "%s: more than %d scenario settings", name, LG_MAX_OPTS);
                return -1;
            }
            opt_flag[cfg->nopts] = longopts[li].name;
            cfg->opt_key[cfg->nopts] = longopts[li].name;
            cfg->opt_val[cfg->nopts++] = optarg;
            break;
        case 'a':
            if (parse_double(optarg, 1, 1e11, &cfg->start_at) < 0)
                goto bad_value;
            if (cfg->start_at > lg_wall_now() + START_AT_MAX_AHEAD_S) {
                snprintf(err, errlen, "--start-at: %s is more than a day ahead", optarg);
                return -1;
            }
            break;
        case 'H':
            if (optarg[0] == '\0' || strlen(optarg) >= sizeof cfg->host_name)
                goto bad_value;
            snprintf(cfg->host_name, sizeof cfg->host_name, "%s", optarg);
            break;
        case 'P':
            if (opts_parse_long(optarg, 1, LG_MAX_PROCS, &cfg->procs) < 0)
                goto bad_value;
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
    cfg->scn = lg_scenario_find(scenario);
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
    if (check_scenario_opts(cfg, opt_flag, err, errlen) < 0)
        return -1;
    if (cfg->rate > 0 && cfg->scn->drive != LG_DRIVE_LOOP) {
        snprintf(err, errlen, "--rate: the %s scenario does not send a request loop",
                 cfg->scn->name);
        return -1;
    }
    if (cfg->scn->check && cfg->scn->check(cfg, err, errlen) < 0)
        return -1;
    if (cfg->procs > 1 && cfg->scn->single_process) {
        snprintf(err, errlen, "--procs: the %s scenario's figures are per process (one process only)",
                 cfg->scn->name);
        return -1;
    }
    for (int i = 0; cfg->procs > 1 && i < cfg->nsteps; i++)
        if (cfg->connections[i] < cfg->procs) {
            snprintf(err, errlen, "--procs %ld: every step needs at least as many connections",
                     cfg->procs);
            return -1;
        }
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
    long most = largest_step(cfg);
    if ((unsigned long long)most * (unsigned long long)cfg->size > LG_MAX_REQUEST_BYTES) {
        snprintf(err, errlen, "--size %ld x --connections %ld: more than %llu GiB of requests",
                 cfg->size, most, LG_MAX_REQUEST_BYTES >> 30);
        return -1;
    }
    return 0;
}

/* Every connection to the one target takes an ephemeral port of its source address: a step
 * cannot open more than (source addresses) x (ports in ip_local_port_range). Refused before
 * anything starts rather than found as EADDRNOTAVAIL half-way through a ramp. */
static int check_ports(const struct lg_config *cfg, char *err, size_t errlen)
{
    long lo, hi;
    FILE *f = fopen(PORT_RANGE_PATH, "r");
    if (f == NULL)
        return 0; /* not Linux-like: nothing to check against */
    int n = fscanf(f, "%ld %ld", &lo, &hi);
    fclose(f);
    if (n != 2 || hi < lo)
        return 0;
    long ports = hi - lo + 1, addrs = cfg->src_count ? (long)cfg->src_count : 1;
    long most = largest_step(cfg);
    if (most > ports * addrs) {
        snprintf(err, errlen,
                 "--connections %ld: more than %ld source address(es) x %ld ephemeral ports "
                 "(ip_local_port_range %ld-%ld); give --source-ips with %ld or more addresses",
                 most, addrs, ports, lo, hi, (most + ports - 1) / ports);
        return -1;
    }
    return 0;
}

/* Raises the fd limit to the hard limit and checks that the largest step fits in it (in each
 * worker's share of it with --procs: every worker has its own fd table). */
static int check_fd_limit(const struct lg_config *cfg, char *err, size_t errlen)
{
    long most = (largest_step(cfg) + cfg->procs - 1) / cfg->procs;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur != RLIM_INFINITY &&
            (rlim_t)(most + FD_RESERVE + 4 * cfg->threads) > rl.rlim_cur) {
            snprintf(err, errlen,
                     "--connections %ld needs more fds than the limit (%llu) allows%s",
                     most, (unsigned long long)rl.rlim_cur,
                     cfg->procs > 1 ? " in each worker" : " (--procs N splits them)");
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

/* "Is there a server?": one blocking connect before anything starts (TCP scenarios). With
 * --server-pid the baseline comes next, so the probe half-closes and waits (PROBE_CLOSE_MS at
 * most) for the server to close its end: the connection's handler is then done, and a
 * threaded server's thread for it is exiting. A bare close() left that thread's exit to the
 * scheduler's pace, which on a busy machine outlasted the baseline's settle window. */
#define PROBE_CLOSE_MS 2000
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
    if (cfg->server_pid && shutdown(fd, SHUT_WR) == 0) {
        uint64_t until = mono_now_us() + PROBE_CLOSE_MS * 1000ULL;
        char buf[512];
        for (;;) {
            uint64_t now = mono_now_us();
            int left = now < until ? (int)((until - now + 999) / 1000) : 0;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (left <= 0 || poll(&p, 1, left) <= 0)
                break;
            ssize_t n = read(fd, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                break;
        }
    }
    close(fd);
    return 0;
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

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "merge") == 0)
        return lg_merge_main(argc - 1, argv + 1);
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
    if (check_ports(&cfg, err, sizeof err) < 0 || check_fd_limit(&cfg, err, sizeof err) < 0 || check_json_path(&cfg, err, sizeof err) < 0 ||
        (cfg.server_pid &&
         procstat_sample((pid_t)cfg.server_pid, &base, err, sizeof err) < 0)) {
        fprintf(stderr, "loadgen: %s\n", err);
        procstat_free(&base);
        return 2;
    }
    procstat_free(&base);
    if (cfg.procs > 1) {
        /* Workers are forked before any thread: probe here, they start their engines. */
        if (probe_target(&cfg, err, sizeof err) < 0) {
            fprintf(stderr, "loadgen: %s\n", err);
            return 2;
        }
        return lg_procs_main(&cfg);
    }
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
        (cfg.server_pid && lg_baseline_sample(&cfg, &base, err, sizeof err) < 0)) {
        fprintf(stderr, "loadgen: %s\n", err);
        lg_engine_free(e);
        close(stopfd);
        return 2;
    }

    json_t *steps = json_array();
    struct lg_stats *scratch = malloc(sizeof *scratch);
    struct lg_step_result *r = malloc(sizeof *r);
    int interrupted = lg_wait_start_at(&cfg, stopfd);
    double wall_start = lg_wall_now();
    for (int i = 0; i < cfg.nsteps && scratch && r && !interrupted; i++) {
        memset(r, 0, sizeof *r);
        interrupted = lg_run_step(&cfg, e, stopfd, i, scratch, r);
        /* A step cut short during its set-up measured nothing: it is left out. */
        if (!interrupted || r->interrupted) {
            json_array_append_new(steps, lg_step_json(&cfg, r, &base));
            lg_step_summary(&cfg, r);
        }
        procstat_free(&r->s0);
        procstat_free(&r->s1);
    }
    lg_engine_free(e);

    json_t *doc = lg_run_doc(&cfg, steps, interrupted, wall_start);
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
