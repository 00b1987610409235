/* The threaded server skeleton (tsrv.h): begin, open, run, listening, stop, stopped. */
#include "tsrv.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sock.h"

#define WAKE_MS 250 /* UDP receive timeout: a blocked thread checks the stop flag this often */

/* One UDP thread; written only by it, summed by main after pthread_join (wrk's way). */
struct dgram_worker {
    pthread_t tid;
    const struct tsrv_config *cfg;
    int fd;
    void *state;                       /* dgram->worker_new's */
    struct serve_dgram_counts counts;
    uint64_t bytes_in, bytes_out;
};

/* The process's one skeleton: static, since handlers past the stop deadline outlive
 * tsrv_run (tpc.h). Written by tsrv_run before any thread starts. */
static struct {
    const struct tsrv_config *cfg;
    struct serve sv;
    struct srv_stats stats;
    struct tpc_config tpc;
    struct tsrv_result res;
    atomic_int stopping;               /* read by the UDP threads */
} skel;

static void emit_listening(void *arg)
{
    (void)arg;
    const struct tsrv_config *cfg = skel.cfg;
    serve_listening(&skel.sv, cfg->listening_extra ? cfg->listening_extra(&skel.res, cfg->arg)
                                                   : NULL);
}

static void *dgram_main(void *arg)
{
    struct dgram_worker *w = arg;
    const struct serve_dgram *d = w->cfg->dgram;
    size_t cap = d->dgram_max;
    /* On the heap: --stack-kb may be small. */
    uint8_t *buf = malloc(cap), *reply = d->reply_max ? malloc(d->reply_max) : buf;

    w->state = d->worker_new ? d->worker_new(w->cfg->arg) : w->cfg->arg;
    if (buf == NULL || reply == NULL || (d->worker_new && w->state == NULL)) {
        serve_log("out of memory in a UDP worker");
        goto out;
    }
    while (!atomic_load_explicit(&skel.stopping, memory_order_relaxed)) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(w->fd, buf, cap, MSG_TRUNC, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
                serve_log("recvfrom: %s", strerror(errno));
            continue; /* timeout: look at the stop flag */
        }
        if (n == 0 && plen == 0)
            continue; /* woken by shutdown(), not a datagram */
        int truncated = (size_t)n > cap;
        if (truncated) {
            w->counts.truncated++;
            n = (ssize_t)cap;
        }
        w->counts.received++;
        w->bytes_in += (uint64_t)n;
        size_t len = d->answer(w->state, buf, (size_t)n, truncated, reply);
        if (len == 0)
            continue;
        if (sendto(w->fd, reply, len, MSG_NOSIGNAL, (struct sockaddr *)&peer, plen) < 0) {
            w->counts.send_failures++; /* counted, never fatal: UDP may lose it anyway */
            continue;
        }
        w->counts.sent++;
        w->bytes_out += len;
    }
out:
    if (reply != buf)
        free(reply);
    free(buf);
    return NULL;
}

/* Starts the UDP threads on the bound socket. The number started (0 on failure). */
static long dgram_start(struct dgram_worker **out)
{
    const struct server_opts *o = skel.sv.o;
    int fd = skel.sv.udp_fd;
    long n = o->threads > 0 ? o->threads : sysconf(_SC_NPROCESSORS_ONLN), started = 0;
    pthread_attr_t attr;

    if (n < 1)
        n = 1;
    struct timeval tv = {0, WAKE_MS * 1000};
    if (sock_set_nonblock(fd, 0) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        serve_log("UDP socket set-up: %s", strerror(errno));
        return 0;
    }
    struct dgram_worker *ws = calloc((size_t)n, sizeof *ws);
    if (ws == NULL) {
        serve_log("out of memory");
        return 0;
    }
    pthread_attr_init(&attr);
    if (o->stack_kb > 0)
        pthread_attr_setstacksize(&attr, (size_t)o->stack_kb * 1024);
    for (; started < n; started++) {
        ws[started] = (struct dgram_worker){.cfg = skel.cfg, .fd = fd};
        int rc = pthread_create(&ws[started].tid, &attr, dgram_main, &ws[started]);
        if (rc != 0) {
            serve_log("pthread_create: %s", strerror(rc));
            break;
        }
    }
    pthread_attr_destroy(&attr);
    if (started == 0)
        free(ws);
    *out = started ? ws : NULL;
    return started;
}

