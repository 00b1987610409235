/* loadgen --procs: see procs.h. The supervisor talks to each worker over two pipes, one line
 * per message: it sends "step I" and "go" and "quit"; a worker answers "ready", "settled",
 * then the step's JSON on one line, or "stopped" when a signal cut the set-up short. Workers
 * are forked before any thread exists (the engine's threads start in each worker). */
#include "procs.h"

#include <arpa/inet.h>
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

#include "engine.h"
#include "lgjson.h"
#include "result.h"
#include "run.h"
#include "stopsig.h"

#define READY_TIMEOUT_MS 30000  /* a worker starts its engine within this */

struct worker {
    pid_t pid;
    int cmd;       /* supervisor -> worker */
    int res;       /* worker -> supervisor */
    FILE *in;      /* res, line by line */
    int gone;      /* EOF seen or killed */
};

void lg_procs_share(const struct lg_config *cfg, int k, struct lg_config *w)
{
    long n = cfg->procs;
    *w = *cfg;
    for (int i = 0; i < cfg->nsteps; i++)
        w->connections[i] = cfg->connections[i] / n + (k < cfg->connections[i] % n);
    w->rate = cfg->rate / (double)n;
    if (cfg->src_count >= (uint32_t)n) {
        uint32_t a = (uint32_t)((uint64_t)cfg->src_count * (uint64_t)k / (uint64_t)n);
        uint32_t b = (uint32_t)((uint64_t)cfg->src_count * (uint64_t)(k + 1) / (uint64_t)n);
        struct in_addr x = {htonl(cfg->src_first + a)}, y = {htonl(cfg->src_first + b - 1)};
        char xs[INET_ADDRSTRLEN], ys[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &x, xs, sizeof xs);
        inet_ntop(AF_INET, &y, ys, sizeof ys);
        w->src_first = cfg->src_first + a;
        w->src_count = b - a;
        snprintf(w->source_ips, sizeof w->source_ips, "%s-%s", xs, ys);
    }
    w->server_pid = 0;
    w->json_path = NULL;
    w->quiet = 1;
    w->start_at = 0;
    w->procs = 1;
}

/* ---- the worker ------------------------------------------------------------------------- */

static int send_line(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t k = write(fd, s + off, n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        off += (size_t)k;
    }
    return 0;
}

/* The worker's command loop; returns its exit status. */
static int worker_run(const struct lg_config *w, int cmd, int res)
{
    char err[256], line[64];
    int stopfd = stopsig_install(err, sizeof err);
    struct lg_engine *e = stopfd < 0 ? NULL : lg_engine_start(w, err, sizeof err);
    if (e == NULL) {
        fprintf(stderr, "loadgen worker: %s\n", err);
        return 1;
    }
    FILE *in = fdopen(cmd, "r");
    struct lg_stats *scratch = malloc(sizeof *scratch);
    struct lg_step_result *r = malloc(sizeof *r);
    int rc = in && scratch && r && send_line(res, "ready\n") == 0 ? 0 : 1;
    while (rc == 0 && fgets(line, sizeof line, in)) {
        int step;
        if (sscanf(line, "step %d", &step) != 1 || step < 0 || step >= w->nsteps)
            break; /* "quit", or the supervisor gone */
        memset(r, 0, sizeof *r);
        if (lg_step_settle(w, e, stopfd, step, r)) {
            send_line(res, "stopped\n");
            break;
        }
        if (send_line(res, "settled\n") < 0 || fgets(line, sizeof line, in) == NULL ||
            strcmp(line, "go\n") != 0)
            break;
        int stopped = lg_step_finish(w, e, stopfd, step, scratch, r);
        json_t *j = lg_step_json(w, r, NULL);
        char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
        json_decref(j);
        if (text == NULL || send_line(res, text) < 0 || send_line(res, "\n") < 0)
            rc = 1;
        free(text);
        if (stopped)
            break;
    }
    lg_engine_free(e);
    free(scratch);
    free(r);
    if (in)
        fclose(in);
    close(res);
    close(stopfd);
    return rc;
}

/* ---- the supervisor --------------------------------------------------------------------- */

