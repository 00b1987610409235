/* loadgen scenario chat: N clients join a chat room, M of them send numbered, timestamped
 * lines at --rate lines/s in total, every client checks every line it receives (none lost,
 * none duplicated, each sender's in order) and records the fan-out latency; --opt stalled=K
 * adds K clients that join and never read. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat.h"
#include "frame.h"
#include "hist.h"
#include "mono.h"
#include "opts.h"
#include "scenario.h"

#define CHAT_DEFAULT_RATE 100.0  /* lines/s over all senders when --rate is not given */
#define CHAT_MAX_SENDERS 100000
#define CHAT_MAX_STALLED 10000
#define CHAT_BURST 100           /* lines one timer may send to catch up with the schedule */
/* A sender whose own socket holds this much unsent is not being read by the server (the
 * naive broadcast's freeze): its lines are skipped and counted, not queued without end. */
#define CHAT_MAX_UNSENT (1024 * 1024)
#define CHAT_STALLED_RCVBUF 4096

/* Counters in lg_stats.counter[] (summed over threads by the engine). */
enum {
    CTR_SENT,         /* lines sent */
    CTR_LOST,         /* sequence numbers skipped: lines that never arrived */
    CTR_DUP,          /* a sequence number at or below one already seen: duplicated/reordered */
    CTR_NOTICES,      /* join/leave notices received */
    CTR_NOT_SENT,     /* lines due while the sender's socket was full (server not reading) */
};

/* Set by check() in main before any thread starts; read-only after. */
static const struct lg_config *chat_cfg;
static long n_senders = 1, n_stalled;
static double opt_rate = CHAT_DEFAULT_RATE; /* lines/s over all senders */
/* Stalled clients connected: written by thread 0 in its thread_init only. */
static atomic_long stalled_open;
/* Each sender's name as the server gives it (its local address, IPv4 << 16 | port): for sender
 * g, [2g] now and [2g + 1] before its last reopen (lines of the old connection may still be on
 * their way). Allocated by check() in main; written by the sender's thread when it (re)opens,
 * read by every receiving thread: atomics, no lock. */
static _Atomic uint64_t *sender_addr;

/* Per-connection state: this struct, then n_senders expected sequence numbers, then the
 * partial-line buffer. Kept across reopens. */
struct chat_conn {
    uint64_t seq;          /* as a sender: the next line's number */
    uint64_t next_ns;      /* as a sender: when the next line is due */
    uint64_t stop_ns;      /* as a sender: no line after this (the tail drains in the step) */
    size_t have;           /* bytes in the partial-line buffer */
    /* uint64_t expect[n_senders]: 0 = nothing seen from that sender since (re)joining, else
     * the next sequence number wanted + 1. Then uint8_t buf[buf_cap]. */
};

static size_t buf_cap(void)
{
    return (size_t)chat_cfg->size + CHAT_NAME_MAX + 128;
}

static uint64_t *expect_of(struct chat_conn *cs)
{
    return (uint64_t *)(cs + 1);
}

static uint8_t *buf_of(struct chat_conn *cs)
{
    return (uint8_t *)(expect_of(cs) + n_senders);
}

static long opt_long(const struct lg_config *cfg, const char *key, long dflt, long min, long max,
                     int *bad)
{
    const char *v = lg_config_opt(cfg, key);
    long out = dflt;
    if (v != NULL && opts_parse_long(v, min, max, &out) < 0)
        *bad = 1;
    return out;
}

static int chat_check(const struct lg_config *cfg, char *err, size_t errlen)
{
    int bad = 0;
    chat_cfg = cfg;
    n_senders = opt_long(cfg, "senders", 1, 1, CHAT_MAX_SENDERS, &bad);
    if (bad) {
        snprintf(err, errlen, "--opt senders=M: want an integer 1..%d", CHAT_MAX_SENDERS);
        return -1;
    }
    n_stalled = opt_long(cfg, "stalled", 0, 0, CHAT_MAX_STALLED, &bad);
    if (bad) {
        snprintf(err, errlen, "--opt stalled=K: want an integer 0..%d", CHAT_MAX_STALLED);
        return -1;
    }
    /* The line rate: --opt rate=R, or --rate R, which main passes as --opt rate=R (rate_opt)
     * since this scenario does not use the engine's request loop. */
    const char *r = lg_config_opt(cfg, "rate");
    if (r != NULL) {
        char *end;
        opt_rate = strtod(r, &end);
        if (end == r || *end != '\0' || !(opt_rate > 0 && opt_rate <= 1e7)) {
            snprintf(err, errlen, "--opt rate=R: want lines/s, more than 0");
            return -1;
        }
    } else if (cfg->rate > 0) {
        opt_rate = cfg->rate;
    }
    for (int i = 0; i < cfg->nsteps; i++)
        if (cfg->connections[i] < 2 || cfg->connections[i] < n_senders) {
            snprintf(err, errlen, "chat: every step needs 2 or more connections and at least "
                                  "--opt senders=%ld", n_senders);
            return -1;
        }
    if (cfg->size < 40 || cfg->size > 65536) {
        snprintf(err, errlen, "chat: --size (the line's text) must be 40..65536 bytes");
        return -1;
    }
    if (sender_addr == NULL && (sender_addr = calloc(2 * (size_t)n_senders,
                                                     sizeof *sender_addr)) == NULL) {
        snprintf(err, errlen, "chat: out of memory");
        return -1;
    }
    return 0;
}

