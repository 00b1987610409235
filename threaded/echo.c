/* threaded-echo: uppercase TCP echo, one blocking thread per connection (or --pool N). */
#include <errno.h>
#include <unistd.h>

#include "burn.h"
#include "opts.h"
#include "sock.h"
#include "lib/tsrv.h"
#include "upper.h"

#define SERVER_NAME "threaded-echo"
#define READ_BUF 16384

static const struct opts_spec spec = {
    SERVER_NAME, "Uppercase TCP echo: one blocking thread per connection, or a fixed pool.", 9000,
    OPTS_THREADED | OPTS_WORK | OPTS_PROCS,
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

static json_t *listening_extra(const struct tsrv_result *r, void *arg)
{
    const struct server_opts *o = arg;
    (void)r;
    return json_pack("{s:I, s:I, s:I}", "pool", (json_int_t)o->pool, "stack_kb",
                     (json_int_t)o->stack_kb, "work_us", (json_int_t)o->work_us);
}

static json_t *stopped_extra(const struct tsrv_result *r, void *arg)
{
    (void)arg;
    return tsrv_tpc_json(r);
}

/* Static: handlers past the stop deadline still read them after tsrv_run returns (tsrv.h). */
static struct server_opts o;
static const struct tsrv_config cfg = {
    .name = SERVER_NAME, .o = &o, .transport = SERVE_TCP, .handler = echo_handler, .arg = &o,
    .listening_extra = listening_extra, .stopped_extra = stopped_extra,
};

int main(int argc, char **argv)
{
    opts_parse_or_exit(&spec, argc, argv, &o);
    return tsrv_run(&cfg);
}
