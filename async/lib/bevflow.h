/* Flow control of one bufferevent connection, the same in every async server: stop reading
 * while too much output waits (back-pressure), and after the client's EOF send what is queued
 * before closing (draining). The server keeps its own read callback. */
#ifndef TVSA_BEVFLOW_H
#define TVSA_BEVFLOW_H
#include <event2/bufferevent.h>
#include <stddef.h>

/* Back-pressure marks of every async server: past HIGH_WATER unsent bytes a connection stops
 * reading; it resumes once its output drained to LOW_WATER. So a client that sends but never
 * reads costs at most ~HIGH_WATER plus one read of server memory. */
#define BEVFLOW_HIGH_WATER (256 * 1024)
#define BEVFLOW_LOW_WATER (64 * 1024)

/* A connection's flow state; --api event connections (async/echo.c) use the same enum. */
enum bevflow_state {
    BEVFLOW_READING,        /* reading, answering */
    BEVFLOW_BACKPRESSURED,  /* output over the high mark: not reading until the low mark */
    BEVFLOW_DRAINING,       /* the client sent EOF: flush what is queued, then finish */
};

/* Must be the first member of the server's connection struct: the bufferevent's callback
 * argument is the connection, and these callbacks read it as a struct bevflow. */
struct bevflow {
    struct bufferevent *bev;      /* output, write watermark, write timeout, errors */
    struct event *rev;            /* reading: our own event (bevflow.c says why) */
    const struct timeval *idle;   /* --idle-timeout, or NULL */
    enum bevflow_state state;
    bufferevent_data_cb read_cb;  /* the server's; gets the connection as its argument */
    void (*finish)(void *conn);   /* frees the connection (EOF, error, timeout, drained) */
    size_t high, low;             /* back-pressure marks, bytes of unsent output */
};

/* Sets the callbacks (argument: conn, whose first member is f) and starts reading, with
 * `idle` (may be NULL, must outlive f) as both the read and the write timeout. Reads into the
 * bufferevent's input buffer and calls read_cb as bufferevent_sock would. 0, or -1 (then
 * bevflow_free still frees what was made). */
int bevflow_start(struct bevflow *f, struct bufferevent *bev, bufferevent_data_cb read_cb,
                  void (*finish)(void *conn), size_t high, size_t low,
                  const struct timeval *idle);

/* Call at the end of the read callback: stops reading if the output passed the high mark. */
void bevflow_check_output(struct bevflow *f);

/* Frees the read event and the bufferevent (BEV_OPT_CLOSE_ON_FREE closes the fd). */
void bevflow_free(struct bevflow *f);

#endif
