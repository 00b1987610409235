/* Graceful stop: SIGINT/SIGTERM become a readable fd that any loop (poll or libevent) waits on. */
#include "stopsig.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Written by stopsig_install (before threads exist; again in a forked --procs worker, which
 * has one thread), read-only after, so the handler may read it from any thread. A
 * sig_atomic_t: a signal may come while the worker's install replaces it. */
static volatile sig_atomic_t pipe_write_fd = -1;
static volatile sig_atomic_t received_signal;

static void on_stop_signal(int sig)
{
    int saved = errno;
    char b = 's';
    received_signal = sig;
    /* The pipe is non-blocking: if it is full a stop is already pending. */
    if (write(pipe_write_fd, &b, 1) < 0) {
    }
    errno = saved;
}

int stopsig_install(char *err, size_t errlen)
{
    int fds[2];
    struct sigaction sa;

    signal(SIGPIPE, SIG_IGN);
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    /* Installed again (a --procs worker after fork): the new pipe replaces the inherited one,
     * whose write end would otherwise wake the parent. */
    int old = pipe_write_fd;
    pipe_write_fd = fds[1];
    if (old >= 0)
        close(old);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: connection threads blocked in read() must not see EINTR; the stop reaches
     * them through shutdown() on their sockets instead. */
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
        snprintf(err, errlen, "sigaction: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        pipe_write_fd = -1;
        return -1;
    }
    return fds[0];
}

int stopsig_received(void)
{
    return received_signal;
}
