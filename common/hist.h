/* Pure. A log-linear latency histogram (HdrHistogram's idea, written small): exact below 128 us,
 * 64 buckets per power of two above (reported at their midpoint: <= 1/128 relative error),
 * values up to 60 s, 10.5 KiB, constant-time record.
 * Pure: one per thread, merged after the fact; never shared between threads. */
#ifndef TVSA_HIST_H
#define TVSA_HIST_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_MAX_US 60000000ULL /* 60 s: larger values count as overflow and as 60 s */
#define HIST_LINEAR 128         /* values below this have their own bucket (exact) */
#define HIST_SUB 64             /* buckets per power of two above HIST_LINEAR */
/* 0..127 exact, then octaves [2^7,2^8) .. [2^25,2^26) (2^26 us > 60 s) of HIST_SUB each. */
#define HIST_BUCKETS (HIST_LINEAR + 19 * HIST_SUB)

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;    /* values recorded, overflow included */
    uint64_t overflow; /* values above HIST_MAX_US (counted in the last bucket too) */
    uint64_t sum;      /* exact sum of recorded values (clamped to HIST_MAX_US) */
    uint64_t max;      /* exact largest value recorded (not clamped) */
};

/* Empties h. A zeroed struct hist is also empty. */
void hist_reset(struct hist *h);
/* Counts one value in microseconds. Constant time, no allocation. */
void hist_record(struct hist *h, uint64_t us);
/* Adds every count of src to dst: the same as having recorded src's values into dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at or below which p percent (0..100, to 1e-4 %) of the recorded values lie: the
 * value of rank ceil(p% x total) (at least 1), reported as the midpoint
 * of its bucket (within 1/128 of the true value; never above the exact max). 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);
/* Arithmetic mean of the recorded values, 0 when empty. */
double hist_mean(const struct hist *h);
/* The compact JSON form (docs/metrics.md "Histograms"), exact: {"layout": HIST_LAYOUT,
 * "total", "sum", "max", "overflow", "buckets": "INDEX:COUNT INDEX:COUNT ..."} with only the
 * non-zero buckets, indices ascending. NULL on allocation failure. */
#define HIST_LAYOUT "log-linear 128+19x64"
json_t *hist_to_json(const struct hist *h);
/* Reads that form back into h (reset first). 0, or -1 with err filled when it is not one: a
 * wrong layout, an index out of range or not ascending, counts that do not add up to total. */
int hist_from_json(struct hist *h, const json_t *j, char *err, size_t errlen);

/* Bucket index of a value, and the value a bucket reports (exposed for tests). */
unsigned hist_index(uint64_t us);
uint64_t hist_bucket_value(unsigned idx);

#endif
