/* libFuzzer harness for the shared option parser (scripts/fuzz.sh): any argv (NUL-separated
 * input) is parsed without a crash, into values inside their documented ranges, or refused
 * with a message. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opts.h"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_opts: invariant broken: %s\n", what);
        abort();
    }
}

static const struct opts_spec specs[] = {
    {"threaded-x", "fuzz", 9000, OPTS_THREADED | OPTS_WORK},
    {"async-x", "fuzz", 9002, OPTS_API | OPTS_WORK | OPTS_CHAT},
    {"dns-x", "fuzz", 9053, OPTS_ZONE | OPTS_THREADS | OPTS_THREADED},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_ARGS = 32 };
    char *copy = malloc(size + 1);
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    argv[argc++] = "prog";
    for (char *p = copy; p < copy + size && argc < MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;

    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct server_opts o;
        char err[256] = "";
        char *args[MAX_ARGS + 2];
        memcpy(args, argv, sizeof args); /* getopt may permute argv */
        enum opts_result r = opts_parse(&specs[i], argc, args, &o, err, sizeof err);
        if (r == OPTS_ERROR) {
            check(err[0] != '\0', "an error has a message");
            continue;
        }
        if (r == OPTS_HELP)
            continue;
        unsigned char addr[16];
        check(inet_pton(AF_INET, o.bind, addr) == 1 || inet_pton(AF_INET6, o.bind, addr) == 1,
              "bind is a numeric address");
        check(o.port >= 0 && o.port <= 65535, "port in range");
        check(o.max_conns >= 0 && o.idle_timeout_s >= 0 && o.pool >= 0 && o.work_us >= 0,
              "counts are not negative");
        check(o.stack_kb == 0 || o.stack_kb >= 32, "stack is default or at least 32 KiB");
        check(o.max_line >= 1 && o.max_backlog_kib >= 1, "chat limits positive");
        check(o.threads >= 0 && o.threads <= 1024, "threads in range");
        check(o.zone == NULL || o.zone[0] != '\0', "zone is unset or a name");
    }
    free(copy);
    return 0;
}
