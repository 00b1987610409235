/* Zone files (docs/interfaces.md: `NAME [TTL] A IPV4`, # comments) and the answers a DNS server
 * gives from one. Pure, apart from zone_load_file reading the file. */
#ifndef TVSA_ZONE_H
#define TVSA_ZONE_H
#include <stddef.h>
#include <stdint.h>

#include "dnswire.h"

#define ZONE_DEFAULT_TTL 3600

struct zone;

/* The sample zone served without --zone (zone_sample.c); also shipped as data/sample.zone. */
extern const char zone_sample_text[];

/* Parses len bytes of zone text. Returns a new zone, or NULL with err naming the line
 * ("line 7: bad IPv4 address '1.2.3'"). An empty zone is valid. */
struct zone *zone_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads and parses a file (err names the file and the line). Refuses anything but a regular
 * file, and files over 64 MiB. NULL on error. */
struct zone *zone_load_file(const char *path, char *err, size_t errlen);

void zone_free(struct zone *z);

/* Distinct names and records in the zone. */
size_t zone_names(const struct zone *z);
size_t zone_records(const struct zone *z);

/* The i-th distinct name (0 <= i < zone_names), in the zone's sorted order. */
const struct dnswire_name *zone_name_at(const struct zone *z, size_t i);

/* The A records of name (any case): *n gets how many and the return points at them; NULL and
 * *n = 0 when the name is not in the zone. O(log names). */
const struct dnswire_a *zone_lookup(const struct zone *z, const struct dnswire_name *name,
                                    size_t *n);

/* Answers one DNS message as docs/interfaces.md says: A in zone -> NOERROR+AA+records; name not in
 * zone -> NXDOMAIN; other type of a known name -> NOERROR, no answers; opcode not QUERY ->
 * NOTIMP; class not IN -> REFUSED; unparsable with a full header, or not exactly one question
 * -> FORMERR. Writes the reply into out (at most limit bytes: 512 for UDP, TC set if the
 * records do not fit; 65535 for TCP). Returns its length, or 0 when nothing must be sent
 * (shorter than a header, or a response (QR set), which would let two servers loop).
 * m is scratch space (dnswire_msg is big; the caller owns one per thread). rcode_out, if not
 * NULL, gets the rcode sent (-1 when dropped). */
size_t zone_respond(const struct zone *z, const uint8_t *query, size_t qlen, uint8_t *out,
                    size_t limit, struct dnswire_msg *m, int *rcode_out);

#endif
