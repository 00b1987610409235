/* The load generator's engine: per-thread event loops, paced connects, the closed and open
 * request loops, timeouts and per-thread figures. Scenarios plug in through scenario.h. */
#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bytebuf.h"
#include "mono.h"

#define TICK_MS 10           /* connect pacing and re-queued connects */
#define SWEEP_EVERY 10       /* ticks between two timeout sweeps (100 ms) */
#define RETRY_DELAY_NS (100 * 1000000ull) /* a lost connection is reopened after this */
#define READ_BUF (64 * 1024)

enum conn_state { CONN_CLOSED, CONN_CONNECTING, CONN_OPEN };

enum cmd {
    CMD_NONE, CMD_TARGET, CMD_STATUS, CMD_START, CMD_STOP, CMD_QUIT,
};

struct lg_conn {
    struct lg_thread *t;
    unsigned idx;
    enum conn_state state;
    int fd;
    struct event *rev, *wev;   /* assigned at each open; wev also times the connect out */
    struct event *think_ev;    /* --think-ms (allocated on first use) */
    struct event *scn_ev;      /* lg_conn_timer (allocated on first use) */
    struct bytebuf out;        /* bytes the socket did not take yet */
    uint64_t connect_start_ns;
    uint64_t not_before_ns;    /* queued: do not connect before this */
    uint64_t req_start_ns, req_intended_ns;
    int pending;               /* a request is outstanding */
    int done_flag;             /* lg_request_done ran during the current callback */
    int queued, in_idle;
    void *scn;
};

struct lg_thread {
    struct lg_engine *e;
    unsigned idx;
    pthread_t tid;
    const struct lg_config *cfg;
    const struct lg_scenario *scn;
    struct event_base *base;
    struct event *ctl_ev, *tick_ev, *rate_ev;

    /* Commands from main: cmd, arg, done, reply_* are under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum cmd cmd;
    long arg;
    double arg_rate;           /* CMD_TARGET: this thread's share of --rate */
    int done;
    struct lg_status reply_status;
    struct lg_stats reply_stats;

    /* Everything below is owned by the thread's loop. */
    struct lg_conn *conns;
    unsigned nalloc, target;
    unsigned *queue;           /* ring of slot indices waiting for a connect now */
    unsigned qhead, qlen;
    /* Ring of slots to reconnect after a pause (RETRY_DELAY_NS, so in not_before order): kept
     * apart so a delayed retry at the head never holds up immediate reconnects (churn). */
    unsigned *delayed;
    unsigned dhead, dlen;
    unsigned nopen, nconnecting, failed_since_target;
    unsigned max_connecting;
    double tokens, token_rate, token_cap; /* connect pacing (token_rate 0 = unlimited) */
    uint64_t last_tick_ns;
    unsigned ticks;
    int measuring, probing;
    struct lg_stats stats;
    /* open loop */
    double rate;               /* requests/s of this thread (its connections' share of --rate;
                                * 0 = closed loop, or no connections) */
    uint64_t ol_t0, ol_k;      /* intended time of request k: ol_t0 + k / rate */
    struct lg_conn **idle;     /* free connections, a FIFO ring (idle_push, idle_pop): the
                                * one free longest goes next, so every connection is used */
    unsigned idle_head, nidle;
    void *tstate;
    uint8_t rbuf[READ_BUF];
};

struct lg_engine {
    const struct lg_config *cfg;
    unsigned nthreads;
    struct lg_thread *threads;
};

static void conn_close(struct lg_conn *c, int requeue, uint64_t delay_ns);

/* The one place a connection changes state: CLOSED -> CONNECTING -> OPEN, any -> CLOSED.
 * Anything else is a bug in the engine, reported rather than silently followed. */
static void conn_set_state(struct lg_conn *c, enum conn_state to)
{
    int ok = to == CONN_CLOSED || (c->state == CONN_CLOSED && to == CONN_CONNECTING) ||
             (c->state == CONN_CONNECTING && to == CONN_OPEN);
    if (!ok)
        fprintf(stderr, "loadgen: bug: connection %u of thread %u: state %d -> %d\n", c->idx,
                c->t->idx, (int)c->state, (int)to);
    c->state = to;
}
static void conn_next_request(struct lg_conn *c);
static void pump_connects(struct lg_thread *t);
static void ol_dispatch(struct lg_thread *t);

/* ---- scenario API ------------------------------------------------------------------------ */

const char *lg_config_opt(const struct lg_config *cfg, const char *key)
{
    for (int i = 0; i < cfg->nopts; i++)
        if (strcmp(cfg->opt_key[i], key) == 0)
            return cfg->opt_val[i];
    return NULL;
}

