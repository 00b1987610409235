/* Test support: start a server binary on port 0, read its JSON lines, stop it, talk to it. */
#ifndef TVSA_TESTSRV_H
#define TVSA_TESTSRV_H
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct testsrv {
    pid_t pid;
    int port;            /* from the listening line */
    int out_fd;          /* the server's stdout (read end) */
    json_t *listening;   /* the parsed listening line */
};

/* A cmocka teardown: kills (SIGKILL) and reaps every server this process started and did not
 * stop, so a failed assertion never leaves one running. Always returns 0. */
int testsrv_teardown(void **state);

/* Directory of the binaries: $TVSA_BIN, or "bin". */
const char *testsrv_bin_dir(void);

/* Starts bin/NAME with args (NULL-terminated, may be NULL) followed by "--port 0", waits up
 * to 5 s for its listening line. Returns 0, or -1 (the child is killed and reaped). */
int testsrv_start(struct testsrv *s, const char *name, const char *const *args);

/* testsrv_start with one resource limit lowered in the child (setrlimit soft and hard to
 * `limit`), e.g. RLIMIT_NOFILE to provoke EMFILE or RLIMIT_AS to make pthread_create fail. */
int testsrv_start_rlimit(struct testsrv *s, const char *name, const char *const *args,
                         int resource, unsigned long limit);

/* CPU time (user + system) process pid has used, in seconds, or -1. */
double testsrv_cpu_seconds(pid_t pid);

/* Sends sig, waits up to timeout_ms for the exit, and returns the `stopped` line (NULL if
 * none; caller decrefs). *exit_status gets the exit code, or 128+signal if it was killed
 * (after the timeout it is SIGKILLed and *exit_status is -1). Under a sanitizer
 * ($TVSA_SANITIZED set) the timeout is three times timeout_ms: a claim about how fast a
 * server stops is checked on the plain build. */
json_t *testsrv_stop(struct testsrv *s, int sig, int timeout_ms, int *exit_status);

/* Reads one '\n'-terminated line from fd into buf (NUL-terminated, without the '\n') within
 * timeout_ms. Returns its length, or -1 on timeout, EOF or error. Reads a byte at a time, so
 * nothing past the line is consumed. */
int testsrv_read_line(int fd, char *buf, size_t buflen, int timeout_ms);

/* Blocking TCP connection to 127.0.0.1:port with 5 s send/receive timeouts, or -1. */
int testsrv_connect(int port);

/* Reads exactly len bytes within timeout_ms. Returns bytes read (< len on timeout or EOF). */
size_t testsrv_read_full(int fd, void *buf, size_t len, int timeout_ms);

/* Runs argv (argv[0] resolved in the bin dir if it has no '/'), stdin from /dev/null, and
 * captures up to outlen-1 bytes of stdout and of stderr (NUL-terminated). Returns the exit
 * status (128+signal if killed), or -1 if it did not finish within timeout_ms. */
int testsrv_run(const char *const *argv, char *out, size_t outlen, char *err, size_t errlen,
                int timeout_ms);

/* Number of open fds of process pid (entries in /proc/PID/fd), or -1. */
int testsrv_fd_count(pid_t pid);

/* Value in kB of a "Key:" line of /proc/PID/status (VmRSS, VmSize, Threads...), or -1. */
long testsrv_proc_status(pid_t pid, const char *key);

#endif
