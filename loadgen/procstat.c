/* /proc sampling for loadgen --server-pid (see procstat.h). */
#include "procstat.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Value of a "Key:   N ..." line of a /proc text file, or -1. */
static long read_key(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static int cmp_task(const void *a, const void *b)
{
    long x = ((const struct proc_task *)a)->tid, y = ((const struct proc_task *)b)->tid;
    return x < y ? -1 : x > y;
}

/* Context switches of every live thread, kept per tid and summed. Threads that already
 * exited are missed: the servers' `stopped` line carries getrusage totals for that. */
static void sum_task_switches(pid_t pid, struct proc_sample *s)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    size_t cap = s->task_cap;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char sp[128];
        snprintf(sp, sizeof sp, "/proc/%d/task/%.20s/status", (int)pid, de->d_name);
        FILE *f = fopen(sp, "r");
        if (f == NULL)
            continue; /* the thread exited meanwhile */
        struct proc_task pt = {.tid = strtol(de->d_name, NULL, 10)};
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0)
                pt.voluntary = strtoull(line + 24, NULL, 10);
            else if (strncmp(line, "nonvoluntary_ctxt_switches:", 27) == 0)
                pt.involuntary = strtoull(line + 27, NULL, 10);
        }
        fclose(f);
        s->ctx_voluntary += pt.voluntary;
        s->ctx_involuntary += pt.involuntary;
        if (s->ntasks == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct proc_task *nt = realloc(s->tasks, ncap * sizeof *nt);
            if (nt == NULL)
                continue; /* the totals stay right; the per-thread delta will say incomplete */
            s->tasks = nt;
            cap = s->task_cap = ncap;
        }
        s->tasks[s->ntasks++] = pt;
    }
    closedir(d);
}

int procstat_ctx_delta(const struct proc_sample *s0, const struct proc_sample *s1,
                       uint64_t *voluntary, uint64_t *involuntary)
{
    uint64_t vol = 0, invol = 0;
    size_t i = 0, j = 0, both = 0;
    while (i < s0->ntasks && j < s1->ntasks) {
        const struct proc_task *a = &s0->tasks[i], *b = &s1->tasks[j];
        if (a->tid < b->tid) {
            i++;
        } else if (a->tid > b->tid) {
            j++;
        } else {
            /* Guard against a tid reused by a new thread between the samples. */
            if (b->voluntary >= a->voluntary && b->involuntary >= a->involuntary) {
                vol += b->voluntary - a->voluntary;
                invol += b->involuntary - a->involuntary;
                both++;
            }
            i++;
            j++;
        }
    }
    *voluntary = vol;
    *involuntary = invol;
    return both != s0->ntasks || both != s1->ntasks;
}

/* /proc/PID/stat read into buf, from just after the name (field 2, which may hold spaces and
 * parentheses, so after the last ')'): field 3 on. NULL when it cannot be read. */
static const char *stat_fields(long pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p ? p + 1 : NULL;
}

/* utime and stime (fields 14 and 15) of /proc/PID/stat. */
static int read_cpu(pid_t pid, struct proc_sample *s)
{
    char buf[1024];
    const char *p = stat_fields(pid, buf, sizeof buf);
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* After ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15). */
    if (sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    s->user_s = (double)ut / hz;
    s->sys_s = (double)st / hz;
    return 0;
}

/* Sum of the `mem` fields (pages) of the TCP and UDP lines of /proc/net/sockstat. */
static long sock_mem_pages(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    if (f == NULL)
        return -1;
    char line[256];
    long total = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "TCP:", 4) != 0 && strncmp(line, "UDP:", 4) != 0)
            continue;
        char *m = strstr(line, " mem ");
        if (m)
            total += strtol(m + 5, NULL, 10);
    }
    fclose(f);
    return total;
}

/* The parent pid (field 4 of /proc/PID/stat), or -1. */
static long read_ppid(long pid)
{
    char buf[512];
    const char *p = stat_fields(pid, buf, sizeof buf);
    long ppid;
    return p && sscanf(p, " %*c %ld", &ppid) == 1 ? ppid : -1;
}

/* root, then every process below it (children, grandchildren...) into out[max], found by
 * each /proc/N/stat's parent pid. Returns how many (at least 1: root). */
static size_t list_tree(pid_t root, long *out, size_t max)
{
    long pids[PROCSTAT_MAX_PROCS * 8], ppids[PROCSTAT_MAX_PROCS * 8];
    size_t n = 0, found = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL && n < sizeof pids / sizeof pids[0]) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        long pid = strtol(de->d_name, NULL, 10), pp = read_ppid(pid);
        if (pp <= 0)
            continue;
        pids[n] = pid;
        ppids[n++] = pp;
    }
    if (d)
        closedir(d);
    out[found++] = root;
    /* Breadth first: out[] is the queue. */
    for (size_t q = 0; q < found; q++)
        for (size_t i = 0; i < n && found < max; i++)
            if (ppids[i] == out[q])
                out[found++] = pids[i];
    return found;
}

/* One process's own figures into *p, its threads' switches appended to s. 0, or -1. */
static int sample_one(pid_t pid, struct proc_one *p, struct proc_sample *s)
{
    char path[64];
    struct proc_sample cpu;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    p->pid = pid;
    p->rss_kib = read_key(path, "VmRSS");
    p->vsz_kib = read_key(path, "VmSize");
    p->threads = read_key(path, "Threads");
    if (p->rss_kib < 0 || p->threads < 0 || read_cpu(pid, &cpu) < 0)
        return -1;
    p->user_s = cpu.user_s;
    p->sys_s = cpu.sys_s;
    sum_task_switches(pid, s);
    return 0;
}

long procstat_threads(pid_t pid)
{
    long pids[PROCSTAT_MAX_PROCS];
    char path[64];
    long total = 0;
    size_t n = list_tree(pid, pids, PROCSTAT_MAX_PROCS);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/proc/%ld/status", pids[i]);
        long t = read_key(path, "Threads");
        if (t < 0 && i == 0)
            return -1;
        total += t > 0 ? t : 0;
    }
    return total;
}

void procstat_free(struct proc_sample *s)
{
    free(s->tasks);
    s->tasks = NULL;
    s->ntasks = s->task_cap = 0;
    free(s->procs);
    s->procs = NULL;
    s->nprocs = 0;
}

int procstat_sample(pid_t pid, struct proc_sample *s, char *err, size_t errlen)
{
    long pids[PROCSTAT_MAX_PROCS];
    memset(s, 0, sizeof *s);
    size_t n = list_tree(pid, pids, PROCSTAT_MAX_PROCS);
    s->procs = calloc(n, sizeof *s->procs);
    if (s->procs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct proc_one *p = &s->procs[s->nprocs];
        if (sample_one((pid_t)pids[i], p, s) < 0) {
            if (i > 0)
                continue; /* a worker that exited meanwhile */
            snprintf(err, errlen, "cannot read /proc/%d (no such process, or a kernel thread)",
                     (int)pid);
            procstat_free(s);
            return -1;
        }
        s->nprocs++;
        s->rss_kib += p->rss_kib;
        s->vsz_kib += p->vsz_kib > 0 ? p->vsz_kib : 0;
        s->threads += p->threads;
        s->user_s += p->user_s;
        s->sys_s += p->sys_s;
    }
    /* Threads of several processes: the delta matches them by tid (unique system-wide). */
    if (s->ntasks > 1)
        qsort(s->tasks, s->ntasks, sizeof *s->tasks, cmp_task);
    s->kernel_stack_kib = read_key("/proc/meminfo", "KernelStack");
    s->sock_mem_pages = sock_mem_pages();
    return 0;
}
