/* The async server skeleton (asrv.h): begin, open, run (loops, listener, connections,
 * datagram batches), listening, stop, stopped. */
#include "asrv.h"

#include <errno.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "evlisten.h"

#define BATCH ASRV_DGRAM_BATCH
#define MAX_BATCHES 16  /* per readiness callback, so TCP and the stop are never starved */

/* One loop's datagram buffers: BATCH of dgram_max in, BATCH of reply_max out (or in place). */
struct dgram_batch {
    void *state;                        /* dgram->worker_new's */
    uint8_t *inbuf, *outbuf;
    struct sockaddr_storage peers[BATCH];
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec in_iov[BATCH], out_iov[BATCH];
};

/* One event loop and everything on it; owned by its thread (loop 0: main's). */
struct asrv_loop {
    struct event_base *base;
    struct evlisten *listener;
    int listen_fd;                      /* loop 0: the serve's; others their own */
    struct event *stop_ev, *udp_ev;
    struct dgram_batch *udp;
    struct list_node conns;             /* asrv_conn.link */
    unsigned long pauses;               /* evlisten's, read before it is freed */
    pthread_t tid;
};

/* The process's one skeleton. Written by asrv_run before any loop runs; `stats` is atomic
 * (loops share it), `res.dgram` belongs to the one UDP loop until the loops ended. */
static struct {
    const struct asrv_config *cfg;
    struct serve sv;
    struct srv_stats stats;
    struct timeval idle_tv;
    struct asrv_result res;
    struct asrv_loop *loops;
    long nloops;
} skel;

struct event_base *asrv_base(const struct asrv_conn *c)
{
    return c->loop->base;
}

const struct timeval *asrv_idle(const struct asrv_conn *c)
{
    (void)c;
    return skel.sv.o->idle_timeout_s > 0 ? &skel.idle_tv : NULL;
}

int asrv_stop_fd(void)
{
    return skel.sv.stop_fd;
}

void asrv_conn_close(struct asrv_conn *c)
{
    list_remove(&c->link);
    if (skel.cfg->conn_free)
        skel.cfg->conn_free(c, skel.cfg->arg);
    if (c->flow.bev) {
        /* Queued but unsent bytes never went out. */
        c->bytes_out -= evbuffer_get_length(bufferevent_get_output(c->flow.bev));
        bevflow_free(&c->flow); /* BEV_OPT_CLOSE_ON_FREE closes the fd */
    } else if (c->fd >= 0) {
        close(c->fd);
    }
    srvstats_closed(&skel.stats, c->bytes_in, c->bytes_out);
    free(c);
}

/* bevflow's finish callback. */
static void bev_finish(void *conn)
{
    asrv_conn_close(conn);
}

