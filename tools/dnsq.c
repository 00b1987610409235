/* dnsq: a DNS client that resolves every name at once, on one libevent loop (default) or with
 * one blocking thread per name (--model threaded), so a lab can compare the two models. Sends
 * EDNS(0) like dig; falls back to TCP on TC; TC over TCP is an error. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dnswire.h"
#include "mono.h"
#include "opts.h"
#include "sock.h"

#define PROG "dnsq"
#define MAX_ADDRS 64
#define THREAD_STACK (256 * 1024) /* --model threaded: enough, since buffers are on the heap */

enum model { MODEL_ASYNC, MODEL_THREADED };

struct config {
    const char *server;            /* "ADDR:PORT", "[V6]:PORT" or "ADDR" */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    long timeout_ms;               /* per attempt */
    long retries;                  /* attempts beyond the first, per transport */
    int tcp;                       /* TCP from the start */
    long edns;                     /* UDP payload size in our OPT; 0: no OPT */
    int json;
    int quiet;                     /* no per-name summary on stderr */
    enum model model;
    const char *file;              /* names one per line ("-": stdin), besides argv */
};

enum qstate { Q_UDP, Q_TCP, Q_DONE };

/* Answers of the threaded and async paths to handle_reply. */
enum reply_verdict { REPLY_IGNORE, REPLY_DONE, REPLY_TRUNCATED };

struct app;

/* One name being resolved. The async path uses the event fields, the threaded one tid. */
struct query {
    const char *text;
    struct dnswire_name name;
    int name_ok;
    uint16_t id;
    enum qstate state;
    int tries;                 /* attempts made on the current transport */
    int total_tries;
    int used_tcp, truncated_udp;
    uint64_t ignored;          /* replies that did not match (wrong id, name or source) */
    int rcode;                 /* -1: no answer; extended ones included (BADVERS = 16) */
    uint16_t flags;            /* header flags of the answer taken */
    long server_edns;          /* UDP payload size in the answer's OPT; -1: no OPT */
    char error[128];
    size_t naddr;
    uint8_t addrs[MAX_ADDRS][4];
    uint32_t ttls[MAX_ADDRS];
    uint64_t start_ns, end_ns;
    /* async */
    struct app *app;
    int fd;
    struct event *rev, *timer;
    struct bufferevent *bev;
    /* threaded */
    pthread_t tid;
    int started;
};

struct app {
    const struct config *cfg;
    struct event_base *base;
    struct dnswire_msg *m;
    size_t pending;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " PROG " [OPTIONS] NAME...\n"
            "Resolves every NAME (A records) concurrently and prints each answer, like\n"
            "dig +short with the name in front: 'NAME ADDR' per address, or 'NAME STATUS'.\n\n"
            "Options:\n"
            "  --server ADDR:PORT   server (default 127.0.0.1:9053)\n"
            "  --timeout MS         per attempt (default 1000)\n"
            "  --retries N          attempts after the first, per transport (default 2)\n"
            "  --tcp                TCP from the start (UDP falls back to TCP on TC anyway)\n"
            "  --edns SIZE          EDNS(0) UDP payload size to offer, 512..65535 (default\n"
            "                       1232, as dig); 0 sends no OPT (512-byte UDP answers)\n"
            "  -q, --quiet          no summary per name on stderr (rcode, flags, TC, TCP retry)\n"
            "  --json               one JSON object on stdout instead of lines\n"
            "  --model MODEL        async (default: one libevent loop) or threaded (one blocking\n"
            "                       thread per name)\n"
            "  --file FILE          also resolve the names in FILE, one a line ('-': stdin)\n"
            "  -h, --help           this help\n\n"
            "Exit status: 0 if every name got NOERROR, 1 if any did not (NXDOMAIN, another\n"
            "rcode, timeout, error, TC set over TCP), 2 on bad usage.\n");
}

