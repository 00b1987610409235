/* loadgen scenario churn: connect, one echo request, close, repeat; connections per second
 * and connect latency. */
#include "echomsg.h"
#include "scenario.h"

static enum lg_verdict churn_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    int finished;
    enum lg_verdict v = echomsg_data(c, p, n, &finished);
    return v == LG_OK && finished ? LG_CLOSE : v;
}

static void churn_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                       json_t *step)
{
    (void)cfg;
    json_object_set_new(step, "connects_per_sec",
                        json_real(duration_s > 0 ? (double)st->connects_ok / duration_s : 0.0));
    json_object_set_new(step, "connect_latency_us", lg_latency_json(&st->connect));
}

const struct lg_scenario scn_churn = {
    .name = "churn",
    .summary = "connect, one echo, close, repeat: connections/s and connect latency",
    .transport = LG_TCP,
    .drive = LG_DRIVE_LOOP,
    .state_size = echomsg_state_size,
    .on_open = echomsg_open,
    .send_request = echomsg_send,
    .on_data = churn_data,
    .json_step = churn_json,
};
