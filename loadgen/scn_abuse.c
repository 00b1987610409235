/* loadgen scenario abuse: --abusers connections misbehave (slowloris, garbage, reset, flood)
 * while --good well-behaved echo connections measure the service everyone else still gets. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "echomsg.h"
#include "mono.h"
#include "opts.h"
#include "scenario.h"

enum abuse_kind { KIND_SLOWLORIS, KIND_GARBAGE, KIND_RESET, KIND_FLOOD, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {"slowloris", "garbage", "reset", "flood"};
/* --opt interval-ms default per kind: slowloris between bytes ("every few seconds"), reset
 * before the RST (the server has read the partial message by then), garbage and flood
 * between bursts (as fast as the socket takes them). */
static const long default_interval_ms[KIND_COUNT] = {2000, 1, 10, 1};

#define DEFAULT_ABUSERS 50
#define DEFAULT_GOOD 4
#define DEFAULT_LINE 65536
#define CHUNK (16 * 1024)   /* garbage and flood: bytes handed to the socket at a time */
#define CHUNKS_PER_BURST 4  /* ... at most this many per burst, and only while none is queued */

/* The settings, parsed once by abuse_check in main before the engine starts its threads;
 * read-only afterwards (thread creation orders the writes before every read). */
static struct {
    enum abuse_kind kind;
    long good, abusers, interval_ms, line;
    unsigned nthreads;
} settings;

/* Free counters of struct lg_stats, summed over threads at the step's end. */
enum {
    C_OPENED,          /* abuser connections that existed during the measurement */
    C_BYTES,           /* bytes the abusers handed to their sockets */
    C_RESETS,          /* RSTs the abusers sent (reset) */
    C_CLOSED,          /* abuser connections the server closed (EOF, reset or write error) */
    C_CLOSED_RESET,    /* ... of which with a reset (ECONNRESET, EPIPE) rather than a FIN */
    C_ABUSERS_OPEN,    /* gauge: abuser connections open now */
    C_GOOD_OPEN,       /* gauge: good connections open now */
    C_RECEIVED,        /* bytes the abusers read (a flood reads none) */
};

enum role { ROLE_GOOD, ROLE_ABUSER };

/* An abuse connection's own state, placed after echomsg's (which the good ones use and which
 * echomsg finds at the start of lg_conn_state). */
struct abuse_conn {
    enum role role;
    int open_counted;     /* counted in the C_*_OPEN gauge of the current window */
    uint64_t opened_ns;
    uint64_t rng;
    size_t line_left;     /* garbage: bytes of the current over-long line still to send */
    int burst;            /* garbage: bursts so far (even: random bytes, odd: a long line) */
};

struct abuse_thread {
    unsigned idx;
    uint8_t chunk[CHUNK];
};

static size_t echo_part(const struct lg_config *cfg)
{
    return (echomsg_state_size(cfg) + 15) & ~(size_t)15;
}

static struct abuse_conn *conn_of(const struct lg_conn *c)
{
    return (struct abuse_conn *)((char *)lg_conn_state(c) + echo_part(lg_conn_config(c)));
}

static size_t abuse_state_size(const struct lg_config *cfg)
{
    return echo_part(cfg) + sizeof(struct abuse_conn);
}

static int abuse_check(const struct lg_config *cfg, char *err, size_t errlen)
{
    const char *kind = lg_config_opt(cfg, "kind");
    if (kind == NULL) {
        snprintf(err, errlen, "--kind: the abuse scenario needs slowloris|garbage|reset|flood");
        return -1;
    }
    settings.kind = KIND_COUNT;
    for (int k = 0; k < KIND_COUNT; k++)
        if (strcmp(kind, kind_names[k]) == 0)
            settings.kind = (enum abuse_kind)k;
    if (settings.kind == KIND_COUNT) {
        snprintf(err, errlen, "--kind: want slowloris|garbage|reset|flood, got '%s'", kind);
        return -1;
    }
    /* In range already (abuse_opts, checked by parse_args). */
    settings.good = lg_config_long(cfg, "good", DEFAULT_GOOD);
    settings.abusers = lg_config_long(cfg, "abusers", DEFAULT_ABUSERS);
    settings.interval_ms = lg_config_long(cfg, "interval-ms", default_interval_ms[settings.kind]);
    settings.line = lg_config_long(cfg, "line", DEFAULT_LINE);
    if (settings.good + settings.abusers == 0) {
        snprintf(err, errlen, "--good and --abusers: want at least one connection");
        return -1;
    }
    if (settings.line < 1) {
        snprintf(err, errlen, "--opt line: want at least 1 byte");
        return -1;
    }
    if (cfg->rate > 0) {
        /* The open loop would hand requests to abusers too. */
        snprintf(err, errlen, "--rate: the abuse scenario's good clients run a closed loop");
        return -1;
    }
    settings.nthreads = (unsigned)cfg->threads;
    return 0;
}