static int parse_server(const char *s, struct config *cfg)
{
    char host[128];
    const char *port = "9053";
    struct addrinfo hints = {0}, *res = NULL;

    if (strlen(s) >= sizeof host)
        return -1;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL)
            return -1;
        snprintf(host, sizeof host, "%.*s", (int)(end - s - 1), s + 1);
        if (end[1] == ':')
            port = end + 2;
        else if (end[1] != '\0')
            return -1;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':') == NULL) {
            snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
            port = colon + 1;
        } else {
            snprintf(host, sizeof host, "%s", s);
        }
    }
    long p;
    if (opts_parse_long(port, 1, 65535, &p) < 0)
        return -1;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    memcpy(&cfg->addr, res->ai_addr, res->ai_addrlen);
    cfg->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int same_addr(const struct sockaddr_storage *a, socklen_t alen,
                     const struct sockaddr_storage *b, socklen_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static uint16_t random_id(void)
{
    uint16_t id;
    if (getrandom(&id, sizeof id, 0) != sizeof id)
        id = (uint16_t)(mono_now_ns() ^ (uint64_t)getpid());
    return id;
}

static void finish(struct query *q, int rcode, const char *error)
{
    q->state = Q_DONE;
    q->rcode = rcode;
    if (error)
        snprintf(q->error, sizeof q->error, "%s", error);
    q->end_ns = mono_now_ns();
}

/* Judges one message received for q from (src, srclen). A reply counts only if its id, its
 * question and its source are those of the query. */
static enum reply_verdict handle_reply(struct query *q, const struct config *cfg,
                                       const uint8_t *buf, size_t len,
                                       const struct sockaddr_storage *src, socklen_t srclen,
                                       struct dnswire_msg *m)
{
    char err[128];
    struct dnswire_header h;

    if (src && !same_addr(src, srclen, &cfg->addr, cfg->addrlen))
        goto ignore;
    if (dnswire_decode_header(buf, len, &h) < 0 || h.id != q->id || !(h.flags & DNSWIRE_F_QR))
        goto ignore;
    if ((h.flags & DNSWIRE_F_TC) && q->state == Q_TCP) {
        /* Nothing bigger to retry with: the server could not fit its answer in 65,535 bytes,
         * and whatever it did send is not the whole answer. */
        q->flags = h.flags;
        finish(q, -1, "TC set over TCP: the answer does not fit in a DNS message");
        return REPLY_DONE;
    }
    int st = dnswire_decode(buf, len, m, err, sizeof err);
    if (st != DNSWIRE_OK) {
        /* A truncated reply may be cut anywhere; the header is enough to go to TCP. */
        if ((h.flags & DNSWIRE_F_TC) && q->state == Q_UDP)
            return REPLY_TRUNCATED;
        goto ignore;
    }
    q->flags = h.flags;
    q->server_edns = m->edns.count > 0 ? m->edns.udp_size : -1;
    if (m->nq == 0 && dnswire_rcode(m) != DNSWIRE_RC_NOERROR) {
        finish(q, dnswire_rcode(m), NULL); /* FORMERR and the like may omit it */
        return REPLY_DONE;
    }
    if (m->nq != 1 || !dnswire_name_equal(&m->q[0].name, &q->name) ||
        m->q[0].qtype != DNSWIRE_T_A)
        goto ignore;
    if ((h.flags & DNSWIRE_F_TC) && q->state == Q_UDP)
        return REPLY_TRUNCATED;
    q->naddr = 0;
    for (size_t i = 0; i < m->nan && q->naddr < MAX_ADDRS; i++) {
        const struct dnswire_rr *rr = &m->an[i];
        if (rr->type != DNSWIRE_T_A || rr->rclass != DNSWIRE_C_IN || rr->rdlen != 4)
            continue;
        memcpy(q->addrs[q->naddr], buf + rr->rdata_off, 4);
        q->ttls[q->naddr++] = rr->ttl;
    }
    finish(q, dnswire_rcode(m), NULL);
    return REPLY_DONE;
ignore:
    q->ignored++;
    return REPLY_IGNORE;
}

/* The query message for q's current attempt (new random id each time), with an OPT unless
 * --edns 0. Returns its length. */
static int build_query(struct query *q, const struct config *cfg, uint8_t *buf, size_t cap)
{
    q->id = random_id();
    q->tries++;
    q->total_tries++;
    int len = dnswire_encode_query(buf, cap, q->id, &q->name, DNSWIRE_T_A, 1);
    if (len > 0 && cfg->edns > 0)
        len = dnswire_append_opt(buf, cap, (size_t)len, (uint16_t)cfg->edns, 0, 0);
    return len;
}

/* ---- async: one libevent loop --------------------------------------------------------- */

static void async_start_udp(struct query *q);
static void async_start_tcp(struct query *q);

static void async_release(struct query *q)
{
    if (q->rev) {
        event_free(q->rev);
        q->rev = NULL;
    }
    if (q->timer)
        event_del(q->timer);
    if (q->fd >= 0) {
        close(q->fd);
        q->fd = -1;
    }
    if (q->bev) {
        bufferevent_free(q->bev);
        q->bev = NULL;
    }
}

static void async_done(struct query *q)
{
    async_release(q);
    if (q->timer) {
        event_free(q->timer);
        q->timer = NULL;
    }
    q->app->pending--;
}

/* The current attempt failed (timeout or error): another, TCP after UDP, or give up. */
static void async_attempt_failed(struct query *q, const char *why)
{
    const struct config *cfg = q->app->cfg;
    async_release(q);
    if (q->tries <= cfg->retries) {
        if (q->state == Q_UDP)
            async_start_udp(q);
        else
            async_start_tcp(q);
        return;
    }
    finish(q, -1, why);
    async_done(q);
}

static void async_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_attempt_failed(arg, "timed out");
}