long lg_config_long(const struct lg_config *cfg, const char *key, long dflt)
{
    const char *v = lg_config_opt(cfg, key);
    return v ? strtol(v, NULL, 10) : dflt;
}

void *lg_conn_state(const struct lg_conn *c) { return c->scn; }
void *lg_thread_state(const struct lg_conn *c) { return c->t->tstate; }
struct lg_stats *lg_conn_stats(const struct lg_conn *c) { return &c->t->stats; }
const struct lg_config *lg_conn_config(const struct lg_conn *c) { return c->t->cfg; }
int lg_conn_fd(const struct lg_conn *c) { return c->fd; }
unsigned lg_conn_index(const struct lg_conn *c) { return c->idx; }
unsigned lg_thread_index(const struct lg_thread *t) { return t->idx; }
int lg_measuring(const struct lg_conn *c) { return c->t->measuring; }
int lg_request_pending(const struct lg_conn *c) { return c->pending; }
size_t lg_conn_unsent(const struct lg_conn *c) { return bytebuf_len(&c->out); }

void lg_conn_pause_read(struct lg_conn *c, int paused)
{
    if (c->state != CONN_OPEN)
        return;
    if (paused)
        event_del(c->rev);
    else
        event_add(c->rev, NULL);
}

static int counting(const struct lg_thread *t)
{
    return t->measuring || t->probing;
}

int lg_counting(const struct lg_conn *c) { return counting(c->t); }

static void on_write(evutil_socket_t fd, short what, void *arg);

int lg_send(struct lg_conn *c, const void *p, size_t n)
{
    const uint8_t *b = p;
    if (c->state != CONN_OPEN)
        return -1;
    if (bytebuf_len(&c->out) == 0) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -1;
            w = 0;
        }
        if (counting(c->t))
            c->t->stats.bytes_out += (uint64_t)w;
        /* UDP: a datagram the socket refuses now is dropped, never queued, or the queue's
         * bytes would go out merged into one datagram with the next. Its request is then lost
         * (the --timeout counts it), as on a network that drops it. */
        if (c->t->scn->transport == LG_UDP)
            return 0;
        b += w;
        n -= (size_t)w;
        if (n == 0)
            return 0;
    }
    if (bytebuf_append(&c->out, b, n) < 0)
        return -1;
    event_add(c->wev, NULL);
    return 0;
}

void lg_request_start(struct lg_conn *c, uint64_t intended_ns)
{
    uint64_t now = mono_now_ns();
    if (!c->pending) {
        c->pending = 1;
        c->req_intended_ns = intended_ns ? intended_ns : now;
    }
    c->req_start_ns = now;
}

void lg_request_done(struct lg_conn *c, int ok)
{
    struct lg_thread *t = c->t;
    if (!c->pending)
        return;
    c->pending = 0;
    c->done_flag = 1;
    if (!counting(t))
        return;
    if (ok) {
        uint64_t now = mono_now_ns();
        t->stats.completed++;
        hist_record(&t->stats.latency, (now - c->req_intended_ns) / 1000);
        hist_record(&t->stats.latency_raw, (now - c->req_start_ns) / 1000);
    } else {
        t->stats.mismatches++;
    }
}

static void on_scn_timer(evutil_socket_t fd, short what, void *arg);

void lg_conn_timer(struct lg_conn *c, uint64_t delay_us)
{
    if (c->scn_ev == NULL) {
        c->scn_ev = evtimer_new(c->t->base, on_scn_timer, c);
        if (c->scn_ev == NULL)
            return;
    }
    struct timeval tv = {(time_t)(delay_us / 1000000), (suseconds_t)(delay_us % 1000000)};
    evtimer_add(c->scn_ev, &tv);
}

json_t *lg_latency_json(const struct hist *h)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}",
                     "p50", (json_int_t)hist_percentile(h, 50),
                     "p90", (json_int_t)hist_percentile(h, 90),
                     "p99", (json_int_t)hist_percentile(h, 99),
                     "p999", (json_int_t)hist_percentile(h, 99.9),
                     "max", (json_int_t)(h->max > HIST_MAX_US ? HIST_MAX_US : h->max),
                     "mean", hist_mean(h));
}

