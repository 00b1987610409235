/* threaded-dns: authoritative A records from a zone file over UDP and TCP on one port. TCP is
 * one blocking thread per connection (threaded/lib/tpc.h); UDP is the threaded-udp
 * arrangement, --threads N threads blocking in recvfrom on one shared socket. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bytebuf.h"
#include "dnsstats.h"
#include "dnswire.h"
#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "lib/tpc.h"
#include "zone.h"

#define SERVER_NAME "threaded-dns"
#define QUERY_MAX 4096       /* a UDP query longer than this is dropped (counted) */
#define READ_CHUNK 16384
#define RCVBUF_BYTES (4 << 20)
#define PORT_TRIES 20        /* --port 0: free TCP ports tried until UDP binds the same one */
#define WAKE_MS 250          /* UDP receive timeout: a blocked worker checks the stop this often */

static const struct opts_spec spec = {
    SERVER_NAME, "Authoritative DNS (A records) over UDP and TCP: blocking threads.", 9053,
    OPTS_THREADED | OPTS_ZONE | OPTS_THREADS,
};

/* Counters for the stopped line. Each UDP worker and each TCP connection keeps its own and adds
 * them to `totals` once, at the end, so the hot path shares nothing. */
static pthread_mutex_t totals_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dnsstats totals; /* under totals_lock */

/* Set by main when the stop is asked; read by the UDP workers. */
static atomic_int stopping;

struct shared {
    const struct zone *zone;
    int udp_fd;
    struct zone_limits udp, tcp;
};

struct udp_worker {
    pthread_t tid;
    const struct shared *sh;
    struct dnsstats counts;
    uint64_t bytes_in, bytes_out;
};

static void counts_add(const struct dnsstats *c)
{
    pthread_mutex_lock(&totals_lock);
    dnsstats_add(&totals, c);
    pthread_mutex_unlock(&totals_lock);
}

/* ---- UDP ---------------------------------------------------------------------------------- */

static void *udp_main(void *arg)
{
    struct udp_worker *w = arg;
    const struct shared *sh = w->sh;
    /* On the heap: --stack-kb may be small and a decoded message is ~35 KiB. */
    uint8_t *q = malloc(QUERY_MAX), *r = malloc(sh->udp.edns_size);
    struct dnswire_msg *m = malloc(sizeof *m);

    if (q == NULL || r == NULL || m == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory in a UDP worker\n");
        goto out;
    }
    while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int rcode;
        ssize_t n = recvfrom(sh->udp_fd, q, QUERY_MAX, MSG_TRUNC, (struct sockaddr *)&peer,
                             &plen);
        if (n < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
                fprintf(stderr, SERVER_NAME ": recvfrom: %s\n", strerror(errno));
            continue;
        }
        if (n == 0 && plen == 0)
            continue; /* woken by shutdown(), not a datagram */
        w->counts.udp++;
        w->bytes_in += (uint64_t)n;
        if (n > QUERY_MAX) {
            w->counts.too_long++;
            continue;
        }
        size_t len = zone_respond(sh->zone, q, (size_t)n, &sh->udp, r, sh->udp.edns_size, m,
                                  &rcode);
        dnsstats_count_reply(&w->counts, rcode, r, len);
        if (len == 0)
            continue;
        if (sendto(sh->udp_fd, r, len, MSG_NOSIGNAL, (struct sockaddr *)&peer, plen) < 0) {
            w->counts.send_failures++; /* counted, never fatal */
            continue;
        }
        w->bytes_out += len;
    }
out:
    free(q);
    free(r);
    free(m);
    return NULL;
}

/* ---- TCP ---------------------------------------------------------------------------------- */

/* Reads into a buffer and loops over the framer: several queries per connection, any split.
 * The replies to one read go out in one send. */
static void tcp_handler(struct tpc_conn *conn, void *arg)
{
    const struct shared *sh = arg;
    struct bytebuf in = BYTEBUF_INIT, out = BYTEBUF_INIT;
    struct dnswire_msg *m = malloc(sizeof *m);
    struct dnsstats counts = {0};

    if (m == NULL)
        goto out;
    for (;;) {
        size_t avail, len;
        uint8_t *dst = bytebuf_reserve(&in, READ_CHUNK, &avail);
        if (dst == NULL)
            break;
        ssize_t n = read(conn->fd, dst, avail);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF, error, idle timeout (EAGAIN) or shutdown() by the stop */
        bytebuf_commit(&in, (size_t)n);
        conn->bytes_in += (uint64_t)n;

        const uint8_t *p = bytebuf_peek(&in, &len), *msg;
        size_t used, mlen;
        while ((used = dnswire_tcp_next(p, len, &msg, &mlen)) > 0) {
            uint8_t *r = bytebuf_reserve(&out, 2 + DNSWIRE_MAX_MSG, &avail);
            int rcode;
            if (r == NULL)
                goto out;
            size_t rl = zone_respond(sh->zone, msg, mlen, &sh->tcp, r + 2, DNSWIRE_MAX_MSG, m,
                                     &rcode);
            dnsstats_count_reply(&counts, rcode, r + 2, rl);
            counts.tcp++;
            if (rl > 0) {
                dnswire_tcp_prefix(r, rl);
                bytebuf_commit(&out, rl + 2);
            }
            bytebuf_consume(&in, used);
            p = bytebuf_peek(&in, &len);
        }
        const uint8_t *o = bytebuf_peek(&out, &len);
        if (len > 0) {
            if (sock_send_all(conn->fd, o, len) < 0)
                break;
            conn->bytes_out += len;
            bytebuf_consume(&out, len);
        }
    }
out:
    counts_add(&counts);
    bytebuf_free(&in);
    bytebuf_free(&out);
    free(m);
}