static void async_udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct query *q = arg;
    uint8_t buf[DNSWIRE_MAX_MSG];
    (void)what;

    for (;;) {
        struct sockaddr_storage src;
        socklen_t srclen = sizeof src;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&src, &srclen);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            async_attempt_failed(q, strerror(errno)); /* ECONNREFUSED: nobody on the port */
            return;
        }
        switch (handle_reply(q, q->app->cfg, buf, (size_t)n, &src, srclen, q->app->m)) {
        case REPLY_IGNORE:
            continue;
        case REPLY_DONE:
            async_done(q);
            return;
        case REPLY_TRUNCATED:
            q->truncated_udp = 1;
            async_release(q);
            q->state = Q_TCP;
            q->tries = 0;
            async_start_tcp(q);
            return;
        }
    }
}

static struct timeval timeout_tv(const struct config *cfg)
{
    struct timeval tv = {cfg->timeout_ms / 1000, (cfg->timeout_ms % 1000) * 1000};
    return tv;
}

static void async_start_udp(struct query *q)
{
    const struct config *cfg = q->app->cfg;
    uint8_t buf[600];
    struct timeval tv = timeout_tv(cfg);

    q->state = Q_UDP;
    int len = build_query(q, cfg, buf, sizeof buf);
    /* A socket per query, connected: a fresh source port per name, and the kernel reports an
     * ICMP "port unreachable" as ECONNREFUSED at once. The source is still checked. */
    q->fd = socket(cfg->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&cfg->addr, cfg->addrlen) < 0) {
        finish(q, -1, strerror(errno));
        async_done(q);
        return;
    }
    q->rev = event_new(q->app->base, q->fd, EV_READ | EV_PERSIST, async_udp_read_cb, q);
    if (q->rev == NULL || event_add(q->rev, NULL) < 0) {
        finish(q, -1, "libevent: event_new failed");
        async_done(q);
        return;
    }
    event_add(q->timer, &tv);
    if (send(q->fd, buf, (size_t)len, 0) < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        async_attempt_failed(q, strerror(errno));
    /* EAGAIN: as good as lost; the timer retries. */
}

