/* The command line every server shares (docs/interfaces.md), parsed in one place with getopt_long. */
#include "opts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_BIND = 256, OPT_PORT, OPT_MAX_CONNS, OPT_IDLE, OPT_STACK_KB, OPT_POOL, OPT_API,
    OPT_WORK_US, OPT_MAX_LINE, OPT_MAX_BACKLOG, OPT_BROADCAST, OPT_ZONE, OPT_THREADS,
    OPT_EDNS_SIZE, OPT_PROCS, OPT_LOOPS, OPT_CORO_STACK_KB, OPT_HIGH_WATER, OPT_STALL_MS,
    OPT_RCVBUF,
};

struct flag_def {
    const char *name;
    int id;
    unsigned group;  /* 0: every server */
    const char *metavar;
    const char *help;
    long min, max;   /* numeric flags: accepted range */
};

static const struct flag_def flags[] = {
    {"bind", OPT_BIND, 0, "ADDR", "numeric address to listen on (default 127.0.0.1)", 0, 0},
    {"port", OPT_PORT, 0, "N", "port, 0 picks a free one (default %d)", 0, 65535},
    {"max-conns", OPT_MAX_CONNS, 0, "N", "refuse connections beyond N (default 0: no cap)", 0,
     10000000},
    {"idle-timeout", OPT_IDLE, 0, "SEC", "close connections idle for SEC s (default 0: never)", 0,
     86400},
    {"stack-kb", OPT_STACK_KB, OPTS_THREADED, "N",
     "thread stack in KiB, 32 or more (default: the system's, 8 MiB)", 32, 1048576},
    {"pool", OPT_POOL, OPTS_THREADED, "N",
     "N worker threads serve a queue of connections (default 0: a thread each)", 0, 100000},
    {"api", OPT_API, OPTS_API, "API",
     "bufferevent (default, streams), event (raw callbacks), coro (coroutines)", 0, 0},
    {"coro-stack-kb", OPT_CORO_STACK_KB, OPTS_API, "N",
     "--api coro: each coroutine's stack in KiB, 32 or more (default 32)", 32, 1048576},
    {"work-us", OPT_WORK_US, OPTS_WORK, "N", "burn N us of CPU per message received (default 0)",
     0, 10000000},
    {"max-line", OPT_MAX_LINE, OPTS_CHAT, "BYTES", "longest line accepted (default 4096)", 1,
     1048576},
    {"max-backlog", OPT_MAX_BACKLOG, OPTS_CHAT, "KIB",
     "a client this far behind the room is dropped (default 1024)", 1, 1048576},
    {"broadcast", OPT_BROADCAST, OPTS_CHAT, "MODE",
     "queued (default) or naive (waits for each receiver: the trap, on purpose)", 0, 0},
    {"high-water", OPT_HIGH_WATER, OPTS_CHAT, "KIB",
     "queued: a receiver this far behind pauses the senders (default 256)", 1, 1048576},
    {"stall-ms", OPT_STALL_MS, OPTS_CHAT, "MS",
     "queued: a receiver that takes no byte for MS ms is dropped (default 500)", 1, 3600000},
    {"zone", OPT_ZONE, OPTS_ZONE, "FILE", "zone file (default: the sample zone)", 0, 0},
    {"edns-size", OPT_EDNS_SIZE, OPTS_ZONE, "BYTES",
     "largest UDP answer to an EDNS client (default 1232)", 512, 65535},
    {"threads", OPT_THREADS, OPTS_THREADS, "N", "worker threads (default 0: online CPUs)", 0,
     1024},
    {"procs", OPT_PROCS, OPTS_PROCS, "N",
     "N worker processes, each its own SO_REUSEPORT socket (default 1)", 1, 256},
    {"loops", OPT_LOOPS, OPTS_LOOPS, "N",
     "N event loops (threads), each its own SO_REUSEPORT listener (default 1)", 1, 256},
    {"rcvbuf", OPT_RCVBUF, OPTS_RCVBUF, "BYTES",
     "UDP receive buffer asked for (SO_RCVBUF, default 4194304; the kernel caps it at "
     "net.core.rmem_max, then doubles it)", 1024, 1073741824},
};
#define NFLAGS (sizeof flags / sizeof flags[0])

int opts_parse_long(const char *s, long min, long max, long *out)
{
    char *end;

    /* strtol would skip leading blanks and accept "+"; a flag value is digits only. */
    if (s == NULL || !(*s == '-' || (*s >= '0' && *s <= '9')))
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void set_defaults(const struct opts_spec *spec, struct server_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->bind, sizeof o->bind, "127.0.0.1");
    o->port = spec->default_port;
    o->api = OPTS_API_BUFFEREVENT;
    o->max_line = 4096;
    o->max_backlog_kib = 1024;
    o->high_water_kib = 256;
    o->stall_ms = 500;
    o->broadcast = OPTS_BROADCAST_QUEUED;
    o->edns_size = 1232; /* DNSWIRE_EDNS_SIZE; opts does not depend on the DNS modules */
    o->procs = 1;
    o->loops = 1;
    o->coro_stack_kb = 32;
    o->rcvbuf = 4L << 20;
}