void lg_stats_add(struct lg_stats *dst, const struct lg_stats *src)
{
    dst->completed += src->completed;
    dst->errors += src->errors;
    dst->timeouts += src->timeouts;
    dst->mismatches += src->mismatches;
    dst->unsent_at_stop += src->unsent_at_stop;
    dst->connects_ok += src->connects_ok;
    dst->connects_failed += src->connects_failed;
    for (int i = 0; i < LG_ERRNO_MAX; i++)
        dst->failed_by_errno[i] += src->failed_by_errno[i];
    dst->bytes_out += src->bytes_out;
    dst->bytes_in += src->bytes_in;
    hist_merge(&dst->latency, &src->latency);
    hist_merge(&dst->latency_raw, &src->latency_raw);
    hist_merge(&dst->connect, &src->connect);
    hist_merge(&dst->aux, &src->aux);
    for (int i = 0; i < LG_COUNTERS; i++)
        dst->counter[i] += src->counter[i];
}

/* ---- verdicts and the request loops ------------------------------------------------------ */

/* Acts on what a scenario callback returned. Returns 1 if the connection is still open. */
static int apply_verdict(struct lg_conn *c, enum lg_verdict v)
{
    struct lg_thread *t = c->t;
    if (v == LG_ERROR) {
        if (counting(t))
            t->stats.errors++;
        conn_close(c, 1, RETRY_DELAY_NS);
        return 0;
    }
    if (v == LG_CLOSE) {
        conn_close(c, 1, 0);
        pump_connects(t);
        return 0;
    }
    return 1;
}

/* The connection died under us (EOF, reset, write error): the scenario's on_lost says
 * whether it counts as an error and how soon it is reopened (scenario.h). */
static void conn_lost(struct lg_conn *c, int err)
{
    struct lg_thread *t = c->t;
    enum lg_verdict v = t->scn->on_lost ? t->scn->on_lost(c, err) : LG_ERROR;
    if (v == LG_ERROR && counting(t))
        t->stats.errors++;
    conn_close(c, 1, v == LG_CLOSE ? 0 : RETRY_DELAY_NS);
    if (v == LG_CLOSE)
        pump_connects(t);
}

static void on_think(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lg_conn *c = arg;
    struct lg_thread *t = c->t;
    if (c->state != CONN_OPEN || c->pending || !t->measuring)
        return;
    c->done_flag = 0;
    if (apply_verdict(c, t->scn->send_request(c)) && c->done_flag)
        conn_next_request(c);
}

/* The open loop's pool of free connections. First in, first out: a stack would hand every
 * request to the connection freed last, and at a modest --rate over many connections a few
 * of them would carry the whole load while the others stayed idle. A connection is in the
 * ring at most once (in_idle), so it never holds more than nalloc. */
static void idle_push(struct lg_thread *t, struct lg_conn *c)
{
    if (c->in_idle)
        return;
    c->in_idle = 1;
    t->idle[(t->idle_head + t->nidle++) % t->nalloc] = c;
}

static struct lg_conn *idle_pop(struct lg_thread *t)
{
    struct lg_conn *c = t->idle[t->idle_head];
    t->idle_head = (t->idle_head + 1) % t->nalloc;
    t->nidle--;
    c->in_idle = 0;
    return c;
}

/* A connection is free (just opened, or its request finished): start its next request as the
 * loop in force says. Closed loop: at once or after --think-ms; open loop: join the idle pool. */
static void conn_next_request(struct lg_conn *c)
{
    struct lg_thread *t = c->t;
    /* A scenario answering synchronously (done inside send_request) would recurse forever;
     * bound it by going through the loop once per request. */
    for (int guard = 0; guard < 64; guard++) {
        if (c->state != CONN_OPEN || c->pending || !t->measuring ||
            t->scn->drive != LG_DRIVE_LOOP)
            return;
        if (t->rate > 0) {
            idle_push(t, c);
            ol_dispatch(t);
            return;
        }
        if (t->cfg->think_ms > 0) {
            if (c->think_ev == NULL && (c->think_ev = evtimer_new(t->base, on_think, c)) == NULL)
                return;
            struct timeval tv = {t->cfg->think_ms / 1000, (t->cfg->think_ms % 1000) * 1000};
            evtimer_add(c->think_ev, &tv);
            return;
        }
        c->done_flag = 0;
        if (!apply_verdict(c, t->scn->send_request(c)) || !c->done_flag)
            return;
    }
}

static uint64_t ol_intended(const struct lg_thread *t, uint64_t k)
{
    return t->ol_t0 + (uint64_t)((double)k * 1e9 / t->rate);
}

/* Open loop: sends every request whose intended time has come on a free connection; a due
 * request with no free connection waits (its latency still counts from its intended time). */
