/* Test support for the load generator: run bin/loadgen, read its JSON. */
#ifndef TVSA_TESTLG_H
#define TVSA_TESTLG_H
#include <jansson.h>

#define TESTLG_OUT_MAX (256 * 1024)

/* stdout and stderr of the last testlg_run (NUL-terminated). Tests are single-threaded. */
extern char testlg_out[TESTLG_OUT_MAX], testlg_err[TESTLG_OUT_MAX];

/* Runs bin/loadgen --quiet with args (NULL-terminated) against 127.0.0.1:port (port 0: no
 * --target), for at most 30 s. Returns the exit status; *doc (if doc is not NULL) gets the
 * parsed stdout JSON, NULL when stdout is not JSON. An exit other than 0 or 2 prints stderr. */
int testlg_run(int port, const char *const *args, json_t **doc);

/* Starts bin/SERVER on port 0, runs testlg_run against it, stops it (SIGTERM). Returns
 * loadgen's exit status, or -1 when the server did not start. */
int testlg_run_server(const char *server, const char *const *args, json_t **doc);

/* testlg_run with loadgen's stdout on out_fd (a full device, a pipe whose reader is gone)
 * and its stderr into testlg_err. Returns the exit status (128+signal), -1 after 30 s. */
int testlg_run_fd(int port, const char *const *args, int out_fd);

/* The value at a dotted path ("requests.per_sec") below root, or NULL. */
json_t *testlg_get(json_t *root, const char *path);

#endif
