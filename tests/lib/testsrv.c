/* Test support: start a server binary on port 0, read its JSON lines, stop it, talk to it. */
#include "testsrv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mono.h"
#include "sock.h"

/* Servers started and not yet stopped, with what the teardown must release: their stdout
 * pipe and listening line. Tests are single-threaded: owned by the test thread. */
#define MAX_LIVE 64
static struct {
    pid_t pid;
    int out_fd;
    json_t *listening;
} live[MAX_LIVE];

static void live_add(const struct testsrv *s)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i].pid == 0) {
            live[i].pid = s->pid;
            live[i].out_fd = s->out_fd;
            live[i].listening = s->listening;
            return;
        }
}

static void live_remove(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i].pid == pid)
            live[i].pid = 0;
}

int testsrv_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i].pid > 0) {
            kill(live[i].pid, SIGKILL);
            waitpid(live[i].pid, NULL, 0);
            close(live[i].out_fd);
            json_decref(live[i].listening);
            live[i].pid = 0;
        }
    return 0;
}

const char *testsrv_bin_dir(void)
{
    const char *d = getenv("TVSA_BIN");
    return d && *d ? d : "bin";
}

static int remaining_ms(uint64_t deadline_us)
{
    uint64_t now = mono_now_us();
    return now >= deadline_us ? 0 : (int)((deadline_us - now) / 1000) + 1;
}

int testsrv_read_line(int fd, char *buf, size_t buflen, int timeout_ms)
{
    uint64_t deadline = mono_now_us() + (uint64_t)timeout_ms * 1000;
    size_t n = 0;

    while (n + 1 < buflen) {
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, remaining_ms(deadline));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            return -1;
        if (c == '\n') {
            buf[n] = '\0';
            return (int)n;
        }
        buf[n++] = c;
    }
    return -1;
}

static pid_t spawn(const char *path, char *const *argv, int *out_fd, int resource,
                   unsigned long limit)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        if (resource >= 0) {
            struct rlimit rl = {limit, limit};
            if (setrlimit(resource, &rl) < 0)
                _exit(126);
        }
        execv(path, argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    *out_fd = pipefd[0];
    return pid;
}

int testsrv_start(struct testsrv *s, const char *name, const char *const *args)
{
    return testsrv_start_rlimit(s, name, args, -1, 0);
}

int testsrv_start_rlimit(struct testsrv *s, const char *name, const char *const *args,
                         int resource, unsigned long limit)
{
    char path[512], line[4096];
    const char *argv[64];
    size_t n = 0;

    memset(s, 0, sizeof *s);
    s->out_fd = -1;
    snprintf(path, sizeof path, "%s/%s", testsrv_bin_dir(), name);
    argv[n++] = path;
    for (size_t i = 0; args && args[i] && n < 60; i++)
        argv[n++] = args[i];
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n] = NULL;

    s->pid = spawn(path, (char *const *)argv, &s->out_fd, resource, limit);
    if (s->pid < 0)
        return -1;
    if (testsrv_read_line(s->out_fd, line, sizeof line, 5000) < 0)
        goto fail;
    s->listening = json_loads(line, 0, NULL);
    json_t *port = json_object_get(s->listening, "port");
    if (!json_is_integer(port))
        goto fail;
    s->port = (int)json_integer_value(port);
    live_add(s);
    return 0;
fail:
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    close(s->out_fd);
    json_decref(s->listening);
    memset(s, 0, sizeof *s);
    return -1;
}

static int wait_exit(pid_t pid, int timeout_ms, int *status)
{
    uint64_t deadline = mono_now_us() + (uint64_t)timeout_ms * 1000;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 || mono_now_us() >= deadline)
            return -1;
        usleep(2000);
    }
}

