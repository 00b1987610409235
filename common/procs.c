/* I/O. The --procs supervisor (procs.h): fork, wait for every worker's listening line, forward
 * the stop, sum the stopped lines. The parent serves nothing itself. */
#include "procs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mono.h"
#include "report.h"
#include "sock.h"
#include "stopsig.h"

#define STOP_GRACE_MS 3000  /* after the forwarded stop, a worker still running is SIGKILLed */
#define LINE_MAX_BYTES 65536

struct worker {
    pid_t pid;
    int out_fd;             /* the worker's stdout; -1 after EOF */
    char line[LINE_MAX_BYTES];
    size_t have;
    json_t *listening, *stopped;
    int status;             /* from waitpid, once reaped */
    int reaped;
};

/* The sockets that hold the port while the workers start: with --port 0 every worker must
 * bind the port the first one got, so the parent picks it. The TCP one never listens (it
 * takes no connection); the UDP one could receive a datagram, but no client knows the port
 * before the listening line, and the parent closes them before it prints that line. */
static int reserve_port(struct serve *sv, int fds[2])
{
    char err[256];
    const char *addr = sv->o->bind;

    fds[0] = fds[1] = -1;
    for (int i = 0; i < 20; i++) {
        if (sv->transport != SERVE_UDP) {
            fds[0] = sock_reserve_tcp(addr, sv->port, err, sizeof err);
            if (fds[0] < 0)
                break;
        }
        if (sv->transport == SERVE_TCP)
            goto ok;
        int port = fds[0] >= 0 ? sock_local_port(fds[0]) : sv->port;
        fds[1] = sock_bind_udp(addr, port, 1, err, sizeof err);
        if (fds[1] >= 0)
            goto ok;
        if (fds[0] >= 0)
            close(fds[0]);
        fds[0] = -1;
        if (sv->port != 0)
            break;
    }
    serve_log("%s", err);
    return -1;
ok:
    sv->port = sock_local_port(fds[0] >= 0 ? fds[0] : fds[1]);
    return 0;
}

static void close_reserved(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    fds[0] = fds[1] = -1;
}

/* In the child: stdout becomes the pipe, the parent's stop pipe is dropped, a stop pipe of its
 * own is installed, and the child ends if the parent dies. 0, or -1. */
static int become_worker(struct serve *sv, int index, int pipe_w, int parent_pid)
{
    char err[256];
    if (dup2(pipe_w, STDOUT_FILENO) < 0)
        return -1;
    close(pipe_w);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent_pid)
        return -1; /* the parent died before prctl */
    close(sv->stop_fd);
    sv->stop_fd = stopsig_install(err, sizeof err);
    if (sv->stop_fd < 0) {
        serve_log("%s", err);
        return -1;
    }
    sv->worker = index;
    return 0;
}

static const char *status_text(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "status %d", status);
    return buf;
}

/* Takes one complete line of w's stdout: its listening or stopped object. */
static void take_line(struct worker *w, const char *line)
{
    json_t *obj = json_loads(line, 0, NULL);
    const char *ev = json_string_value(json_object_get(obj, "event"));
    if (ev && strcmp(ev, "listening") == 0 && w->listening == NULL)
        w->listening = obj;
    else if (ev && strcmp(ev, "stopped") == 0 && w->stopped == NULL)
        w->stopped = obj;
    else {
        json_decref(obj);
        fprintf(stdout, "%s\n", line); /* not ours to interpret: pass it on */
        fflush(stdout);
    }
}

/* Reads what w wrote; on EOF reaps it. */
static void read_worker(struct worker *w)
{
    ssize_t n = read(w->out_fd, w->line + w->have, sizeof w->line - 1 - w->have);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        close(w->out_fd);
        w->out_fd = -1;
        while (waitpid(w->pid, &w->status, 0) < 0 && errno == EINTR)
            ;
        w->reaped = 1;
        return;
    }
    w->have += (size_t)n;
    char *start = w->line, *nl;
    while ((nl = memchr(start, '\n', w->have - (size_t)(start - w->line))) != NULL) {
        *nl = '\0';
        take_line(w, start);
        start = nl + 1;
    }
    w->have -= (size_t)(start - w->line);
    memmove(w->line, start, w->have);
    if (w->have == sizeof w->line - 1)
        w->have = 0; /* an absurd line: dropped */
}

