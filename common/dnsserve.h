/* I/O (loads the zone file, logs). What both DNS servers do the same way, so the two models
 * differ only in how they wait: load the zone, answer a UDP datagram (a serve_dgram for
 * either skeleton), answer one TCP query, merge the counters, describe the zone. */
#ifndef TVSA_DNSSERVE_H
#define TVSA_DNSSERVE_H
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dnsstats.h"
#include "dnswire.h"
#include "opts.h"
#include "serve.h"
#include "zone.h"

#define DNSSERVE_QUERY_MAX 4096  /* a UDP query longer than this is dropped (counted too_long) */

/* The server's: the zone (read-only once loaded) and the counters every worker and TCP
 * connection adds to once, at its end. */
struct dnsserve {
    struct zone *zone;
    struct zone_limits udp, tcp; /* the transports' answer limits (--edns-size) */
    pthread_mutex_t lock;        /* guards totals */
    struct dnsstats totals;
};

/* One thread's (or loop's): the decoder scratch and its own counters. */
struct dnsserve_worker {
    struct dnsserve *srv;
    struct dnswire_msg *m;
    struct dnsstats counts;
};

/* Loads --zone (or the sample zone) into d. 0, or -1 (logged with serve_log). */
int dnsserve_init(struct dnsserve *d, const struct server_opts *o);
/* Frees the zone. */
void dnsserve_free(struct dnsserve *d);

/* A worker for d (new or NULL), and its end: adds its counts to d's totals, frees it. */
struct dnsserve_worker *dnsserve_worker_new(struct dnsserve *d);
void dnsserve_worker_free(struct dnsserve_worker *w);

/* The UDP service over dnsserve_worker (arg: the struct dnsserve). */
extern const struct serve_dgram dnsserve_dgram;

/* Answers one TCP query msg[0..mlen) into out (2 + DNSWIRE_MAX_MSG bytes), with its length
 * prefix, counting it. Returns the bytes to send, 0 for none. */
size_t dnsserve_tcp_answer(struct dnsserve_worker *w, const uint8_t *msg, size_t mlen,
                           uint8_t *out);

/* {"transport":"udp+tcp","zone":..,"zone_names":..,"zone_records":..,"edns_size":..}: the
 * listening line's. */
json_t *dnsserve_listening_json(const struct dnsserve *d, const struct server_opts *o);
/* The totals as dnsstats_json, with the UDP skeleton's send failures, under the lock
 * (handlers past the stop deadline may still add). */
json_t *dnsserve_stopped_json(struct dnsserve *d, const struct serve_dgram_counts *udp);

#endif
