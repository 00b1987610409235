/* Log-linear latency histogram: see hist.h for the layout and the error bound. */
#include "hist.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof *h);
}

unsigned hist_index(uint64_t us)
{
    if (us > HIST_MAX_US)
        us = HIST_MAX_US;
    if (us < HIST_LINEAR)
        return (unsigned)us;
    /* msb >= 7; the top 7 bits of the value (64..127) pick the sub-bucket of its octave. */
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - 6u;
    unsigned sub = (unsigned)(us >> shift);
    return HIST_LINEAR + (msb - 7u) * HIST_SUB + (sub - HIST_SUB);
}

/* The midpoint, not the upper bound: a bucket at 64 << s is 1 << s wide, so the upper bound
 * could be 1/64 off, the midpoint at most half that. */
uint64_t hist_bucket_value(unsigned idx)
{
    if (idx < HIST_LINEAR)
        return idx;
    unsigned octave = (idx - HIST_LINEAR) / HIST_SUB;
    unsigned sub = (idx - HIST_LINEAR) % HIST_SUB + HIST_SUB;
    unsigned shift = octave + 1u;
    uint64_t mid = ((uint64_t)sub << shift) + (1ull << (shift - 1u));
    return mid > HIST_MAX_US ? HIST_MAX_US : mid;
}

void hist_record(struct hist *h, uint64_t us)
{
    if (us > h->max)
        h->max = us;
    if (us > HIST_MAX_US) {
        h->overflow++;
        us = HIST_MAX_US;
    }
    h->counts[hist_index(us)]++;
    h->total++;
    h->sum += us;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->overflow += src->overflow;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p < 0.0)
        p = 0.0;
    if (p > 100.0)
        p = 100.0;
    /* The rank of the wanted value, 1-based: ceil(p% of total), at least 1, in integers
     * (p in parts per million), so 99.9% of 1000 is rank 999, not a float's 999.0000000001
     * rounded up to 1000. */
    uint64_t ppm = (uint64_t)(p * 10000.0 + 0.5);
    /* total = q x 1e6 + r: the product never overflows (r x ppm < 1e12). */
    uint64_t q = h->total / 1000000u, r = h->total % 1000000u;
    uint64_t rank = q * ppm + (r * ppm + 999999u) / 1000000u;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_value(i);
            /* The exact max is known: no percentile can exceed it. */
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    return h->total ? (double)h->sum / (double)h->total : 0.0;
}

json_t *hist_to_json(const struct hist *h)
{
    /* "1344:18446744073709551615 " is at most 26 bytes a bucket. */
    size_t cap = 1, len = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        cap += h->counts[i] ? 27 : 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    buf[0] = '\0';
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if (h->counts[i])
            len += (size_t)snprintf(buf + len, cap - len, "%s%u:%" PRIu64, len ? " " : "", i,
                                    h->counts[i]);
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "layout", HIST_LAYOUT,
                          "total", (json_int_t)h->total, "sum", (json_int_t)h->sum,
                          "max", (json_int_t)h->max, "overflow", (json_int_t)h->overflow,
                          "buckets", buf);
    free(buf);
    return j;
}

/* A non-negative JSON integer at key, or -1. */
static int get_u64(const json_t *j, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int hist_from_json(struct hist *h, const json_t *j, char *err, size_t errlen)
{
    hist_reset(h);
    const char *layout = json_string_value(json_object_get(j, "layout"));
    const char *p = json_string_value(json_object_get(j, "buckets"));
    if (layout == NULL || strcmp(layout, HIST_LAYOUT) != 0 || p == NULL ||
        get_u64(j, "total", &h->total) < 0 || get_u64(j, "sum", &h->sum) < 0 ||
        get_u64(j, "max", &h->max) < 0 || get_u64(j, "overflow", &h->overflow) < 0) {
        snprintf(err, errlen, "histogram: not the \"" HIST_LAYOUT "\" form");
        return -1;
    }
    uint64_t seen = 0;
    long prev = -1;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long idx = strtoul(p, &end, 10);
        if (end == p || *end != ':' || errno || (long)idx <= prev || idx >= HIST_BUCKETS)
            goto bad;
        p = end + 1;
        unsigned long long n = strtoull(p, &end, 10);
        /* n past what is left of total: the sum cannot wrap round to total (strtoull also
         * takes "-1" for 2^64 - 1). */
        if (end == p || errno || n == 0 || n > h->total - seen ||
            (*end != ' ' && *end != '\0'))
            goto bad;
        h->counts[idx] = n;
        seen += n;
        prev = (long)idx;
        p = *end ? end + 1 : end;
    }
    if (seen != h->total)
        goto bad;
    return 0;
bad:
    snprintf(err, errlen, "histogram: bad buckets (index:count ascending, summing to total)");
    hist_reset(h);
    return -1;
}
