/* Output of loadgen's JSON documents: see lgjson.h. */
#include "lgjson.h"

#include <errno.h>
#include <stdio.h>

#define LG_JSON_FLAGS (JSON_INDENT(2) | JSON_REAL_PRECISION(10))

int lg_json_write(json_t *doc, const char *path)
{
    FILE *f = path ? fopen(path, "w") : stdout;
    if (f == NULL)
        return -1;
    /* stdio keeps the first error: ferror after the flush sees a short write of any part. */
    int rc = json_dumpf(doc, f, LG_JSON_FLAGS);
    if (fputc('\n', f) == EOF || fflush(f) == EOF || ferror(f))
        rc = -1;
    int saved = errno;
    if (path && fclose(f) == EOF)
        rc = -1;
    else if (rc < 0)
        errno = saved ? saved : EIO;
    return rc < 0 ? -1 : 0;
}