/* Wakes and joins the UDP threads, sums what they counted. */
static void dgram_stop(struct dgram_worker *ws, long n)
{
    const struct serve_dgram *d = skel.cfg->dgram;
    atomic_store(&skel.stopping, 1);
    /* Wakes the threads blocked in recvfrom at once (Linux wakes readers of a shut-down UDP
     * socket, though it reports ENOTCONN); SO_RCVTIMEO is the fallback. */
    shutdown(skel.sv.udp_fd, SHUT_RDWR);
    for (long i = 0; i < n; i++) {
        struct dgram_worker *w = &ws[i];
        struct serve_dgram_counts *c = &skel.res.dgram;
        pthread_join(w->tid, NULL);
        c->received += w->counts.received;
        c->sent += w->counts.sent;
        c->send_failures += w->counts.send_failures;
        c->truncated += w->counts.truncated;
        atomic_fetch_add(&skel.stats.bytes_in, w->bytes_in);
        atomic_fetch_add(&skel.stats.bytes_out, w->bytes_out);
        if (d->worker_free && w->state)
            d->worker_free(w->state, skel.cfg->arg);
    }
    free(ws);
}

/* No listener: main only waits for the stop; the UDP threads do everything. */
static void wait_stop(void)
{
    struct pollfd p = {skel.sv.stop_fd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
}

int tsrv_run(const struct tsrv_config *cfg)
{
    const struct server_opts *o = cfg->o;
    struct dgram_worker *ws = NULL;
    int rc = 1;

    if (cfg->transport == SERVE_UDP && o->pool > 0) {
        serve_log_as(cfg->name);
        serve_log("--pool does not apply to UDP (no connections); use --threads\n"
                  "Try '%s --help'.", cfg->name);
        return 2;
    }
    skel.cfg = cfg;
    skel.res.sv = &skel.sv;
    int begun = serve_begin(&skel.sv, cfg->name, "threaded", o, cfg->transport);
    if (begun >= 0)
        return begun;
    if (serve_open(&skel.sv, 0) < 0)
        goto out;
    if (cfg->transport != SERVE_TCP &&
        (skel.res.udp_threads = dgram_start(&ws)) == 0)
        goto out;

    if (cfg->transport == SERVE_UDP) {
        emit_listening(NULL);
        wait_stop();
        rc = 0;
    } else {
        char err[256];
        skel.tpc = (struct tpc_config){
            .listen_fd = skel.sv.tcp_fd, .pool = o->pool, .stack_kb = o->stack_kb,
            .max_conns = o->max_conns, .idle_timeout_s = o->idle_timeout_s,
            .handler = cfg->handler, .arg = cfg->arg, .on_ready = emit_listening,
        };
        rc = tpc_run(&skel.tpc, skel.sv.stop_fd, &skel.stats, &skel.res.tpc, err, sizeof err);
        if (rc < 0) {
            serve_log("%s", err);
            rc = 1;
        }
    }
    if (ws)
        dgram_stop(ws, skel.res.udp_threads);
    if (rc == 0 && serve_stopped(&skel.sv, &skel.stats,
                                 cfg->stopped_extra ? cfg->stopped_extra(&skel.res, cfg->arg)
                                                    : NULL) < 0)
        rc = 1;
out:
    serve_end(&skel.sv);
    return rc;
}

json_t *tsrv_tpc_json(const struct tsrv_result *r)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:I}", "threads_created",
                     (json_int_t)r->tpc.threads_created, "thread_create_failures",
                     (json_int_t)r->tpc.thread_create_failures, "handlers_unfinished",
                     (json_int_t)r->tpc.handlers_unfinished, "thread_stack_bytes",
                     (json_int_t)r->tpc.thread_stack_bytes, "accept_pauses",
                     (json_int_t)r->tpc.accept_pauses);
}