static int worker_failed(const struct worker *w)
{
    return !w->reaped || !WIFEXITED(w->status) || WEXITSTATUS(w->status) != 0 ||
           w->stopped == NULL;
}

/* The parent's listening line: the first worker's, with the parent's pid, procs and pids. */
static void announce(const struct worker *ws, long n)
{
    json_t *obj = json_deep_copy(ws[0].listening);
    json_t *pids = json_array();
    for (long i = 0; i < n; i++)
        json_array_append_new(pids, json_integer(ws[i].pid));
    json_object_set_new(obj, "pid", json_integer(getpid()));
    json_object_set_new(obj, "procs", json_integer(n));
    json_object_set_new(obj, "worker_pids", pids);
    report_emit(stdout, obj);
}

/* The parent's stopped line: the sums, and each worker's own line (or how it ended). -1 if it
 * could not be written. */
static int report_end(const struct worker *ws, long n)
{
    json_t *got[n > 0 ? n : 1];
    size_t ngot = 0;
    json_t *arr = json_array();
    long failed = 0;
    char buf[96];

    for (long i = 0; i < n; i++) {
        json_t *e = ws[i].stopped ? json_deep_copy(ws[i].stopped) : json_object();
        json_object_set_new(e, "pid", json_integer(ws[i].pid));
        json_object_set_new(e, "exit", json_string(status_text(ws[i].status, buf, sizeof buf)));
        json_array_append_new(arr, e);
        if (ws[i].stopped)
            got[ngot++] = ws[i].stopped;
        failed += worker_failed(&ws[i]);
    }
    json_t *sum = procs_sum(got, ngot);
    if (sum == NULL)
        sum = json_pack("{s:s}", "event", "stopped");
    json_object_set_new(sum, "pid", json_integer(getpid()));
    json_object_set_new(sum, "procs", json_integer(n));
    json_object_set_new(sum, "workers_failed", json_integer(failed));
    json_object_set_new(sum, "workers", arr);
    if (report_emit(stdout, sum) < 0) {
        serve_log("could not write the stopped line on stdout");
        return -1;
    }
    return 0;
}

/* Sends sig to every worker not reaped yet. */
static void signal_all(struct worker *ws, long n, int sig)
{
    for (long i = 0; i < n; i++)
        if (!ws[i].reaped)
            kill(ws[i].pid, sig);
}

/* The parent's loop: until every worker is reaped (abort: stop them from the start). Returns
 * its exit status. */
static int supervise(struct serve *sv, struct worker *ws, long n, int reserved[2], int abort)
{
    int announced = 0, stopping = abort, killed = 0;
    uint64_t deadline = mono_now_ns() + (uint64_t)STOP_GRACE_MS * 1000000u;
    char buf[96];

    for (;;) {
        struct pollfd p[n + 1];
        struct worker *who[n + 1];
        nfds_t np = 0;
        long listening = 0, alive = 0;
        for (long i = 0; i < n; i++) {
            listening += ws[i].listening != NULL;
            if (ws[i].out_fd >= 0) {
                p[np] = (struct pollfd){ws[i].out_fd, POLLIN, 0};
                who[np++] = &ws[i];
                alive++;
            }
        }
        if (alive == 0)
            break;
        if (!announced && !stopping && listening == n) {
            close_reserved(reserved);
            announce(ws, n);
            announced = 1;
        }
        if (!stopping)
            p[np++] = (struct pollfd){sv->stop_fd, POLLIN, 0};
        int timeout = -1;
        if (stopping && killed) {
            timeout = 1000; /* SIGKILLed: their pipes close when they die; no busy loop */
        } else if (stopping) {
            uint64_t now = mono_now_ns();
            timeout = now >= deadline ? 0 : (int)((deadline - now) / 1000000u) + 1;
        }
        int rc = poll(p, np, timeout);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc == 0 && stopping && !killed) {
            serve_log("workers still running %d ms after the stop: SIGKILL", STOP_GRACE_MS);
            signal_all(ws, n, SIGKILL);
            killed = 1;
            continue;
        }
        if (!stopping && np > 0 && (p[np - 1].revents & POLLIN)) {
            stopping = 1;
            deadline = mono_now_ns() + (uint64_t)STOP_GRACE_MS * 1000000u;
            int sig = stopsig_received();
            signal_all(ws, n, sig ? sig : SIGTERM);
        }
        for (nfds_t i = 0; i < np && p[i].fd != sv->stop_fd; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct worker *w = who[i];
            read_worker(w);
            if (!w->reaped || stopping)
                continue;
            /* Died on its own: before every worker listened the server failed to start;
             * after, the others go on serving. */
            serve_log("worker %ld (pid %d) %s%s", (long)(w - ws), (int)w->pid,
                      status_text(w->status, buf, sizeof buf),
                      !announced ? " before listening: stopping"
                      : alive > 1 ? "; the others go on" : "; none left: stopping");
            if (!announced) {
                stopping = 1;
                deadline = mono_now_ns() + (uint64_t)STOP_GRACE_MS * 1000000u;
                signal_all(ws, n, SIGTERM);
            }
        }
    }
    close_reserved(reserved);
    int failed = 0;
    for (long i = 0; i < n; i++)
        failed |= worker_failed(&ws[i]);
    if (announced && report_end(ws, n) < 0)
        failed = 1;
    return failed ? 1 : 0;
}

