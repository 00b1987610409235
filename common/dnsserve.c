/* I/O. What both DNS servers share (dnsserve.h). */
#include "dnsserve.h"

#include <stdlib.h>
#include <string.h>

int dnsserve_init(struct dnsserve *d, const struct server_opts *o)
{
    char err[512];
    memset(&d->totals, 0, sizeof d->totals);
    pthread_mutex_init(&d->lock, NULL);
    d->zone = o->zone ? zone_load_file(o->zone, err, sizeof err)
                      : zone_parse(zone_sample_text, strlen(zone_sample_text), err, sizeof err);
    if (d->zone == NULL) {
        serve_log("zone %s", err);
        return -1;
    }
    d->udp = (struct zone_limits){ZONE_UDP, (size_t)o->edns_size};
    d->tcp = (struct zone_limits){ZONE_TCP, (size_t)o->edns_size};
    return 0;
}

void dnsserve_free(struct dnsserve *d)
{
    zone_free(d->zone);
    d->zone = NULL;
}

struct dnsserve_worker *dnsserve_worker_new(struct dnsserve *d)
{
    struct dnsserve_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    /* On the heap: a decoded message is ~35 KiB and --stack-kb may be small. */
    w->m = malloc(sizeof *w->m);
    if (w->m == NULL) {
        free(w);
        return NULL;
    }
    w->srv = d;
    return w;
}

void dnsserve_worker_free(struct dnsserve_worker *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->srv->lock);
    dnsstats_add(&w->srv->totals, &w->counts);
    pthread_mutex_unlock(&w->srv->lock);
    free(w->m);
    free(w);
}

static void *dgram_worker_new(void *arg)
{
    return dnsserve_worker_new(arg);
}

static void dgram_worker_free(void *w, void *arg)
{
    (void)arg;
    dnsserve_worker_free(w);
}

static size_t dgram_answer(void *arg, uint8_t *q, size_t len, int truncated, uint8_t *r)
{
    struct dnsserve_worker *w = arg;
    int rcode;
    w->counts.udp++;
    if (truncated) {
        w->counts.too_long++;
        return 0;
    }
    size_t n = zone_respond(w->srv->zone, q, len, &w->srv->udp, r, DNSWIRE_MAX_MSG, w->m, &rcode);
    dnsstats_count_reply(&w->counts, rcode, r, n);
    return n;
}

const struct serve_dgram dnsserve_dgram = {
    /* Room for any answer: zone_respond stops at the client's EDNS size (at most --edns-size), and
     * the pages of a reply buffer past it are never touched. */
    .dgram_max = DNSSERVE_QUERY_MAX, .reply_max = DNSWIRE_MAX_MSG,
    .worker_new = dgram_worker_new, .worker_free = dgram_worker_free, .answer = dgram_answer,
};

size_t dnsserve_tcp_answer(struct dnsserve_worker *w, const uint8_t *msg, size_t mlen,
                           uint8_t *out)
{
    int rcode;
    size_t n = zone_respond(w->srv->zone, msg, mlen, &w->srv->tcp, out + 2, DNSWIRE_MAX_MSG, w->m,
                            &rcode);
    dnsstats_count_reply(&w->counts, rcode, out + 2, n);
    w->counts.tcp++;
    if (n == 0)
        return 0;
    dnswire_tcp_prefix(out, n);
    return n + 2;
}

json_t *dnsserve_listening_json(const struct dnsserve *d, const struct server_opts *o)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I}", "transport", "udp+tcp", "zone",
                     o->zone ? o->zone : "(sample)", "zone_names",
                     (json_int_t)zone_names(d->zone), "zone_records",
                     (json_int_t)zone_records(d->zone), "edns_size", (json_int_t)o->edns_size);
}

json_t *dnsserve_stopped_json(struct dnsserve *d, const struct serve_dgram_counts *udp)
{
    pthread_mutex_lock(&d->lock);
    d->totals.send_failures += udp->send_failures;
    json_t *j = dnsstats_json(&d->totals);
    d->totals.send_failures -= udp->send_failures;
    pthread_mutex_unlock(&d->lock);
    return j;
}
