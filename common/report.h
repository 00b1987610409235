/* I/O (stdout, getrusage). The JSON event lines every server prints on stdout (docs/interfaces.md), built with jansson. */
#ifndef TVSA_REPORT_H
#define TVSA_REPORT_H
#include <jansson.h>
#include <stdio.h>

#include "srvstats.h"

/* {"event":"listening","server":..,"model":..,"addr":..,"port":..,"pid":..} plus every key of
 * extra (stolen; may be NULL). Returns a new object, NULL on allocation failure. */
json_t *report_listening(const char *server, const char *model, const char *addr, int port,
                         json_t *extra);

/* {"event":"stopped","server":..,"model":..,"connections_accepted":..,"connections_refused":..,
 *  "peak_concurrent":..,"bytes_in":..,"bytes_out":..,"rusage":{..}} plus extra (stolen).
 * rusage is getrusage(RUSAGE_SELF): it counts every thread, exited ones too. */
json_t *report_stopped(const char *server, const char *model, const struct srv_stats *st,
                       json_t *extra);

/* Writes obj as one compact line to out, flushes, and releases obj. 0, or -1 (obj NULL or a
 * write error). */
int report_emit(FILE *out, json_t *obj);

#endif