static void ol_dispatch(struct lg_thread *t)
{
    if (!t->measuring || t->rate <= 0)
        return;
    uint64_t now = mono_now_ns();
    while (t->nidle > 0) {
        uint64_t due = ol_intended(t, t->ol_k);
        if (due > now) {
            uint64_t us = (due - now + 999) / 1000;
            struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
            evtimer_add(t->rate_ev, &tv);
            return;
        }
        struct lg_conn *c = idle_pop(t);
        if (c->state != CONN_OPEN || c->pending)
            continue;
        t->ol_k++;
        c->pending = 1;
        c->req_intended_ns = due;
        c->req_start_ns = now;
        c->done_flag = 0;
        if (apply_verdict(c, t->scn->send_request(c)) && c->done_flag)
            idle_push(t, c);
    }
}

static void on_rate(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ol_dispatch(arg);
}

static void on_scn_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lg_conn *c = arg;
    if (c->state != CONN_OPEN || c->t->scn->on_timer == NULL)
        return;
    c->done_flag = 0;
    if (apply_verdict(c, c->t->scn->on_timer(c)) && c->done_flag)
        conn_next_request(c);
}

/* ---- connections ------------------------------------------------------------------------- */

/* A slot is in at most one of the two rings (c->queued), so each holds at most nalloc. */
static void queue_push(struct lg_thread *t, struct lg_conn *c, uint64_t delay_ns)
{
    if (c->queued)
        return;
    c->queued = 1;
    if (delay_ns) {
        c->not_before_ns = mono_now_ns() + delay_ns;
        t->delayed[(t->dhead + t->dlen) % t->nalloc] = c->idx;
        t->dlen++;
        return;
    }
    c->not_before_ns = 0;
    t->queue[(t->qhead + t->qlen) % t->nalloc] = c->idx;
    t->qlen++;
}

/* Closes the socket; requeue = 1 puts the slot back in the connect queue (if still wanted). */
static void conn_close(struct lg_conn *c, int requeue, uint64_t delay_ns)
{
    struct lg_thread *t = c->t;
    if (c->state == CONN_CLOSED)
        return;
    if (c->state == CONN_OPEN) {
        if (t->scn->on_close)
            t->scn->on_close(c);
        t->nopen--;
    } else {
        t->nconnecting--;
    }
    event_del(c->rev);
    event_del(c->wev);
    if (c->think_ev)
        event_del(c->think_ev);
    if (c->scn_ev)
        event_del(c->scn_ev);
    close(c->fd);
    c->fd = -1;
    conn_set_state(c, CONN_CLOSED);
    c->pending = 0;
    bytebuf_free(&c->out);
    if (requeue && c->idx < t->target)
        queue_push(t, c, delay_ns);
}

static void count_connect_failure(struct lg_thread *t, int err)
{
    t->failed_since_target++;
    t->stats.connects_failed++;
    t->stats.failed_by_errno[err >= 0 && err < LG_ERRNO_MAX ? err : LG_ERRNO_MAX - 1]++;
}

static void on_read(evutil_socket_t fd, short what, void *arg);

static void conn_established(struct lg_conn *c)
{
    struct lg_thread *t = c->t;
    t->nconnecting--;
    t->nopen++;
    conn_set_state(c, CONN_OPEN);
    if (counting(t)) {
        t->stats.connects_ok++;
        hist_record(&t->stats.connect, (mono_now_ns() - c->connect_start_ns) / 1000);
    }
    event_assign(c->rev, t->base, c->fd, EV_READ | EV_PERSIST, on_read, c);
    event_assign(c->wev, t->base, c->fd, EV_WRITE, on_write, c);
    event_add(c->rev, NULL);
    if (t->scn->on_open) {
        c->done_flag = 0;
        if (!apply_verdict(c, t->scn->on_open(c)))
            return;
    }
    conn_next_request(c);
}

static void on_connect(evutil_socket_t fd, short what, void *arg)
{
    struct lg_conn *c = arg;
    struct lg_thread *t = c->t;
    int err = ETIMEDOUT;
    if (what & EV_WRITE) {
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
    }
    if (err != 0) {
        count_connect_failure(t, err);
        /* During a step's set-up a failed slot stays closed (the step reports it as failed);
         * while measuring it is retried after a pause, so churn and reopens go on. */
        conn_close(c, t->measuring, RETRY_DELAY_NS);
        pump_connects(t);
        return;
    }
    conn_established(c);
    pump_connects(t);
}

