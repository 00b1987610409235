/* async-dns: authoritative A records from a zone file over UDP and TCP on one port, on one
 * thread and one libevent loop (an event on the UDP socket, evconnlistener + bufferevents). */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dnsstats.h"
#include "lib/bevflow.h"
#include "lib/evlisten.h"
#include "dnswire.h"
#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "zone.h"

#define SERVER_NAME "async-dns"
#define BATCH 32             /* datagrams per recvmmsg/sendmmsg */
#define MAX_BATCHES 16       /* per readiness callback, so TCP and the stop are never starved */
#define QUERY_MAX 4096       /* a UDP query longer than this is dropped (counted) */
#define HIGH_WATER (256 * 1024)  /* unsent TCP replies past which a connection stops reading */
#define LOW_WATER (64 * 1024)
#define RCVBUF_BYTES (4 << 20)
#define PORT_TRIES 20        /* --port 0: free TCP ports tried until UDP binds the same one */

static const struct opts_spec spec = {
    SERVER_NAME, "Authoritative DNS (A records) over UDP and TCP: one thread, one libevent loop.",
    9053, OPTS_ZONE,
};

struct server;

struct conn {
    struct bevflow flow;       /* first: the bufferevent's callbacks get the conn (bevflow.h) */
    struct server *srv;
    uint64_t bytes_in, bytes_out;
    struct conn *prev, *next;  /* every live connection, so the stop can close them all */
};

/* Everything here is owned by the loop thread; there is no other thread. */
struct server {
    const struct server_opts *o;
    const struct zone *zone;
    struct event_base *base;
    struct evlisten *listener;
    struct timeval idle_tv;
    int udp_fd;
    struct srv_stats stats;
    struct dnsstats counts;
    struct dnswire_msg *m;                /* decoder scratch */
    uint8_t tcp_out[2 + DNSWIRE_MAX_MSG]; /* one TCP reply with its length prefix */
    uint8_t qbuf[BATCH][QUERY_MAX];
    struct zone_limits udp, tcp;
    uint8_t rbuf[BATCH][DNSWIRE_MAX_MSG]; /* pages beyond --edns-size are never touched */
    struct sockaddr_storage peers[BATCH];
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec in_iov[BATCH], out_iov[BATCH];
    struct conn *conns;
};

/* ---- UDP ---------------------------------------------------------------------------------- */

/* Sends out[0..n); a reply the kernel refuses is counted and skipped, never fatal. */
static void udp_send_batch(struct server *s, unsigned n)
{
    unsigned i = 0;
    while (i < n) {
        int r = sendmmsg(s->udp_fd, s->out + i, n - i, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            s->counts.send_failures++;
            i++;
            continue;
        }
        for (int k = 0; k < r; k++)
            s->stats.bytes_out += s->out[i + (unsigned)k].msg_len;
        i += (unsigned)r;
    }
}

static void udp_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)what;

    for (int b = 0; b < MAX_BATCHES; b++) {
        for (unsigned i = 0; i < BATCH; i++) {
            s->in[i].msg_hdr.msg_namelen = sizeof s->peers[i];
            s->in[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(fd, s->in, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                fprintf(stderr, SERVER_NAME ": recvmmsg: %s\n", strerror(errno));
            return;
        }
        unsigned nout = 0;
        for (int i = 0; i < n; i++) {
            struct mmsghdr *m = &s->in[i];
            int rcode;
            s->stats.bytes_in += m->msg_len;
            s->counts.udp++;
            if (m->msg_hdr.msg_flags & MSG_TRUNC) {
                s->counts.too_long++;
                continue;
            }
            size_t len = zone_respond(s->zone, s->qbuf[i], m->msg_len, &s->udp, s->rbuf[nout],
                                      sizeof s->rbuf[nout], s->m, &rcode);
            dnsstats_count_reply(&s->counts, rcode, s->rbuf[nout], len);
            if (len == 0)
                continue;
            s->out_iov[nout].iov_len = len;
            s->out[nout].msg_hdr.msg_name = &s->peers[i];
            s->out[nout].msg_hdr.msg_namelen = m->msg_hdr.msg_namelen;
            nout++;
        }
        udp_send_batch(s, nout);
        if (n < BATCH)
            return; /* drained (or nearly): level-triggered, so we are called again if not */
    }
}

/* ---- TCP ---------------------------------------------------------------------------------- */

/* Unlinks, closes and frees a connection (bevflow's finish callback). */
static void conn_free(void *arg)
{
    struct conn *c = arg;
    struct server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->bytes_out -= evbuffer_get_length(bufferevent_get_output(c->flow.bev)); /* never sent */
    bufferevent_free(c->flow.bev); /* BEV_OPT_CLOSE_ON_FREE closes the fd */
    srvstats_closed(&s->stats, c->bytes_in, c->bytes_out);
    free(c);
}

/* Answers every whole query in the input; a partial one waits for more bytes. */
static void bev_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct server *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;

    while ((len = evbuffer_get_length(in)) >= 2) {
        const uint8_t *msg;
        size_t mlen, want = len < 2 + DNSWIRE_MAX_MSG ? len : 2 + DNSWIRE_MAX_MSG;
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want);
        size_t used = p ? dnswire_tcp_next(p, want, &msg, &mlen) : 0;
        if (used == 0)
            break;
        int rcode;
        size_t n = zone_respond(s->zone, msg, mlen, &s->tcp, s->tcp_out + 2, DNSWIRE_MAX_MSG, s->m,
                                &rcode);
        dnsstats_count_reply(&s->counts, rcode, s->tcp_out + 2, n);
        s->counts.tcp++;
        c->bytes_in += used;
        evbuffer_drain(in, used);
        if (n > 0) {
            dnswire_tcp_prefix(s->tcp_out, n);
            if (bufferevent_write(bev, s->tcp_out, n + 2) < 0) {
                conn_free(c);
                return;
            }
            c->bytes_out += n + 2;
        }
    }
    bevflow_check_output(&c->flow);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct server *s = arg;
    (void)l;
    (void)sa;
    (void)salen;

    struct conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = c ? bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE)
                                : NULL;
    if (bev == NULL) {
        free(c);
        evutil_closesocket(fd);
        srvstats_refused(&s->stats);
        return;
    }
    c->srv = s;
    c->flow.bev = bev; /* so conn_free can free it even if bevflow_start fails */
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    srvstats_opened(&s->stats);
    if (bevflow_start(&c->flow, bev, bev_read_cb, conn_free, HIGH_WATER, LOW_WATER,
                      s->o->idle_timeout_s > 0 ? &s->idle_tv : NULL) < 0)
        conn_free(c);
}