int asrv_conn_bev(struct asrv_conn *c, bufferevent_data_cb read_cb)
{
    struct bufferevent *bev = bufferevent_socket_new(c->loop->base, c->fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return -1;
    c->flow.bev = bev; /* owned from here: asrv_conn_close frees it even if the start fails */
    return bevflow_start(&c->flow, bev, read_cb, bev_finish, BEVFLOW_HIGH_WATER,
                         BEVFLOW_LOW_WATER, asrv_idle(c));
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct asrv_loop *l = arg;
    const struct asrv_config *cfg = skel.cfg;
    (void)listener;

    struct asrv_conn *c = calloc(1, cfg->conn_size);
    if (c == NULL) {
        evutil_closesocket(fd);
        srvstats_refused(&skel.stats);
        return;
    }
    c->loop = l;
    c->fd = fd;
    if (salen > 0 && (size_t)salen <= sizeof c->peer) {
        memcpy(&c->peer, sa, (size_t)salen);
        c->peer_len = (socklen_t)salen;
    }
    list_push(&l->conns, &c->link);
    srvstats_opened(&skel.stats);
    if (cfg->conn_start(c, cfg->arg) < 0)
        asrv_conn_close(c);
}

/* ---- datagrams ----------------------------------------------------------------------- */

static struct dgram_batch *batch_new(const struct serve_dgram *d)
{
    struct dgram_batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->inbuf = malloc(BATCH * d->dgram_max);
    b->outbuf = d->reply_max ? malloc(BATCH * d->reply_max) : b->inbuf;
    b->state = d->worker_new ? d->worker_new(skel.cfg->arg) : skel.cfg->arg;
    if (b->inbuf == NULL || b->outbuf == NULL || (d->worker_new && b->state == NULL)) {
        if (d->worker_new && b->state && d->worker_free)
            d->worker_free(b->state, skel.cfg->arg);
        if (b->outbuf != b->inbuf)
            free(b->outbuf);
        free(b->inbuf);
        free(b);
        return NULL;
    }
    for (unsigned i = 0; i < BATCH; i++) {
        b->in_iov[i].iov_base = b->inbuf + i * d->dgram_max;
        b->in[i].msg_hdr.msg_iov = &b->in_iov[i];
        b->in[i].msg_hdr.msg_iovlen = 1;
        b->in[i].msg_hdr.msg_name = &b->peers[i];
        b->out[i].msg_hdr.msg_iov = &b->out_iov[i];
        b->out[i].msg_hdr.msg_iovlen = 1;
    }
    return b;
}

static void batch_free(struct dgram_batch *b)
{
    const struct serve_dgram *d = skel.cfg->dgram;
    if (b == NULL)
        return;
    if (d->worker_free && b->state)
        d->worker_free(b->state, skel.cfg->arg);
    if (b->outbuf != b->inbuf)
        free(b->outbuf);
    free(b->inbuf);
    free(b);
}

/* Sends out[0..n); a datagram the kernel refuses is counted and skipped. */
static void send_batch(int fd, struct dgram_batch *b, unsigned n)
{
    struct serve_dgram_counts *c = &skel.res.dgram;
    unsigned i = 0;
    while (i < n) {
        int r = sendmmsg(fd, b->out + i, n - i, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN (socket buffer full), ECONNREFUSED (an ICMP from an earlier reply), ...:
             * UDP may lose datagrams anyway, so count it and go on with the next. */
            c->send_failures++;
            i++;
            continue;
        }
        for (int k = 0; k < r; k++)
            atomic_fetch_add_explicit(&skel.stats.bytes_out, b->out[i + (unsigned)k].msg_len,
                                      memory_order_relaxed);
        c->sent += (uint64_t)r;
        i += (unsigned)r;
    }
}

static void udp_cb(evutil_socket_t fd, short what, void *arg)
{
    struct asrv_loop *l = arg;
    struct dgram_batch *b = l->udp;
    const struct serve_dgram *d = skel.cfg->dgram;
    struct serve_dgram_counts *c = &skel.res.dgram;
    (void)what;

    for (int round = 0; round < MAX_BATCHES; round++) {
        for (unsigned i = 0; i < BATCH; i++) {
            b->in_iov[i].iov_len = d->dgram_max;
            b->in[i].msg_hdr.msg_namelen = sizeof b->peers[i];
            b->in[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(fd, b->in, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                serve_log("recvmmsg: %s", strerror(errno));
            return;
        }
        c->batches++;
        unsigned nout = 0;
        for (int i = 0; i < n; i++) {
            struct mmsghdr *m = &b->in[i];
            int truncated = (m->msg_hdr.msg_flags & MSG_TRUNC) != 0;
            c->truncated += (uint64_t)truncated;
            c->received++;
            atomic_fetch_add_explicit(&skel.stats.bytes_in, m->msg_len, memory_order_relaxed);
            uint8_t *buf = b->in_iov[i].iov_base;
            uint8_t *reply = d->reply_max ? b->outbuf + nout * d->reply_max : buf;
            size_t len = d->answer(b->state, buf, m->msg_len, truncated, reply);
            if (len == 0)
                continue;
            b->out_iov[nout] = (struct iovec){reply, len};
            b->out[nout].msg_hdr.msg_name = &b->peers[i];
            b->out[nout].msg_hdr.msg_namelen = m->msg_hdr.msg_namelen;
            nout++;
        }
        send_batch(fd, b, nout);
        if (n < BATCH)
            return; /* drained (or nearly): level-triggered, so we are called again if not */
    }
}

/* ---- loops ---------------------------------------------------------------------------- */

/* Sets up loop l: its base, stop event, listener on listen_fd, the UDP event. 0, or -1. */
static int loop_init(struct asrv_loop *l, int listen_fd, int with_udp)
{
    const struct asrv_config *cfg = skel.cfg;

    list_init(&l->conns);
    l->listen_fd = listen_fd;
    l->base = event_base_new();
    if (l->base == NULL)
        return -1;
    l->stop_ev = evlisten_stop_event(l->base, skel.sv.stop_fd);
    if (l->stop_ev == NULL)
        return -1;
    if (listen_fd >= 0) {
        l->listener = evlisten_new(l->base, listen_fd, accept_cb, l, cfg->name,
                                   skel.sv.o->max_conns, &skel.stats);
        if (l->listener == NULL)
            return -1;
        evlisten_set_batch(l->listener, cfg->accept_batch);
    }
    if (with_udp) {
        l->udp = batch_new(cfg->dgram);
        l->udp_ev = l->udp ? event_new(l->base, skel.sv.udp_fd, EV_READ | EV_PERSIST, udp_cb, l)
                           : NULL;
        if (l->udp_ev == NULL || event_add(l->udp_ev, NULL) < 0)
            return -1;
    }
    return 0;
}

/* Serves until the stop, then: no more accepts, every connection closed. */
static void *loop_run(void *arg)
{
    struct asrv_loop *l = arg;
    event_base_dispatch(l->base);
    l->pauses = evlisten_pauses(l->listener);
    evlisten_free(l->listener);
    l->listener = NULL;
    struct list_node *n;
    while ((n = list_first(&l->conns)) != NULL)
        asrv_conn_close(LIST_ENTRY(n, struct asrv_conn, link));
    return NULL;
}

static void loop_free(struct asrv_loop *l)
{
    evlisten_free(l->listener);
    if (l->udp_ev)
        event_free(l->udp_ev);
    batch_free(l->udp);
    if (l->stop_ev)
        event_free(l->stop_ev);
    if (l->base)
        event_base_free(l->base);
    if (l->listen_fd >= 0 && l->listen_fd != skel.sv.tcp_fd)
        close(l->listen_fd);
}

/* Sets up every loop; loops after the first get listeners of their own. 0, or -1. */
static int loops_init(long n)
{
    const struct asrv_config *cfg = skel.cfg;
    skel.loops = calloc((size_t)n, sizeof *skel.loops);
    if (skel.loops == NULL)
        return -1;
    for (; skel.nloops < n; skel.nloops++) {
        long i = skel.nloops;
        int fd = -1;
        skel.loops[i].listen_fd = -1; /* loop_free's, if the listener below is not made */
        if (cfg->transport != SERVE_UDP)
            fd = i == 0 ? skel.sv.tcp_fd : serve_listen_again(&skel.sv);
        if ((cfg->transport != SERVE_UDP && fd < 0) ||
            loop_init(&skel.loops[i], fd, i == 0 && cfg->transport != SERVE_TCP) < 0) {
            skel.nloops++; /* so it is freed */
            return -1;
        }
    }
    return 0;
}

/* Starts loops 1.. on threads of their own (loop 0 is main's). Returns the loops running. */
static long loops_start(void)
{
    long started = 1;
    for (; started < skel.nloops; started++) {
        int rc = pthread_create(&skel.loops[started].tid, NULL, loop_run, &skel.loops[started]);
        if (rc != 0) {
            serve_log("pthread_create for loop %ld: %s", started, strerror(rc));
            break;
        }
    }
    /* A loop without its thread must not keep its listener: the kernel would go on handing
     * it its share of the SO_REUSEPORT connections, and nothing would accept them. */
    for (long i = started; i < skel.nloops; i++)
        loop_free(&skel.loops[i]);
    skel.nloops = started;
    return started;
}

/* Runs loop 0 until the stop, then waits for the others. */
static void loops_wait(long started)
{
    loop_run(&skel.loops[0]);
    for (long i = 1; i < started; i++)
        pthread_join(skel.loops[i].tid, NULL);
    for (long i = 0; i < skel.nloops; i++) {
        skel.res.accept_pauses += skel.loops[i].pauses;
        /* Before the stopped line: worker_free may add the worker's counters to the totals. */
        batch_free(skel.loops[i].udp);
        skel.loops[i].udp = NULL;
    }
}

static json_t *with_loops(json_t *extra)
{
    if (skel.nloops > 1) {
        if (extra == NULL)
            extra = json_object();
        json_object_set_new(extra, "loops", json_integer(skel.res.loops));
    }
    return extra;
}

int asrv_run(const struct asrv_config *cfg)
{
    const struct server_opts *o = cfg->o;
    int rc = 1;

    skel.cfg = cfg;
    skel.res.sv = &skel.sv;
    skel.idle_tv.tv_sec = o->idle_timeout_s;
    int begun = serve_begin(&skel.sv, cfg->name, "async", o, cfg->transport);
    if (begun >= 0)
        return begun;
    long nloops = o->loops > 1 && cfg->transport == SERVE_TCP ? o->loops : 1;
    if (serve_open(&skel.sv, nloops > 1) < 0)
        goto out;
    if (loops_init(nloops) < 0) {
        serve_log("libevent set-up failed");
        goto out;
    }
    long running = loops_start();
    skel.res.loops = running;
    serve_listening(&skel.sv, with_loops(cfg->listening_extra
                                             ? cfg->listening_extra(&skel.res, cfg->arg)
                                             : NULL));
    loops_wait(running);
    json_t *extra = cfg->stopped_extra ? cfg->stopped_extra(&skel.res, cfg->arg) : NULL;
    if (cfg->transport != SERVE_UDP) {
        if (extra == NULL)
            extra = json_object();
        json_object_set_new(extra, "accept_pauses", json_integer((json_int_t)skel.res.accept_pauses));
    }
    rc = serve_stopped(&skel.sv, &skel.stats, with_loops(extra)) < 0 ? 1 : 0;
out:
    for (long i = 0; i < skel.nloops; i++)
        loop_free(&skel.loops[i]);
    free(skel.loops);
    libevent_global_shutdown();
    serve_end(&skel.sv);
    return rc;
}
