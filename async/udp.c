/* async-udp: UDP uppercase echo on one thread and one libevent loop; datagrams are taken in
 * batches with recvmmsg and answered with sendmmsg. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "upper.h"

#define SERVER_NAME "async-udp"
#define BATCH 32             /* datagrams per recvmmsg/sendmmsg call */
#define MAX_BATCHES 16       /* per readiness callback, so the stop event is never starved */
#define DGRAM_MAX 65536      /* > 65,507, the largest IPv4 UDP payload: nothing is cut */
#define RCVBUF_BYTES (4 << 20)

static const struct opts_spec spec = {
    SERVER_NAME, "UDP uppercase echo: one thread, one libevent loop, recvmmsg/sendmmsg batches.",
    9001, 0,
};

/* Owned by the loop thread; there is no other thread. */
struct server {
    struct event_base *base;
    int fd;
    uint8_t *bufs;                       /* BATCH buffers of DGRAM_MAX bytes */
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage peers[BATCH];
    struct srv_stats stats;              /* bytes only: UDP has no connections */
    uint64_t received, sent, send_failures, truncated, batches;
};

/* Sends msgs[0..n) back; a datagram the kernel refuses is counted and skipped. */
static void send_batch(struct server *s, unsigned n)
{
    unsigned i = 0;
    while (i < n) {
        int r = sendmmsg(s->fd, s->msgs + i, n - i, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN (socket buffer full), ECONNREFUSED (an ICMP from an earlier reply), ...:
             * UDP may lose datagrams anyway, so count it and go on with the next. */
            s->send_failures++;
            i++;
            continue;
        }
        for (int k = 0; k < r; k++)
            atomic_fetch_add_explicit(&s->stats.bytes_out, s->msgs[i + (unsigned)k].msg_len,
                                      memory_order_relaxed);
        s->sent += (uint64_t)r;
        i += (unsigned)r;
    }
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)what;

    for (int b = 0; b < MAX_BATCHES; b++) {
        for (unsigned i = 0; i < BATCH; i++) {
            s->iov[i].iov_len = DGRAM_MAX;
            s->msgs[i].msg_hdr.msg_namelen = sizeof s->peers[i];
            s->msgs[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(fd, s->msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                fprintf(stderr, SERVER_NAME ": recvmmsg: %s\n", strerror(errno));
            return;
        }
        s->batches++;
        for (int i = 0; i < n; i++) {
            struct mmsghdr *m = &s->msgs[i];
            if (m->msg_hdr.msg_flags & MSG_TRUNC)
                s->truncated++;
            atomic_fetch_add_explicit(&s->stats.bytes_in, m->msg_len, memory_order_relaxed);
            upper_inplace(s->iov[i].iov_base, m->msg_len);
            s->iov[i].iov_len = m->msg_len; /* the reply is the datagram as long as it came */
        }
        s->received += (uint64_t)n;
        send_batch(s, (unsigned)n);
        if (n < BATCH)
            return; /* drained (or nearly): level-triggered, so we are called again if not */
    }
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    (void)fd;
    (void)what;
    event_base_loopbreak(s->base);
}

int main(int argc, char **argv)
{
    struct server_opts o;
    struct server *s = NULL;
    struct event *read_ev = NULL, *stop_ev = NULL;
    char err[256];
    int rc = 1, fd = -1;

    opts_parse_or_exit(&spec, argc, argv, &o);

    int stop_fd = stopsig_install(err, sizeof err);
    if (stop_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        return 1;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->bufs = malloc((size_t)BATCH * DGRAM_MAX)) == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory\n");
        goto out;
    }
    for (unsigned i = 0; i < BATCH; i++) {
        s->iov[i].iov_base = s->bufs + (size_t)i * DGRAM_MAX;
        s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
        s->msgs[i].msg_hdr.msg_iovlen = 1;
        s->msgs[i].msg_hdr.msg_name = &s->peers[i];
    }
    fd = sock_bind_udp(o.bind, o.port, 0, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        goto out;
    }
    s->fd = fd;
    /* Bursts from many sockets must not overflow the default ~200 KiB queue; best effort (the
     * kernel caps it at net.core.rmem_max). */
    int rcvbuf = RCVBUF_BYTES;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);

    s->base = event_base_new();
    if (s->base == NULL) {
        fprintf(stderr, SERVER_NAME ": event_base_new failed\n");
        goto out;
    }
    read_ev = event_new(s->base, fd, EV_READ | EV_PERSIST, read_cb, s);
    stop_ev = event_new(s->base, stop_fd, EV_READ, stop_cb, s);
    if (read_ev == NULL || stop_ev == NULL || event_add(read_ev, NULL) < 0 ||
        event_add(stop_ev, NULL) < 0) {
        fprintf(stderr, SERVER_NAME ": libevent set-up failed\n");
        goto out;
    }

    report_emit(stdout, report_listening(SERVER_NAME, "async", o.bind, sock_local_port(fd),
                                         json_pack("{s:s, s:i}", "transport", "udp", "batch",
                                                   BATCH)));
    event_base_dispatch(s->base);
    report_emit(stdout,
                report_stopped(SERVER_NAME, "async", &s->stats,
                               json_pack("{s:I, s:I, s:I, s:I, s:I}", "datagrams_received",
                                         (json_int_t)s->received, "datagrams_sent",
                                         (json_int_t)s->sent, "send_failures",
                                         (json_int_t)s->send_failures, "truncated",
                                         (json_int_t)s->truncated, "recv_batches",
                                         (json_int_t)s->batches)));
    rc = 0;
out:
    if (read_ev)
        event_free(read_ev);
    if (stop_ev)
        event_free(stop_ev);
    if (s && s->base)
        event_base_free(s->base);
    libevent_global_shutdown();
    if (fd >= 0)
        close(fd);
    close(stop_fd);
    if (s)
        free(s->bufs);
    free(s);
    return rc;
}