/* ---- start-up ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct server_opts o;
    struct server *s = NULL;
    struct zone *zone = NULL;
    struct event *udp_ev = NULL, *stop_ev = NULL;
    char err[512];
    int rc = 1, tcp_fd = -1, udp_fd = -1;

    opts_parse_or_exit(&spec, argc, argv, &o);
    zone = o.zone ? zone_load_file(o.zone, err, sizeof err)
                  : zone_parse(zone_sample_text, strlen(zone_sample_text), err, sizeof err);
    if (zone == NULL) {
        fprintf(stderr, SERVER_NAME ": zone %s\n", err);
        return 2;
    }
    int stop_fd = stopsig_install(err, sizeof err);
    if (stop_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        zone_free(zone);
        return 1;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->m = malloc(sizeof *s->m)) == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory\n");
        goto out;
    }
    s->o = &o;
    s->zone = zone;
    s->udp = (struct zone_limits){ZONE_UDP, (size_t)o.edns_size};
    s->tcp = (struct zone_limits){ZONE_TCP, (size_t)o.edns_size};
    s->idle_tv.tv_sec = o.idle_timeout_s;
    for (unsigned i = 0; i < BATCH; i++) {
        s->in_iov[i] = (struct iovec){s->qbuf[i], QUERY_MAX};
        s->in[i].msg_hdr.msg_iov = &s->in_iov[i];
        s->in[i].msg_hdr.msg_iovlen = 1;
        s->in[i].msg_hdr.msg_name = &s->peers[i];
        s->out_iov[i].iov_base = s->rbuf[i];
        s->out[i].msg_hdr.msg_iov = &s->out_iov[i];
        s->out[i].msg_hdr.msg_iovlen = 1;
    }
    if (sock_listen_tcp_udp(o.bind, o.port, PORT_TRIES, &tcp_fd, &udp_fd, err, sizeof err) < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        goto out;
    }
    s->udp_fd = udp_fd;
    /* A burst of queries from many sockets must not overflow the default ~200 KiB queue; best
     * effort (capped by net.core.rmem_max). */
    int rcvbuf = RCVBUF_BYTES;
    setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    s->base = event_base_new();
    if (s->base == NULL) {
        fprintf(stderr, SERVER_NAME ": event_base_new failed\n");
        goto out;
    }
    s->listener = evlisten_new(s->base, tcp_fd, accept_cb, s, SERVER_NAME, o.max_conns,
                               &s->stats);
    udp_ev = event_new(s->base, udp_fd, EV_READ | EV_PERSIST, udp_cb, s);
    stop_ev = evlisten_stop_event(s->base, stop_fd);
    if (s->listener == NULL || udp_ev == NULL || stop_ev == NULL ||
        event_add(udp_ev, NULL) < 0) {
        fprintf(stderr, SERVER_NAME ": libevent set-up failed\n");
        goto out;
    }

    report_emit(stdout, report_listening(SERVER_NAME, "async", o.bind, sock_local_port(tcp_fd),
                                         json_pack("{s:s, s:s, s:I, s:I}", "transport",
                                                   "udp+tcp", "zone",
                                                   o.zone ? o.zone : "(sample)", "zone_names",
                                                   (json_int_t)zone_names(zone), "zone_records",
                                                   (json_int_t)zone_records(zone))));
    event_base_dispatch(s->base);

    evlisten_free(s->listener);
    s->listener = NULL;
    while (s->conns)
        conn_free(s->conns);
    report_emit(stdout, report_stopped(SERVER_NAME, "async", &s->stats, dnsstats_json(&s->counts)));
    rc = 0;
out:
    if (s)
        evlisten_free(s->listener);
    if (udp_ev)
        event_free(udp_ev);
    if (stop_ev)
        event_free(stop_ev);
    if (s && s->base)
        event_base_free(s->base);
    libevent_global_shutdown();
    if (tcp_fd >= 0)
        close(tcp_fd); /* the listener was made without LEV_OPT_CLOSE_ON_FREE */
    if (udp_fd >= 0)
        close(udp_fd);
    close(stop_fd);
    if (s)
        free(s->m);
    free(s);
    zone_free(zone);
    return rc;
}