static void async_tcp_read_cb(struct bufferevent *bev, void *arg)
{
    struct query *q = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;

    while ((len = evbuffer_get_length(in)) >= 2) {
        const uint8_t *msg;
        size_t mlen, want = len < 2 + DNSWIRE_MAX_MSG ? len : 2 + DNSWIRE_MAX_MSG;
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want);
        size_t used = p ? dnswire_tcp_next(p, want, &msg, &mlen) : 0;
        if (used == 0)
            return;
        enum reply_verdict v = handle_reply(q, q->app->cfg, msg, mlen, NULL, 0, q->app->m);
        evbuffer_drain(in, used);
        if (v == REPLY_DONE) {
            async_done(q);
            return;
        }
    }
}

static void async_tcp_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct query *q = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_TIMEOUT)
        async_attempt_failed(q, "timed out");
    else if (what & BEV_EVENT_EOF)
        async_attempt_failed(q, "connection closed before the answer");
    else
        async_attempt_failed(q, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void async_start_tcp(struct query *q)
{
    const struct config *cfg = q->app->cfg;
    uint8_t buf[2 + 600];
    struct timeval tv = timeout_tv(cfg);

    q->state = Q_TCP;
    q->used_tcp = 1;
    int len = build_query(q, cfg, buf + 2, sizeof buf - 2);
    dnswire_tcp_prefix(buf, (size_t)len);
    q->bev = bufferevent_socket_new(q->app->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (q->bev == NULL) {
        finish(q, -1, "libevent: bufferevent_socket_new failed");
        async_done(q);
        return;
    }
    bufferevent_setcb(q->bev, async_tcp_read_cb, NULL, async_tcp_event_cb, q);
    /* The attempt's whole budget, connect included, is the timer; the bufferevent's own read
     * timeout would restart at each byte. */
    event_add(q->timer, &tv);
    bufferevent_enable(q->bev, EV_READ);
    if (bufferevent_write(q->bev, buf, (size_t)len + 2) < 0 ||
        bufferevent_socket_connect(q->bev, (struct sockaddr *)&cfg->addr, (int)cfg->addrlen) <
            0)
        async_attempt_failed(q, "connect failed");
}

static int run_async(const struct config *cfg, struct query *qs, size_t n)
{
    struct app app = {cfg, event_base_new(), malloc(sizeof(struct dnswire_msg)), 0};
    if (app.base == NULL || app.m == NULL) {
        fprintf(stderr, PROG ": libevent or memory set-up failed\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct query *q = &qs[i];
        if (!q->name_ok)
            continue;
        q->app = &app;
        q->fd = -1;
        q->timer = evtimer_new(app.base, async_timeout_cb, q);
        if (q->timer == NULL) {
            finish(q, -1, "libevent: evtimer_new failed");
            continue;
        }
        app.pending++;
        q->start_ns = mono_now_ns();
        if (cfg->tcp)
            async_start_tcp(q);
        else
            async_start_udp(q);
    }
    if (app.pending > 0)
        event_base_dispatch(app.base);
    event_base_free(app.base);
    free(app.m);
    return 0;
}

/* ---- threaded: one blocking thread per name ----------------------------------------- */

static int remaining_ms(uint64_t deadline_ns)
{
    uint64_t now = mono_now_ns();
    return now >= deadline_ns ? 0 : (int)((deadline_ns - now) / 1000000) + 1;
}

/* One UDP attempt. 1 done, 0 try again, 2 truncated (go to TCP). */
static int blocking_udp_attempt(struct query *q, const struct config *cfg, uint8_t *buf,
                                struct dnswire_msg *m)
{
    uint8_t qb[600];
    int len = build_query(q, cfg, qb, sizeof qb), rc = 0;
    uint64_t deadline = mono_now_ns() + (uint64_t)cfg->timeout_ms * 1000000;
    int fd = socket(cfg->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || connect(fd, (struct sockaddr *)&cfg->addr, cfg->addrlen) < 0 ||
        send(fd, qb, (size_t)len, 0) < 0) {
        snprintf(q->error, sizeof q->error, "%s", strerror(errno));
        goto out;
    }
    snprintf(q->error, sizeof q->error, "timed out");
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, remaining_ms(deadline));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        struct sockaddr_storage src;
        socklen_t srclen = sizeof src;
        ssize_t n = recvfrom(fd, buf, DNSWIRE_MAX_MSG, 0, (struct sockaddr *)&src, &srclen);
        if (n < 0) {
            snprintf(q->error, sizeof q->error, "%s", strerror(errno));
            break;
        }
        enum reply_verdict v = handle_reply(q, cfg, buf, (size_t)n, &src, srclen, m);
        if (v == REPLY_DONE) {
            rc = 1;
            break;
        }
        if (v == REPLY_TRUNCATED) {
            q->truncated_udp = 1;
            rc = 2;
            break;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* One TCP attempt. 1 done, 0 try again. */
static int blocking_tcp_attempt(struct query *q, const struct config *cfg, uint8_t *buf,
                                struct dnswire_msg *m)
{
    uint8_t qb[2 + 600];
    int len = build_query(q, cfg, qb + 2, sizeof qb - 2), rc = 0;
    size_t have = 0;
    uint64_t deadline = mono_now_ns() + (uint64_t)cfg->timeout_ms * 1000000;
    struct timeval tv = {cfg->timeout_ms / 1000, (cfg->timeout_ms % 1000) * 1000};
    int fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    q->used_tcp = 1;
    dnswire_tcp_prefix(qb, (size_t)len);
    /* Linux applies SO_SNDTIMEO to connect() too: the attempt cannot hang there. */
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&cfg->addr, cfg->addrlen) < 0 ||
        sock_send_all(fd, qb, (size_t)len + 2) < 0) {
        snprintf(q->error, sizeof q->error, "%s", strerror(errno));
        goto out;
    }
    snprintf(q->error, sizeof q->error, "timed out");
    for (;;) {
        const uint8_t *msg;
        size_t mlen, used;
        while ((used = dnswire_tcp_next(buf, have, &msg, &mlen)) > 0) {
            if (handle_reply(q, cfg, msg, mlen, NULL, 0, m) == REPLY_DONE) {
                rc = 1;
                goto out;
            }
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, remaining_ms(deadline));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        ssize_t n = read(fd, buf + have, 2 + DNSWIRE_MAX_MSG - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(q->error, sizeof q->error, "%s",
                     n == 0 ? "connection closed before the answer" : strerror(errno));
            break;
        }
        have += (size_t)n;
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static void *blocking_resolve(void *arg)
{
    struct query *q = arg;
    const struct config *cfg = q->app->cfg;
    uint8_t *buf = malloc(2 + DNSWIRE_MAX_MSG);
    struct dnswire_msg *m = malloc(sizeof *m);
    int rc = 0;

    if (buf == NULL || m == NULL) {
        finish(q, -1, "out of memory");
        goto out;
    }
    q->start_ns = mono_now_ns();
    if (!cfg->tcp) {
        q->state = Q_UDP;
        while (rc == 0 && q->tries <= cfg->retries)
            rc = blocking_udp_attempt(q, cfg, buf, m);
    }
    if (cfg->tcp || rc == 2) {
        q->state = Q_TCP;
        q->tries = 0;
        rc = 0;
        while (rc == 0 && q->tries <= cfg->retries)
            rc = blocking_tcp_attempt(q, cfg, buf, m);
    }
    if (rc != 1)
        finish(q, -1, NULL); /* q->error says why */
out:
    free(buf);
    free(m);
    return NULL;
}

static int run_threaded(const struct config *cfg, struct query *qs, size_t n)
{
    struct app app = {cfg, NULL, NULL, 0};
    pthread_attr_t attr;
    int failed = 0;

    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    for (size_t i = 0; i < n; i++) {
        struct query *q = &qs[i];
        if (!q->name_ok)
            continue;
        q->app = &app;
        int rc = pthread_create(&q->tid, &attr, blocking_resolve, q);
        if (rc != 0) {
            finish(q, -1, NULL);
            snprintf(q->error, sizeof q->error, "pthread_create: %s", strerror(rc));
            failed = 1;
            continue;
        }
        q->started = 1;
    }
    pthread_attr_destroy(&attr);
    for (size_t i = 0; i < n; i++)
        if (qs[i].started)
            pthread_join(qs[i].tid, NULL);
    return failed ? -1 : 0;
}

/* ---- output ----------------------------------------------------------------------------- */

/* Not thread-safe for rcodes without a name (a static buffer): output is single-threaded. */
static const char *rcode_name(int rcode)
{
    static const char *const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                        "NOTIMP", "REFUSED"};
    static char other[24];
    if (rcode < 0)
        return "ERROR";
    if (rcode < 6)
        return names[rcode];
    if (rcode == DNSWIRE_RC_BADVERS)
        return "BADVERS";
    snprintf(other, sizeof other, "RCODE%d", rcode);
    return other;
}

/* The header flags dig shows, in its order. */
static const struct {
    uint16_t bit;
    const char *name;
} flag_names[] = {{DNSWIRE_F_QR, "qr"}, {DNSWIRE_F_AA, "aa"}, {DNSWIRE_F_TC, "tc"},
                  {DNSWIRE_F_RD, "rd"}, {DNSWIRE_F_RA, "ra"}};
#define NFLAG_NAMES (sizeof flag_names / sizeof flag_names[0])

/* One line per name on stderr, for people: what came back and how it was got. */
static void print_summary(const struct config *cfg, const struct query *q)
{
    char flags[32] = "", edns[32] = "no edns";
    size_t fl = 0;
    for (size_t i = 0; i < NFLAG_NAMES; i++)
        if (q->flags & flag_names[i].bit)
            fl += (size_t)snprintf(flags + fl, sizeof flags - fl, "%s%s", fl ? " " : "",
                                   flag_names[i].name);
    if (cfg->edns > 0)
        snprintf(edns, sizeof edns, "edns %ld", cfg->edns);
    fprintf(stderr, ";; %s: %s, flags: %s; %s (%s)%s, %d %s", q->text, rcode_name(q->rcode),
            q->total_tries > 0 ? flags : "-", cfg->tcp ? "tcp" : "udp", edns,
            q->truncated_udp ? ", truncated (tc): retried over tcp" : "", q->total_tries,
            q->total_tries == 1 ? "try" : "tries");
    if (q->server_edns >= 0)
        fprintf(stderr, "; server edns %ld", q->server_edns);
    fputc('\n', stderr);
}

static void print_lines(const struct config *cfg, const struct query *qs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct query *q = &qs[i];
        char addr[16];
        if (!cfg->quiet && q->name_ok)
            print_summary(cfg, q);
        if (q->rcode == DNSWIRE_RC_NOERROR && q->naddr == 0)
            printf("%s NODATA\n", q->text);
        for (size_t k = 0; q->rcode == DNSWIRE_RC_NOERROR && k < q->naddr; k++) {
            snprintf(addr, sizeof addr, "%u.%u.%u.%u", q->addrs[k][0], q->addrs[k][1],
                     q->addrs[k][2], q->addrs[k][3]);
            printf("%s %s\n", q->text, addr);
        }
        if (q->rcode > 0)
            printf("%s %s\n", q->text, rcode_name(q->rcode));
        if (q->rcode < 0) {
            printf("%s ERROR\n", q->text);
            fprintf(stderr, PROG ": %s: %s (%d tries)\n", q->text, q->error, q->total_tries);
        }
    }
}

static json_t *results_json(const struct config *cfg, const struct query *qs, size_t n,
                            double elapsed_ms)
{
    json_t *arr = json_array();
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        const struct query *q = &qs[i];
        json_t *addrs = json_array(), *ttls = json_array();
        char addr[16];
        for (size_t k = 0; k < q->naddr; k++) {
            snprintf(addr, sizeof addr, "%u.%u.%u.%u", q->addrs[k][0], q->addrs[k][1],
                     q->addrs[k][2], q->addrs[k][3]);
            json_array_append_new(addrs, json_string(addr));
            json_array_append_new(ttls, json_integer(q->ttls[k]));
        }
        ok += q->rcode == DNSWIRE_RC_NOERROR;
        json_t *flags = json_array();
        for (size_t k = 0; k < NFLAG_NAMES; k++)
            if (q->flags & flag_names[k].bit)
                json_array_append_new(flags, json_string(flag_names[k].name));
        json_t *r = json_pack("{s:s, s:s, s:i, s:o, s:o, s:o, s:i, s:b, s:b, s:f, s:I}", "name",
                              q->text, "status", rcode_name(q->rcode), "rcode", q->rcode,
                              "flags", flags, "addresses", addrs, "ttls", ttls,
                              "tries", q->total_tries, "tcp", q->used_tcp, "truncated_udp",
                              q->truncated_udp, "latency_ms",
                              q->end_ns > q->start_ns ? (double)(q->end_ns - q->start_ns) / 1e6
                                                      : 0.0,
                              "ignored_replies", (json_int_t)q->ignored);
        if (q->rcode < 0)
            json_object_set_new(r, "error", json_string(q->error));
        json_object_set_new(r, "server_edns", q->server_edns >= 0
                                                   ? json_integer((json_int_t)q->server_edns)
                                                   : json_null());
        json_array_append_new(arr, r);
    }
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:o}", "server",
                     cfg->server, "model", cfg->model == MODEL_ASYNC ? "async" : "threaded",
                     "transport", cfg->tcp ? "tcp" : "udp", "edns", (json_int_t)cfg->edns,
                     "names", (json_int_t)n, "ok", (json_int_t)ok,
                     "failed", (json_int_t)(n - ok), "timeout_ms", (json_int_t)cfg->timeout_ms,
                     "elapsed_ms", elapsed_ms, "results", arr);
}

