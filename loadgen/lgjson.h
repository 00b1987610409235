/* Output of loadgen's JSON documents, checked to the last byte. */
#ifndef TVSA_LG_LGJSON_H
#define TVSA_LG_LGJSON_H
#include <jansson.h>

/* Writes doc (indented, a final newline) to path, or to stdout when path is NULL. Every
 * write, the flush and (for a file) the close are checked: 0, or -1 with errno set. */
int lg_json_write(json_t *doc, const char *path);

#endif
