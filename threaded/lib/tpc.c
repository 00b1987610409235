/* Thread-per-connection runtime shared by the threaded servers: accept loop, one detached
 * thread per connection (or a fixed pool fed by a queue), --max-conns, --idle-timeout, and a
 * graceful stop that wakes every blocked handler with shutdown(). */
#include "tpc.h"

#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"
#include "sock.h"

#define STOP_WAIT_MS 900   /* the whole stop must fit in 1 s */
#define EMFILE_PAUSE_MS 100

struct tpc {
    const struct tpc_config *cfg;
    struct srv_stats *stats;
    pthread_attr_t attr;          /* detached (per-connection mode), --stack-kb */

    pthread_mutex_t lock;         /* guards every field below it */
    pthread_cond_t changed;       /* a handler finished, a connection was queued, or stop */
    struct list_node live;        /* connections a handler is serving (tpc_conn.link) */
    long running;                 /* threads that hold a connection (registered or about to) */
    int stopping;
    struct tpc_conn *queue;       /* pool mode: accepted connections waiting for a worker (a
                                   * ring of fds with their peer addresses) */
    size_t qhead, qlen, qcap;

    /* Owned by the accept thread (the caller of tpc_run); read after the workers stopped. */
    uint64_t threads_created, create_failures;
    uint64_t create_failure_logged_ns; /* serve_log_limited's stamp */
    /* Peer addresses by fd for connection threads (see dispatch): written by the accept
     * thread before pthread_create, read once by the thread that owns that fd. Sized by the fd
     * limit; the kernel maps its pages only as fds are used. */
    struct {
        socklen_t len;
        struct sockaddr_in6 addr; /* large enough for AF_INET and AF_INET6 */
    } *peers;
    size_t npeers;
};

/* The runtime of this process, for connection threads: set by tpc_run before it starts any
 * thread, read-only while threads run. A global instead of a malloc'd argument because
 * connection threads must not touch the allocator (see conn_thread). */
static struct tpc *runtime;

/* Drops a connection that never reached a handler, and the `running` slot it held. */
static void conn_drop(struct tpc *t, int fd)
{
    close(fd);
    srvstats_closed(t->stats, 0, 0);
    pthread_mutex_lock(&t->lock);
    t->running--;
    pthread_cond_broadcast(&t->changed);
    pthread_mutex_unlock(&t->lock);
}

/* Links c into the registry, unless the runtime is stopping. 0, or -1. */
static int conn_enter_locked(struct tpc *t, struct tpc_conn *c)
{
    if (t->stopping)
        return -1;
    list_push(&t->live, &c->link);
    return 0;
}

/* Unlinks and closes a served connection; the fd is closed only after it left the registry,
 * so the stopper can never shutdown() an fd number that was already reused. */
static void conn_leave(struct tpc *t, struct tpc_conn *c)
{
    pthread_mutex_lock(&t->lock);
    list_remove(&c->link);
    pthread_mutex_unlock(&t->lock);

    close(c->fd);
    srvstats_closed(t->stats, c->bytes_in, c->bytes_out);

    pthread_mutex_lock(&t->lock);
    t->running--;
    pthread_cond_broadcast(&t->changed);
    pthread_mutex_unlock(&t->lock);
}

/* A connection's own thread. Its record lives on its stack and it never calls malloc or free:
 * the first allocator call in a thread gives it a glibc arena (64 MiB of address space), which
 * would bury the stack cost this testbed measures. */
static void *conn_thread(void *arg)
{
    struct tpc *t = runtime;
    struct tpc_conn c = {.fd = (int)(intptr_t)arg};
    if ((size_t)c.fd < t->npeers) {
        c.peer_len = t->peers[c.fd].len;
        memcpy(&c.peer, &t->peers[c.fd].addr, sizeof t->peers[c.fd].addr);
    }

    pthread_mutex_lock(&t->lock);
    int rc = conn_enter_locked(t, &c);
    pthread_mutex_unlock(&t->lock);
    if (rc < 0) {
        conn_drop(t, c.fd);
        return NULL;
    }
    t->cfg->handler(&c, t->cfg->arg);
    conn_leave(t, &c);
    return NULL;
}

