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
#define DNSWIRE_EDNS_SIZE 1232  /* EDNS(0) UDP payload size of DNS flag day 2020: no fragments */
#define DNSWIRE_OPT_LEN 11      /* an OPT record without options: root, type, class, ttl, rdlen */
#define DNSWIRE_MAX_MSG 65535   /* TCP: 2-byte length prefix */
#define DNSWIRE_MAX_QD 4        /* questions kept by the decoder (all are validated) */
#define DNSWIRE_MAX_RR 64       /* answer records kept by the decoder (all are validated) */
#define DNSWIRE_MAX_NS 8        /* authority records kept by the decoder (all are validated) */

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
    DNSWIRE_RC_BADVERS = 16, /* extended (RFC 6891): 0 in the header, 1 in the OPT's upper bits */
};
enum { DNSWIRE_T_A = 1, DNSWIRE_T_NS = 2, DNSWIRE_T_CNAME = 5, DNSWIRE_T_SOA = 6,
       DNSWIRE_T_AAAA = 28, DNSWIRE_T_OPT = 41, DNSWIRE_T_ANY = 255 };
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

/* An SOA record's rdata (RFC 1035 3.3.13). */
struct dnswire_soa {
    struct dnswire_name mname, rname;
    uint32_t serial, refresh, retry, expire, minimum;
};

/* What the decoder saw of EDNS(0) (RFC 6891): the OPT pseudo-records of a message. */
struct dnswire_edns {
    unsigned count;                  /* OPT records anywhere in the message (1 at most is valid) */
    int ok;                          /* every OPT is well formed: owner the root, in the
                                      * additional section, options exactly filling its rdata */
    /* Of the first OPT: */
    uint16_t udp_size;               /* its CLASS: the sender's UDP payload size */
    uint8_t ext_rcode;               /* its TTL's top byte: the rcode's upper 8 bits */
    uint8_t version;
    uint16_t flags;                  /* DO and Z */
    uint16_t rdlen;                  /* options: rdlen bytes at rdata_off */
    size_t rdata_off;
};

/* A decoded message. Big (about 40 KiB): allocate it, do not put it on a small thread stack. */
struct dnswire_msg {
    struct dnswire_header h;
    size_t nq, nan, nns;             /* questions, answers, authority kept (<= the MAX_ above) */
    struct dnswire_question q[DNSWIRE_MAX_QD];
    struct dnswire_rr an[DNSWIRE_MAX_RR];
    struct dnswire_rr ns[DNSWIRE_MAX_NS];
    struct dnswire_edns edns;
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
 * three sections (answers kept in m->an, authority in m->ns, OPT records summed up in m->edns:
 * a badly formed OPT is reported there, not as an error, so a server can answer FORMERR with
 * an OPT as RFC 6891 asks; SOA rdata must be two names and 20 bytes). Names may be compressed;
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

/* Appends an OPT record (no options) to the message buf[0..len) and adds 1 to its ARCOUNT:
 * udp_size in its CLASS, ext_rcode, version 0 and flags in its TTL. Returns the new length, or
 * -1 if cap is too small. */
int dnswire_append_opt(uint8_t *buf, size_t cap, size_t len, uint16_t udp_size,
                       uint8_t ext_rcode, uint16_t flags);

/* The sections of a response beyond its header and question (dnswire_encode_reply). */
struct dnswire_reply {
    int rcode;                       /* 0..4095: the low 4 bits in the header, the rest in the
                                      * OPT (an rcode above 15 needs edns) */
    int aa;
    const struct dnswire_a *a;       /* answer: na A records owned by the question name */
    size_t na;
    const struct dnswire_soa *soa;   /* NULL, or an SOA owned by soa_owner with TTL soa_ttl: */
    const struct dnswire_name *soa_owner;
    uint32_t soa_ttl;
    int soa_in_answer;               /* 1: in the answer (after the A records), 0: authority */
    int edns;                        /* 1: an OPT record in the additional section */
    uint16_t edns_size;              /* its UDP payload size: what the responder accepts */
};

/* Writes a response to the query with header qh and question q (NULL: no question section):
 * QR, the query's opcode, id and RD, then r's sections. Owner names are compression pointers
 * into the question where they can be (the SOA owner when it is a suffix of the question).
 * If the whole message does not fit in limit bytes, the answer and authority sections are left
 * out and TC is set (the OPT stays: RFC 6891 6.2.6). Returns the length, or -1 if not even the
 * header, the question and the OPT fit in limit. */
int dnswire_encode_reply(uint8_t *buf, size_t limit, const struct dnswire_header *qh,
                         const struct dnswire_question *q, const struct dnswire_reply *r);

/* dnswire_encode_reply with only A records, no SOA and no OPT (the RFC 1035 answer). */
int dnswire_encode_response(uint8_t *buf, size_t limit, const struct dnswire_header *qh,
                            const struct dnswire_question *q, int rcode, int aa,
                            const struct dnswire_a *a, size_t na);

/* The full rcode of a decoded message: the header's 4 bits and, with an OPT, its upper 8. */
int dnswire_rcode(const struct dnswire_msg *m);

/* The UDP answer limit for a query: 512 without an OPT; with one, the client's payload size
 * (below 512 counts as 512, RFC 6891 6.2.5) but at most server_max. */
size_t dnswire_udp_limit(const struct dnswire_msg *m, size_t server_max);

/* TCP framing (RFC 1035 4.2.2): a message is preceded by its 2-byte big-endian length.
 * Looks at buf[0..len): when a whole message is there, sets *msg and *msglen and returns the
 * bytes it takes (2 + msglen); returns 0 when more bytes are needed. */
size_t dnswire_tcp_next(const uint8_t *buf, size_t len, const uint8_t **msg, size_t *msglen);

/* Writes the 2-byte length prefix of an n-byte message (n <= 65535) into p. */
void dnswire_tcp_prefix(uint8_t p[2], size_t n);

#endif
