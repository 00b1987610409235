/* /proc sampling for loadgen --server-pid: a server's memory, threads, CPU and context
 * switches, and the system-wide kernel memory a connection costs. */
#ifndef TVSA_LG_PROCSTAT_H
#define TVSA_LG_PROCSTAT_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_sample {
    long rss_kib, vsz_kib, threads;   /* /proc/PID/status VmRSS, VmSize, Threads */
    uint64_t ctx_voluntary;           /* summed over /proc/PID/task/ * /status */
    uint64_t ctx_involuntary;
    double user_s, sys_s;             /* /proc/PID/stat utime, stime */
    long kernel_stack_kib;            /* /proc/meminfo KernelStack (system-wide) */
    long sock_mem_pages;              /* /proc/net/sockstat TCP+UDP mem (system-wide) */
};

/* Samples pid and the system-wide figures. 0, or -1 with err filled (no such process...). */
int procstat_sample(pid_t pid, struct proc_sample *s, char *err, size_t errlen);

#endif