static long abuse_connections(const struct lg_config *cfg)
{
    (void)cfg;
    return settings.good + settings.abusers;
}

static void *abuse_thread_init(struct lg_thread *t)
{
    struct abuse_thread *at = calloc(1, sizeof *at);
    if (at)
        at->idx = lg_thread_index(t);
    return at;
}

static void abuse_thread_free(void *p)
{
    free(p);
}

/* The engine gives thread i the slots i, i + threads, i + 2 * threads... of the step: the
 * last --good of them are the good clients, so they are spread over the threads and connect
 * after the abusers, as they would to a server already under attack (a pool of workers the
 * abusers have filled then makes them wait). */
static enum role role_of(const struct lg_conn *c)
{
    const struct abuse_thread *at = lg_thread_state(c);
    unsigned idx = at ? at->idx : 0;
    uint64_t slot = (uint64_t)lg_conn_index(c) * settings.nthreads + idx;
    return slot >= (uint64_t)settings.abusers ? ROLE_GOOD : ROLE_ABUSER;
}

static uint64_t rng_next(struct abuse_conn *s)
{
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return x;
}

/* Counts an open connection in its gauge (and an abuser in C_OPENED) for this window. */
static void count_open(struct lg_conn *c, struct abuse_conn *s)
{
    struct lg_stats *st = lg_conn_stats(c);
    s->open_counted = 1;
    if (s->role == ROLE_GOOD) {
        st->counter[C_GOOD_OPEN]++;
    } else {
        st->counter[C_ABUSERS_OPEN]++;
        st->counter[C_OPENED]++;
    }
}

static enum lg_verdict abuse_open(struct lg_conn *c)
{
    struct abuse_conn *s = conn_of(c);
    s->role = role_of(c);
    s->opened_ns = mono_now_ns();
    s->open_counted = 0;
    if (s->rng == 0)
        s->rng = 0x2545F4914F6CDD1Dull ^ ((uint64_t)(uintptr_t)s << 7) ^ s->opened_ns;
    s->line_left = 0;
    s->burst = 0;
    if (lg_measuring(c))
        count_open(c, s);
    if (s->role == ROLE_GOOD)
        return echomsg_open(c);
    if (settings.kind == KIND_FLOOD)
        lg_conn_pause_read(c, 1);
    return LG_OK;
}

/* The measurement starts: the figures were just reset, count what is open now. */
static enum lg_verdict abuse_start(struct lg_conn *c)
{
    struct abuse_conn *s = conn_of(c);
    count_open(c, s);
    return LG_OK;
}

static void abuse_close(struct lg_conn *c)
{
    struct abuse_conn *s = conn_of(c);
    uint64_t *gauge = &lg_conn_stats(c)->counter[s->role == ROLE_GOOD ? C_GOOD_OPEN
                                                                       : C_ABUSERS_OPEN];
    if (s->open_counted && *gauge > 0)
        (*gauge)--;
    s->open_counted = 0;
}

/* Hands n bytes to the socket. LG_OK, or LG_CLOSE when the server is gone (counted here,
 * reopened at once like a real attacker would). */
static enum lg_verdict abuser_send(struct lg_conn *c, const void *p, size_t n)
{
    struct lg_stats *st = lg_conn_stats(c);
    if (lg_send(c, p, n) < 0) {
        int err = errno;
        st->counter[C_CLOSED]++;
        if (err == ECONNRESET || err == EPIPE)
            st->counter[C_CLOSED_RESET]++;
        hist_record(&st->aux, (mono_now_ns() - conn_of(c)->opened_ns) / 1000000);
        return LG_CLOSE;
    }
    st->counter[C_BYTES] += n;
    return LG_OK;
}