/* Starts a non-blocking connect on a closed slot. */
static void conn_open(struct lg_conn *c)
{
    struct lg_thread *t = c->t;
    const struct lg_config *cfg = t->cfg;
    int type = cfg->scn->transport == LG_UDP ? SOCK_DGRAM : SOCK_STREAM;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    inet_pton(AF_INET, cfg->host, &sa.sin_addr);

    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_connect_failure(t, errno);
        if (t->measuring)
            queue_push(t, c, RETRY_DELAY_NS);
        return;
    }
    if (cfg->src_count > 0) {
        /* Bind the address but let connect() pick the port, so the 4-tuple (not the local
         * port alone) must be unique: each source address gets its own ~28k ports. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(cfg->src_first +
                                    (c->idx * t->e->nthreads + t->idx) % cfg->src_count);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            count_connect_failure(t, errno);
            close(fd);
            if (t->measuring)
                queue_push(t, c, RETRY_DELAY_NS);
            return;
        }
    }
    if (type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->fd = fd;
    conn_set_state(c, CONN_CONNECTING);
    t->nconnecting++;
    c->connect_start_ns = mono_now_ns();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        conn_established(c);
        return;
    }
    if (errno != EINPROGRESS) {
        count_connect_failure(t, errno);
        conn_close(c, t->measuring, RETRY_DELAY_NS);
        return;
    }
    struct timeval tv = {cfg->connect_timeout_ms / 1000, (cfg->connect_timeout_ms % 1000) * 1000};
    event_assign(c->wev, t->base, fd, EV_WRITE, on_connect, c);
    event_add(c->wev, &tv);
}

/* Starts queued connects while the in-flight bound and the rate allow. */
static void pump_connects(struct lg_thread *t)
{
    /* Delayed retries whose pause is over join the back of the immediate queue. */
    if (t->dlen > 0) {
        uint64_t now = mono_now_ns();
        while (t->dlen > 0 && t->conns[t->delayed[t->dhead]].not_before_ns <= now) {
            unsigned idx = t->delayed[t->dhead];
            t->dhead = (t->dhead + 1) % t->nalloc;
            t->dlen--;
            t->conns[idx].not_before_ns = 0;
            t->queue[(t->qhead + t->qlen) % t->nalloc] = idx;
            t->qlen++;
        }
    }
    while (t->qlen > 0 && t->nconnecting < t->max_connecting) {
        if (t->token_rate > 0 && t->tokens < 1.0)
            return;
        struct lg_conn *c = &t->conns[t->queue[t->qhead]];
        t->qhead = (t->qhead + 1) % t->nalloc;
        t->qlen--;
        c->queued = 0;
        if (c->idx >= t->target || c->state != CONN_CLOSED)
            continue;
        if (t->token_rate > 0)
            t->tokens -= 1.0;
        conn_open(c);
    }
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct lg_conn *c = arg;
    struct lg_thread *t = c->t;
    size_t len;
    const uint8_t *p = bytebuf_peek(&c->out, &len);
    ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            event_add(c->wev, NULL);
            return;
        }
        conn_lost(c, errno);
        return;
    }
    if (counting(t))
        t->stats.bytes_out += (uint64_t)w;
    bytebuf_consume(&c->out, (size_t)w);
    if (bytebuf_len(&c->out) > 0)
        event_add(c->wev, NULL);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct lg_conn *c = arg;
    struct lg_thread *t = c->t;
    ssize_t n = recv(fd, t->rbuf, sizeof t->rbuf, 0);
    if (n == 0 && t->scn->transport == LG_UDP)
        return; /* an empty datagram, not an end of stream */
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (!counting(t)) {
            /* Closed by the server before the measurement (e.g. refused politely by
             * --max-conns): a failed connection, not retried until the next step. */
            count_connect_failure(t, n == 0 ? ECONNABORTED : errno);
            conn_close(c, 0, 0);
            return;
        }
        /* EOF or a reset while it mattered: the server went away under us. */
        conn_lost(c, n == 0 ? 0 : errno);
        return;
    }
    if (counting(t))
        t->stats.bytes_in += (uint64_t)n;
    c->done_flag = 0;
    if (!apply_verdict(c, t->scn->on_data(c, t->rbuf, (size_t)n)))
        return;
    if (c->done_flag)
        conn_next_request(c);
}

/* Every 100 ms: requests past --timeout. TCP: counted, closed, reopened; UDP: counted and
 * dropped, the connection goes on. */
