/* loadgen scenario chat: N clients join a chat room, M of them send numbered, timestamped
 * lines at --rate lines/s in total, every client checks every line it receives (each line
 * expected once, in its sender's order) and records the fan-out latency. Three classes of
 * reader: normal; --opt slow=K that read at --opt slow-rate bytes/s; --opt stalled=K that
 * join and never read. Each class is reported on its own. */
#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chat.h"
#include "frame.h"
#include "hist.h"
#include "mono.h"
#include "opts.h"
#include "scenario.h"

#define CHAT_DEFAULT_RATE 100.0  /* lines/s over all senders when --rate is not given */
#define CHAT_BURST 100           /* lines one timer may send to catch up with the schedule */
/* A sender with this much unsent (in loadgen's queue and its kernel's, SIOCOUTQ) is held back
 * by the server (flow control, or the naive broadcast's freeze): its lines are skipped and
 * counted as not sent, not queued to arrive after the step (where they would count as lost). */
#define CHAT_MAX_UNSENT (16 * 1024)
#define CHAT_STALLED_RCVBUF 4096
#define CHAT_SLOW_RCVBUF 16384   /* a slow reader's kernel holds little, so it is slow at once */
#define CHAT_SLOW_BURST 4096     /* bytes a slow reader may take ahead of its rate */
#define CHAT_WINDOW 64           /* lines per sender a receiver remembers, for duplicates */

/* The scenario's own settings, declared (with their ranges) in chat_flags at the end of this
 * file; chat_check reads them into these. rate (a double) is read separately. */
static long n_senders = 1, n_stalled, n_slow, slow_rate = 65536, drain_ms = -1;
static const struct chat_opt {
    const char *key;
    long *val;
} chat_opts[] = {
    {"senders", &n_senders},   /* the first M clients send */
    {"stalled", &n_stalled},   /* K more join and never read */
    {"slow", &n_slow},         /* the K clients after the senders read slowly */
    {"slow-rate", &slow_rate}, /* ... at this many bytes/s */
    {"drain-ms", &drain_ms},   /* quiet tail (default 20% <= 1 s; slow: 50%) */
};
#define N_CHAT_OPTS (sizeof chat_opts / sizeof chat_opts[0])

/* The reader classes with counters of their own; the stalled are counted apart. */
enum { CLS_NORMAL, CLS_SLOW, N_CLS };
static const char *const cls_name[N_CLS] = {"normal", "slow"};

/* Counters in lg_stats.counter[] (summed over threads by the engine). */
enum {
    CTR_SENT,                     /* lines sent */
    CTR_NOTICES,                  /* join/leave notices received */
    CTR_NOT_SENT,                 /* lines due while the sender's socket was full */
    CTR_DELIVERED,                /* + class: distinct lines received */
    CTR_DUP = CTR_DELIVERED + N_CLS,  /* + class: a line received again */
    CTR_OOO = CTR_DUP + N_CLS,    /* + class: a line received after a later one of its sender */
    CTR_DROPPED = CTR_OOO + N_CLS, /* + class: connections the server closed */
};

/* Set by check() in main before any thread starts; read-only after. */
static const struct lg_config *chat_cfg;
static double opt_rate = CHAT_DEFAULT_RATE; /* lines/s over all senders */
/* Stalled clients connected: written by thread 0 in its thread_init only. */
static atomic_long stalled_open;
/* Each sender's name as the server gives it (its local address, IPv4 << 16 | port): for sender
 * g, [2g] now and [2g + 1] before its last reopen (lines of the old connection may still be on
 * their way). Allocated by check() in main; written by the sender's thread when it (re)opens,
 * read by every receiving thread: atomics, no lock. */
static _Atomic uint64_t *sender_addr;
/* The stalled clients' names (thread 0 writes them before it opens its connections) and when
 * a receiver first heard each leave (0: not yet): any thread, atomics. */
static _Atomic uint64_t *stalled_addr, *stalled_left_ns;
/* When the first line of the run was sent (0: none yet); any sender, compare-and-swap. */
static _Atomic uint64_t first_line_ns;

/* Per-connection state: this struct, then n_senders `expect` and n_senders `window`, then
 * the partial-line buffer. Kept across reopens. */
struct chat_conn {
    uint64_t seq;          /* as a sender: the next line's number */
    uint64_t next_ns;      /* as a sender: when the next line is due */
    uint64_t stop_ns;      /* as a sender: no line after this (the tail drains in the step) */
    uint64_t slow_t0_ns;   /* as a slow reader: when it (re)opened */
    uint64_t slow_bytes;   /* ... and the bytes it has read since */
    size_t have;           /* bytes in the partial-line buffer */
    /* uint64_t expect[n_senders]: 0 = nothing seen from that sender since (re)joining, else
     * the highest sequence number seen + 2. uint64_t window[n_senders]: bit i set = line
     * (highest - i) seen. Then uint8_t buf[buf_cap]. */
};