/* ---- names and main ------------------------------------------------------------------- */

/* Appends the names of a file (one a line, blanks and # comments skipped) to *names. */
static int read_names(const char *path, char ***names, size_t *n, size_t *cap)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    char *line = NULL;
    size_t lcap = 0;
    if (f == NULL) {
        fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (getline(&line, &lcap, f) >= 0) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *tok = strtok(line, " \t\r\n");
        if (tok == NULL)
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            char **nn = realloc(*names, nc * sizeof **names);
            if (nn == NULL)
                break;
            *names = nn;
            *cap = nc;
        }
        (*names)[(*n)++] = strdup(tok);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    return 0;
}

static void bad_usage(const char *msg, const char *arg)
{
    fprintf(stderr, PROG ": %s%s%s\nTry '" PROG " --help'.\n", msg, arg ? " " : "",
            arg ? arg : "");
    exit(2);
}

int main(int argc, char **argv)
{
    struct config cfg = {
        .server = "127.0.0.1:9053", .timeout_ms = 1000, .retries = 2, .tcp = 0,
        .edns = DNSWIRE_EDNS_SIZE, .json = 0, .quiet = 0, .model = MODEL_ASYNC, .file = NULL,
    };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'}, {"timeout", required_argument, NULL, 't'},
        {"retries", required_argument, NULL, 'r'}, {"tcp", no_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'}, {"model", required_argument, NULL, 'm'},
        {"file", required_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'},
        {"edns", required_argument, NULL, 'e'}, {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    int c;

    signal(SIGPIPE, SIG_IGN);
    /* A socket per name: 1,000 names need more than the usual soft limit of 1,024 fds. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hq", longopts, NULL)) != -1) {
        switch (c) {
        case 's': cfg.server = optarg; break;
        case 't':
            if (opts_parse_long(optarg, 1, 600000, &cfg.timeout_ms) < 0)
                bad_usage("bad --timeout (want 1..600000 ms):", optarg);
            break;
        case 'r':
            if (opts_parse_long(optarg, 0, 100, &cfg.retries) < 0)
                bad_usage("bad --retries (want 0..100):", optarg);
            break;
        case 'T': cfg.tcp = 1; break;
        case 'e':
            if (opts_parse_long(optarg, 0, 65535, &cfg.edns) < 0 ||
                (cfg.edns > 0 && cfg.edns < DNSWIRE_UDP_LIMIT))
                bad_usage("bad --edns (want 0, or 512..65535 bytes):", optarg);
            break;
        case 'q': cfg.quiet = 1; break;
        case 'j': cfg.json = 1; break;
        case 'm':
            if (strcmp(optarg, "async") == 0)
                cfg.model = MODEL_ASYNC;
            else if (strcmp(optarg, "threaded") == 0)
                cfg.model = MODEL_THREADED;
            else
                bad_usage("bad --model (want async or threaded):", optarg);
            break;
        case 'f': cfg.file = optarg; break;
        case 'h': usage(stdout); return 0;
        case ':': bad_usage("option needs a value:", argv[optind - 1]); break;
        default: bad_usage("unknown option:", argv[optind - 1]); break;
        }
    }
    if (parse_server(cfg.server, &cfg) < 0)
        bad_usage("bad --server (want a numeric ADDR:PORT):", cfg.server);

    char **names = NULL;
    size_t n = 0, cap = 0;
    for (int i = optind; i < argc; i++) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = realloc(names, cap * sizeof *names);
            if (names == NULL)
                bad_usage("out of memory", NULL);
        }
        names[n++] = strdup(argv[i]);
    }
    if (cfg.file && read_names(cfg.file, &names, &n, &cap) < 0)
        return 2;
    if (n == 0)
        bad_usage("no NAME given", NULL);

    struct query *qs = calloc(n, sizeof *qs);
    if (qs == NULL)
        bad_usage("out of memory", NULL);
    for (size_t i = 0; i < n; i++) {
        qs[i].text = names[i];
        qs[i].rcode = -1;
        qs[i].server_edns = -1;
        qs[i].fd = -1;
        qs[i].name_ok = dnswire_name_from_text(names[i], &qs[i].name) == 0;
        if (!qs[i].name_ok)
            snprintf(qs[i].error, sizeof qs[i].error, "not a valid DNS name");
    }

    uint64_t t0 = mono_now_ns();
    if (cfg.model == MODEL_ASYNC)
        run_async(&cfg, qs, n);
    else
        run_threaded(&cfg, qs, n);
    double elapsed_ms = (double)(mono_now_ns() - t0) / 1e6;

    int all_ok = 1;
    for (size_t i = 0; i < n; i++)
        all_ok &= qs[i].rcode == DNSWIRE_RC_NOERROR;
    if (cfg.json) {
        json_t *out = results_json(&cfg, qs, n, elapsed_ms);
        json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9));
        fputc('\n', stdout);
        json_decref(out);
        for (size_t i = 0; i < n; i++)
            if (qs[i].rcode < 0)
                fprintf(stderr, PROG ": %s: %s (%d tries)\n", qs[i].text, qs[i].error,
                        qs[i].total_tries);
    } else {
        print_lines(&cfg, qs, n);
    }
    fflush(stdout);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(qs);
    libevent_global_shutdown();
    return all_ok ? 0 : 1;
}
