/* Socket helpers shared by both models: one shape, int sock_x(..., char *err, size_t errlen). */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Numeric ADDR:PORT to a sockaddr; never touches DNS (servers bind literal addresses). */
static int resolve_numeric(const char *addr, int port, int socktype, struct sockaddr_storage *ss,
                           socklen_t *sslen, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char portstr[16];

    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "port %d out of range 0-65535", port);
        return -1;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(addr, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "bad address '%s': %s", addr, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int bound_socket(const char *addr, int port, int socktype, int reuseport, char *err,
                        size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int one = 1;

    if (resolve_numeric(addr, port, socktype, &ss, &sslen, err, errlen) < 0)
        return -1;
    int fd = socket(ss.ss_family, socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    /* So a benchmark can stop and restart a server on the same port at once, without
     * waiting for TIME_WAIT to clear. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        snprintf(err, errlen, "setsockopt SO_REUSEADDR: %s", strerror(errno));
        goto fail;
    }
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
        snprintf(err, errlen, "setsockopt SO_REUSEPORT: %s", strerror(errno));
        goto fail;
    }
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
        snprintf(err, errlen, "bind %s:%d: %s", addr, port, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return -1;
}

static int listen_tcp(const char *addr, int port, int reuseport, char *err, size_t errlen)
{
    int fd = bound_socket(addr, port, SOCK_STREAM, reuseport, err, errlen);
    if (fd < 0)
        return -1;
    /* SOMAXCONN: the kernel caps it at net.core.somaxconn; a ramp opens connections in
     * bursts of hundreds and a short backlog would turn them into SYN retries. */
    if (listen(fd, SOMAXCONN) < 0) {
        snprintf(err, errlen, "listen %s:%d: %s", addr, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int sock_listen_tcp(const char *addr, int port, char *err, size_t errlen)
{
    return listen_tcp(addr, port, 0, err, errlen);
}

int sock_listen_tcp_reuseport(const char *addr, int port, char *err, size_t errlen)
{
    return listen_tcp(addr, port, 1, err, errlen);
}

int sock_reserve_tcp(const char *addr, int port, char *err, size_t errlen)
{
    return bound_socket(addr, port, SOCK_STREAM, 1, err, errlen);
}

int sock_bind_udp(const char *addr, int port, int reuseport, char *err, size_t errlen)
{
    return bound_socket(addr, port, SOCK_DGRAM, reuseport, err, errlen);
}

int sock_listen_tcp_udp(const char *addr, int port, int tries, int *tcp_fd, int *udp_fd,
                        char *err, size_t errlen)
{
    for (int i = 0; i < (port == 0 ? tries : 1); i++) {
        int t = sock_listen_tcp(addr, port, err, errlen);
        if (t < 0)
            return -1;
        int u = sock_bind_udp(addr, sock_local_port(t), 0, err, errlen);
        if (u >= 0) {
            *tcp_fd = t;
            *udp_fd = u;
            return 0;
        }
        close(t);
    }
    return -1;
}

int sock_connect_tcp(const char *addr, int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;

    if (resolve_numeric(addr, port, SOCK_STREAM, &ss, &sslen, err, errlen) < 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0) {
        snprintf(err, errlen, "connect %s:%d: %s", addr, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int sock_set_nonblock(int fd, int on)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags);
}

int sock_set_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int sock_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

int sock_peer_name(int fd, char *buf, size_t buflen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(buf, buflen, "?");
        return -1;
    }
    return sock_addr_name((struct sockaddr *)&ss, len, buf, buflen);
}

int sock_addr_name(const struct sockaddr *sa, socklen_t salen, char *buf, size_t buflen)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET && salen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip)) {
            snprintf(buf, buflen, "%s:%u", ip, ntohs(sin->sin_port));
            return 0;
        }
    } else if (sa->sa_family == AF_INET6 && salen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip)) {
            snprintf(buf, buflen, "[%s]:%u", ip, ntohs(sin6->sin6_port));
            return 0;
        }
    }
    snprintf(buf, buflen, "?");
    return -1;
}

int sock_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
