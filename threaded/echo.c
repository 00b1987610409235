/* threaded-echo: uppercase TCP echo, one blocking thread per connection (or --pool N). */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "burn.h"
#include "opts.h"
#include "report.h"
#include "sock.h"
#include "srvstats.h"
#include "stopsig.h"
#include "lib/tpc.h"
#include "upper.h"

#define SERVER_NAME "threaded-echo"
#define READ_BUF 16384

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase TCP echo: one blocking thread per connection, or a fixed pool.", 9000,
    OPTS_THREADED | OPTS_WORK,
};

/* The read/uppercase/write loop. A client that stops reading blocks this thread in send(),
 * which stops it reading: back-pressure comes free with blocking I/O. */
static void echo_handler(struct tpc_conn *conn, void *arg)
{
    const struct server_opts *o = arg;
    /* On the thread's own stack (--stack-kb is at least 32): a malloc here would give each
     * thread a glibc arena, 64 MiB of address space that would hide the stack in VSZ. */
    uint8_t buf[READ_BUF];
    for (;;) {
        ssize_t n = read(conn->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF, error, idle timeout (EAGAIN) or shutdown() by the stop */
        conn->bytes_in += (uint64_t)n;
        if (o->work_us > 0)
            burn_cpu_us((unsigned)o->work_us);
        upper_inplace(buf, (size_t)n);
        if (sock_send_all(conn->fd, buf, (size_t)n) < 0)
            break;
        conn->bytes_out += (uint64_t)n;
    }
}

/* What the runtime and its handlers use. Static, not on main's stack: a handler that misses
 * the stop deadline still runs after tpc_run returns (tpc.h). Written by main before the
 * runtime starts; handlers only read `o`; `stats` is atomic. */
static struct server_opts o;
static struct srv_stats stats;
static struct tpc_config cfg;
static int listen_fd = -1;

static void print_listening(void *arg)
{
    (void)arg;
    report_emit(stdout,
                report_listening(SERVER_NAME, "threaded", o.bind, sock_local_port(listen_fd),
                                 json_pack("{s:I, s:I, s:I}", "pool", (json_int_t)o.pool,
                                           "stack_kb", (json_int_t)o.stack_kb, "work_us",
                                           (json_int_t)o.work_us)));
}

int main(int argc, char **argv)
{
    struct tpc_result res;
    char err[256];

    opts_parse_or_exit(&spec, argc, argv, &o);

    int stop_fd = stopsig_install(err, sizeof err);
    if (stop_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        return 1;
    }
    listen_fd = sock_listen_tcp(o.bind, o.port, err, sizeof err);
    if (listen_fd < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        close(stop_fd);
        return 1;
    }

    cfg = (struct tpc_config){
        .listen_fd = listen_fd, .pool = o.pool, .stack_kb = o.stack_kb,
        .max_conns = o.max_conns, .idle_timeout_s = o.idle_timeout_s,
        .handler = echo_handler, .arg = &o, .on_ready = print_listening,
    };
    int rc = tpc_run(&cfg, stop_fd, &stats, &res, err, sizeof err);
    close(listen_fd);
    close(stop_fd);
    if (rc < 0) {
        fprintf(stderr, SERVER_NAME ": %s\n", err);
        return 1;
    }

    report_emit(stdout,
                report_stopped(SERVER_NAME, "threaded", &stats,
                               json_pack("{s:I, s:I, s:I, s:I}", "threads_created",
                                         (json_int_t)res.threads_created,
                                         "thread_create_failures",
                                         (json_int_t)res.thread_create_failures,
                                         "handlers_unfinished",
                                         (json_int_t)res.handlers_unfinished,
                                         "thread_stack_bytes",
                                         (json_int_t)res.thread_stack_bytes)));
    return 0;
}
