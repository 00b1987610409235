/* I/O. Socket helpers shared by both models: one shape, int sock_x(..., char *err, size_t errlen). */
#ifndef TVSA_SOCK_H
#define TVSA_SOCK_H
#include <stddef.h>
#include <sys/socket.h>

/* Listening TCP socket on numeric ADDR:PORT (IPv4 or IPv6; port 0 picks a free one), with
 * SO_REUSEADDR, non-blocking, backlog SOMAXCONN. Returns the fd, or -1 with err filled. */
int sock_listen_tcp(const char *addr, int port, char *err, size_t errlen);

/* sock_listen_tcp with SO_REUSEPORT: one of several listeners on one port (--procs, --loops),
 * among which the kernel spreads new connections. */
int sock_listen_tcp_reuseport(const char *addr, int port, char *err, size_t errlen);

/* A TCP socket bound to ADDR:PORT with SO_REUSEPORT but not listening: it holds a port for
 * listeners to come and takes no connection itself. fd, or -1 with err filled. */
int sock_reserve_tcp(const char *addr, int port, char *err, size_t errlen);

/* Bound UDP socket on numeric ADDR:PORT, non-blocking; reuseport sets SO_REUSEPORT first.
 * Returns the fd, or -1 with err filled. */
int sock_bind_udp(const char *addr, int port, int reuseport, char *err, size_t errlen);

/* A listening TCP socket and a UDP socket bound to the same ADDR:PORT (a DNS server's pair).
 * With port 0 the kernel picks a free TCP port, which may be taken for UDP: then up to `tries`
 * other ports are tried. 0, or -1 with err filled (nothing left open). */
int sock_listen_tcp_udp(const char *addr, int port, int tries, int *tcp_fd, int *udp_fd,
                        char *err, size_t errlen);

/* Blocking TCP connect to numeric ADDR:PORT. Returns the fd, or -1 with err filled. */
int sock_connect_tcp(const char *addr, int port, char *err, size_t errlen);

/* O_NONBLOCK on (on != 0) or off. Returns 0, or -1 with errno set. */
int sock_set_nonblock(int fd, int on);

/* TCP_NODELAY: replies of a request/response protocol must not wait for Nagle. 0 or -1. */
int sock_set_nodelay(int fd);

/* The port a socket is bound to, or -1. */
int sock_local_port(int fd);

/* The peer as "IP:PORT" (IPv6 as "[IP]:PORT") into buf. Returns 0, or -1 (buf = "?"). */
int sock_peer_name(int fd, char *buf, size_t buflen);

/* An address (as accept() returned it) as "IP:PORT" or "[IP]:PORT". 0, or -1 (buf = "?"). */
int sock_addr_name(const struct sockaddr *sa, socklen_t salen, char *buf, size_t buflen);

/* Writes all of buf to a blocking socket (MSG_NOSIGNAL, retries EINTR). 0, or -1 with errno. */
int sock_send_all(int fd, const void *buf, size_t len);

#endif
