/* Test support for the load generator: run bin/loadgen, read its JSON. */
#include "testlg.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testsrv.h"

char testlg_out[TESTLG_OUT_MAX], testlg_err[TESTLG_OUT_MAX];

/* argv for bin/loadgen [--target 127.0.0.1:port] --quiet args...; target holds the address. */
static void build_argv(const char **argv, char *target, size_t tlen, int port,
                       const char *const *args)
{
    int n = 0;
    argv[n++] = "loadgen";
    if (port > 0) {
        snprintf(target, tlen, "127.0.0.1:%d", port);
        argv[n++] = "--target";
        argv[n++] = target;
    }
    argv[n++] = "--quiet";
    for (int i = 0; args && args[i] && n < 62; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
}

int testlg_run(int port, const char *const *args, json_t **doc)
{
    const char *argv[64];
    char target[32];
    build_argv(argv, target, sizeof target, port, args);
    int rc = testsrv_run(argv, testlg_out, sizeof testlg_out, testlg_err, sizeof testlg_err,
                         30000);
    if (doc)
        *doc = json_loads(testlg_out, 0, NULL);
    if (rc != 0 && rc != 2)
        fprintf(stderr, "loadgen exited %d; stderr:\n%s\n", rc, testlg_err);
    return rc;
}

json_t *testlg_get(json_t *root, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save))
        v = json_object_get(v, tok);
    return v;
}

int testlg_run_server(const char *server, const char *const *args, json_t **doc)
{
    struct testsrv srv;
    int st;
    if (doc)
        *doc = NULL;
    if (testsrv_start(&srv, server, NULL) < 0)
        return -1;
    int rc = testlg_run(srv.port, args, doc);
    json_decref(testsrv_stop(&srv, SIGTERM, 5000, &st));
    return rc;
}

int testlg_run_fd(int port, const char *const *args, int out_fd)
{
    const char *argv[64];
    char target[32], path[512];
    build_argv(argv, target, sizeof target, port, args);
    snprintf(path, sizeof path, "%s/loadgen", testsrv_bin_dir());
    FILE *errf = tmpfile();
    if (errf == NULL)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out_fd, STDOUT_FILENO);
        dup2(fileno(errf), STDERR_FILENO);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    int st = -1, rc = -1;
    for (int waited = 0; pid > 0 && waited < 30000; waited += 10) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        poll(NULL, 0, 10);
    }
    if (pid > 0 && rc < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    rewind(errf);
    size_t n = fread(testlg_err, 1, sizeof testlg_err - 1, errf);
    testlg_err[n] = '\0';
    fclose(errf);
    return rc;
}
