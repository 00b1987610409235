/* Zone files (docs/dns.md: `$ORIGIN`, `$TTL`, `NAME [TTL] [IN] A IPV4` and `SOA` lines, #
 * comments) and the answers an authoritative DNS server gives from them. Pure, apart from
 * zone_load_file reading the file. */
#ifndef TVSA_ZONE_H
#define TVSA_ZONE_H
#include <stddef.h>
#include <stdint.h>

#include "dnswire.h"

#define ZONE_DEFAULT_TTL 3600
/* The SOA of a zone whose file gives none: `ORIGIN 3600 SOA ORIGIN hostmaster.ORIGIN 1 3600 600
 * 86400 300`, so negative answers are cached for 300 s. */
#define ZONE_SYNTH_MINIMUM 300

struct zone;

/* The sample zone served without --zone (zone_sample.c); also shipped as data/sample.zone. */
extern const char zone_sample_text[];

/* Parses len bytes of zone text. Returns a new zone, or NULL with err naming the line
 * ("line 7: bad IPv4 address '1.2.3'"). A file without $ORIGIN is one zone whose origin is the
 * longest common suffix of its names (docs/dns.md). An empty zone is valid (answers REFUSED). */
struct zone *zone_parse(const char *text, size_t len, char *err, size_t errlen);

/* Reads and parses a file (err names the file and the line). Never blocks: the file is opened
 * O_NONBLOCK and anything but a regular file (a FIFO, a device, a directory) is refused before
 * a byte is read; so are files over 64 MiB. NULL on error. The one loader of the servers and
 * loadgen. */
struct zone *zone_load_file(const char *path, char *err, size_t errlen);

void zone_free(struct zone *z);

/* Distinct names owning records (A or SOA: every origin is one), and A records. */
size_t zone_names(const struct zone *z);
size_t zone_records(const struct zone *z);

/* The i-th distinct name (0 <= i < zone_names), in canonical order (RFC 4034 6.1). */
const struct dnswire_name *zone_name_at(const struct zone *z, size_t i);

/* The A records of name (any case) if the name exists in a zone: *n gets how many (0 for an
 * origin or an empty non-terminal, RFC 8020) and the return is not NULL. NULL and *n = 0 when
 * it does not exist (NXDOMAIN) or is outside every origin (REFUSED). O(log names). */
const struct dnswire_a *zone_lookup(const struct zone *z, const struct dnswire_name *name,
                                    size_t *n);

/* The origin of the zone name (any case) belongs to (the longest origin it is at or below),
 * or NULL when it is outside every zone. */
const struct dnswire_name *zone_origin_of(const struct zone *z, const struct dnswire_name *name);

enum zone_transport { ZONE_UDP, ZONE_TCP };

/* What an answer may take. */
struct zone_limits {
    enum zone_transport transport; /* TCP: up to 65,535 bytes, whatever the OPT says */
    size_t edns_size;              /* UDP: the largest answer to a client whose OPT allows it
                                    * (512 and up; DNSWIRE_EDNS_SIZE by default); also the
                                    * payload size our OPT advertises */
};

/* Answers one DNS message (docs/dns.md has the whole table): a name outside every origin ->
 * REFUSED, no AA; A of a name in a zone -> NOERROR, AA, every A record; a name that does not
 * exist -> NXDOMAIN, AA, the zone's SOA in authority with TTL min(SOA TTL, SOA minimum) (RFC
 * 2308); another type, an origin or an empty non-terminal -> NOERROR, AA, no answer, the same
 * SOA (NODATA); SOA of an origin -> the SOA; opcode not QUERY -> NOTIMP; class not IN ->
 * REFUSED; unparsable with a full header, not exactly one question, two OPT records or a bad
 * OPT -> FORMERR; EDNS version above 0 -> BADVERS. A query with an OPT gets an OPT back.
 * The limit is the transport's: over UDP 512 bytes without an OPT, else the client's payload
 * size up to lim->edns_size; TC is set, and the answer and authority left out, only when they
 * do not fit. Writes at most min(cap, that limit) bytes into out and returns the length, or 0
 * when nothing must be sent (shorter than a header, or a response (QR set), which would let
 * two servers loop). m is scratch space (dnswire_msg is big; the caller owns one per thread).
 * rcode_out, if not NULL, gets the rcode sent, extended ones included (BADVERS = 16; -1 when
 * dropped). */
size_t zone_respond(const struct zone *z, const uint8_t *query, size_t qlen,
                    const struct zone_limits *lim, uint8_t *out, size_t cap,
                    struct dnswire_msg *m, int *rcode_out);

#endif
