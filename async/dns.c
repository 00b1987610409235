/* async-dns: authoritative A records from a zone file over UDP and TCP on one port, on one
 * thread and one libevent loop (datagram batches on the UDP socket, bufferevents for TCP:
 * async/lib/asrv.h). */
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "dnsserve.h"
#include "lib/asrv.h"
#include "opts.h"

#define SERVER_NAME "async-dns"

static const struct opts_spec spec = {
    SERVER_NAME, "Authoritative DNS (A records) over UDP and TCP: one thread, one libevent loop.",
    9053, OPTS_ZONE | OPTS_PROCS | OPTS_RCVBUF,
};

/* Owned by the loop thread; there is no other thread. */
static struct server_opts o;
static struct dnsserve dns;
static struct dnsserve_worker *tcp;         /* the TCP connections' scratch and counters */
static uint8_t tcp_out[2 + DNSWIRE_MAX_MSG]; /* one TCP reply with its length prefix */

/* Answers every whole query in the input; a partial one waits for more bytes. */
static void bev_read_cb(struct bufferevent *bev, void *arg)
{
    struct asrv_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;

    while ((len = evbuffer_get_length(in)) >= 2) {
        const uint8_t *msg;
        size_t mlen, want = len < 2 + DNSWIRE_MAX_MSG ? len : 2 + DNSWIRE_MAX_MSG;
        uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want);
        size_t used = p ? dnswire_tcp_next(p, want, &msg, &mlen) : 0;
        if (used == 0)
            break;
        size_t n = dnsserve_tcp_answer(tcp, msg, mlen, tcp_out);
        c->bytes_in += used;
        evbuffer_drain(in, used);
        if (n > 0) {
            if (bufferevent_write(bev, tcp_out, n) < 0) {
                asrv_conn_close(c);
                return;
            }
            c->bytes_out += n;
        }
    }
    bevflow_check_output(&c->flow);
}

static int conn_start(struct asrv_conn *c, void *arg)
{
    (void)arg;
    return asrv_conn_bev(c, bev_read_cb);
}

static json_t *listening_extra(const struct asrv_result *r, void *arg)
{
    (void)r;
    return dnsserve_listening_json(arg, &o);
}

/* After the loop ended: the TCP counters join the totals first. */
static json_t *stopped_extra(const struct asrv_result *r, void *arg)
{
    dnsserve_worker_free(tcp);
    tcp = NULL;
    return dnsserve_stopped_json(arg, &r->dgram);
}

static const struct asrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP_UDP,
    .conn_size = sizeof(struct asrv_conn), .conn_start = conn_start, .dgram = &dnsserve_dgram,
    .arg = &dns, .listening_extra = listening_extra, .stopped_extra = stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    serve_log_as(SERVER_NAME);
    if (dnsserve_init(&dns, &o) < 0)
        return 2;
    tcp = dnsserve_worker_new(&dns);
    if (tcp == NULL) {
        serve_log("out of memory");
        return 1;
    }
    int rc = asrv_run(&cfg);
    dnsserve_worker_free(tcp);
    dnsserve_free(&dns);
    return rc;
}