/* garbage: alternately a chunk of random bytes (any value, '\n' and NUL included) and an
 * over-long line (--opt line bytes without '\n', then one), in chunks. */
static size_t fill_garbage(struct abuse_conn *s, uint8_t *buf)
{
    if (s->line_left == 0 && s->burst++ % 2 == 0) {
        for (size_t i = 0; i < CHUNK; i += 8) {
            uint64_t x = rng_next(s);
            memcpy(buf + i, &x, 8);
        }
        return CHUNK;
    }
    if (s->line_left == 0)
        s->line_left = (size_t)settings.line + 1;
    size_t n = s->line_left < CHUNK ? s->line_left : CHUNK;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)('a' + (i * 7 + s->line_left) % 26);
    s->line_left -= n;
    if (s->line_left == 0)
        buf[n - 1] = '\n';
    return n;
}

/* garbage and flood: up to CHUNKS_PER_BURST chunks, only while loadgen holds none unsent
 * (the socket sets the pace, loadgen's memory stays bounded), then the next burst. */
static enum lg_verdict burst(struct lg_conn *c)
{
    struct abuse_conn *s = conn_of(c);
    struct abuse_thread *at = lg_thread_state(c);
    if (at == NULL)
        return LG_ERROR;
    for (int i = 0; i < CHUNKS_PER_BURST && lg_conn_unsent(c) == 0; i++) {
        size_t n;
        if (settings.kind == KIND_GARBAGE) {
            n = fill_garbage(s, at->chunk);
        } else {
            /* Flood: plain lowercase, the work an echo server is built for. */
            n = CHUNK;
            for (size_t k = 0; k < n; k++)
                at->chunk[k] = (uint8_t)('a' + k % 26);
        }
        enum lg_verdict v = abuser_send(c, at->chunk, n);
        if (v != LG_OK)
            return v;
    }
    lg_conn_timer(c, (uint64_t)settings.interval_ms * 1000);
    return LG_OK;
}

/* One step of an abuser's misbehaviour; the first runs when the measurement starts (or the
 * connection opens during it), the next ones from its timer. */
static enum lg_verdict abuse_step(struct lg_conn *c, int first)
{
    struct abuse_conn *s = conn_of(c);
    if (!lg_measuring(c))
        return LG_OK;
    switch (settings.kind) {
    case KIND_SLOWLORIS: {
        /* One byte, never a '\n': a line-based server never sees a whole message. */
        uint8_t b = (uint8_t)('a' + rng_next(s) % 26);
        enum lg_verdict v = abuser_send(c, &b, 1);
        if (v == LG_OK)
            lg_conn_timer(c, (uint64_t)settings.interval_ms * 1000);
        return v;
    }
    case KIND_RESET: {
        if (first) {
            /* Half of an echo request (or a chat line without its '\n'), then the RST. */
            static const char part[] = "partial message that never ends";
            size_t n = (size_t)lg_conn_config(c)->size / 2;
            if (n == 0)
                n = 1;
            if (n > sizeof part - 1)
                n = sizeof part - 1;
            enum lg_verdict v = abuser_send(c, part, n);
            if (v == LG_OK)
                lg_conn_timer(c, (uint64_t)settings.interval_ms * 1000);
            return v;
        }
        struct linger lg = {1, 0};
        if (setsockopt(lg_conn_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0)
            lg_conn_stats(c)->counter[C_RESETS]++;
        return LG_CLOSE; /* the engine's close() sends the RST, then it reconnects at once */
    }
    case KIND_GARBAGE:
    case KIND_FLOOD:
        return burst(c);
    case KIND_COUNT: break;
    }
    return LG_OK;
}

/* The engine's request loop: good connections send an echo request; an abuser (which never
 * has a request outstanding, so this runs once per open) starts misbehaving. */
static enum lg_verdict abuse_send(struct lg_conn *c)
{
    if (conn_of(c)->role == ROLE_GOOD)
        return echomsg_send(c);
    return abuse_step(c, 1);
}

static enum lg_verdict abuse_timer(struct lg_conn *c)
{
    if (conn_of(c)->role == ROLE_GOOD)
        return LG_OK;
    return abuse_step(c, 0);
}

static enum lg_verdict abuse_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    if (conn_of(c)->role == ROLE_ABUSER) {
        /* Whatever the server answers an abuser is dropped, only counted. */
        if (lg_measuring(c))
            lg_conn_stats(c)->counter[C_RECEIVED] += n;
        return LG_OK;
    }
    int finished;
    return echomsg_data(c, p, n, &finished);
}

