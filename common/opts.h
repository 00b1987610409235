/* Pure, but for opts_parse_or_exit (main's: prints and exits; in opts_main.c). The command
 * line every server shares (docs/interfaces.md), parsed in one place with getopt_long. */
#ifndef TVSA_OPTS_H
#define TVSA_OPTS_H
#include <stdio.h>

/* Optional flag groups; a server names the groups it accepts in its spec. */
enum {
    OPTS_THREADED = 1u << 0, /* --stack-kb, --pool */
    OPTS_API = 1u << 1,      /* --api bufferevent|event|coro, --coro-stack-kb */
    OPTS_WORK = 1u << 2,     /* --work-us */
    OPTS_CHAT = 1u << 3,     /* --max-line, --max-backlog, --broadcast, --high-water, --stall-ms */
    OPTS_ZONE = 1u << 4,     /* --zone, --edns-size */
    OPTS_THREADS = 1u << 5,  /* --threads */
    OPTS_PROCS = 1u << 6,    /* --procs */
    OPTS_LOOPS = 1u << 7,    /* --loops */
    OPTS_RCVBUF = 1u << 8,   /* --rcvbuf */
};

enum opts_api { OPTS_API_BUFFEREVENT, OPTS_API_EVENT, OPTS_API_CORO };
enum opts_broadcast { OPTS_BROADCAST_QUEUED, OPTS_BROADCAST_NAIVE };

struct server_opts {
    char bind[64];         /* numeric address, default 127.0.0.1 */
    int port;              /* 0 picks a free port */
    long max_conns;        /* 0: no cap but the fd limit */
    long idle_timeout_s;   /* 0: none */
    long stack_kb;         /* 0: the system default (8 MiB on Linux); else >= 32 */
    long pool;             /* 0: one thread per connection */
    enum opts_api api;
    long work_us;          /* CPU burnt per message received */
    long max_line;         /* chat: bytes, default 4096 */
    long max_backlog_kib;  /* chat: unsent output allowed per client, default 1024 */
    enum opts_broadcast broadcast;
    long high_water_kib;   /* chat, queued: distance that pauses senders, default 256 */
    long stall_ms;         /* chat, queued: no progress this long drops a receiver, default 500 */
    const char *zone;      /* DNS: zone file, NULL for the sample zone */
    long edns_size;        /* DNS: largest UDP answer to an EDNS client, default 1232 */
    long threads;          /* 0: number of online CPUs */
    long procs;            /* worker processes, default 1 (no supervisor) */
    long loops;            /* async echo: event loops (threads), default 1 */
    long coro_stack_kb;    /* --api coro: each coroutine's stack, default 32 */
    long rcvbuf;           /* UDP: SO_RCVBUF asked for, default 4 MiB (capped, then doubled) */
};

struct opts_spec {
    const char *name;      /* binary name, e.g. "async-echo" */
    const char *summary;   /* one line for --help */
    int default_port;
    unsigned groups;       /* OPTS_* groups accepted beyond the common flags */
};

enum opts_result { OPTS_OK, OPTS_HELP, OPTS_ERROR };

/* Fills *o with defaults, then the flags in argv. OPTS_ERROR leaves a one-line reason in err.
 * Re-entrant across calls (resets getopt), prints nothing. */
enum opts_result opts_parse(const struct opts_spec *spec, int argc, char **argv,
                            struct server_opts *o, char *err, size_t errlen);

/* The --help text for this spec. */
void opts_usage(const struct opts_spec *spec, FILE *out);

/* For main(): parse, print usage and exit 0 on --help, print the error and exit 2 on bad input. */
void opts_parse_or_exit(const struct opts_spec *spec, int argc, char **argv, struct server_opts *o);

/* Strict decimal integer in [min, max]: no sign games, no trailing junk, no overflow.
 * Returns 0 and sets *out, or -1. */
int opts_parse_long(const char *s, long min, long max, long *out);

#endif