static void *pool_worker(void *arg)
{
    struct tpc *t = arg;

    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (!t->stopping && t->qlen == 0)
            pthread_cond_wait(&t->changed, &t->lock);
        if (t->stopping)
            break;
        struct tpc_conn c = t->queue[t->qhead];
        t->qhead = (t->qhead + 1) % t->qcap;
        t->qlen--;
        t->running++;
        conn_enter_locked(t, &c); /* cannot fail: not stopping, under the lock */
        pthread_mutex_unlock(&t->lock);
        t->cfg->handler(&c, t->cfg->arg);
        conn_leave(t, &c);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* Pool mode: appends an accepted connection to the queue, growing it. 0, or -1 when memory
 * runs out. */
static int queue_push_locked(struct tpc *t, const struct tpc_conn *accepted)
{
    if (t->qlen == t->qcap) {
        size_t cap = t->qcap ? t->qcap * 2 : 64;
        struct tpc_conn *q = malloc(cap * sizeof *q);
        if (q == NULL)
            return -1;
        for (size_t i = 0; i < t->qlen; i++)
            q[i] = t->queue[(t->qhead + i) % t->qcap];
        free(t->queue);
        t->queue = q;
        t->qcap = cap;
        t->qhead = 0;
    }
    t->queue[(t->qhead + t->qlen) % t->qcap] = *accepted;
    t->qlen++;
    pthread_cond_signal(&t->changed);
    return 0;
}

static void configure_socket(const struct tpc_config *cfg, int fd)
{
    sock_set_nodelay(fd);
    if (cfg->idle_timeout_s > 0) {
        /* A blocking read or write that waits this long returns EAGAIN: the slowloris defence
         * of a thread that has nothing else to wait on, in both directions (a client that
         * sends and never reads blocks its thread in send()). */
        struct timeval tv = {cfg->idle_timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
}

/* A number from a /proc or /sys file, or -1. */
static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* Lines of a /proc file that start with key ("Threads:"), its number; or the line count when
 * key is NULL. -1 if unreadable. */
static long proc_count(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    char line[512];
    long n = 0;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (key == NULL)
            n++;
        else if (strncmp(line, key, strlen(key)) == 0) {
            n = strtol(line + strlen(key), NULL, 10);
            break;
        }
    }
    fclose(f);
    return n;
}

/* The pids cgroup (v1 or v2) this process is in: its pids.max ("max" gives -1) and current. */
static void pids_cgroup(long *max, long *current)
{
    char line[512], path[700];
    FILE *f = fopen("/proc/self/cgroup", "r");
    *max = *current = -1;
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, ":pids:"), *dir = NULL;
        const char *root = "/sys/fs/cgroup/pids";
        if (p)
            dir = p + 6;
        else if (strncmp(line, "0::", 3) == 0) {
            dir = line + 3;
            root = "/sys/fs/cgroup";
        }
        if (dir == NULL)
            continue;
        dir[strcspn(dir, "\n")] = '\0';
        snprintf(path, sizeof path, "%s%s/pids.max", root, dir);
        long m = read_long(path);
        snprintf(path, sizeof path, "%s%s/pids.current", root, dir);
        long c = read_long(path);
        if (c >= 0) {
            *max = m;
            *current = c;
            if (p)
                break; /* v1's pids line wins over the v2 line */
        }
    }
    fclose(f);
}

/* Which limit a failed pthread_create most likely hit, with the figures, into buf. At most
 * once a second (the caller's rate limit): it reads /proc/self/maps, which is long when
 * there are tens of thousands of threads. */
static void thread_limit_guess(int rc, char *buf, size_t len)
{
    struct rlimit nproc, as;
    long threads = proc_count("/proc/self/status", "Threads:");
    long maps = proc_count("/proc/self/maps", NULL);
    long map_max = read_long("/proc/sys/vm/max_map_count");
    long pid_max = read_long("/proc/sys/kernel/pid_max");
    long threads_max = read_long("/proc/sys/kernel/threads-max");
    long cg_max, cg_cur;
    const char *likely;

    pids_cgroup(&cg_max, &cg_cur);
    getrlimit(RLIMIT_NPROC, &nproc);
    getrlimit(RLIMIT_AS, &as);
    if (map_max > 0 && maps >= map_max - 16)
        likely = "vm.max_map_count (each thread maps its stack and a guard page)";
    else if (cg_max > 0 && cg_cur >= cg_max - 2)
        likely = "the pids cgroup's pids.max";
    else if (as.rlim_cur != RLIM_INFINITY)
        likely = "RLIMIT_AS: no address space for another stack";
    else if (rc == ENOMEM)
        likely = "memory";
    else if (nproc.rlim_cur != RLIM_INFINITY && geteuid() != 0 &&
             threads >= (long)nproc.rlim_cur - 16)
        likely = "RLIMIT_NPROC (ulimit -u)";
    else if (pid_max > 0 && threads >= pid_max - 1000)
        likely = "kernel.pid_max";
    else
        likely = "kernel.pid_max or kernel.threads-max (system-wide), or memory";
    snprintf(buf, len,
             "likely limit: %s [threads %ld, maps %ld of max_map_count %ld, pid_max %ld, "
             "threads-max %ld, pids cgroup %ld of %ld, RLIMIT_NPROC %ld]",
             likely, threads, maps, map_max, pid_max, threads_max, cg_cur, cg_max,
             nproc.rlim_cur == RLIM_INFINITY ? -1L : (long)nproc.rlim_cur);
}

