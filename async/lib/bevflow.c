/* Flow control of one bufferevent connection, the same in every async server: stop reading
 * while too much output waits (back-pressure), and after the client's EOF send what is queued
 * before closing (draining). The server keeps its own read callback. */
#include "bevflow.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>

static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* The only place a connection changes state. Draining is final; back-pressure comes and goes.
 * The write callback and watermark are armed only while output must drain, so a plain
 * request/reply costs no extra callback. */
static void set_state(struct bevflow *f, enum bevflow_state next)
{
    int legal = (f->state == BEVFLOW_READING && next != BEVFLOW_READING) ||
                (f->state == BEVFLOW_BACKPRESSURED && next != BEVFLOW_BACKPRESSURED);
    if (!legal) {
        fprintf(stderr, "bevflow: bad state change %d -> %d\n", f->state, next);
        return;
    }
    f->state = next;
    switch (next) {
    case BEVFLOW_READING:
        bufferevent_setcb(f->bev, f->read_cb, NULL, event_cb, f);
        bufferevent_setwatermark(f->bev, EV_WRITE, 0, 0);
        bufferevent_enable(f->bev, EV_READ);
        break;
    case BEVFLOW_BACKPRESSURED:
        bufferevent_disable(f->bev, EV_READ);
        bufferevent_setwatermark(f->bev, EV_WRITE, f->low, 0);
        bufferevent_setcb(f->bev, f->read_cb, write_cb, event_cb, f);
        break;
    case BEVFLOW_DRAINING:
        bufferevent_disable(f->bev, EV_READ);
        bufferevent_setwatermark(f->bev, EV_WRITE, 0, 0);
        bufferevent_setcb(f->bev, NULL, write_cb, event_cb, f);
        break;
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct bevflow *f = arg;
    (void)bev;
    if (f->state == BEVFLOW_DRAINING)
        f->finish(f);
    else if (f->state == BEVFLOW_BACKPRESSURED)
        set_state(f, BEVFLOW_READING);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct bevflow *f = arg;
    /* A client that half-closes after its last request still gets every reply, as from a
     * threaded server, which writes each reply before it reads again. */
    if ((what & BEV_EVENT_EOF) && f->state != BEVFLOW_DRAINING &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        set_state(f, BEVFLOW_DRAINING);
        return;
    }
    f->finish(f); /* EOF with nothing queued, error, or idle timeout */
}

int bevflow_start(struct bevflow *f, struct bufferevent *bev, bufferevent_data_cb read_cb,
                  void (*finish)(void *conn), size_t high, size_t low,
                  const struct timeval *idle)
{
    f->bev = bev;
    f->state = BEVFLOW_READING;
    f->read_cb = read_cb;
    f->finish = finish;
    f->high = high;
    f->low = low;
    bufferevent_setcb(bev, read_cb, NULL, event_cb, f);
    /* Read and write: a client that sends and never reads is idle too (its output waits). */
    bufferevent_set_timeouts(bev, idle, idle);
    return bufferevent_enable(bev, EV_READ);
}

void bevflow_check_output(struct bevflow *f)
{
    if (f->state == BEVFLOW_READING &&
        evbuffer_get_length(bufferevent_get_output(f->bev)) >= f->high)
        set_state(f, BEVFLOW_BACKPRESSURED);
}