static size_t chat_state_size(const struct lg_config *cfg)
{
    (void)cfg;
    return sizeof(struct chat_conn) + (size_t)n_senders * sizeof(uint64_t) + buf_cap();
}

struct chat_thread {
    unsigned idx;  /* the thread's index */
    int *stalled;  /* thread 0: the stalled clients' sockets */
    long n;
};

/* A client's global number: connections are dealt round-robin over threads, so these are
 * 0..N-1; the first --opt senders of them send. */
static long global_index(const struct lg_conn *c)
{
    const struct chat_thread *ts = lg_thread_state(c);
    return (long)lg_conn_index(c) * chat_cfg->threads + (ts ? (long)ts->idx : 0);
}

static double line_rate(void)
{
    return opt_rate;
}

/* ---- the stalled clients: plain sockets of thread 0 that connect and never read ---------- */

/* A blocking connect with a small receive buffer (set before connect, so the window stays
 * small and the server's side fills sooner). The fd, or -1. */
static int connect_stalled(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)chat_cfg->port)};
    int rcvbuf = CHAT_STALLED_RCVBUF;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (inet_pton(AF_INET, chat_cfg->host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("loadgen chat: stalled client");
        close(fd);
        return -1;
    }
    return fd;
}

static void *chat_thread_init(struct lg_thread *t)
{
    struct chat_thread *ts = calloc(1, sizeof *ts);
    if (ts == NULL)
        return NULL;
    ts->idx = lg_thread_index(t);
    if (ts->idx != 0 || n_stalled == 0)
        return ts;
    ts->stalled = calloc((size_t)n_stalled, sizeof *ts->stalled);
    if (ts->stalled == NULL)
        return ts;
    for (long i = 0; i < n_stalled; i++) {
        int fd = connect_stalled();
        if (fd >= 0)
            ts->stalled[ts->n++] = fd;
    }
    atomic_store(&stalled_open, ts->n);
    return ts;
}

static void chat_thread_free(void *p)
{
    struct chat_thread *ts = p;
    if (ts == NULL)
        return;
    for (long i = 0; i < ts->n; i++)
        close(ts->stalled[i]);
    free(ts->stalled);
    free(ts);
}

/* ---- sending ------------------------------------------------------------------------------ */

/* Schedules the next line of a sender, or none after its stop time. */
static void arm(struct lg_conn *c, struct chat_conn *cs)
{
    uint64_t now = mono_now_ns();
    if (cs->next_ns >= cs->stop_ns)
        return;
    lg_conn_timer(c, cs->next_ns > now ? (cs->next_ns - now) / 1000 : 0);
}

/* Starts a sender's schedule: its lines spread evenly, senders staggered over one interval. */
static void start_sending(struct lg_conn *c, struct chat_conn *cs)
{
    long g = global_index(c);
    double interval_ns = (double)n_senders * 1e9 / line_rate();
    double dur_ns = chat_cfg->duration_s * 1e9;
    /* The first 25% of the step (at most 1 s) has no lines: a connection is established
     * before the server has put it in the room (a threaded server may start its thread
     * late), and a line sent before a client joined is not owed to it. The last 20% (at most
     * 1 s) has none either, so every line sent is delivered, or lost, within the step. */
    double warmup_ns = dur_ns * 0.25 < 1e9 ? dur_ns * 0.25 : 1e9;
    double drain_ns = dur_ns * 0.2 < 1e9 ? dur_ns * 0.2 : 1e9;
    uint64_t now = mono_now_ns();

    if (g >= n_senders)
        return;
    cs->stop_ns = now + (uint64_t)(dur_ns - drain_ns);
    cs->next_ns = now + (uint64_t)(warmup_ns + interval_ns * (double)g / (double)n_senders);
    arm(c, cs);
}

static enum lg_verdict send_line(struct lg_conn *c, struct chat_conn *cs)
{
    char line[65536 + 2];
    size_t size = (size_t)chat_cfg->size;
    struct lg_stats *st = lg_conn_stats(c);

