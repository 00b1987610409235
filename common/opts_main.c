/* I/O. opts_parse_or_exit (opts.h): the part of option parsing that prints and exits, apart
 * from the pure parser, for main() only. */
#include <stdio.h>
#include <stdlib.h>

#include "opts.h"

void opts_parse_or_exit(const struct opts_spec *spec, int argc, char **argv, struct server_opts *o)
{
    char err[256];

    switch (opts_parse(spec, argc, argv, o, err, sizeof err)) {
    case OPTS_OK:
        return;
    case OPTS_HELP:
        opts_usage(spec, stdout);
        exit(0);
    case OPTS_ERROR:
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", spec->name, err, spec->name);
        exit(2);
    }
}
