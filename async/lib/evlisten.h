/* The accepting side every async server shares: an evconnlistener that pauses instead of
 * spinning when the fd table is full, and the event that turns the stop pipe into loopbreak. */
#ifndef TVSA_EVLISTEN_H
#define TVSA_EVLISTEN_H
#include <event2/event.h>
#include <event2/listener.h>

#include "srvstats.h"

struct evlisten;

/* Accepts on listen_fd (already listening; its backlog is kept) and calls cb for each new
 * connection, with TCP_NODELAY set. With max_conns > 0, a connection beyond max_conns open ones
 * (srvstats_current(stats)) is closed at once and counted refused, as the threaded runtime
 * does. When accept fails (EMFILE, ENFILE...), accepting pauses for 100 ms and resumes by
 * itself; `name` prefixes the (rate-limited) message. NULL on failure. */
struct evlisten *evlisten_new(struct event_base *base, int listen_fd, evconnlistener_cb cb,
                              void *arg, const char *name, long max_conns,
                              struct srv_stats *stats);
/* At most `batch` accepts per loop turn (0, the default: as many as the backlog holds), so a
 * connect flood cannot starve the connections already open. */
void evlisten_set_batch(struct evlisten *l, unsigned batch);
/* Times accepting paused because accept failed (fd table full...). */
unsigned long evlisten_pauses(const struct evlisten *l);

/* Stops accepting and frees the listener (the fd stays open: its creator closes it). */
void evlisten_free(struct evlisten *l);

/* An event that breaks base's loop once stop_fd (from stopsig_install) is readable; added.
 * Free it with event_free. NULL on failure. */
struct event *evlisten_stop_event(struct event_base *base, int stop_fd);

#endif
