/* loadgen scenario hold: open the connections, keep them idle for --duration, then one echo
 * on each to prove it is alive. What memory per connection is measured with. */
#include "echomsg.h"
#include "scenario.h"

static enum lg_verdict hold_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    int finished;
    return echomsg_data(c, p, n, &finished);
}

static void hold_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                      json_t *step)
{
    (void)cfg;
    (void)duration_s;
    /* The probes that came back right: connections proven alive at the end. */
    json_object_set_new(step, "alive", json_integer((json_int_t)st->completed));
}

const struct lg_scenario scn_hold = {
    .name = "hold",
    .summary = "hold idle connections for --duration, then one echo on each",
    .transport = LG_TCP,
    .drive = LG_DRIVE_NONE,
    .probe_at_end = 1,
    .state_size = echomsg_state_size,
    .on_open = echomsg_open,
    .send_request = echomsg_send,
    .on_data = hold_data,
    .json_step = hold_json,
};