static int decode_status(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

json_t *testsrv_stop(struct testsrv *s, int sig, int timeout_ms, int *exit_status)
{
    char line[8192];
    json_t *stopped = NULL;
    int st;

    live_remove(s->pid);
    kill(s->pid, sig);
    /* A sanitized server is slow to exit: TSan alone sleeps 1 s at exit (atexit_sleep_ms, to
     * catch threads still running then) and on a loaded machine the rest takes seconds too. */
    const char *sanitized = getenv("TVSA_SANITIZED");
    if (sanitized && *sanitized)
        timeout_ms *= 3;
    /* The stopped line is the last thing written; take the last JSON line before EOF. */
    uint64_t deadline = mono_now_us() + (uint64_t)timeout_ms * 1000;
    while (testsrv_read_line(s->out_fd, line, sizeof line, remaining_ms(deadline)) >= 0) {
        json_t *obj = json_loads(line, 0, NULL);
        const char *ev = json_string_value(json_object_get(obj, "event"));
        if (ev && strcmp(ev, "stopped") == 0) {
            json_decref(stopped);
            stopped = obj;
        } else {
            json_decref(obj);
        }
    }
    if (wait_exit(s->pid, remaining_ms(deadline), &st) < 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        *exit_status = -1;
    } else {
        *exit_status = decode_status(st);
    }
    close(s->out_fd);
    json_decref(s->listening);
    memset(s, 0, sizeof *s);
    return stopped;
}

int testsrv_connect(int port)
{
    char err[256];
    int fd = sock_connect_tcp("127.0.0.1", port, err, sizeof err);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

size_t testsrv_read_full(int fd, void *buf, size_t len, int timeout_ms)
{
    uint64_t deadline = mono_now_us() + (uint64_t)timeout_ms * 1000;
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {fd, POLLIN, 0};
        int rc = poll(&p, 1, remaining_ms(deadline));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        ssize_t r = recv(fd, (char *)buf + got, len - got, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

/* Drains both pipes into their buffers until EOF on both or the deadline. */
static void capture(int out_fd, char *out, size_t outlen, int err_fd, char *err, size_t errlen,
                    uint64_t deadline)
{
    size_t no = 0, ne = 0;
    struct pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open_count = 2;
    char sink[4096];

    while (open_count > 0) {
        int rc = poll(p, 2, remaining_ms(deadline));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            char *dst = i == 0 ? out : err;
            size_t cap = i == 0 ? outlen : errlen;
            size_t *used = i == 0 ? &no : &ne;
            ssize_t r;
            if (dst && *used + 1 < cap)
                r = read(p[i].fd, dst + *used, cap - 1 - *used);
            else
                r = read(p[i].fd, sink, sizeof sink);
            if (r <= 0) {
                p[i].fd = -1;
                open_count--;
            } else if (dst && *used + 1 < cap) {
                *used += (size_t)r;
            }
        }
    }
    if (out && outlen)
        out[no < outlen ? no : outlen - 1] = '\0';
    if (err && errlen)
        err[ne < errlen ? ne : errlen - 1] = '\0';
}

int testsrv_run(const char *const *argv, char *out, size_t outlen, char *err, size_t errlen,
                int timeout_ms)
{
    char path[512];
    int po[2], pe[2], st;

    if (strchr(argv[0], '/'))
        snprintf(path, sizeof path, "%s", argv[0]);
    else
        snprintf(path, sizeof path, "%s/%s", testsrv_bin_dir(), argv[0]);
    if (pipe2(po, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], STDOUT_FILENO);
        dup2(pe[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        execv(path, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    if (pid < 0) {
        close(po[0]);
        close(pe[0]);
        return -1;
    }
    uint64_t deadline = mono_now_us() + (uint64_t)timeout_ms * 1000;
    capture(po[0], out, outlen, pe[0], err, errlen, deadline);
    close(po[0]);
    close(pe[0]);
    if (wait_exit(pid, remaining_ms(deadline), &st) < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return decode_status(st);
}

int testsrv_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

long testsrv_proc_status(pid_t pid, const char *key)
{
    char path[64], line[256];
    size_t klen = strlen(key);
    long v = -1;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

double testsrv_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long utime, stime;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name, which may itself hold spaces and parentheses. */
    char *p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                            &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}