    if (lg_conn_unsent(c) > CHAT_MAX_UNSENT) {
        if (lg_counting(c))
            st->counter[CTR_NOT_SENT]++;
        return LG_OK;
    }
    int n = snprintf(line, sizeof line, "%ld %llu %llu ", global_index(c),
                     (unsigned long long)cs->seq, (unsigned long long)mono_now_ns());
    if (n < 0 || (size_t)n > size)
        return LG_ERROR;
    memset(line + n, 'x', size - (size_t)n);
    line[size] = '\n';
    if (lg_send(c, line, size + 1) < 0)
        return LG_ERROR;
    cs->seq++;
    if (lg_counting(c))
        st->counter[CTR_SENT]++;
    return LG_OK;
}

static enum lg_verdict chat_timer(struct lg_conn *c)
{
    struct chat_conn *cs = lg_conn_state(c);
    double interval_ns = (double)n_senders * 1e9 / line_rate();
    uint64_t now = mono_now_ns();

    if (!lg_measuring(c))
        return LG_OK;
    for (int i = 0; i < CHAT_BURST && cs->next_ns <= now && cs->next_ns < cs->stop_ns; i++) {
        enum lg_verdict v = send_line(c, cs);
        if (v != LG_OK)
            return v;
        cs->next_ns += (uint64_t)interval_ns;
    }
    if (cs->next_ns <= now) /* hopelessly behind: skip ahead rather than burst forever */
        cs->next_ns = now + (uint64_t)interval_ns;
    arm(c, cs);
    return LG_OK;
}

/* ---- receiving ---------------------------------------------------------------------------- */

/* Parses "G SEQ NS " at the start of a line's text and checks that the rest is the 'x'
 * padding send_line wrote. 0, or -1. */
static int parse_text(const uint8_t *t, size_t len, long *g, uint64_t *seq, uint64_t *ns)
{
    char head[80];
    size_t n = len < sizeof head - 1 ? len : sizeof head - 1;
    unsigned long long s, tns;
    int used = -1;
    memcpy(head, t, n);
    head[n] = '\0';
    if (sscanf(head, "%ld %llu %llu %n", g, &s, &tns, &used) != 3 || used <= 0)
        return -1;
    for (size_t i = (size_t)used; i < len; i++)
        if (t[i] != 'x')
            return -1;
    *seq = s;
    *ns = tns;
    return 0;
}

/* "A.B.C.D:PORT" as IPv4 << 16 | port, or 0. */
static uint64_t name_key(const char *name, size_t len)
{
    char buf[32];
    unsigned a, b, c, d, port;
    int used = -1;
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, name, len);
    buf[len] = '\0';
    if (sscanf(buf, "%u.%u.%u.%u:%u%n", &a, &b, &c, &d, &port, &used) != 5 ||
        used != (int)len || a > 255 || b > 255 || c > 255 || d > 255 || port > 65535)
        return 0;
    return ((uint64_t)a << 40) | ((uint64_t)b << 32) | ((uint64_t)c << 24) |
           ((uint64_t)d << 16) | port;
}

/* A sender's connection (re)opened: its name in the room is its local address. */
static void note_sender_addr(struct lg_conn *c)
{
    long g = global_index(c);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (g >= n_senders || getsockname(lg_conn_fd(c), (struct sockaddr *)&sa, &len) < 0 ||
        sa.sin_family != AF_INET)
        return;
    uint64_t key = ((uint64_t)ntohl(sa.sin_addr.s_addr) << 16) | ntohs(sa.sin_port);
    uint64_t old = atomic_exchange(&sender_addr[2 * g], key);
    atomic_store(&sender_addr[2 * g + 1], old);
}

/* One complete line (without its '\n'). Sequence numbers are followed at all times; the
 * figures count only in the measurement window (a late line still moves `expect` on). */
static void on_line(struct lg_conn *c, struct chat_conn *cs, const uint8_t *p, size_t len)
{
    struct lg_stats *st = lg_conn_stats(c);
    int counts = lg_counting(c);
    struct chat_msg m;
    long g;
    uint64_t seq, ns;

    switch (chat_parse(p, len, &m)) {
    case CHAT_JOINED:
    case CHAT_LEFT:
        st->counter[CTR_NOTICES] += (uint64_t)counts;
        return;
    case CHAT_LINE:
        break;
    default:
        st->mismatches += (uint64_t)counts;
        return;
    }
    if (parse_text(m.text, m.text_len, &g, &seq, &ns) < 0 || g < 0 || g >= n_senders ||
        m.text_len != (size_t)chat_cfg->size) {
        st->mismatches += (uint64_t)counts;
        return;
    }
    /* The name the server put in front must be sender g's. */
    uint64_t key = name_key(m.name, m.name_len);
    if (key == 0 || (key != atomic_load(&sender_addr[2 * g]) &&
                     key != atomic_load(&sender_addr[2 * g + 1]))) {
        st->mismatches += (uint64_t)counts;
        return;
    }
    uint64_t *expect = &expect_of(cs)[g];
    if (*expect != 0 && seq + 1 < *expect) {
        st->counter[CTR_DUP] += (uint64_t)counts;
        return;
    }
    if (*expect != 0 && seq + 1 > *expect && counts)
        st->counter[CTR_LOST] += seq + 1 - *expect;
    *expect = seq + 2;
    if (!counts)
        return;
    uint64_t now = mono_now_ns();
    hist_record(&st->latency, now > ns ? (now - ns) / 1000 : 0);
    st->completed++;
}

