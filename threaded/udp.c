/* threaded-udp: UDP uppercase echo, --threads N threads blocking in recvfrom on one shared
 * socket (why one socket and not SO_REUSEPORT: docs/dns.md). */
#include "opts.h"
#include "lib/tsrv.h"
#include "upper.h"

#define SERVER_NAME "threaded-udp"
#define DGRAM_MAX 65536      /* > 65,507, the largest IPv4 UDP payload: nothing is cut */

static const struct opts_spec spec = {
    SERVER_NAME, "UDP uppercase echo: N threads blocking in recvfrom on one socket.", 9001,
    OPTS_THREADED | OPTS_THREADS | OPTS_PROCS | OPTS_RCVBUF,
};

static json_t *listening_extra(const struct tsrv_result *r, void *arg)
{
    (void)arg;
    return json_pack("{s:s, s:I, s:s}", "transport", "udp", "threads",
                     (json_int_t)r->udp_threads, "socket", "shared");
}

static json_t *stopped_extra(const struct tsrv_result *r, void *arg)
{
    (void)arg;
    json_t *j = serve_dgram_json(&r->dgram);
    json_object_set_new(j, "threads", json_integer((json_int_t)r->udp_threads));
    return j;
}

static struct server_opts o;
static const struct serve_dgram dgram = {.dgram_max = DGRAM_MAX, .answer = upper_answer};
static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_UDP, .dgram = &dgram,
    .listening_extra = listening_extra, .stopped_extra = stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    return tsrv_run(&cfg);
}
