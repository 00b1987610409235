/* Flow control of one bufferevent connection, the same in every async server: stop reading
 * while too much output waits (back-pressure), and after the client's EOF send what is queued
 * before closing (draining). The server keeps its own read callback. */
#include "bevflow.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <sys/socket.h>

/* One read's reserve in the input buffer: what evbuffer_read reads at most (libevent 2.1's
 * EVBUFFER_MAX_READ), without the FIONREAD that sizes it there. */
#define READ_RESERVE 4096

static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* The only place a connection changes state. Draining is final; back-pressure comes and goes.
 * The write callback and watermark are armed only while output must drain, so a plain
 * request/reply costs no extra callback. Reading is the read event's (see read_ready). */
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
        bufferevent_setcb(f->bev, NULL, NULL, event_cb, f);
        bufferevent_setwatermark(f->bev, EV_WRITE, 0, 0);
        event_add(f->rev, f->idle);
        break;
    case BEVFLOW_BACKPRESSURED:
        event_del(f->rev);
        bufferevent_setwatermark(f->bev, EV_WRITE, f->low, 0);
        bufferevent_setcb(f->bev, NULL, write_cb, event_cb, f);
        break;
    case BEVFLOW_DRAINING:
        event_del(f->rev);
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

/* The client's EOF: a client that half-closes after its last request still gets every reply,
 * as from a threaded server, which writes each reply before it reads again. */
static void at_eof(struct bevflow *f)
{
    if (f->state != BEVFLOW_DRAINING &&
        evbuffer_get_length(bufferevent_get_output(f->bev)) > 0)
        set_state(f, BEVFLOW_DRAINING);
    else
        f->finish(f);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & BEV_EVENT_EOF)
        at_eof(arg);
    else
        ((struct bevflow *)arg)->finish(arg); /* a write error or the write idle timeout */
}

/* The read side: one recv into the bufferevent's input buffer, then the server's read
 * callback, as bufferevent_sock's own read path does, less the ioctl(FIONREAD) that
 * evbuffer_read makes before every read (libevent 2.1 has no option to skip it): one system
 * call a request out of three, for a small request/reply. */
static void read_ready(evutil_socket_t fd, short what, void *arg)
{
    struct bevflow *f = arg;
    struct evbuffer *in = bufferevent_get_input(f->bev);
    struct evbuffer_iovec v;

    if (what & EV_TIMEOUT) {
        f->finish(f); /* sent nothing for --idle-timeout seconds */
        return;
    }
    /* A socket bufferevent keeps its input's end frozen but while it reads; so do we. */
    evbuffer_unfreeze(in, 0);
    ssize_t n = -1;
    if (evbuffer_reserve_space(in, READ_RESERVE, &v, 1) == 1) {
        n = recv(fd, v.iov_base, v.iov_len, 0);
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(in, &v, 1);
        }
    } else {
        errno = ENOMEM;
    }
    evbuffer_freeze(in, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0)
        f->finish(f);
    else if (n == 0)
        at_eof(f);
    else
        f->read_cb(f->bev, f); /* may finish f */
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
    f->idle = idle;
    f->rev = event_new(bufferevent_get_base(bev), bufferevent_getfd(bev), EV_READ | EV_PERSIST,
                       read_ready, f);
    if (f->rev == NULL)
        return -1;
    bufferevent_setcb(bev, NULL, NULL, event_cb, f);
    /* The write timeout is the bufferevent's (armed while output waits: a client that sends
     * and never reads is idle too); the read timeout is the read event's. */
    bufferevent_set_timeouts(bev, NULL, idle);
    bufferevent_disable(bev, EV_READ);
    return event_add(f->rev, idle);
}

void bevflow_check_output(struct bevflow *f)
{
    if (f->state == BEVFLOW_READING &&
        evbuffer_get_length(bufferevent_get_output(f->bev)) >= f->high)
        set_state(f, BEVFLOW_BACKPRESSURED);
}

void bevflow_free(struct bevflow *f)
{
    if (f->rev) {
        event_free(f->rev);
        f->rev = NULL;
    }
    if (f->bev) {
        bufferevent_free(f->bev);
        f->bev = NULL;
    }
}
