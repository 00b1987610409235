/* The echo request shared by the echo, hold and churn scenarios: --size printable bytes of
 * varying content out, exactly their uppercase back. */
#ifndef TVSA_LG_ECHOMSG_H
#define TVSA_LG_ECHOMSG_H
#include <stddef.h>
#include <stdint.h>

#include "scenario.h"

/* Per-connection state size for cfg->size bytes. */
size_t echomsg_state_size(const struct lg_config *cfg);
/* Starts a request: a fresh message, sent whole. */
enum lg_verdict echomsg_send(struct lg_conn *c);
/* Checks reply bytes as they come; finishes the request when --size bytes arrived (a
 * differing byte makes it a mismatch). *finished is set to 1 when it did. Bytes with no
 * request outstanding count as a mismatch and close the connection (the stream is out of
 * step). */
enum lg_verdict echomsg_data(struct lg_conn *c, const uint8_t *p, size_t n, int *finished);
/* The connection (re)opened: no reply is half read. */
enum lg_verdict echomsg_open(struct lg_conn *c);

#endif