/* A good connection lost is an error of the service; an abuser the server closed is what a
 * defence looks like: counted with its age, reopened after the engine's pause. */
static enum lg_verdict abuse_lost(struct lg_conn *c, int err)
{
    struct abuse_conn *s = conn_of(c);
    if (s->role == ROLE_GOOD)
        return LG_ERROR;
    if (lg_measuring(c)) {
        struct lg_stats *st = lg_conn_stats(c);
        st->counter[C_CLOSED]++;
        if (err == ECONNRESET || err == EPIPE)
            st->counter[C_CLOSED_RESET]++;
        hist_record(&st->aux, (mono_now_ns() - s->opened_ns) / 1000000);
    }
    return LG_OK;
}

static void abuse_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                       json_t *step)
{
    (void)cfg;
    const uint64_t *k = st->counter;
    json_object_set_new(step, "good",
                        json_pack("{s:I, s:I}", "connections", (json_int_t)settings.good,
                                  "open_at_end", (json_int_t)k[C_GOOD_OPEN]));
    json_object_set_new(
        step, "abuse",
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:o}",
                  "kind", kind_names[settings.kind], "abusers", (json_int_t)settings.abusers,
                  "interval_ms", (json_int_t)settings.interval_ms,
                  "opened", (json_int_t)k[C_OPENED], "open_at_end", (json_int_t)k[C_ABUSERS_OPEN],
                  "bytes_sent", (json_int_t)k[C_BYTES],
                  "bytes_per_sec", duration_s > 0 ? (double)k[C_BYTES] / duration_s : 0.0,
                  "bytes_received", (json_int_t)k[C_RECEIVED],
                  "resets_sent", (json_int_t)k[C_RESETS],
                  "closed_by_server", (json_int_t)k[C_CLOSED],
                  "closed_by_server_reset", (json_int_t)k[C_CLOSED_RESET],
                  "closed_after_ms", lg_latency_json(&st->aux)));
}

static const struct lg_opt_def abuse_opts[] = {
    {"kind", 1, LG_OPT_STR, "K", "slowloris|garbage|reset|flood (required)", 0, 0},
    {"abusers", 1, LG_OPT_INT, "N", "misbehaving connections (default 50)", 0, 100000},
    {"good", 1, LG_OPT_INT, "N", "echo connections that measure the service (default 4); the scenario opens "
     "good + abusers connections and takes no --connections", 0, 100000},
    {"interval-ms", 0, LG_OPT_INT, "MS",
     "slowloris: between bytes (2000), reset: before the RST (10), else bursts (1)", 0,
     3600000},
    {"line", 0, LG_OPT_INT, "BYTES", "garbage's over-long line (65536)", 0, 1 << 30},
    {NULL, 0, 0, NULL, NULL, 0, 0},
};

const struct lg_scenario scn_abuse = {
    .name = "abuse",
    .summary = "--abusers misbehave (--kind slowloris|garbage|reset|flood), --good echo",
    .transport = LG_TCP,
    .drive = LG_DRIVE_LOOP,
    .check = abuse_check,
    .state_size = abuse_state_size,
    .thread_init = abuse_thread_init,
    .thread_free = abuse_thread_free,
    .on_open = abuse_open,
    .on_start = abuse_start,
    .send_request = abuse_send,
    .on_data = abuse_data,
    .on_timer = abuse_timer,
    .on_close = abuse_close,
    .json_step = abuse_json,
    .on_lost = abuse_lost,
    .fixed_connections = abuse_connections,
    .opts = abuse_opts,
    .single_process = 1,
};