static void sweep_timeouts(struct lg_thread *t)
{
    if (t->cfg->timeout_ms <= 0)
        return;
    uint64_t now = mono_now_ns();
    uint64_t limit = (uint64_t)t->cfg->timeout_ms * 1000000ull;
    for (unsigned i = 0; i < t->nalloc; i++) {
        struct lg_conn *c = &t->conns[i];
        if (c->state != CONN_OPEN || !c->pending || now - c->req_start_ns < limit)
            continue;
        if (counting(t))
            t->stats.timeouts++;
        if (t->scn->transport == LG_UDP) {
            c->pending = 0;
            conn_next_request(c);
        } else {
            conn_close(c, 1, 0);
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lg_thread *t = arg;
    uint64_t now = mono_now_ns();
    if (t->token_rate > 0) {
        t->tokens += t->token_rate * (double)(now - t->last_tick_ns) / 1e9;
        if (t->tokens > t->token_cap)
            t->tokens = t->token_cap;
    }
    t->last_tick_ns = now;
    if (++t->ticks % SWEEP_EVERY == 0)
        sweep_timeouts(t);
    pump_connects(t);
}

/* ---- commands from main ------------------------------------------------------------------ */

static void do_target(struct lg_thread *t, unsigned n, double rate)
{
    if (n > t->nalloc)
        n = t->nalloc;
    t->target = n;
    t->rate = rate;
    t->failed_since_target = 0;
    /* Connect failures count from the set-up of a step to its end, not just its window. */
    t->stats.connects_failed = 0;
    memset(t->stats.failed_by_errno, 0, sizeof t->stats.failed_by_errno);
    for (unsigned i = n; i < t->nalloc; i++)
        conn_close(&t->conns[i], 0, 0);
    for (unsigned i = 0; i < n; i++)
        if (t->conns[i].state == CONN_CLOSED)
            queue_push(t, &t->conns[i], 0);
    pump_connects(t);
}

static void fill_status(struct lg_thread *t, struct lg_status *st)
{
    unsigned pending = 0;
    for (unsigned i = 0; i < t->nalloc; i++)
        pending += t->conns[i].pending;
    st->target = t->target;
    st->open = t->nopen;
    st->connecting = t->nconnecting;
    st->queued = t->qlen + t->dlen;
    st->failed = t->failed_since_target;
    st->pending = pending;
}

static void do_start(struct lg_thread *t)
{
    uint64_t failed = t->stats.connects_failed;
    uint64_t by_errno[LG_ERRNO_MAX];
    memcpy(by_errno, t->stats.failed_by_errno, sizeof by_errno);
    memset(&t->stats, 0, sizeof t->stats);
    t->stats.connects_failed = failed;
    memcpy(t->stats.failed_by_errno, by_errno, sizeof by_errno);
    t->measuring = 1;
    t->probing = 0;
    t->ol_t0 = mono_now_ns();
    t->ol_k = 0;
    for (unsigned i = 0; i < t->nalloc && t->measuring; i++) {
        struct lg_conn *c = &t->conns[i];
        if (t->scn->on_start && c->state == CONN_OPEN) {
            c->done_flag = 0;
            if (!apply_verdict(c, t->scn->on_start(c)))
                continue;
        }
        conn_next_request(c);
    }
}

/* Open loop, at the stop: every request already due but not sent (every connection busy, a
 * stalled server) is recorded in the corrected histogram as having waited until now. Left
 * out, a stall would hide its worst latencies (coordinated omission at the window's end). */
static void ol_record_unsent(struct lg_thread *t)
{
    if (t->rate <= 0 || t->scn->drive != LG_DRIVE_LOOP)
        return;
    uint64_t now = mono_now_ns();
    for (uint64_t k = t->ol_k;; k++) {
        uint64_t due = ol_intended(t, k);
        if (due > now)
            break;
        hist_record(&t->stats.latency, (now - due) / 1000);
        t->stats.unsent_at_stop++;
    }
}

static void do_stop(struct lg_thread *t)
{
    if (t->measuring)
        ol_record_unsent(t);
    t->measuring = 0;
    evtimer_del(t->rate_ev);
    if (!t->scn->probe_at_end)
        return;
    t->probing = 1;
    for (unsigned i = 0; i < t->nalloc; i++) {
        struct lg_conn *c = &t->conns[i];
        if (c->state != CONN_OPEN || c->pending)
            continue;
        c->done_flag = 0;
        apply_verdict(c, t->scn->send_request(c));
    }
}

static void on_ctl(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lg_thread *t = arg;
    pthread_mutex_lock(&t->mu);
    enum cmd cmd = t->cmd;
    long a = t->arg;
    double rate = t->arg_rate;
    pthread_mutex_unlock(&t->mu);

    switch (cmd) {
    case CMD_TARGET: do_target(t, (unsigned)a, rate); break;
    case CMD_START: do_start(t); break;
    case CMD_STOP: do_stop(t); break;
    case CMD_QUIT:
        t->measuring = 0;
        for (unsigned i = 0; i < t->nalloc; i++)
            conn_close(&t->conns[i], 0, 0);
        event_base_loopbreak(t->base);
        break;
    case CMD_STATUS:
    case CMD_NONE: break;
    }
    pthread_mutex_lock(&t->mu);
    fill_status(t, &t->reply_status);
    if (cmd == CMD_STATUS || cmd == CMD_STOP)
        t->reply_stats = t->stats;
    t->done = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void *thread_main(void *arg)
{
    struct lg_thread *t = arg;
    if (t->scn->thread_init)
        t->tstate = t->scn->thread_init(t);
    event_base_loop(t->base, EVLOOP_NO_EXIT_ON_EMPTY);
    if (t->scn->thread_free)
        t->scn->thread_free(t->tstate);
    return NULL;
}

/* Sends one command to every thread, then waits for every reply. */
static void broadcast(struct lg_engine *e, enum cmd cmd, const long *args)
{
    for (unsigned i = 0; i < e->nthreads; i++) {
        struct lg_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->mu);
        t->cmd = cmd;
        t->arg = args ? args[i] : 0;
        t->done = 0;
        pthread_mutex_unlock(&t->mu);
        event_active(t->ctl_ev, EV_READ, 0);
    }
    for (unsigned i = 0; i < e->nthreads; i++) {
        struct lg_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->mu);
        while (!t->done)
            pthread_cond_wait(&t->cv, &t->mu);
        pthread_mutex_unlock(&t->mu);
    }
}

/* Sums the replies of the last broadcast. */
static void sum_status(struct lg_engine *e, struct lg_status *st)
{
    memset(st, 0, sizeof *st);
    for (unsigned i = 0; i < e->nthreads; i++) {
        struct lg_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->mu);
        st->target += t->reply_status.target;
        st->open += t->reply_status.open;
        st->connecting += t->reply_status.connecting;
        st->queued += t->reply_status.queued;
        st->failed += t->reply_status.failed;
        st->pending += t->reply_status.pending;
        pthread_mutex_unlock(&t->mu);
    }
}

