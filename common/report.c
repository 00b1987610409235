/* The JSON event lines every server prints on stdout (docs/interfaces.md), built with jansson. */
#include "report.h"

#include <sys/resource.h>
#include <unistd.h>

static json_t *with_extra(json_t *obj, json_t *extra)
{
    if (obj != NULL && extra != NULL && json_object_update(obj, extra) < 0) {
        json_decref(obj);
        obj = NULL;
    }
    json_decref(extra);
    return obj;
}

json_t *report_listening(const char *server, const char *model, const char *addr, int port,
                         json_t *extra)
{
    json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I}", "event", "listening", "server",
                            server, "model", model, "addr", addr, "port", port, "pid",
                            (json_int_t)getpid());
    return with_extra(obj, extra);
}

static double tv_seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

json_t *report_stopped(const char *server, const char *model, const struct srv_stats *st,
                       json_t *extra)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    json_t *obj = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:{s:f, s:f, s:I, s:{s:I, s:I}}}",
        "event", "stopped", "server", server, "model", model,
        "connections_accepted", (json_int_t)atomic_load(&st->accepted),
        "connections_refused", (json_int_t)atomic_load(&st->refused),
        "peak_concurrent", (json_int_t)atomic_load(&st->peak),
        "bytes_in", (json_int_t)atomic_load(&st->bytes_in),
        "bytes_out", (json_int_t)atomic_load(&st->bytes_out),
        "rusage", "user_s", tv_seconds(ru.ru_utime), "sys_s", tv_seconds(ru.ru_stime),
        "maxrss_kib", (json_int_t)ru.ru_maxrss, "ctx_switches",
        "voluntary", (json_int_t)ru.ru_nvcsw, "involuntary", (json_int_t)ru.ru_nivcsw);
    return with_extra(obj, extra);
}

int report_emit(FILE *out, json_t *obj)
{
    if (obj == NULL)
        return -1;
    int rc = json_dumpf(obj, out, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(obj);
    if (rc < 0 || fputc('\n', out) == EOF || fflush(out) == EOF)
        return -1;
    return 0;
}
