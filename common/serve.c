/* I/O. The steps both server skeletons share (serve.h): begin, open, the two lines, end. */
#include "serve.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mono.h"
#include "procs.h"
#include "report.h"
#include "sock.h"
#include "stopsig.h"

#define PORT_TRIES 20 /* --port 0 with TCP and UDP: free TCP ports tried until UDP binds too */

/* Set by serve_begin (or serve_log_as) before any thread starts; read-only after. */
static const char *log_name = "tvsa";

void serve_log_as(const char *name)
{
    log_name = name;
}

static void vlog(const char *fmt, va_list ap)
{
    /* One buffer, one write: lines from several threads or processes do not interleave. */
    char line[512];
    int n = snprintf(line, sizeof line, "%s: ", log_name);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < sizeof line - (size_t)n - 1
                                  ? (size_t)m : sizeof line - (size_t)n - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

void serve_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

int serve_log_due(uint64_t *last_ns)
{
    uint64_t now = mono_now_ns();
    if (*last_ns != 0 && now - *last_ns < 1000000000u)
        return 0;
    *last_ns = now;
    return 1;
}

int serve_log_limited(uint64_t *last_ns, const char *fmt, ...)
{
    if (!serve_log_due(last_ns))
        return 0;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
    return 1;
}

int serve_begin(struct serve *sv, const char *name, const char *model,
                const struct server_opts *o, enum serve_transport t)
{
    char err[256];

    *sv = (struct serve){.name = name, .model = model, .o = o, .stop_fd = -1, .worker = -1,
                         .transport = t, .port = o->port, .tcp_fd = -1, .udp_fd = -1};
    log_name = name;
    sv->stop_fd = stopsig_install(err, sizeof err);
    if (sv->stop_fd < 0) {
        serve_log("%s", err);
        return 1;
    }
    if (o->procs > 1) {
        int rc = procs_run(sv, o->procs);
        if (rc >= 0) {
            serve_end(sv);
            return rc;
        }
    }
    return -1;
}

int serve_open(struct serve *sv, int reuseport)
{
    char err[256];
    const struct server_opts *o = sv->o;

    reuseport = reuseport || sv->worker >= 0;
    if (sv->transport == SERVE_TCP_UDP && !reuseport) {
        if (sock_listen_tcp_udp(o->bind, sv->port, PORT_TRIES, &sv->tcp_fd, &sv->udp_fd, err,
                                sizeof err) < 0)
            goto fail;
    } else {
        if (sv->transport != SERVE_UDP) {
            sv->tcp_fd = reuseport ? sock_listen_tcp_reuseport(o->bind, sv->port, err, sizeof err)
                                   : sock_listen_tcp(o->bind, sv->port, err, sizeof err);
            if (sv->tcp_fd < 0)
                goto fail;
            sv->port = sock_local_port(sv->tcp_fd);
        }
        if (sv->transport != SERVE_TCP) {
            sv->udp_fd = sock_bind_udp(o->bind, sv->port, reuseport, err, sizeof err);
            if (sv->udp_fd < 0)
                goto fail;
        }
    }
    if (sv->udp_fd >= 0) {
        /* By default (4 MiB) bursts from many sockets do not overflow the kernel's ~200 KiB
         * queue; --rcvbuf makes it small to show where datagrams are lost (lab 6). Best effort:
         * the kernel caps it at net.core.rmem_max; the listening line says what it got. */
        int rcvbuf = (int)o->rcvbuf;
        setsockopt(sv->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    sv->port = sock_local_port(sv->tcp_fd >= 0 ? sv->tcp_fd : sv->udp_fd);
    return 0;
fail:
    serve_log("%s", err);
    return -1;
}

int serve_listen_again(struct serve *sv)
{
    char err[256];
    int fd = sock_listen_tcp_reuseport(sv->o->bind, sv->port, err, sizeof err);
    if (fd < 0)
        serve_log("%s", err);
    return fd;
}

void serve_listening(const struct serve *sv, json_t *extra)
{
    int rcvbuf = 0;
    socklen_t len = sizeof rcvbuf;
    if (sv->udp_fd >= 0 && getsockopt(sv->udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, &len) == 0) {
        if (extra == NULL)
            extra = json_object();
        json_object_set_new(extra, "rcvbuf", json_integer(rcvbuf));
    }
    report_emit(stdout, report_listening(sv->name, sv->model, sv->o->bind, sv->port, extra));
}

int serve_stopped(const struct serve *sv, const struct srv_stats *st, json_t *extra)
{
    if (report_emit(stdout, report_stopped(sv->name, sv->model, st, extra)) < 0) {
        serve_log("could not write the stopped line on stdout");
        return -1;
    }
    return 0;
}

void serve_end(struct serve *sv)
{
    if (sv->tcp_fd >= 0)
        close(sv->tcp_fd);
    if (sv->udp_fd >= 0)
        close(sv->udp_fd);
    if (sv->stop_fd >= 0)
        close(sv->stop_fd);
    sv->tcp_fd = sv->udp_fd = sv->stop_fd = -1;
}

json_t *serve_dgram_json(const struct serve_dgram_counts *c)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "datagrams_received", (json_int_t)c->received,
                     "datagrams_sent", (json_int_t)c->sent, "send_failures",
                     (json_int_t)c->send_failures, "truncated", (json_int_t)c->truncated);
}