void lg_engine_set_target(struct lg_engine *e, long n)
{
    long args[e->nthreads];
    for (unsigned i = 0; i < e->nthreads; i++) {
        args[i] = n / (long)e->nthreads + ((long)i < n % (long)e->nthreads);
        /* Open loop: a thread sends its connections' share of the rate, so the total is
         * --rate however unevenly the connections are spread (none: no requests). */
        struct lg_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->mu);
        t->arg_rate = e->cfg->rate > 0 && n > 0 ? e->cfg->rate * (double)args[i] / (double)n : 0;
        pthread_mutex_unlock(&t->mu);
    }
    broadcast(e, CMD_TARGET, args);
}

void lg_engine_status(struct lg_engine *e, struct lg_status *st, struct lg_stats *sum)
{
    broadcast(e, sum ? CMD_STATUS : CMD_NONE, NULL);
    sum_status(e, st);
    if (sum == NULL)
        return;
    memset(sum, 0, sizeof *sum);
    for (unsigned i = 0; i < e->nthreads; i++) {
        struct lg_thread *t = &e->threads[i];
        pthread_mutex_lock(&t->mu);
        lg_stats_add(sum, &t->reply_stats);
        pthread_mutex_unlock(&t->mu);
    }
}

int lg_engine_settled(const struct lg_status *st)
{
    return st->connecting == 0 && st->queued == 0;
}

void lg_engine_measure_start(struct lg_engine *e, struct lg_status *st)
{
    broadcast(e, CMD_START, NULL);
    sum_status(e, st);
}

void lg_engine_measure_stop(struct lg_engine *e)
{
    broadcast(e, CMD_STOP, NULL);
}

static void thread_free(struct lg_thread *t)
{
    if (t->conns) {
        for (unsigned i = 0; i < t->nalloc; i++) {
            struct lg_conn *c = &t->conns[i];
            if (c->rev)
                event_free(c->rev);
            if (c->wev)
                event_free(c->wev);
            if (c->think_ev)
                event_free(c->think_ev);
            if (c->scn_ev)
                event_free(c->scn_ev);
            bytebuf_free(&c->out);
            free(c->scn);
        }
    }
    free(t->conns);
    free(t->queue);
    free(t->delayed);
    free(t->idle);
    if (t->ctl_ev)
        event_free(t->ctl_ev);
    if (t->tick_ev)
        event_free(t->tick_ev);
    if (t->rate_ev)
        event_free(t->rate_ev);
    if (t->base)
        event_base_free(t->base);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
}

