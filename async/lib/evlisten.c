/* The accepting side every async server shares: an evconnlistener that pauses instead of
 * spinning when the fd table is full, and the event that turns the stop pipe into loopbreak. */
#include "evlisten.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h> /* evutil_socket_error_to_string is strerror */

#include "sock.h"

#define ACCEPT_PAUSE_MS 100

/* Owned by the loop thread of the base it was made for. The listener's callback argument is
 * this struct (libevent hands the error callback the same argument as the accept callback),
 * which forwards each connection to the server's own callback and argument. */
struct evlisten {
    struct evconnlistener *listener;
    struct event *resume;
    evconnlistener_cb cb;
    void *arg;
    const char *name;
    unsigned long pauses;
    long max_conns;
    struct srv_stats *stats;
    unsigned batch, this_turn;  /* accepts per loop turn (0: no limit), and so far */
};

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct evlisten *l = arg;
    if (l->max_conns > 0 && srvstats_current(l->stats) >= (uint64_t)l->max_conns) {
        evutil_closesocket(fd);
        srvstats_refused(l->stats);
        return;
    }
    sock_set_nodelay(fd);
    l->cb(listener, fd, sa, salen, l->arg);
    /* Enough for this turn: the loop serves what is ready (resets included) before the rest
     * of the backlog, which a zero timer lets back in on the next turn. */
    if (l->batch > 0 && ++l->this_turn >= l->batch) {
        static const struct timeval now = {0, 0};
        evconnlistener_disable(listener);
        event_add(l->resume, &now);
    }
}

static void accept_error_cb(struct evconnlistener *listener, void *arg)
{
    struct evlisten *l = arg;
    int err = EVUTIL_SOCKET_ERROR();

    /* Out of fds: the listener stays readable and would wake the loop forever. */
    if (l->pauses++ % 100 == 0)
        fprintf(stderr, "%s: accept: %s; pausing accepts for %d ms (%lu times)\n", l->name,
                evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS, l->pauses);
    evconnlistener_disable(listener);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    event_add(l->resume, &tv);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct evlisten *l = arg;
    (void)fd;
    (void)what;
    l->this_turn = 0;
    evconnlistener_enable(l->listener);
}

struct evlisten *evlisten_new(struct event_base *base, int listen_fd, evconnlistener_cb cb,
                              void *arg, const char *name, long max_conns,
                              struct srv_stats *stats)
{
    struct evlisten *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->cb = cb;
    l->arg = arg;
    l->name = name;
    l->max_conns = max_conns;
    l->stats = stats;
    l->resume = evtimer_new(base, resume_cb, l);
    /* Backlog 0: the socket already listens with SOMAXCONN; -1 would re-listen with 128. */
    l->listener = evconnlistener_new(base, accept_cb, l, LEV_OPT_REUSEABLE, 0, listen_fd);
    if (l->resume == NULL || l->listener == NULL) {
        evlisten_free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->listener, accept_error_cb);
    return l;
}

void evlisten_set_batch(struct evlisten *l, unsigned batch)
{
    l->batch = batch;
}

unsigned long evlisten_pauses(const struct evlisten *l)
{
    return l ? l->pauses : 0;
}

void evlisten_free(struct evlisten *l)
{
    if (l == NULL)
        return;
    if (l->listener)
        evconnlistener_free(l->listener);
    if (l->resume)
        event_free(l->resume);
    free(l);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

struct event *evlisten_stop_event(struct event_base *base, int stop_fd)
{
    struct event *ev = event_new(base, stop_fd, EV_READ, stop_cb, base);
    if (ev != NULL && event_add(ev, NULL) < 0) {
        event_free(ev);
        ev = NULL;
    }
    return ev;
}
