/* Unit tests of the socket helpers (real sockets on 127.0.0.1). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm.h"
#include "sock.h"

static int int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    getsockopt(fd, level, name, &v, &len);
    return v;
}

static void test_listen_port0_options(void **state)
{
    (void)state;
    char err[256] = "";
    int fd = sock_listen_tcp("127.0.0.1", 0, err, sizeof err);
    assert_true(fd >= 0);
    int port = sock_local_port(fd);
    assert_true(port > 0 && port <= 65535);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_int_not_equal(int_opt(fd, SOL_SOCKET, SO_REUSEADDR), 0);
    assert_int_not_equal(int_opt(fd, SOL_SOCKET, SO_ACCEPTCONN), 0);
    close(fd);
}

static void test_connect_peer_name_nodelay_send(void **state)
{
    (void)state;
    char err[256] = "", name[64], mine[64];
    int lfd = sock_listen_tcp("127.0.0.1", 0, err, sizeof err);
    assert_true(lfd >= 0);
    int cfd = sock_connect_tcp("127.0.0.1", sock_local_port(lfd), err, sizeof err);
    assert_true(cfd >= 0);
    assert_int_equal(sock_set_nonblock(lfd, 0), 0);
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);

    assert_int_equal(sock_set_nodelay(afd), 0);
    assert_int_not_equal(int_opt(afd, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_equal(sock_set_nonblock(afd, 1), 0);
    assert_true(fcntl(afd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(sock_set_nonblock(afd, 0), 0);
    assert_false(fcntl(afd, F_GETFL) & O_NONBLOCK);

    /* The accepted side sees the client's address and port. */
    assert_int_equal(sock_peer_name(afd, name, sizeof name), 0);
    snprintf(mine, sizeof mine, "127.0.0.1:%d", sock_local_port(cfd));
    assert_string_equal(name, mine);

    assert_int_equal(sock_send_all(cfd, "ping", 4), 0);
    char buf[4];
    assert_int_equal(recv(afd, buf, 4, MSG_WAITALL), 4);
    assert_memory_equal(buf, "ping", 4);
    close(afd);
    close(cfd);
    close(lfd);
}

static void test_errors_fill_message(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(sock_listen_tcp("not-an-ip", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "not-an-ip"));
    assert_int_equal(sock_listen_tcp("127.0.0.1", 70000, err, sizeof err), -1);
    assert_non_null(strstr(err, "70000"));
    /* A port that is taken: bind fails and says so. */
    int fd = sock_listen_tcp("127.0.0.1", 0, err, sizeof err);
    assert_true(fd >= 0);
    int port = sock_local_port(fd);
    /* SO_REUSEADDR does not let two sockets listen on one port. */
    assert_int_equal(sock_listen_tcp("127.0.0.1", port, err, sizeof err), -1);
    assert_non_null(strstr(err, "bind"));
    int udp = sock_bind_udp("127.0.0.1", 0, 0, err, sizeof err);
    assert_true(udp >= 0);
    /* Nobody listens on the closed port: connect is refused with a message. */
    close(fd);
    assert_int_equal(sock_connect_tcp("127.0.0.1", port, err, sizeof err), -1);
    assert_non_null(strstr(err, "connect"));
    char name[64];
    assert_int_equal(sock_peer_name(udp, name, sizeof name), -1);
    assert_string_equal(name, "?");
    close(udp);
}

static void test_udp_reuseport(void **state)
{
    (void)state;
    char err[256] = "";
    int a = sock_bind_udp("127.0.0.1", 0, 1, err, sizeof err);
    assert_true(a >= 0);
    assert_int_not_equal(int_opt(a, SOL_SOCKET, SO_REUSEPORT), 0);
    int b = sock_bind_udp("127.0.0.1", sock_local_port(a), 1, err, sizeof err);
    assert_true(b >= 0);
    close(a);
    close(b);
}

static void test_addr_name(void **state)
{
    (void)state;
    char buf[64];
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(9002)};
    inet_pton(AF_INET, "127.0.0.5", &sin.sin_addr);
    assert_int_equal(sock_addr_name((struct sockaddr *)&sin, sizeof sin, buf, sizeof buf), 0);
    assert_string_equal(buf, "127.0.0.5:9002");
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(53)};
    inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
    assert_int_equal(sock_addr_name((struct sockaddr *)&sin6, sizeof sin6, buf, sizeof buf), 0);
    assert_string_equal(buf, "[::1]:53");
    /* Too short for its family, or an unknown family: "?" and -1, never a read past it. */
    assert_int_equal(sock_addr_name((struct sockaddr *)&sin, 4, buf, sizeof buf), -1);
    assert_string_equal(buf, "?");
    struct sockaddr unix_like = {.sa_family = AF_UNIX};
    assert_int_equal(sock_addr_name(&unix_like, sizeof unix_like, buf, sizeof buf), -1);
    assert_string_equal(buf, "?");
}

static void test_listen_tcp_udp_same_port(void **state)
{
    (void)state;
    char err[256] = "";
    int t = -1, u = -1;
    assert_int_equal(sock_listen_tcp_udp("127.0.0.1", 0, 20, &t, &u, err, sizeof err), 0);
    assert_true(sock_local_port(t) > 0);
    assert_int_equal(sock_local_port(t), sock_local_port(u));
    assert_int_not_equal(int_opt(t, SOL_SOCKET, SO_ACCEPTCONN), 0);
    assert_int_equal(int_opt(u, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    /* The same port again is taken for TCP: an error, nothing left open. */
    int t2 = -1, u2 = -1;
    assert_int_equal(
        sock_listen_tcp_udp("127.0.0.1", sock_local_port(t), 20, &t2, &u2, err, sizeof err), -1);
    assert_int_equal(t2, -1);
    assert_int_equal(u2, -1);
    close(t);
    close(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_port0_options),
        cmocka_unit_test(test_connect_peer_name_nodelay_send),
        cmocka_unit_test(test_errors_fill_message),
        cmocka_unit_test(test_udp_reuseport),
        cmocka_unit_test(test_addr_name),
        cmocka_unit_test(test_listen_tcp_udp_same_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
