/* threaded-dns: authoritative A records from a zone file over UDP and TCP on one port. TCP is
 * one blocking thread per connection (threaded/lib/tpc.h); UDP is the threaded-udp
 * arrangement, --threads N threads blocking in recvfrom on one shared socket. */
#include <errno.h>
#include <unistd.h>

#include "bytebuf.h"
#include "dnsserve.h"
#include "opts.h"
#include "sock.h"
#include "lib/tsrv.h"

#define SERVER_NAME "threaded-dns"
#define READ_CHUNK 16384

static const struct opts_spec spec = {
    SERVER_NAME, "Authoritative DNS (A records) over UDP and TCP: blocking threads.", 9053,
    OPTS_THREADED | OPTS_ZONE | OPTS_THREADS | OPTS_PROCS | OPTS_RCVBUF,
};

/* Reads into a buffer and loops over the framer: several queries per connection, any split.
 * The replies to one read go out in one send. */
static void tcp_handler(struct tpc_conn *conn, void *arg)
{
    struct bytebuf in = BYTEBUF_INIT, out = BYTEBUF_INIT;
    struct dnsserve_worker *w = dnsserve_worker_new(arg);

    if (w == NULL)
        return;
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
            if (r == NULL)
                goto out;
            bytebuf_commit(&out, dnsserve_tcp_answer(w, msg, mlen, r));
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
    dnsserve_worker_free(w);
    bytebuf_free(&in);
    bytebuf_free(&out);
}

/* Static: handlers past the stop deadline still use them after tsrv_run returns (tsrv.h). */
static struct server_opts o;
static struct dnsserve dns;

static json_t *listening_extra(const struct tsrv_result *r, void *arg)
{
    json_t *j = dnsserve_listening_json(arg, &o);
    json_object_update_new(j, json_pack("{s:I, s:I, s:I}", "udp_threads",
                                        (json_int_t)r->udp_threads, "pool", (json_int_t)o.pool,
                                        "stack_kb", (json_int_t)o.stack_kb));
    return j;
}

static json_t *stopped_extra(const struct tsrv_result *r, void *arg)
{
    json_t *j = dnsserve_stopped_json(arg, &r->dgram);
    json_object_update_new(j, tsrv_tpc_json(r));
    return j;
}

static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP_UDP, .handler = tcp_handler,
    .dgram = &dnsserve_dgram, .arg = &dns, .listening_extra = listening_extra,
    .stopped_extra = stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    serve_log_as(SERVER_NAME);
    if (dnsserve_init(&dns, &o) < 0)
        return 2;
    int rc = tsrv_run(&cfg);
    /* A handler past tpc_run's stop deadline may still read the zone: leave it to exit(). */
    return rc;
}
