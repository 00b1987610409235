/* The scenario interface of bin/loadgen: what a scenario implements, what the engine offers it.
 * A scenario is one file (scn_NAME.c) defining one `const struct lg_scenario`; it is registered
 * by one line in scenarios.c. See SCENARIOS.md. */
#ifndef TVSA_LG_SCENARIO_H
#define TVSA_LG_SCENARIO_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

#define LG_MAX_STEPS 32
#define LG_MAX_OPTS 16
#define LG_ERRNO_MAX 160   /* errno values counted one by one; larger ones share the last slot */
#define LG_COUNTERS 16     /* free counters per thread for a scenario's own figures */

enum lg_transport {
    LG_TCP,  /* the engine connects (non-blocking, bounded, timed out) and reads a byte stream */
    LG_UDP,  /* the engine opens a connected UDP socket; on_data gets one datagram per call */
};

/* Who starts requests during a step's measurement. */
enum lg_drive {
    LG_DRIVE_LOOP,  /* the engine: closed loop (+ --think-ms), or open loop at --rate */
    LG_DRIVE_NONE,  /* nobody: the scenario starts its own from on_open/on_timer, or none */
};

/* What a scenario callback tells the engine to do with the connection next. */
enum lg_verdict {
    LG_OK = 0,      /* carry on */
    LG_ERROR = -1,  /* counts an error; the engine closes the connection and reopens it */
    LG_CLOSE = 1,   /* close it cleanly (not an error) and reopen it at once (churn) */
};

/* Every option as given on the command line, with defaults applied. Read-only after parsing. */
struct lg_config {
    const struct lg_scenario *scn;
    char host[64];                    /* numeric IPv4 of the target */
    int port;
    char target[80];                  /* "HOST:PORT" as given */
    long connections[LG_MAX_STEPS];   /* one step per value */
    int nsteps;
    double duration_s;                /* measurement time of each step */
    long threads;
    long size;                        /* request bytes */
    long think_ms;                    /* closed loop: pause between a reply and the next request */
    double rate;                      /* requests/s over all connections; 0 = closed loop */
    long connect_rate;                /* connects/s over all threads; 0 = unlimited */
    long max_connecting;              /* connects in flight at once, over all threads */
    long connect_timeout_ms;
    long timeout_ms;                  /* per request; 0 = none */
    char source_ips[64];              /* "" or "A.B.C.D-A.B.C.E" */
    uint32_t src_first, src_count;    /* host order first address and how many */
    long server_pid;                  /* 0 = none */
    const char *json_path;            /* NULL = stdout */
    int quiet;
    double start_at;                  /* --start-at: wall-clock epoch seconds; 0 = at once */
    long procs;                       /* --procs: worker processes (1 = this process runs) */
    char host_name[128];              /* --host-name, "" = gethostname() */
    const char *opt_key[LG_MAX_OPTS]; /* --opt KEY=VALUE, for scenario-specific settings */
    const char *opt_val[LG_MAX_OPTS];
    int nopts;
};

/* The value of --opt KEY=VALUE (or its flag), or NULL when not given. */
const char *lg_config_opt(const struct lg_config *cfg, const char *key);
/* The integer value of a setting declared LG_OPT_INT (parse_args checked its range), or dflt
 * when it was not given. */
long lg_config_long(const struct lg_config *cfg, const char *key, long dflt);

/* Figures of one thread over one measurement window; summed over threads at the step's end.
 * Owned by the thread's event loop; a scenario may add to counter[], aux and the others. */
struct lg_stats {
    uint64_t completed;     /* requests whose reply was whole and right */
    uint64_t errors;        /* connections lost or failed mid-request, LG_ERROR verdicts */
    uint64_t timeouts;      /* requests without a reply within --timeout */
    uint64_t mismatches;    /* replies that differ from what was expected */
    uint64_t connects_ok;   /* connections established in the window */
    uint64_t connects_failed;
    uint64_t failed_by_errno[LG_ERRNO_MAX];
    uint64_t bytes_out, bytes_in;
    struct hist latency;      /* intended send -> reply (open loop: coordinated omission corrected;
                               * also each request due but unsent at the step's stop, as
                               * stop - intended) */
    uint64_t unsent_at_stop;  /* open loop: those due-but-unsent requests */
    struct hist latency_raw;  /* actual send -> reply */
    struct hist connect;      /* connect() -> established */
    struct hist aux;          /* the scenario's own */
    uint64_t counter[LG_COUNTERS];
};

struct lg_conn;
struct lg_thread;

/* What a scenario setting's value is. */
enum lg_opt_type {
    LG_OPT_INT,  /* a decimal integer in [min, max] */
    LG_OPT_NUM,  /* a number in [min, max] */
    LG_OPT_STR,  /* any string (the scenario's check reads it) */
};

/* One setting a scenario reads, declared in its table (the common/opts.c design): given as
 * --opt NAME=VALUE, or as the flag --NAME VALUE when `flag` is set. parse_args builds the
 * command line from every scenario's table, refuses a setting the chosen scenario does not
 * declare and a number outside [min, max], and prints --help from the tables. */
struct lg_opt_def {
    const char *name;        /* NULL ends the table */
    int flag;                /* 1: also the shorthand flag --NAME VALUE */
    enum lg_opt_type type;
    const char *metavar;     /* "N", "FILE", ... for --help */
    const char *help;        /* one line for --help, with the default */
    double min, max;         /* LG_OPT_INT, LG_OPT_NUM: the accepted range */
};