/* Allocates a thread's slots, events and base. 0, or -1 with err filled. */
static int thread_setup(struct lg_engine *e, struct lg_thread *t, unsigned idx, unsigned nalloc,
                        char *err, size_t errlen)
{
    const struct lg_config *cfg = e->cfg;
    t->e = e;
    t->idx = idx;
    t->cfg = cfg;
    t->scn = cfg->scn;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->nalloc = nalloc;
    /* Precise timers (timerfd): the open loop's schedule must not be rounded to whole
     * milliseconds, or the corrected latency would include the generator's own lateness. */
    struct event_config *ec = event_config_new();
    if (ec) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
        t->base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    t->conns = calloc(nalloc, sizeof *t->conns);
    t->queue = calloc(nalloc, sizeof *t->queue);
    t->delayed = calloc(nalloc, sizeof *t->delayed);
    t->idle = calloc(nalloc, sizeof *t->idle);
    if (t->base == NULL || t->conns == NULL || t->queue == NULL || t->delayed == NULL ||
        t->idle == NULL)
        goto fail;
    t->ctl_ev = event_new(t->base, -1, 0, on_ctl, t);
    t->tick_ev = event_new(t->base, -1, EV_PERSIST, on_tick, t);
    t->rate_ev = evtimer_new(t->base, on_rate, t);
    if (t->ctl_ev == NULL || t->tick_ev == NULL || t->rate_ev == NULL)
        goto fail;
    size_t ssize = cfg->scn->state_size ? cfg->scn->state_size(cfg) : 0;
    for (unsigned i = 0; i < nalloc; i++) {
        struct lg_conn *c = &t->conns[i];
        c->t = t;
        c->idx = i;
        c->fd = -1;
        c->rev = event_new(t->base, -1, 0, on_read, c);
        c->wev = event_new(t->base, -1, 0, on_write, c);
        if (c->rev == NULL || c->wev == NULL)
            goto fail;
        if (ssize && (c->scn = calloc(1, ssize)) == NULL)
            goto fail;
    }
    unsigned n = e->nthreads;
    t->max_connecting = (unsigned)(cfg->max_connecting / (long)n);
    if (t->max_connecting == 0)
        t->max_connecting = 1;
    t->token_rate = cfg->connect_rate > 0 ? (double)cfg->connect_rate / n : 0;
    t->token_cap = t->token_rate * TICK_MS / 1000.0;
    if (t->token_cap < 1.0)
        t->token_cap = 1.0;
    t->tokens = t->token_cap;
    t->last_tick_ns = mono_now_ns();
    struct timeval tick = {0, TICK_MS * 1000};
    event_add(t->tick_ev, &tick);
    return 0;
fail:
    snprintf(err, errlen, "out of memory setting up thread %u", idx);
    return -1;
}

struct lg_engine *lg_engine_start(const struct lg_config *cfg, char *err, size_t errlen)
{
    if (evthread_use_pthreads() < 0) {
        snprintf(err, errlen, "evthread_use_pthreads failed");
        return NULL;
    }
    struct lg_engine *e = calloc(1, sizeof *e);
    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->cfg = cfg;
    e->nthreads = (unsigned)cfg->threads;
    e->threads = calloc(e->nthreads, sizeof *e->threads);
    if (e->threads == NULL) {
        free(e);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    long most = 0;
    for (int i = 0; i < cfg->nsteps; i++)
        if (cfg->connections[i] > most)
            most = cfg->connections[i];
    unsigned per = (unsigned)((most + (long)e->nthreads - 1) / (long)e->nthreads);
    unsigned started = 0;
    for (unsigned i = 0; i < e->nthreads; i++) {
        if (thread_setup(e, &e->threads[i], i, per ? per : 1, err, errlen) < 0)
            goto fail;
    }
    for (; started < e->nthreads; started++) {
        int rc = pthread_create(&e->threads[started].tid, NULL, thread_main,
                                &e->threads[started]);
        if (rc != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(rc));
            goto fail;
        }
    }
    return e;
fail:
    e->nthreads = started;
    if (started > 0)
        broadcast(e, CMD_QUIT, NULL);
    for (unsigned i = 0; i < started; i++)
        pthread_join(e->threads[i].tid, NULL);
    for (unsigned i = 0; i < (unsigned)cfg->threads; i++)
        thread_free(&e->threads[i]);
    free(e->threads);
    free(e);
    return NULL;
}

void lg_engine_free(struct lg_engine *e)
{
    if (e == NULL)
        return;
    broadcast(e, CMD_QUIT, NULL);
    for (unsigned i = 0; i < e->nthreads; i++)
        pthread_join(e->threads[i].tid, NULL);
    for (unsigned i = 0; i < e->nthreads; i++)
        thread_free(&e->threads[i]);
    free(e->threads);
    free(e);
}