int procs_run(struct serve *sv, long n)
{
    int reserved[2];
    pid_t parent = getpid();

    if (reserve_port(sv, reserved) < 0)
        return 1;
    struct worker *ws = calloc((size_t)n, sizeof *ws);
    if (ws == NULL) {
        serve_log("out of memory for %ld workers", n);
        close_reserved(reserved);
        return 1;
    }
    fflush(stdout);
    long started = 0;
    for (; started < n; started++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) {
            serve_log("pipe: %s", strerror(errno));
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            serve_log("fork: %s", strerror(errno));
            close(fds[0]);
            close(fds[1]);
            break;
        }
        if (pid == 0) {
            close(fds[0]);
            for (long i = 0; i < started; i++)
                close(ws[i].out_fd);
            free(ws);
            close_reserved(reserved);
            if (become_worker(sv, (int)started, fds[1], parent) < 0)
                _exit(1);
            return -1;
        }
        close(fds[1]);
        ws[started] = (struct worker){.pid = pid, .out_fd = fds[0]};
    }
    if (started < n)
        signal_all(ws, started, SIGTERM);
    int rc = supervise(sv, ws, started, reserved, started < n);
    if (started < n)
        rc = 1;
    for (long i = 0; i < started; i++) {
        json_decref(ws[i].listening);
        json_decref(ws[i].stopped);
    }
    free(ws);
    return rc;
}

/* Keys whose values are settings, the same in every worker, or not counters: kept, not
 * summed (so they read as in the listening line, which is the first worker's). */
static int not_summed(const char *key)
{
    static const char *const keys[] = {"pid", "thread_stack_bytes", "loops", "threads"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i]) == 0)
            return 1;
    return 0;
}

json_t *procs_sum(json_t *const *objs, size_t n)
{
    if (n == 0)
        return NULL;
    json_t *sum = json_deep_copy(objs[0]);
    const char *key;
    json_t *val;
    json_object_foreach(sum, key, val) {
        if (not_summed(key))
            continue;
        if (json_is_object(val)) {
            json_t *parts[n];
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                json_t *v = json_object_get(objs[i], key);
                if (json_is_object(v))
                    parts[k++] = v;
            }
            json_object_set_new(sum, key, procs_sum(parts, k));
        } else if (json_is_integer(val)) {
            json_int_t t = 0;
            for (size_t i = 0; i < n; i++)
                t += json_integer_value(json_object_get(objs[i], key));
            json_object_set_new(sum, key, json_integer(t));
        } else if (json_is_real(val)) {
            double t = 0;
            for (size_t i = 0; i < n; i++)
                t += json_number_value(json_object_get(objs[i], key));
            json_object_set_new(sum, key, json_real(t));
        }
    }
    return sum;
}