struct lg_scenario {
    const char *name;        /* --scenario NAME */
    const char *summary;     /* one line for --help */
    enum lg_transport transport;
    enum lg_drive drive;
    int probe_at_end;        /* at a step's end send one request on every connection, wait */
    /* Every callback below is optional (NULL) unless marked required. */
    /* Checks the options for this scenario; -1 with err filled = bad input (exit 2). */
    int (*check)(const struct lg_config *cfg, char *err, size_t errlen);
    /* Bytes of per-connection state (zeroed once, kept across reopens). */
    size_t (*state_size)(const struct lg_config *cfg);
    /* Per-thread state: created in the thread before its first connection, freed at exit. */
    void *(*thread_init)(struct lg_thread *t);
    void (*thread_free)(void *tstate);
    /* The connection is established (again, after a reopen). */
    enum lg_verdict (*on_open)(struct lg_conn *c);
    /* Required for LG_DRIVE_LOOP and probe_at_end: start one request (lg_request_start, then
     * lg_send). The engine calls it only when the connection has no request outstanding. */
    enum lg_verdict (*send_request)(struct lg_conn *c);
    /* Required: bytes arrived (TCP: any split; UDP: one datagram). Finish a request with
     * lg_request_done. */
    enum lg_verdict (*on_data)(struct lg_conn *c, const uint8_t *p, size_t n);
    /* A step's measurement starts: called on every open connection (self-driven scenarios
     * start their traffic here; LG_DRIVE_LOOP ones need not set it). */
    enum lg_verdict (*on_start)(struct lg_conn *c);
    /* The timer armed by lg_conn_timer fired. */
    enum lg_verdict (*on_timer)(struct lg_conn *c);
    /* The connection is about to close (error, timeout, LG_CLOSE, end of run). */
    void (*on_close)(struct lg_conn *c);
    /* Adds scenario-specific keys to a step's JSON object from the summed stats. */
    void (*json_step)(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                      json_t *step);
    /* The engine lost the connection (EOF or reset while measuring, or a write error; err is
     * the errno, 0 for EOF). LG_ERROR (and no callback): counted in requests.errors, reopened
     * after a pause; LG_OK: reopened after the pause, not counted; LG_CLOSE: reopened at
     * once, not counted. For connections the scenario counts itself (abuse's abusers). */
    enum lg_verdict (*on_lost)(struct lg_conn *c, int err);
    /* The scenario sets the connection count itself (one step) from its options, called
     * after check; --connections is then refused. */
    long (*fixed_connections)(const struct lg_config *cfg);
    /* The settings it reads (ended by a NULL name; NULL = none): any other is bad input. */
    const struct lg_opt_def *opts;
    /* 1: its figures are per process (one room, populations fixed per process): no --procs,
     * no `loadgen merge`. */
    int single_process;
    /* Self-driven scenarios with a rate of their own: --rate R is taken as --opt RATE_OPT=R
     * (NULL: --rate is refused unless drive is LG_DRIVE_LOOP). */
    const char *rate_opt;
};

/* ---- what the engine offers a scenario (loadgen/engine.c) ---- */

/* Queues n bytes and writes what the socket takes now (the rest when it is writable).
 * 0, or -1 on a write error: return LG_ERROR then. */
int lg_send(struct lg_conn *c, const void *p, size_t n);
/* A request starts now; its latency counts from intended_ns (mono_now_ns() clock; 0 = now).
 * From here --timeout applies. */
void lg_request_start(struct lg_conn *c, uint64_t intended_ns);
/* The outstanding request finished: ok = 1 counts it completed and records its latency,
 * ok = 0 counts a mismatch. Then the engine may start the next one (after --think-ms). */
void lg_request_done(struct lg_conn *c, int ok);
/* 1 while a request is outstanding. */
int lg_request_pending(const struct lg_conn *c);
/* paused = 1: stop reading the socket (a client that never reads); 0: read again. An open
 * connection reads by default, and again after every reopen. */
void lg_conn_pause_read(struct lg_conn *c, int paused);
/* Bytes lg_send queued that the socket has not taken yet (pace a sender on this). */
size_t lg_conn_unsent(const struct lg_conn *c);
/* Calls the scenario's on_timer after delay_us (re-arming replaces the previous one). */
void lg_conn_timer(struct lg_conn *c, uint64_t delay_us);
/* 1 while a step's measurement runs: a self-driven scenario starts requests only then. */
int lg_measuring(const struct lg_conn *c);
/* 1 while figures count: the measurement window, and the end-of-step probes (probe_at_end).
 * A scenario adds to lg_conn_stats only then, like the engine's own counters. */
int lg_counting(const struct lg_conn *c);
void *lg_conn_state(const struct lg_conn *c);         /* the state_size bytes */
void *lg_thread_state(const struct lg_conn *c);       /* what thread_init returned */
struct lg_stats *lg_conn_stats(const struct lg_conn *c);
const struct lg_config *lg_conn_config(const struct lg_conn *c);
int lg_conn_fd(const struct lg_conn *c);
unsigned lg_conn_index(const struct lg_conn *c);      /* unique within its thread */
unsigned lg_thread_index(const struct lg_thread *t);

/* Helper for json_step: {"p50","p90","p99","p999","max","mean"} of a histogram. */
json_t *lg_latency_json(const struct hist *h);

/* The table (scenarios.c): NULL-terminated. */
extern const struct lg_scenario *const lg_scenarios[];
/* The scenario of that name, or NULL. */
const struct lg_scenario *lg_scenario_find(const char *name);

#endif
