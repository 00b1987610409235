/* I/O (signals, a pipe). Graceful stop: SIGINT/SIGTERM become a readable fd that any loop (poll or libevent) waits on. */
#ifndef TVSA_STOPSIG_H
#define TVSA_STOPSIG_H
#include <stddef.h>

/* Ignores SIGPIPE and makes SIGINT and SIGTERM write a byte to a self-pipe. Returns the pipe's
 * non-blocking read end (readable once a stop was asked for), or -1 with err filled.
 * Call from main before any thread starts; calling it again (in a forked child) replaces the
 * pipe. */
int stopsig_install(char *err, size_t errlen);

/* Which signal asked for the stop (SIGINT or SIGTERM), 0 if none yet. */
int stopsig_received(void);

#endif
