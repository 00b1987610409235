/* The test servers' environment knobs (TVSA_LIE_EVERY, TVSA_REQ_SIZE...): one parser. */
#ifndef TVSA_KNOB_H
#define TVSA_KNOB_H
#include <stdio.h>
#include <stdlib.h>

#include "opts.h"

/* $name as an integer in [lo, hi], def when unset or empty; bad input: a message, exit 2
 * (start-up code, like opts_parse_or_exit). */
static inline long knob_long(const char *server, const char *name, long def, long lo, long hi)
{
    const char *s = getenv(name);
    long v;
    if (s == NULL || *s == '\0')
        return def;
    if (opts_parse_long(s, lo, hi, &v) < 0) {
        fprintf(stderr, "%s: bad %s '%s'\n", server, name, s);
        exit(2);
    }
    return v;
}

#endif