static size_t buf_cap(void)
{
    return (size_t)chat_cfg->size + CHAT_NAME_MAX + 128;
}

static uint64_t *expect_of(struct chat_conn *cs)
{
    return (uint64_t *)(cs + 1);
}

static uint64_t *window_of(struct chat_conn *cs)
{
    return expect_of(cs) + n_senders;
}

static uint8_t *buf_of(struct chat_conn *cs)
{
    return (uint8_t *)(window_of(cs) + n_senders);
}

static int chat_check(const struct lg_config *cfg, char *err, size_t errlen)
{
    chat_cfg = cfg;
    for (size_t i = 0; i < N_CHAT_OPTS; i++) /* parse_args checked chat_flags' ranges */
        *chat_opts[i].val = lg_config_long(cfg, chat_opts[i].key, *chat_opts[i].val);
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
        if (cfg->connections[i] < 2 || cfg->connections[i] < n_senders + n_slow) {
            snprintf(err, errlen, "chat: every step needs 2 or more connections and at least "
                                  "--opt senders + --opt slow (%ld)", n_senders + n_slow);
            return -1;
        }
    if (cfg->size < 40 || cfg->size > 65536) {
        snprintf(err, errlen, "chat: --size (the line's text) must be 40..65536 bytes");
        return -1;
    }
    if (sender_addr == NULL) {
        sender_addr = calloc(2 * (size_t)n_senders, sizeof *sender_addr);
        stalled_addr = calloc((size_t)n_stalled + 1, sizeof *stalled_addr);
        stalled_left_ns = calloc((size_t)n_stalled + 1, sizeof *stalled_left_ns);
        if (sender_addr == NULL || stalled_addr == NULL || stalled_left_ns == NULL) {
            snprintf(err, errlen, "chat: out of memory");
            return -1;
        }
    }
    return 0;
}

