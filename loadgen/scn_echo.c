/* loadgen scenario echo: closed loop (each connection sends, waits, checks, repeats after
 * --think-ms) or, with --rate, open loop with coordinated-omission-corrected latency. */
#include "echomsg.h"
#include "scenario.h"

static enum lg_verdict echo_data(struct lg_conn *c, const uint8_t *p, size_t n)
{
    int finished;
    return echomsg_data(c, p, n, &finished);
}

const struct lg_scenario scn_echo = {
    .name = "echo",
    .summary = "send --size bytes, check the uppercase reply, repeat (--rate: open loop)",
    .transport = LG_TCP,
    .drive = LG_DRIVE_LOOP,
    .state_size = echomsg_state_size,
    .on_open = echomsg_open,
    .send_request = echomsg_send,
    .on_data = echo_data,
};