/* The long field a numeric flag sets, or NULL for the flags that are not plain numbers. */
static long *numeric_field(int id, struct server_opts *o)
{
    switch (id) {
    case OPT_MAX_CONNS: return &o->max_conns;
    case OPT_IDLE: return &o->idle_timeout_s;
    case OPT_STACK_KB: return &o->stack_kb;
    case OPT_POOL: return &o->pool;
    case OPT_WORK_US: return &o->work_us;
    case OPT_MAX_LINE: return &o->max_line;
    case OPT_MAX_BACKLOG: return &o->max_backlog_kib;
    case OPT_HIGH_WATER: return &o->high_water_kib;
    case OPT_STALL_MS: return &o->stall_ms;
    case OPT_THREADS: return &o->threads;
    case OPT_EDNS_SIZE: return &o->edns_size;
    case OPT_PROCS: return &o->procs;
    case OPT_LOOPS: return &o->loops;
    case OPT_CORO_STACK_KB: return &o->coro_stack_kb;
    case OPT_RCVBUF: return &o->rcvbuf;
    default: return NULL;
    }
}

/* One flag's value into *o. Returns 0, or -1 when the value is bad. */
static int apply_flag(const struct flag_def *f, const char *arg, struct server_opts *o)
{
    long v;
    unsigned char scratch[sizeof(struct in6_addr)];
    long *field = numeric_field(f->id, o);

    if (field != NULL)
        return opts_parse_long(arg, f->min, f->max, field);
    switch (f->id) {
    case OPT_BIND:
        if (strlen(arg) >= sizeof o->bind || (inet_pton(AF_INET, arg, scratch) != 1 &&
                                               inet_pton(AF_INET6, arg, scratch) != 1))
            return -1;
        snprintf(o->bind, sizeof o->bind, "%s", arg);
        return 0;
    case OPT_PORT:
        if (opts_parse_long(arg, f->min, f->max, &v) < 0)
            return -1;
        o->port = (int)v;
        return 0;
    case OPT_API:
        if (strcmp(arg, "bufferevent") == 0)
            o->api = OPTS_API_BUFFEREVENT;
        else if (strcmp(arg, "event") == 0)
            o->api = OPTS_API_EVENT;
        else if (strcmp(arg, "coro") == 0)
            o->api = OPTS_API_CORO;
        else
            return -1;
        return 0;
    case OPT_BROADCAST:
        if (strcmp(arg, "queued") == 0)
            o->broadcast = OPTS_BROADCAST_QUEUED;
        else if (strcmp(arg, "naive") == 0)
            o->broadcast = OPTS_BROADCAST_NAIVE;
        else
            return -1;
        return 0;
    case OPT_ZONE:
        if (*arg == '\0')
            return -1;
        o->zone = arg;
        return 0;
    default:
        return -1;
    }
}

static int accepted(const struct opts_spec *spec, const struct flag_def *f)
{
    return f->group == 0 || (spec->groups & f->group) != 0;
}

enum opts_result opts_parse(const struct opts_spec *spec, int argc, char **argv,
                            struct server_opts *o, char *err, size_t errlen)
{
    struct option longopts[NFLAGS + 2];
    const struct flag_def *by_index[NFLAGS];
    size_t n = 0, nvalued;

    set_defaults(spec, o);
    for (size_t i = 0; i < NFLAGS; i++) {
        if (!accepted(spec, &flags[i]))
            continue;
        longopts[n] = (struct option){flags[i].name, required_argument, NULL, flags[i].id};
        by_index[n++] = &flags[i];
    }
    nvalued = n;
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    optind = 0; /* glibc: 0 re-initialises getopt, so the parser can run more than once */
    opterr = 0; /* our own messages, not getopt's */
    for (;;) {
        int idx = -1;
        int c = getopt_long(argc, argv, ":h", longopts, &idx);
        if (c == -1)
            break;
        if (c == 'h')
            return OPTS_HELP;
        if (c == ':') {
            snprintf(err, errlen, "option '%s' needs a value", argv[optind - 1]);
            return OPTS_ERROR;
        }
        if (c == '?') {
            snprintf(err, errlen, "unknown option '%s'", argv[optind - 1]);
            return OPTS_ERROR;
        }
        const struct flag_def *f = NULL;
        for (size_t i = 0; i < nvalued; i++)
            if (by_index[i]->id == c)
                f = by_index[i];
        if (f == NULL || apply_flag(f, optarg, o) < 0) {
            if (f != NULL && f->max > 0)
                snprintf(err, errlen, "bad value '%s' for --%s (want an integer %ld..%ld)",
                         optarg, f->name, f->min, f->max);
            else
                snprintf(err, errlen, "bad value '%s' for --%s", optarg,
                         f ? f->name : "?");
            return OPTS_ERROR;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s'", argv[optind]);
        return OPTS_ERROR;
    }
    return OPTS_OK;
}

void opts_usage(const struct opts_spec *spec, FILE *out)
{
    fprintf(out, "Usage: %s [OPTIONS]\n%s\n\nOptions:\n", spec->name, spec->summary);
    for (size_t i = 0; i < NFLAGS; i++) {
        const struct flag_def *f = &flags[i];
        char left[40], help[160];

        if (!accepted(spec, f))
            continue;
        snprintf(left, sizeof left, "--%s %s", f->name, f->metavar);
        if (f->id == OPT_PORT)
            snprintf(help, sizeof help, f->help, spec->default_port);
        else
            snprintf(help, sizeof help, "%s", f->help);
        fprintf(out, "  %-22s %s\n", left, help);
    }
    fprintf(out, "  %-22s %s\n", "-h, --help", "show this help and exit");
    if (spec->groups & OPTS_CHAT)
        fprintf(out, "\nOne process: the room lives in this process's memory, so there is no "
                     "--procs.\n");
    fprintf(out, "\nPrints one JSON line on stdout when listening and one when stopped "
                 "(SIGINT/SIGTERM).\n");
}
