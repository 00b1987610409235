/* threaded-udp: UDP uppercase echo, --threads N threads blocking in recvfrom on one shared
 * socket (why one socket and not SO_REUSEPORT: docs/dns.md). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
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

#define SERVER_NAME "threaded-udp"
#define DGRAM_MAX 65536      /* > 65,507, the largest IPv4 UDP payload: nothing is cut */
#define RCVBUF_BYTES (4 << 20)
#define WAKE_MS 250          /* receive timeout: a blocked thread checks the stop flag this often */

static const struct opts_spec spec = {
    SERVER_NAME, "UDP uppercase echo: N threads blocking in recvfrom on one socket.", 9001,
    OPTS_THREADED | OPTS_THREADS,
};

/* Set by main when the stop is asked; read by every worker. */
static atomic_int stopping;

/* One per thread, written only by it, summed by main after pthread_join (wrk's way). */
struct worker {
    pthread_t tid;
    int fd;
    uint64_t received, sent, send_failures, truncated, bytes_in, bytes_out;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint8_t *buf = malloc(DGRAM_MAX); /* on the heap: --stack-kb may be small */
    if (buf == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory in a worker\n");
        return NULL;
    }
    while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(w->fd, buf, DGRAM_MAX, MSG_TRUNC, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
                fprintf(stderr, SERVER_NAME ": recvfrom: %s\n", strerror(errno));
            continue; /* timeout: look at the stop flag */
        }
        if (n == 0 && plen == 0)
            continue; /* woken by shutdown(), not a datagram */
        if (n > DGRAM_MAX) {
            w->truncated++;
            n = DGRAM_MAX;
        }
        w->received++;
        w->bytes_in += (uint64_t)n;
        upper_inplace(buf, (size_t)n);
        if (sendto(w->fd, buf, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&peer, plen) < 0) {
            w->send_failures++; /* counted, never fatal: UDP may lose it anyway */
            continue;
        }
        w->sent++;
        w->bytes_out += (uint64_t)n;
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    struct server_opts o;
    struct srv_stats stats = {0};
    struct worker *workers = NULL;
    long started = 0;
    char err[256];
    int rc = 1, fd = -1;
    pthread_attr_t attr;

    opts_parse_or_exit(&spec, argc, argv, &o);
    if (o.pool > 0) {
        fprintf(stderr, SERVER_NAME ": --pool does not apply to UDP (no connections); use "
                        "--threads\nTry '" SERVER_NAME " --help'.\n");
        return 2;
    }
    long nthreads = o.threads > 0 ? o.threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (nthreads < 1)
        nthreads = 1;

    int stop_fd = stopsig_install(err, sizeof err);
    if (stop_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        return 1;
    }
    fd = sock_bind_udp(o.bind, o.port, 0, err, sizeof err);
    if (fd < 0 || sock_set_nonblock(fd, 0) < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", fd < 0 ? err : strerror(errno));
        goto out;
    }
    int rcvbuf = RCVBUF_BYTES; /* best effort, capped by net.core.rmem_max */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {0, WAKE_MS * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
        fprintf(stderr, SERVER_NAME ": SO_RCVTIMEO: %s\n", strerror(errno));
        goto out;
    }
    workers = calloc((size_t)nthreads, sizeof *workers);
    if (workers == NULL) {
        fprintf(stderr, SERVER_NAME ": out of memory\n");
        goto out;
    }
    pthread_attr_init(&attr);
    if (o.stack_kb > 0)
        pthread_attr_setstacksize(&attr, (size_t)o.stack_kb * 1024);
    for (; started < nthreads; started++) {
        workers[started].fd = fd;
        int prc = pthread_create(&workers[started].tid, &attr, worker_main, &workers[started]);
        if (prc != 0) {
            fprintf(stderr, SERVER_NAME ": pthread_create: %s\n", strerror(prc));
            break;
        }
    }
    pthread_attr_destroy(&attr);
    if (started == 0)
        goto out;

    report_emit(stdout, report_listening(SERVER_NAME, "threaded", o.bind, sock_local_port(fd),
                                         json_pack("{s:s, s:I, s:s}", "transport", "udp",
                                                   "threads", (json_int_t)started, "socket",
                                                   "shared")));
    /* main only waits for the stop; the workers do everything. */
    struct pollfd pfd = {stop_fd, POLLIN, 0};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    atomic_store(&stopping, 1);
    /* Wakes the threads blocked in recvfrom at once (Linux wakes readers of a shut-down UDP
     * socket, though it reports ENOTCONN); SO_RCVTIMEO is the fallback. */
    shutdown(fd, SHUT_RDWR);
    uint64_t received = 0, sent = 0, failures = 0, truncated = 0;
    for (long i = 0; i < started; i++) {
        pthread_join(workers[i].tid, NULL);
        received += workers[i].received;
        sent += workers[i].sent;
        failures += workers[i].send_failures;
        truncated += workers[i].truncated;
        atomic_fetch_add(&stats.bytes_in, workers[i].bytes_in);
        atomic_fetch_add(&stats.bytes_out, workers[i].bytes_out);
    }
    report_emit(stdout, report_stopped(SERVER_NAME, "threaded", &stats,
                                       json_pack("{s:I, s:I, s:I, s:I, s:I}",
                                                 "datagrams_received", (json_int_t)received,
                                                 "datagrams_sent", (json_int_t)sent,
                                                 "send_failures", (json_int_t)failures,
                                                 "truncated", (json_int_t)truncated,
                                                 "threads", (json_int_t)started)));
    rc = 0;
out:
    free(workers);
    if (fd >= 0)
        close(fd);
    close(stop_fd);
    return rc;
}
