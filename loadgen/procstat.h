/* /proc sampling for loadgen --server-pid: a server's memory, threads, CPU and context
 * switches (summed over its process tree: a supervisor and its workers), and the system-wide
 * kernel memory a connection costs. */
#ifndef TVSA_LG_PROCSTAT_H
#define TVSA_LG_PROCSTAT_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One thread's context switches, from /proc/PID/task/TID/status. */
struct proc_task {
    long tid;
    uint64_t voluntary, involuntary;
};

#define PROCSTAT_MAX_PROCS 1024  /* processes of one tree sampled at most */

/* One process of the sampled tree. */
struct proc_one {
    long pid;
    long rss_kib, vsz_kib, threads;
    double user_s, sys_s;
};

/* A sample of the process tree under PID (PID, its children, theirs...: a supervisor and its
 * workers); the figures are sums over every process of the tree. */
struct proc_sample {
    long rss_kib, vsz_kib, threads;   /* /proc/PID/status VmRSS, VmSize, Threads */
    uint64_t ctx_voluntary;           /* summed over /proc/PID/task/ * /status */
    uint64_t ctx_involuntary;
    struct proc_task *tasks;          /* per thread, sorted by tid (malloc'd; procstat_free) */
    size_t ntasks, task_cap;
    double user_s, sys_s;             /* /proc/PID/stat utime, stime */
    struct proc_one *procs;           /* each process, PID first (malloc'd; procstat_free) */
    size_t nprocs;
    long kernel_stack_kib;            /* /proc/meminfo KernelStack (system-wide) */
    long sock_mem_pages;              /* /proc/net/sockstat TCP+UDP mem (system-wide) */
};

/* Samples the tree under pid and the system-wide figures. 0, or -1 with err filled (no such
 * process...). Release it with procstat_free. */
int procstat_sample(pid_t pid, struct proc_sample *s, char *err, size_t errlen);
/* The Threads of the tree under pid (cheap, for polling), or -1. */
long procstat_threads(pid_t pid);
/* Frees what a sample holds (a zeroed sample is fine too). */
void procstat_free(struct proc_sample *s);

/* Context switches between two samples, summed only over the threads present in both (a
 * thread that exited or started in between would make the totals' difference wrong, even
 * negative). Returns 1 when some thread of either sample was left out, else 0. */
int procstat_ctx_delta(const struct proc_sample *s0, const struct proc_sample *s1,
                       uint64_t *voluntary, uint64_t *involuntary);

#endif