/* Forks worker k. 0, or -1 with err filled. */
static int worker_start(const struct lg_config *cfg, int k, struct worker *all, char *err,
                        size_t errlen)
{
    struct worker *wk = &all[k];
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe2(up, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        close(down[0]);
        close(down[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(down[0]);
        close(down[1]);
        close(up[0]);
        close(up[1]);
        return -1;
    }
    if (pid == 0) {
        struct lg_config w;
        /* Only this worker's ends: a pipe of another worker held open here would keep it
         * from seeing the supervisor go. And it goes with the supervisor. */
        for (int j = 0; j < k; j++) {
            close(all[j].cmd);
            close(all[j].res);
        }
        close(down[1]);
        close(up[0]);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        lg_procs_share(cfg, k, &w);
        _exit(worker_run(&w, down[0], up[1]));
    }
    close(down[0]);
    close(up[1]);
    wk->pid = pid;
    wk->cmd = down[1];
    wk->res = up[0];
    wk->in = fdopen(up[0], "r");
    wk->gone = 0;
    if (wk->in == NULL) {
        /* Not counted as started, so the caller would neither stop nor reap it. */
        snprintf(err, errlen, "fdopen: %s", strerror(errno));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(wk->cmd);
        close(wk->res);
        return -1;
    }
    return 0;
}

/* Asks every worker to stop (SIGTERM), once. */
static void stop_all(struct worker *wk, int n, int *forwarded)
{
    if (*forwarded)
        return;
    *forwarded = 1;
    for (int k = 0; k < n; k++)
        if (!wk[k].gone)
            kill(wk[k].pid, SIGTERM);
}

/* The next line from worker k into *buf (malloc'd, grown), waiting on it and on the stop
 * signal (which is forwarded to every worker: they finish their step and answer). Returns
 * its length, or -1 when the worker is gone or silent for timeout_ms (-1: no limit). */
static ssize_t read_reply(struct worker *wk, int n, int k, int stopfd, int *forwarded,
                          char **buf, size_t *cap, int timeout_ms)
{
    for (int waited = 0; timeout_ms < 0 || waited < timeout_ms; waited += 100) {
        struct pollfd p[2] = {{.fd = wk[k].res, .events = POLLIN}, {.fd = stopfd, .events = POLLIN}};
        int r = poll(p, *forwarded ? 1 : 2, 100);
        if (r < 0 && errno != EINTR)
            break;
        if (!*forwarded && (p[1].revents & POLLIN || stopsig_received()))
            stop_all(wk, n, forwarded);
        if (p[0].revents & (POLLIN | POLLHUP)) {
            ssize_t len = getline(buf, cap, wk[k].in);
            if (len <= 0)
                break;
            return len;
        }
    }
    wk[k].gone = 1;
    return -1;
}

/* Reaps every worker (after "quit"); 0 when all exited 0, else -1 and a message each. */
static int reap_all(struct worker *wk, int n)
{
    int bad = 0;
    for (int k = 0; k < n; k++) {
        int st;
        if (wk[k].cmd >= 0)
            send_line(wk[k].cmd, "quit\n");
        if (wk[k].cmd >= 0)
            close(wk[k].cmd);
        if (wk[k].in)
            fclose(wk[k].in);
        pid_t r;
        while ((r = waitpid(wk[k].pid, &st, 0)) < 0 && errno == EINTR)
            ;
        if (r < 0) {
            fprintf(stderr, "loadgen: worker %d (pid %d): waitpid: %s\n", k + 1,
                    (int)wk[k].pid, strerror(errno));
            bad = 1;
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "loadgen: worker %d (pid %d) failed: %s %d\n", k + 1,
                    (int)wk[k].pid, WIFSIGNALED(st) ? "signal" : "exit",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

/* One step over every worker in lock-step: all settle, then all measure at once ("go").
 * Appends the merged step to steps. Returns 1 if stopped, -1 if a worker failed, else 0. */
static int procs_step(const struct lg_config *cfg, struct worker *wk, int stopfd, int step,
                      const struct proc_sample *base, struct lg_step_result *sum,
                      struct lg_step_result *one, json_t *steps, int *forwarded)
{
    int n = (int)cfg->procs, stopped = 0;
    char cmd[32], *buf = NULL, err[200];
    size_t cap = 0;
    snprintf(cmd, sizeof cmd, "step %d\n", step);
    for (int k = 0; k < n; k++)
        if (send_line(wk[k].cmd, cmd) < 0)
            goto failed;
    for (int k = 0; k < n; k++) {
        if (read_reply(wk, n, k, stopfd, forwarded, &buf, &cap, -1) < 0)
            goto failed;
        stopped |= strcmp(buf, "stopped\n") == 0;
    }
    if (stopped || *forwarded) {
        free(buf);
        return 1; /* a step cut short in its set-up is left out */
    }
    memset(sum, 0, sizeof *sum);
    if (cfg->server_pid)
        sum->have_server =
            procstat_sample((pid_t)cfg->server_pid, &sum->s0, err, sizeof err) == 0;
    for (int k = 0; k < n; k++)
        if (send_line(wk[k].cmd, "go\n") < 0)
            goto failed;
    for (int k = 0; k < n; k++) {
        if (read_reply(wk, n, k, stopfd, forwarded, &buf, &cap, -1) < 0)
            goto failed;
        json_t *j = json_loads(buf, 0, NULL);
        int ok = j && lg_step_read(j, one, err, sizeof err) == 0;
        json_decref(j);
        if (!ok) {
            fprintf(stderr, "loadgen: worker %d's step %d: %s\n", k + 1, step + 1,
                    j ? err : "not JSON");
            goto failed;
        }
        lg_step_add(sum, one); /* the workers' figures; the server samples stay */
    }
    if (sum->have_server)
        sum->have_server =
            procstat_sample((pid_t)cfg->server_pid, &sum->s1, err, sizeof err) == 0;
    if (cfg->server_pid && !sum->have_server)
        fprintf(stderr, "loadgen: step %d has no server figures: %s\n", step + 1, err);
    json_array_append_new(steps, lg_step_json(cfg, sum, base));
    lg_step_summary(cfg, sum);
    procstat_free(&sum->s0);
    procstat_free(&sum->s1);
    free(buf);
    return sum->interrupted || *forwarded;
failed:
    procstat_free(&sum->s0);
    free(buf);
    return -1;
}

int lg_procs_main(const struct lg_config *cfg)
{
    int n = (int)cfg->procs, started = 0, rc = 0, forwarded = 0;
    struct worker wk[LG_MAX_PROCS];
    char err[256], *buf = NULL;
    size_t cap = 0;
    for (; started < n; started++)
        if (worker_start(cfg, started, wk, err, sizeof err) < 0)
            break;
    int stopfd = stopsig_install(err, sizeof err);
    if (started < n || stopfd < 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        for (int k = 0; k < started; k++)
            kill(wk[k].pid, SIGTERM);
        reap_all(wk, started);
        return 1;
    }
    /* Every engine started before the baseline, as in one process. */
    for (int k = 0; k < n && rc == 0; k++)
        if (read_reply(wk, n, k, stopfd, &forwarded, &buf, &cap, READY_TIMEOUT_MS) < 0 ||
            strcmp(buf, "ready\n") != 0)
            rc = 1;
    free(buf);
    struct proc_sample base;
    memset(&base, 0, sizeof base);
    if (rc == 0 && cfg->server_pid && lg_baseline_sample(cfg, &base, err, sizeof err) < 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        rc = 1;
    }
    json_t *steps = json_array();
    /* Zeroed: a worker lost before step 0's "go" sends procs_step to its failure path, which
     * frees sum's server samples before any step has set them. */
    struct lg_step_result *sum = calloc(1, sizeof *sum), *one = calloc(1, sizeof *one);
    int interrupted = rc == 0 && lg_wait_start_at(cfg, stopfd);
    if (interrupted)
        stop_all(wk, n, &forwarded);
    double wall_start = lg_wall_now();
    for (int i = 0; rc == 0 && !interrupted && sum && one && i < cfg->nsteps; i++) {
        int r = procs_step(cfg, wk, stopfd, i, &base, sum, one, steps, &forwarded);
        if (r < 0)
            rc = 1;
        interrupted = r > 0;
    }
    free(sum);
    free(one);
    if (reap_all(wk, n) < 0)
        rc = 1;
    json_t *doc = rc == 0 ? lg_run_doc(cfg, steps, interrupted, wall_start) : NULL;
    if (rc == 0 && (doc == NULL || lg_json_write(doc, cfg->json_path) < 0)) {
        fprintf(stderr, "loadgen: cannot write the JSON to %s: %s\n",
                cfg->json_path ? cfg->json_path : "stdout", strerror(errno));
        rc = 1;
    }
    if (doc == NULL)
        json_decref(steps);
    json_decref(doc);
    procstat_free(&base);
    close(stopfd);
    return rc ? rc : interrupted ? 130 : 0;
}