/* Hands an accepted, counted connection to a thread; closes it if that fails. */
static void dispatch(struct tpc *t, const struct tpc_conn *accepted)
{
    int fd = accepted->fd;
    pthread_mutex_lock(&t->lock);
    int rc = t->stopping ? -1 : 0;
    if (rc == 0 && t->cfg->pool > 0)
        rc = queue_push_locked(t, accepted);
    else if (rc == 0)
        t->running++; /* held for the thread from now, so the stop waits for it */
    pthread_mutex_unlock(&t->lock);
    if (rc < 0) {
        close(fd);
        srvstats_closed(t->stats, 0, 0);
        return;
    }
    if (t->cfg->pool > 0)
        return;

    /* The peer address waits in a table indexed by fd: the fd number is not reused until this
     * connection's thread closes it, and pthread_create orders the write before the thread's
     * read. (A malloc'd copy would make the thread free() it; see conn_thread.) */
    if ((size_t)fd < t->npeers) {
        t->peers[fd].len = accepted->peer_len;
        memcpy(&t->peers[fd].addr, &accepted->peer, sizeof t->peers[fd].addr);
    }
    pthread_t tid;
    rc = pthread_create(&tid, &t->attr, conn_thread, (void *)(intptr_t)fd);
    if (rc != 0) {
        /* EAGAIN under a PID or thread limit, or when memory for stacks runs out: drop this
         * one connection, keep serving the others. */
        t->create_failures++;
        if (serve_log_due(&t->create_failure_logged_ns)) {
            char why[320];
            thread_limit_guess(rc, why, sizeof why);
            serve_log("pthread_create: %s (%llu so far); connection closed; %s", strerror(rc),
                      (unsigned long long)t->create_failures, why);
        }
        conn_drop(t, fd);
        return;
    }
    t->threads_created++;
}

/* Accepts until EAGAIN. Returns 1 when the fd table is full (the caller pauses). */
static int accept_batch(struct tpc *t)
{
    const struct tpc_config *cfg = t->cfg;

    for (;;) {
        struct tpc_conn accepted = {.peer_len = sizeof accepted.peer};
        int fd = accept4(cfg->listen_fd, (struct sockaddr *)&accepted.peer, &accepted.peer_len,
                         SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                return 1;
            return 0; /* EAGAIN, or an error the next poll will show again */
        }
        if (cfg->max_conns > 0 && srvstats_current(t->stats) >= (uint64_t)cfg->max_conns) {
            close(fd);
            srvstats_refused(t->stats);
            continue;
        }
        configure_socket(cfg, fd);
        srvstats_opened(t->stats);
        accepted.fd = fd;
        dispatch(t, &accepted);
    }
}