static enum lg_verdict chat_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    struct chat_conn *cs = lg_conn_state(c);
    uint8_t *buf = buf_of(cs);
    size_t cap = buf_cap();
    size_t max_line = cap - 1;

    while (n > 0) {
        size_t take = cap - cs->have < n ? cap - cs->have : n;
        memcpy(buf + cs->have, p, take);
        cs->have += take;
        p += take;
        n -= take;
        size_t off = 0;
        long r;
        while ((r = frame_next(buf + off, cs->have - off, max_line)) > 0) {
            on_line(c, cs, buf + off, (size_t)r - 1);
            off += (size_t)r;
        }
        if (r == FRAME_TOO_LONG) {
            if (lg_counting(c))
                lg_conn_stats(c)->mismatches++;
            return LG_ERROR;
        }
        memmove(buf, buf + off, cs->have - off);
        cs->have -= off;
    }
    return LG_OK;
}

/* ---- life cycle --------------------------------------------------------------------------- */

static enum lg_verdict chat_open(struct lg_conn *c)
{
    struct chat_conn *cs = lg_conn_state(c);
    /* A (re)joined client hears only what is sent from now on. */
    memset(expect_of(cs), 0, (size_t)n_senders * sizeof(uint64_t));
    note_sender_addr(c);
    cs->have = 0;
    if (lg_measuring(c) && cs->stop_ns > mono_now_ns())
        arm(c, cs);
    return LG_OK;
}

static enum lg_verdict chat_start(struct lg_conn *c)
{
    start_sending(c, lg_conn_state(c));
    return LG_OK;
}

static void chat_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                      json_t *step)
{
    (void)cfg;
    (void)duration_s;
    json_t *conns = json_object_get(step, "connections");
    long long est = json_integer_value(json_object_get(conns, "established"));
    uint64_t sent = st->counter[CTR_SENT];
    /* Every line should reach every other client that was in the room. */
    uint64_t expected = est > 1 ? sent * (uint64_t)(est - 1) : 0;
    json_object_set_new(
        step, "chat",
        json_pack("{s:I, s:I, s:f, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I}", "senders",
                  (json_int_t)n_senders, "stalled", (json_int_t)n_stalled, "rate",
                  opt_rate, "lines_sent",
                  (json_int_t)sent, "expected", (json_int_t)expected, "delivered",
                  (json_int_t)st->completed, "delivered_ratio",
                  expected ? (double)st->completed / (double)expected : 0.0, "lost",
                  (json_int_t)st->counter[CTR_LOST], "duplicated_or_reordered",
                  (json_int_t)st->counter[CTR_DUP], "notices",
                  (json_int_t)st->counter[CTR_NOTICES], "lines_not_sent",
                  (json_int_t)st->counter[CTR_NOT_SENT], "stalled_connected",
                  (json_int_t)atomic_load(&stalled_open)));
}

static const struct lg_opt_def chat_opts[] = {
    {"senders", 1, LG_OPT_INT, "M", "clients that send (default 1)", 1, CHAT_MAX_SENDERS},
    {"stalled", 1, LG_OPT_INT, "K", "extra clients that join and never read (default 0)", 0,
     CHAT_MAX_STALLED},
    {"rate", 0, LG_OPT_NUM, "R", "lines/s over all senders (= --rate R)", 0, 1e7},
    {NULL, 0, 0, NULL, NULL, 0, 0},
};

const struct lg_scenario scn_chat = {
    .name = "chat",
    .summary = "chat room: --senders M send --rate R lines/s in all, every client "
               "checks every line; --stalled K join and never read",
    .transport = LG_TCP,
    .drive = LG_DRIVE_NONE,
    .check = chat_check,
    .state_size = chat_state_size,
    .thread_init = chat_thread_init,
    .thread_free = chat_thread_free,
    .on_open = chat_open,
    .on_start = chat_start,
    .on_data = chat_data,
    .on_timer = chat_timer,
    .json_step = chat_json,
    .opts = chat_opts,
    .single_process = 1,
    .rate_opt = "rate",
};
