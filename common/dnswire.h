/* DNS wire format (RFC 1035): encode queries and responses, decode whole messages. Pure; the
 * decoder is the most attacked code in tvsa, so every length is checked against the buffer. */
#ifndef TVSA_DNSWIRE_H
#define TVSA_DNSWIRE_H
#include <stddef.h>
#include <stdint.h>

#define DNSWIRE_HDR_LEN 12
#define DNSWIRE_MAX_NAME 255    /* bytes of an uncompressed wire name, final 0 included */
#define DNSWIRE_MAX_LABELS 127  /* labels of a name, root excluded */
#define DNSWIRE_MAX_LABEL 63
#define DNSWIRE_NAME_TEXT 1024  /* a name as text with \DDD escapes, NUL included (4*255+1) */
#define DNSWIRE_UDP_LIMIT 512   /* classic UDP payload; larger answers are sent truncated (TC) */
#define DNSWIRE_MAX_MSG 65535   /* TCP: 2-byte length prefix */
#define DNSWIRE_MAX_QD 4        /* questions kept by the decoder (all are validated) */
#define DNSWIRE_MAX_RR 64       /* answer records kept by the decoder (all are validated) */

/* Header flag bits and fields. */
#define DNSWIRE_F_QR 0x8000u
#define DNSWIRE_F_AA 0x0400u
#define DNSWIRE_F_TC 0x0200u
#define DNSWIRE_F_RD 0x0100u
#define DNSWIRE_F_RA 0x0080u
#define DNSWIRE_OPCODE(flags) (((flags) >> 11) & 0xFu)
#define DNSWIRE_RCODE(flags) ((flags) & 0xFu)

enum { DNSWIRE_OP_QUERY = 0 };
enum {
    DNSWIRE_RC_NOERROR = 0, DNSWIRE_RC_FORMERR = 1, DNSWIRE_RC_SERVFAIL = 2,
    DNSWIRE_RC_NXDOMAIN = 3, DNSWIRE_RC_NOTIMP = 4, DNSWIRE_RC_REFUSED = 5,
};
enum { DNSWIRE_T_A = 1, DNSWIRE_T_NS = 2, DNSWIRE_T_CNAME = 5, DNSWIRE_T_AAAA = 28,
       DNSWIRE_T_OPT = 41 };
enum { DNSWIRE_C_IN = 1 };

/* A name in uncompressed wire form: length-prefixed labels ending with the 0 byte. */
struct dnswire_name {
    uint8_t len;                     /* bytes used in wire, 1..255 */
    uint8_t wire[DNSWIRE_MAX_NAME];
};

struct dnswire_header {
    uint16_t id, flags, qdcount, ancount, nscount, arcount;
};

struct dnswire_question {
    struct dnswire_name name;
    uint16_t qtype, qclass;
};

struct dnswire_rr {
    struct dnswire_name name;
    uint16_t type, rclass;
    uint32_t ttl;
    uint16_t rdlen;
    size_t rdata_off;                /* offset of rdata in the decoded message */
    struct dnswire_name target;      /* CNAME/NS: the decoded (decompressed) rdata name */
};

/* One A record to answer with: address in network order and its TTL. */
struct dnswire_a {
    uint8_t addr[4];
    uint32_t ttl;
};

/* A decoded message. Big (about 35 KiB): allocate it, do not put it on a small thread stack. */
struct dnswire_msg {
    struct dnswire_header h;
    size_t nq, nan;                  /* questions and answers kept (<= the MAX_ above) */
    struct dnswire_question q[DNSWIRE_MAX_QD];
    struct dnswire_rr an[DNSWIRE_MAX_RR];
};

enum dnswire_status {
    DNSWIRE_OK = 0,
    DNSWIRE_ESHORT = -1,     /* shorter than a header: nothing usable (servers drop it) */
    DNSWIRE_EMALFORMED = -2, /* the header is valid (m->h filled), the rest is not */
};

/* Compression pointers one name may follow: with no cap, a 64 KiB message of chained pointers
 * costs quadratic work (tens of ms a message), a denial of service on a server. */
#define DNSWIRE_MAX_JUMPS 16

/* Decodes the whole of buf[0..len): header, every question and every resource record of the
 * three sections (answers kept in m->an, the others only validated). Names may be compressed;
 * pointers must point strictly before the name that uses them, so no loop is possible, and a
 * name may follow at most DNSWIRE_MAX_JUMPS of them. Bytes after the last record are an error.
 * Returns a dnswire_status; err gets the reason. */
int dnswire_decode(const uint8_t *buf, size_t len, struct dnswire_msg *m, char *err,
                   size_t errlen);

/* Decodes only the header. 0, or DNSWIRE_ESHORT. */
int dnswire_decode_header(const uint8_t *buf, size_t len, struct dnswire_header *h);

/* Decodes the (possibly compressed) name at *pos in msg[0..len) into out and advances *pos past
 * it. 0, or -1 with err filled. */
int dnswire_read_name(const uint8_t *msg, size_t len, size_t *pos, struct dnswire_name *out,
                      char *err, size_t errlen);

/* Text ("www.example.test", trailing dot optional, "." is the root) to wire form. Labels are
 * 1..63 bytes of anything but '.', the name at most 255 wire bytes. 0, or -1. */
int dnswire_name_from_text(const char *text, struct dnswire_name *out);

/* Wire form to text without the trailing dot ("." for the root); '.', '\\' and bytes outside
 * printable ASCII are escaped as dig does (\. \\ \DDD). Returns the text length; truncates to
 * buflen-1 (buflen >= DNSWIRE_NAME_TEXT never truncates). */
size_t dnswire_name_to_text(const struct dnswire_name *n, char *buf, size_t buflen);

/* 1 if a and b are the same name, ASCII case-insensitively, else 0. */
int dnswire_name_equal(const struct dnswire_name *a, const struct dnswire_name *b);

/* Lowercases ASCII letters in place (length bytes are < 64, never letters). */
void dnswire_name_lower(struct dnswire_name *n);

/* Writes a query for qname/qtype (class IN), RD set if rd. Returns its length, or -1 if cap is
 * too small. */
int dnswire_encode_query(uint8_t *buf, size_t cap, uint16_t id, const struct dnswire_name *qname,
                         uint16_t qtype, int rd);

/* Writes a response to the query with header qh and question q (NULL: no question section):
 * QR, the query's opcode, id and RD, AA if aa, rcode, then one A record per a[i] whose owner is
 * a pointer to the question name. If the whole answer does not fit in limit bytes, the answers
 * are left out and TC is set. Returns the length, or -1 if not even the header and question
 * fit in limit. */
int dnswire_encode_response(uint8_t *buf, size_t limit, const struct dnswire_header *qh,
                            const struct dnswire_question *q, int rcode, int aa,
                            const struct dnswire_a *a, size_t na);

/* TCP framing (RFC 1035 4.2.2): a message is preceded by its 2-byte big-endian length.
 * Looks at buf[0..len): when a whole message is there, sets *msg and *msglen and returns the
 * bytes it takes (2 + msglen); returns 0 when more bytes are needed. */
size_t dnswire_tcp_next(const uint8_t *buf, size_t len, const uint8_t **msg, size_t *msglen);

/* Writes the 2-byte length prefix of an n-byte message (n <= 65535) into p. */
void dnswire_tcp_prefix(uint8_t p[2], size_t n);

#endif