/* Returns how many times accepting paused. */
static unsigned long accept_loop(struct tpc *t, int stop_fd)
{
    struct pollfd p[2] = {{t->cfg->listen_fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    int paused = 0;
    unsigned long pauses = 0;

    for (;;) {
        /* While the fd table is full, wait on the stop fd only, so a full table costs a wake-up
         * every 100 ms instead of a busy loop on a listener that stays readable. */
        int rc = poll(paused ? &p[1] : p, paused ? 1 : 2, paused ? EMFILE_PAUSE_MS : -1);
        if (rc < 0 && errno != EINTR)
            return pauses;
        if (p[1].revents & POLLIN)
            return pauses;
        if (paused && rc == 0) {
            paused = 0;
            continue;
        }
        if (!paused && (p[0].revents & POLLIN) && accept_batch(t)) {
            paused = 1;
            if (pauses++ % 100 == 0)
                serve_log("accept: %s; pausing accepts for %d ms (%lu times)", strerror(errno),
                          EMFILE_PAUSE_MS, pauses);
        }
    }
}

static void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Stops accepting work, wakes every handler, waits for them. Returns handlers still running. */
static long stop_all(struct tpc *t)
{
    struct timespec deadline;

    deadline_in(&deadline, STOP_WAIT_MS);
    pthread_mutex_lock(&t->lock);
    t->stopping = 1;
    for (struct list_node *n = t->live.next; n != &t->live; n = n->next)
        shutdown(LIST_ENTRY(n, struct tpc_conn, link)->fd, SHUT_RDWR);
    while (t->qlen > 0) {
        close(t->queue[t->qhead].fd);
        srvstats_closed(t->stats, 0, 0);
        t->qhead = (t->qhead + 1) % t->qcap;
        t->qlen--;
    }
    pthread_cond_broadcast(&t->changed);
    while (t->running > 0)
        if (pthread_cond_timedwait(&t->changed, &t->lock, &deadline) == ETIMEDOUT)
            break;
    long left = t->running;
    pthread_mutex_unlock(&t->lock);
    return left;
}

int tpc_run(const struct tpc_config *cfg, int stop_fd, struct srv_stats *stats,
            struct tpc_result *result, char *err, size_t errlen)
{
    pthread_condattr_t cattr;
    pthread_t *workers = NULL;
    long nworkers = 0;
    int rc, ret = -1;

    memset(result, 0, sizeof *result);
    /* On the heap, not the stack: a handler that misses the stop deadline still touches it
     * after this function returned. */
    struct tpc *t = calloc(1, sizeof *t);
    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->cfg = cfg;
    t->stats = stats;
    list_init(&t->live);
    runtime = t;
    /* One malloc arena for the whole process: glibc gives each thread that allocates its own
     * arena (64 MiB of address space, up to 8 per core), which would show up in VSZ per
     * connection as if it were the thread's cost. The handlers here allocate little. */
    mallopt(M_ARENA_MAX, 1);
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        nofile.rlim_cur <= 1u << 20) {
        t->npeers = (size_t)nofile.rlim_cur;
        t->peers = calloc(t->npeers, sizeof *t->peers);
        if (t->peers == NULL)
            t->npeers = 0;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->changed, &cattr);
    pthread_condattr_destroy(&cattr);
    pthread_attr_init(&t->attr);

    if (cfg->stack_kb > 0 &&
        (rc = pthread_attr_setstacksize(&t->attr, (size_t)cfg->stack_kb * 1024)) != 0) {
        snprintf(err, errlen, "stack size %ld KiB: %s", cfg->stack_kb, strerror(rc));
        goto out;
    }
    if (cfg->pool > 0) {
        workers = calloc((size_t)cfg->pool, sizeof *workers);
        if (workers == NULL) {
            snprintf(err, errlen, "out of memory for %ld workers", cfg->pool);
            goto out;
        }
        for (; nworkers < cfg->pool; nworkers++) {
            rc = pthread_create(&workers[nworkers], &t->attr, pool_worker, t);
            if (rc != 0) {
                snprintf(err, errlen, "starting worker %ld of %ld: %s", nworkers + 1,
                         cfg->pool, strerror(rc));
                goto out;
            }
            t->threads_created++;
        }
    } else {
        pthread_attr_setdetachstate(&t->attr, PTHREAD_CREATE_DETACHED);
    }

    if (cfg->on_ready)
        cfg->on_ready(cfg->arg);
    result->accept_pauses = accept_loop(t, stop_fd);
    ret = 0;
out:
    result->handlers_unfinished = (uint64_t)stop_all(t);
    /* Workers leave their loop once stopping is set and their handler returned; a worker
     * still inside a handler after the deadline is left to exit with the process. */
    for (long i = 0; i < nworkers; i++) {
        if (result->handlers_unfinished == 0)
            pthread_join(workers[i], NULL);
        else
            pthread_detach(workers[i]);
    }
    free(workers);
    result->threads_created = t->threads_created;
    result->thread_create_failures = t->create_failures;
    size_t stack_bytes = 0;
    pthread_attr_getstacksize(&t->attr, &stack_bytes);
    result->thread_stack_bytes = (long)stack_bytes;
    if (result->handlers_unfinished > 0)
        return ret; /* t is still in use by those handlers; the process exits soon */
    free(t->queue);
    free(t->peers);
    pthread_attr_destroy(&t->attr);
    pthread_cond_destroy(&t->changed);
    pthread_mutex_destroy(&t->lock);
    free(t);
    runtime = NULL;
    return ret;
}
