/* async-udp: UDP uppercase echo on one thread and one libevent loop; datagrams are taken in
 * batches with recvmmsg and answered with sendmmsg (async/lib/asrv.h). */
#include "lib/asrv.h"
#include "opts.h"
#include "upper.h"

#define SERVER_NAME "async-udp"
#define DGRAM_MAX 65536      /* > 65,507, the largest IPv4 UDP payload: nothing is cut */

static const struct opts_spec spec = {
    SERVER_NAME, "UDP uppercase echo: one thread, one libevent loop, recvmmsg/sendmmsg batches.",
    9001, OPTS_PROCS | OPTS_RCVBUF,
};

static json_t *listening_extra(const struct asrv_result *r, void *arg)
{
    (void)r;
    (void)arg;
    return json_pack("{s:s, s:i}", "transport", "udp", "batch", ASRV_DGRAM_BATCH);
}

static json_t *stopped_extra(const struct asrv_result *r, void *arg)
{
    (void)arg;
    json_t *j = serve_dgram_json(&r->dgram);
    json_object_set_new(j, "recv_batches", json_integer((json_int_t)r->dgram.batches));
    return j;
}

static struct server_opts o;
static const struct serve_dgram dgram = {.dgram_max = DGRAM_MAX, .answer = upper_answer};
static const struct asrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_UDP, .dgram = &dgram,
    .listening_extra = listening_extra, .stopped_extra = stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    return asrv_run(&cfg);
}
