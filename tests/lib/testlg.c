/* Test support for the load generator: run bin/loadgen, read its JSON. */
#include "testlg.h"

#include <stdio.h>
#include <string.h>

#include "testsrv.h"

char testlg_out[TESTLG_OUT_MAX], testlg_err[TESTLG_OUT_MAX];

int testlg_run(int port, const char *const *args, json_t **doc)
{
    const char *argv[64];
    char target[32];
    int n = 0;
    argv[n++] = "loadgen";
    if (port > 0) {
        snprintf(target, sizeof target, "127.0.0.1:%d", port);
        argv[n++] = "--target";
        argv[n++] = target;
    }
    argv[n++] = "--quiet";
    for (int i = 0; args && args[i] && n < 62; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
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
