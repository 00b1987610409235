/* loadgen scenario hold: open the connections, keep them idle for --duration, then one echo
 * on each to prove it is alive. What memory per connection is measured with. */
#include "echomsg.h"
#include "scenario.h"

enum { C_ALIVE }; /* lg_stats.counter[] slot: probes answered on connections held all along */

/* After the echo state: whether the connection has been open since the measurement started
 * (a connection lost and reopened during the hold proves nothing about holding). */
struct hold_conn {
    int held;
};

static size_t echo_part(const struct lg_config *cfg)
{
    return (echomsg_state_size(cfg) + 15) & ~(size_t)15;
}

static struct hold_conn *hold_of(const struct lg_conn *c)
{
    return (struct hold_conn *)((char *)lg_conn_state(c) + echo_part(lg_conn_config(c)));
}

static size_t hold_state_size(const struct lg_config *cfg)
{
    return echo_part(cfg) + sizeof(struct hold_conn);
}

static enum lg_verdict hold_open(struct lg_conn *c)
{
    hold_of(c)->held = 0;
    return echomsg_open(c);
}

static enum lg_verdict hold_start(struct lg_conn *c)
{
    hold_of(c)->held = 1;
    return LG_OK;
}

static enum lg_verdict hold_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    struct lg_stats *st = lg_conn_stats(c);
    uint64_t before = st->completed;
    int finished;
    enum lg_verdict v = echomsg_data(c, p, n, &finished);
    if (st->completed > before && hold_of(c)->held)
        st->counter[C_ALIVE]++;
    return v;
}

static void hold_json(const struct lg_config *cfg, const struct lg_stats *st, double duration_s,
                      json_t *step)
{
    (void)cfg;
    (void)duration_s;
    /* The probes that came back right on connections open since the measurement started:
     * connections proven held through the step (requests.completed also counts reopened
     * ones). */
    json_object_set_new(step, "alive", json_integer((json_int_t)st->counter[C_ALIVE]));
}

const struct lg_scenario scn_hold = {
    .name = "hold",
    .summary = "hold idle connections for --duration, then one echo on each",
    .transport = LG_TCP,
    .drive = LG_DRIVE_NONE,
    .probe_at_end = 1,
    .state_size = hold_state_size,
    .on_open = hold_open,
    .on_start = hold_start,
    .send_request = echomsg_send,
    .on_data = hold_data,
    .json_step = hold_json,
};