/* ---- start-up ----------------------------------------------------------------------------- */

/* What the runtime and its handlers use. Static, not on main's stack: a handler that misses
 * the stop deadline still runs after tpc_run returns (tpc.h). Written by main before any
 * thread starts; read-only after, but `stats` (atomic). */
static struct server_opts o;
static struct srv_stats stats;
static struct shared sh;
static struct tpc_config cfg;
static long udp_threads;
static int listen_port;

static void print_listening(void *arg)
{
    (void)arg;
    report_emit(stdout, report_listening(SERVER_NAME, "threaded", o.bind, listen_port,
                                         json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}",
                                                   "transport", "udp+tcp", "zone",
                                                   o.zone ? o.zone : "(sample)", "zone_names",
                                                   (json_int_t)zone_names(sh.zone),
                                                   "zone_records",
                                                   (json_int_t)zone_records(sh.zone),
                                                   "udp_threads", (json_int_t)udp_threads,
                                                   "pool", (json_int_t)o.pool, "stack_kb",
                                                   (json_int_t)o.stack_kb)));
}

int main(int argc, char **argv)
{
    struct tpc_result res = {0};
    struct udp_worker *workers = NULL;
    struct zone *zone;
    long started = 0;
    char err[512];
    int rc = 1, tcp_fd = -1, udp_fd = -1;
    pthread_attr_t attr;

    opts_parse_or_exit(&spec, argc, argv, &o);
    long nthreads = o.threads > 0 ? o.threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads < 1)
        nthreads = 1;
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
    if (sock_listen_tcp_udp(o.bind, o.port, PORT_TRIES, &tcp_fd, &udp_fd, err, sizeof err) < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        goto out;
    }
    if (sock_set_nonblock(udp_fd, 0) < 0) {
        fprintf(stderr, SERVER_NAME ": fcntl: %s\n", strerror(errno));
        goto out;
    }
    /* A burst of queries from many sockets must not overflow the default ~200 KiB queue; best
     * effort (capped by net.core.rmem_max). */
    int rcvbuf = RCVBUF_BYTES;
    setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {0, WAKE_MS * 1000};
    if (setsockopt(udp_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        fprintf(stderr, SERVER_NAME ": SO_RCVTIMEO: %s\n", strerror(errno));
        goto out;
    }
    sh = (struct shared){zone, udp_fd, {ZONE_UDP, (size_t)o.edns_size},
                         {ZONE_TCP, (size_t)o.edns_size}};
    workers = calloc((size_t)nthreads, sizeof *workers);
    if (workers == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory\n");
        goto out;
    }
    pthread_attr_init(&attr);
    if (o.stack_kb > 0)
        pthread_attr_setstacksize(&attr, (size_t)o.stack_kb * 1024);
    for (; started < nthreads; started++) {
        workers[started].sh = &sh;
        int prc = pthread_create(&workers[started].tid, &attr, udp_main, &workers[started]);
        if (prc != 0) {
            fprintf(stderr, SERVER_NAME ": pthread_create: %s\n", strerror(prc));
            break;
        }
    }
    pthread_attr_destroy(&attr);
    if (started == 0)
        goto out;

    udp_threads = started;
    listen_port = sock_local_port(tcp_fd);
    cfg = (struct tpc_config){
        .listen_fd = tcp_fd, .pool = o.pool, .stack_kb = o.stack_kb,
        .max_conns = o.max_conns, .idle_timeout_s = o.idle_timeout_s,
        .handler = tcp_handler, .arg = &sh, .on_ready = print_listening,
    };
    int trc = tpc_run(&cfg, stop_fd, &stats, &res, err, sizeof err);

    atomic_store(&stopping, 1);
    /* Wakes the UDP workers blocked in recvfrom at once (Linux wakes readers of a shut-down
     * UDP socket, though it reports ENOTCONN); SO_RCVTIMEO is the fallback. */
    shutdown(udp_fd, SHUT_RDWR);
    for (long i = 0; i < started; i++) {
        pthread_join(workers[i].tid, NULL);
        counts_add(&workers[i].counts);
        atomic_fetch_add(&stats.bytes_in, workers[i].bytes_in);
        atomic_fetch_add(&stats.bytes_out, workers[i].bytes_out);
    }
    if (trc < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        goto out;
    }
    pthread_mutex_lock(&totals_lock); /* handlers past the stop deadline may still add */
    json_t *extra = dnsstats_json(&totals);
    pthread_mutex_unlock(&totals_lock);
    json_object_set_new(extra, "threads_created", json_integer((json_int_t)res.threads_created));
    json_object_set_new(extra, "handlers_unfinished",
                        json_integer((json_int_t)res.handlers_unfinished));
    report_emit(stdout, report_stopped(SERVER_NAME, "threaded", &stats, extra));
    rc = 0;
out:
    free(workers);
    if (tcp_fd >= 0)
        close(tcp_fd);
    if (udp_fd >= 0)
        close(udp_fd);
    close(stop_fd);
    /* A handler past tpc_run's stop deadline may still read the zone: leave it to exit(). */
    if (rc != 0 || res.handlers_unfinished == 0)
        zone_free(zone);
    return rc;
}