static size_t chat_state_size(const struct lg_config *cfg)
{
    (void)cfg;
    return sizeof(struct chat_conn) + 2 * (size_t)n_senders * sizeof(uint64_t) + buf_cap();
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

/* Senders first, then the slow readers, then the normal ones; senders read normally. */
static int class_of(const struct lg_conn *c)
{
    long g = global_index(c);
    return g >= n_senders && g < n_senders + n_slow ? CLS_SLOW : CLS_NORMAL;
}

/* The local address of fd as IPv4 << 16 | port, the form name_key gives a name; 0 if none. */
static uint64_t local_key(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || sa.sin_family != AF_INET)
        return 0;
    return ((uint64_t)ntohl(sa.sin_addr.s_addr) << 16) | ntohs(sa.sin_port);
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
        if (fd >= 0) {
            atomic_store(&stalled_addr[ts->n], local_key(fd));
            ts->stalled[ts->n++] = fd;
        }
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
    if (drain_ms >= 0)
        drain_ns = (double)drain_ms * 1e6;
    else if (n_slow > 0) /* what waits for a slow reader drains at its rate: half the step */
        drain_ns = dur_ns * 0.5;
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

    int outq = 0;
    if (ioctl(lg_conn_fd(c), SIOCOUTQ, &outq) < 0)
        outq = 0;
    if (lg_conn_unsent(c) + (size_t)outq > CHAT_MAX_UNSENT) {
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
    uint64_t none = 0;
    atomic_compare_exchange_strong(&first_line_ns, &none, mono_now_ns());
    if (lg_counting(c))
        st->counter[CTR_SENT]++;
    return LG_OK;
}

static enum lg_verdict chat_timer(struct lg_conn *c)
{
    struct chat_conn *cs = lg_conn_state(c);
    if (class_of(c) == CLS_SLOW) {
        lg_conn_pause_read(c, 0); /* its rate allows more now */
        return LG_OK;
    }
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
    uint64_t key = local_key(lg_conn_fd(c));
    if (g >= n_senders || key == 0)
        return;
    uint64_t old = atomic_exchange(&sender_addr[2 * g], key);
    atomic_store(&sender_addr[2 * g + 1], old);
}

/* A leave notice: if it names a stalled client, the room dropped it; the first hearing
 * counts. */
static void note_left(const struct chat_msg *m)
{
    uint64_t key = name_key(m->name, m->name_len), none = 0;
    long n = atomic_load(&stalled_open);
    for (long i = 0; key != 0 && i < n; i++)
        if (atomic_load(&stalled_addr[i]) == key)
            atomic_compare_exchange_strong(&stalled_left_ns[i], &none, mono_now_ns());
}

/* Sequence number seq of a sender, at a receiver that remembers the last CHAT_WINDOW lines of
 * it: 1 if the line is new (delivered), 0 if seen before; *ooo set if it came after a later
 * one. */
static int first_sight(uint64_t *expect, uint64_t *window, uint64_t seq, int *ooo)
{
    *ooo = 0;
    if (*expect == 0 || seq + 2 > *expect) {
        uint64_t shift = *expect == 0 ? CHAT_WINDOW : seq + 2 - *expect;
        *window = shift >= CHAT_WINDOW ? 1 : (*window << shift) | 1;
        *expect = seq + 2;
        return 1;
    }
    uint64_t back = *expect - 2 - seq;
    *ooo = 1;
    if (back >= CHAT_WINDOW)
        return 1; /* too old to know: counted once, out of order */
    if (*window & (1ull << back))
        return 0;
    *window |= 1ull << back;
    return 1;
}

/* One complete line (without its '\n'). Sequence numbers are followed at all times; the
 * figures count only in the measurement window (a late line still moves `expect` on). A line
 * that arrives wrong counts as a mismatch and not as delivered: it is lost. */
static void on_line(struct lg_conn *c, struct chat_conn *cs, const uint8_t *p, size_t len)
{
    struct lg_stats *st = lg_conn_stats(c);
    int counts = lg_counting(c), cls = class_of(c), ooo;
    struct chat_msg m;
    long g;
    uint64_t seq, ns;

    switch (chat_parse(p, len, &m)) {
    case CHAT_LEFT:
        note_left(&m);
        /* fall through */
    case CHAT_JOINED:
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
    int fresh = first_sight(&expect_of(cs)[g], &window_of(cs)[g], seq, &ooo);
    if (!counts)
        return;
    if (!fresh) {
        st->counter[CTR_DUP + cls]++;
        return;
    }
    st->counter[CTR_OOO + cls] += (uint64_t)ooo;
    st->counter[CTR_DELIVERED + cls]++;
    uint64_t now = mono_now_ns();
    hist_record(cls == CLS_SLOW ? &st->aux : &st->latency, now > ns ? (now - ns) / 1000 : 0);
    st->completed++;
}

/* A slow reader took n more bytes: past its rate, it stops reading until the rate allows
 * what it took (the timer resumes it). */
static void pace_slow(struct lg_conn *c, struct chat_conn *cs, size_t n)
{
    uint64_t now = mono_now_ns();
    cs->slow_bytes += n;
    double allowed = (double)slow_rate * (double)(now - cs->slow_t0_ns) / 1e9 + CHAT_SLOW_BURST;
    if ((double)cs->slow_bytes <= allowed)
        return;
    lg_conn_pause_read(c, 1);
    lg_conn_timer(c, (uint64_t)(((double)cs->slow_bytes - allowed) * 1e6 / (double)slow_rate) + 1);
}

static enum lg_verdict chat_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    struct chat_conn *cs = lg_conn_state(c);
    size_t total = n;
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
    if (class_of(c) == CLS_SLOW)
        pace_slow(c, cs, total);
    return LG_OK;
}

/* ---- life cycle --------------------------------------------------------------------------- */

static enum lg_verdict chat_open(struct lg_conn *c)
{
    struct chat_conn *cs = lg_conn_state(c);
    /* A (re)joined client hears only what is sent from now on. */
    memset(expect_of(cs), 0, 2 * (size_t)n_senders * sizeof(uint64_t));
    note_sender_addr(c);
    cs->have = 0;
    if (global_index(c) < n_senders) {
        /* Little in the kernel: a sender the room holds back stops sending at once, and what
         * it sent arrives within the step's tail instead of after it. */
        int sndbuf = CHAT_SLOW_RCVBUF * 4;
        setsockopt(lg_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    if (class_of(c) == CLS_SLOW) {
        int rcvbuf = CHAT_SLOW_RCVBUF;
        setsockopt(lg_conn_fd(c), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        cs->slow_t0_ns = mono_now_ns();
        cs->slow_bytes = 0;
    }
    if (lg_measuring(c) && cs->stop_ns > mono_now_ns())
        arm(c, cs);
    return LG_OK;
}

static enum lg_verdict chat_start(struct lg_conn *c)
{
    start_sending(c, lg_conn_state(c));
    return LG_OK;
}

/* The server closed a reader (dropped it): counted by class, and as an error as before. */
static enum lg_verdict chat_lost(struct lg_conn *c, int err)
{
    (void)err;
    if (lg_counting(c))
        lg_conn_stats(c)->counter[CTR_DROPPED + class_of(c)]++;
    return LG_ERROR;
}

/* One class's figures. Every line is owed to every receiver of the class but its sender: a
 * line expected and not delivered is lost, whatever the reason (gap, never came, mangled). */
static json_t *class_json(const struct lg_stats *st, int cls, long receivers, uint64_t sent,
                          uint64_t *expected_out, uint64_t *delivered_out)
{
    uint64_t owed = (uint64_t)receivers - (cls == CLS_NORMAL && receivers > 0 ? 1 : 0);
    uint64_t expected = receivers > 0 ? sent * owed : 0;
    uint64_t delivered = st->counter[CTR_DELIVERED + cls];
    *expected_out += expected;
    *delivered_out += delivered;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "receivers",
                     (json_int_t)receivers, "expected", (json_int_t)expected, "delivered",
                     (json_int_t)delivered, "lost",
                     (json_int_t)(expected > delivered ? expected - delivered : 0),
                     "duplicated", (json_int_t)st->counter[CTR_DUP + cls], "out_of_order",
                     (json_int_t)st->counter[CTR_OOO + cls], "dropped",
                     (json_int_t)st->counter[CTR_DROPPED + cls], "latency_us",
                     lg_latency_json(cls == CLS_SLOW ? &st->aux : &st->latency));
}

/* The stalled: how many there were, how many the room dropped (a receiver heard them leave),
 * and the longest time from the run's first line to a drop. */
static json_t *stalled_json(void)
{
    long n = atomic_load(&stalled_open), dropped = 0;
    uint64_t first = atomic_load(&first_line_ns), worst = 0;
    for (long i = 0; i < n; i++) {
        uint64_t t = atomic_load(&stalled_left_ns[i]);
        if (t == 0)
            continue;
        dropped++;
        if (first > 0 && t > first && t - first > worst)
            worst = t - first;
    }
    return json_pack("{s:I, s:I, s:f}", "clients", (json_int_t)n, "dropped",
                     (json_int_t)dropped, "dropped_after_ms_max", (double)worst / 1e6);
}

static void chat_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                      json_t *step)
{
    (void)cfg;
    (void)duration_s;
    json_t *conns = json_object_get(step, "connections");
    long est = (long)json_integer_value(json_object_get(conns, "established"));
    long slow = est - n_senders < n_slow ? (est > n_senders ? est - n_senders : 0) : n_slow;
    uint64_t sent = st->counter[CTR_SENT], expected = 0, delivered = 0, dup = 0;
    json_t *classes = json_object();
    json_object_set_new(classes, cls_name[CLS_NORMAL],
                        class_json(st, CLS_NORMAL, est - slow, sent, &expected, &delivered));
    json_object_set_new(classes, cls_name[CLS_SLOW],
                        class_json(st, CLS_SLOW, slow, sent, &expected, &delivered));
    json_object_set_new(classes, "stalled", stalled_json());
    for (int k = 0; k < N_CLS; k++)
        dup += st->counter[CTR_DUP + k] + st->counter[CTR_OOO + k];
    json_object_set_new(
        step, "chat",
        json_pack("{s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:o}",
                  "senders", (json_int_t)n_senders, "stalled", (json_int_t)n_stalled, "slow",
                  (json_int_t)n_slow, "slow_rate", (json_int_t)slow_rate, "rate", opt_rate,
                  "lines_sent", (json_int_t)sent, "expected", (json_int_t)expected,
                  "delivered", (json_int_t)delivered, "delivered_ratio",
                  expected ? (double)delivered / (double)expected : 0.0, "lost",
                  (json_int_t)(expected > delivered ? expected - delivered : 0),
                  "duplicated_or_reordered", (json_int_t)dup, "notices",
                  (json_int_t)st->counter[CTR_NOTICES], "lines_not_sent",
                  (json_int_t)st->counter[CTR_NOT_SENT], "stalled_connected",
                  (json_int_t)atomic_load(&stalled_open), "classes", classes));
}

static const struct lg_opt_def chat_flags[] = {
    {"senders", 1, LG_OPT_INT, "M", "clients that send (default 1)", 1, 100000},
    {"stalled", 1, LG_OPT_INT, "K", "extra clients that join and never read (default 0)", 0,
     10000},
    {"slow", 0, LG_OPT_INT, "K", "receivers after the senders that read at slow-rate (default 0)",
     0, 100000},
    {"slow-rate", 0, LG_OPT_INT, "BYTES_PER_S", "a slow receiver's read rate (default 65536)", 1,
     1L << 30},
    {"drain-ms", 0, LG_OPT_INT, "MS",
     "quiet tail of each step (default 20% of it, at most 1 s; 50% with slow receivers)", 0,
     600000},
    {"rate", 0, LG_OPT_NUM, "R", "lines/s over all senders (= --rate R)", 0, 1e7},
    {NULL, 0, 0, NULL, NULL, 0, 0},
};

const struct lg_scenario scn_chat = {
    .name = "chat",
    .summary = "chat room: --senders M send --rate R lines/s in all, every client checks "
               "every line; --slow K read at --slow-rate B/s; --stalled K never read",
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
    .on_lost = chat_lost,
    .json_step = chat_json,
    .opts = chat_flags,
    .single_process = 1,
    .rate_opt = "rate",
};
