/* Tests of common/hist: percentiles within 1% on known distributions, merge, extremes, the
 * JSON form read back and merged exactly. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "hist.h"

/* Exact percentile of a sorted array: the value of rank ceil(p% x n) (at least 1), with p
 * given as a fraction num/den so that no floating point decides the rank. */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, uint64_t num, uint64_t den)
{
    size_t rank = (size_t)((num * n + den * 100 - 1) / (den * 100));
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

enum dist { D_UNIFORM_SMALL, D_UNIFORM_WIDE, D_EXPONENTIAL, D_LOGUNIFORM, D_CONSTANT };

struct dist_case {
    const char *name;
    enum dist dist;
    size_t n;
};

static const struct dist_case dist_cases[] = {
    {"uniform 0..200 us", D_UNIFORM_SMALL, 100000},
    {"uniform 0..10 s", D_UNIFORM_WIDE, 100000},
    {"exponential mean 100 us", D_EXPONENTIAL, 100000},
    {"log-uniform 1 us..60 s", D_LOGUNIFORM, 100000},
    {"constant 12345 us", D_CONSTANT, 1000},
};

static uint64_t draw(enum dist d, uint64_t *s)
{
    double u = (double)(next_rand(s) % 1000000007ULL) / 1000000007.0;
    switch (d) {
    case D_UNIFORM_SMALL: return next_rand(s) % 201;
    case D_UNIFORM_WIDE: return next_rand(s) % 10000001;
    case D_EXPONENTIAL: return (uint64_t)(-100.0 * log(1.0 - u));
    case D_LOGUNIFORM: return (uint64_t)exp(u * log(60e6));
    case D_CONSTANT: return 12345;
    }
    return 0;
}

static void test_known_distributions(void **state)
{
    (void)state;
    /* Percentiles as num/den (99.9 = 999/10) and as hist_percentile takes them. */
    static const struct { uint64_t num, den; double p; } ps[] = {
        {0, 1, 0}, {1, 1, 1}, {10, 1, 10}, {50, 1, 50}, {90, 1, 90}, {99, 1, 99},
        {999, 10, 99.9}, {9999, 100, 99.99}, {100, 1, 100},
    };
    for (size_t c = 0; c < sizeof dist_cases / sizeof dist_cases[0]; c++) {
        const struct dist_case *dc = &dist_cases[c];
        uint64_t *v = malloc(dc->n * sizeof *v);
        assert_non_null(v);
        struct hist *h = calloc(1, sizeof *h);
        assert_non_null(h);
        uint64_t seed = 0x9E3779B97F4A7C15ULL + c;
        long double sum = 0;
        for (size_t i = 0; i < dc->n; i++) {
            v[i] = draw(dc->dist, &seed);
            sum += v[i];
            hist_record(h, v[i]);
        }
        qsort(v, dc->n, sizeof *v, cmp_u64);
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
            uint64_t want = exact_percentile(v, dc->n, ps[i].num, ps[i].den);
            uint64_t got = hist_percentile(h, ps[i].p);
            double err = want ? fabs((double)got - (double)want) / (double)want : (double)got;
            if (err > 0.01)
                fail_msg("%s p%g: got %llu want %llu", dc->name, ps[i].p,
                         (unsigned long long)got, (unsigned long long)want);
        }
        assert_int_equal(h->total, dc->n);
        assert_int_equal(h->max, v[dc->n - 1]);
        assert_true(fabs(hist_mean(h) - (double)(sum / dc->n)) < 1e-6 * (double)(sum / dc->n) + 1e-9);
        free(h);
        free(v);
    }
}

/* Ranks whose floating-point product lands just above an integer (0.07 x 100 =
 * 7.000000000000001, 0.999 x 1000 = 999.0000000000001): the percentile is the value of that
 * integer rank, not the next one. Values are 1..n (or n-1 ones then one high value), so the
 * references are written out by hand, not computed by any rank rule. */
struct rank_case {
    const char *name;
    unsigned n;          /* values 1..n; with high != 0: n-1 ones and then `high` */
    uint64_t high;
    double p;
    uint64_t want;       /* exact below 128 us, else within the bucket error (1/128) */
};

static const struct rank_case rank_cases[] = {
    {"1..1000 p99.9", 1000, 0, 99.9, 999},
    {"1..1000 p50", 1000, 0, 50, 500},
    {"1..1000 p99", 1000, 0, 99, 990},
    {"1..1000 p100", 1000, 0, 100, 1000},
    {"1..1000 p0", 1000, 0, 0, 1},
    {"1..100 p7", 100, 0, 7, 7},
    {"1..100 p14", 100, 0, 14, 14},
    {"1..100 p28", 100, 0, 28, 28},
    {"1..100 p29", 100, 0, 29, 29},
    {"1..100 p56", 100, 0, 56, 56},
    {"999 ones and 100: p99.9", 1000, 100, 99.9, 1},
    {"9999 ones and 100: p99.99", 10000, 100, 99.99, 1},
    {"9999 ones and 100: p100", 10000, 100, 100, 100},
};

static void test_integer_rank(void **state)
{
    (void)state;
    struct hist *h = calloc(1, sizeof *h);
    assert_non_null(h);
    for (size_t i = 0; i < sizeof rank_cases / sizeof rank_cases[0]; i++) {
        const struct rank_case *rc = &rank_cases[i];
        hist_reset(h);
        for (unsigned v = 1; v <= rc->n; v++)
            hist_record(h, rc->high == 0 ? v : v < rc->n ? 1 : rc->high);
        uint64_t got = hist_percentile(h, rc->p);
        int ok = rc->want < HIST_LINEAR
                     ? got == rc->want
                     : fabs((double)got - (double)rc->want) <= (double)rc->want / 128.0;
        if (!ok)
            fail_msg("%s: got %llu want %llu", rc->name, (unsigned long long)got,
                     (unsigned long long)rc->want);
    }
    free(h);
}

/* Every value from 0 to 60 s maps to a bucket whose reported value is within 1/128 of it,
 * buckets are monotonic, and below 128 us every value is exact. */
static void test_bucket_bounds(void **state)
{
    (void)state;
    unsigned prev = 0;
    for (uint64_t v = 0; v <= HIST_MAX_US; v += (v < 4096 ? 1 : v / 1000)) {
        unsigned idx = hist_index(v);
        assert_true(idx < HIST_BUCKETS);
        assert_true(idx >= prev);
        prev = idx;
        uint64_t rep = hist_bucket_value(idx);
        if (v < HIST_LINEAR)
            assert_int_equal(rep, v);
        else if (fabs((double)rep - (double)v) > (double)v / 128.0)
            fail_msg("value %llu reported as %llu", (unsigned long long)v,
                     (unsigned long long)rep);
    }
    assert_int_equal(hist_index(UINT64_MAX), hist_index(HIST_MAX_US));
    assert_true(hist_index(HIST_MAX_US) < HIST_BUCKETS);
}

struct extreme_case {
    const char *name;
    uint64_t value;
    uint64_t want_p50;   /* reported percentile */
    uint64_t want_max;
    uint64_t want_overflow;
};

static const struct extreme_case extreme_cases[] = {
    {"zero", 0, 0, 0, 0},
    {"one", 1, 1, 1, 0},
    {"60 s exactly", HIST_MAX_US, HIST_MAX_US, HIST_MAX_US, 0},
    {"just over 60 s", HIST_MAX_US + 1, HIST_MAX_US, HIST_MAX_US + 1, 1},
    {"UINT64_MAX", UINT64_MAX, HIST_MAX_US, UINT64_MAX, 1},
};

static void test_extremes(void **state)
{
    (void)state;
    struct hist h;
    for (size_t i = 0; i < sizeof extreme_cases / sizeof extreme_cases[0]; i++) {
        const struct extreme_case *ec = &extreme_cases[i];
        hist_reset(&h);
        hist_record(&h, ec->value);
        if (hist_percentile(&h, 50) != ec->want_p50)
            fail_msg("%s: p50 %llu", ec->name, (unsigned long long)hist_percentile(&h, 50));
        assert_int_equal(h.max, ec->want_max);
        assert_int_equal(h.overflow, ec->want_overflow);
        assert_int_equal(h.total, 1);
    }
    hist_reset(&h);
    assert_int_equal(hist_percentile(&h, 99), 0);
    assert_true(hist_mean(&h) == 0.0);
}

/* Recording into per-thread histograms and merging equals recording into one. */
static void test_merge_equals_single(void **state)
{
    (void)state;
    static struct hist parts[4], merged, single;
    uint64_t seed = 42;
    for (int i = 0; i < 4; i++)
        hist_reset(&parts[i]);
    hist_reset(&merged);
    hist_reset(&single);
    for (int i = 0; i < 200000; i++) {
        uint64_t v = draw(D_LOGUNIFORM, &seed);
        if (i % 1000 == 0)
            v = HIST_MAX_US + (uint64_t)i; /* some overflow too */
        hist_record(&parts[next_rand(&seed) % 4], v);
        hist_record(&single, v);
    }
    for (int i = 0; i < 4; i++)
        hist_merge(&merged, &parts[i]);
    assert_memory_equal(&merged, &single, sizeof single);
    assert_int_equal(hist_percentile(&merged, 99.9), hist_percentile(&single, 99.9));
}

/* Two halves written to the JSON form, read back and merged equal one histogram that
 * recorded everything: every bucket, total, sum, max, overflow, every percentile. */
static void test_json_halves_merge_exactly(void **state)
{
    (void)state;
    static struct hist half[2], back, merged, single;
    char err[128];
    uint64_t seed = 7;
    hist_reset(&half[0]);
    hist_reset(&half[1]);
    hist_reset(&single);
    hist_reset(&merged);
    for (int i = 0; i < 100000; i++) {
        uint64_t v = draw(i % 2 ? D_EXPONENTIAL : D_LOGUNIFORM, &seed);
        if (i % 5000 == 0)
            v = HIST_MAX_US + 1 + (uint64_t)i;
        hist_record(&half[next_rand(&seed) % 2], v);
        hist_record(&single, v);
    }
    for (int k = 0; k < 2; k++) {
        json_t *j = hist_to_json(&half[k]);
        assert_non_null(j);
        char *text = json_dumps(j, 0);
        json_decref(j);
        j = json_loads(text, 0, NULL);
        free(text);
        if (hist_from_json(&back, j, err, sizeof err) < 0)
            fail_msg("half %d: %s", k, err);
        json_decref(j);
        assert_memory_equal(&back, &half[k], sizeof back);
        hist_merge(&merged, &back);
    }
    assert_memory_equal(&merged, &single, sizeof single);
    static const double ps[] = {0, 50, 90, 99, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        assert_int_equal(hist_percentile(&merged, ps[i]), hist_percentile(&single, ps[i]));
    /* Only the non-zero buckets are written. */
    json_t *j = hist_to_json(&single);
    const char *b = json_string_value(json_object_get(j, "buckets"));
    size_t nonzero = 0, pairs = 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        nonzero += single.counts[i] != 0;
    for (const char *p = b; *p; p++)
        pairs += *p == ' ';
    assert_int_equal(pairs, nonzero);
    json_decref(j);
}

struct bad_json_case {
    const char *name;
    const char *text;
};

static const struct bad_json_case bad_json_cases[] = {
    {"wrong layout", "{\"layout\":\"x\",\"total\":1,\"sum\":1,\"max\":1,\"overflow\":0,"
                     "\"buckets\":\"1:1\"}"},
    {"index too large", "{\"layout\":\"" HIST_LAYOUT "\",\"total\":1,\"sum\":1,\"max\":1,"
                        "\"overflow\":0,\"buckets\":\"1344:1\"}"},
    {"not ascending", "{\"layout\":\"" HIST_LAYOUT "\",\"total\":2,\"sum\":3,\"max\":2,"
                      "\"overflow\":0,\"buckets\":\"2:1 1:1\"}"},
    {"total wrong", "{\"layout\":\"" HIST_LAYOUT "\",\"total\":3,\"sum\":3,\"max\":2,"
                    "\"overflow\":0,\"buckets\":\"1:1 2:1\"}"},
    {"zero count", "{\"layout\":\"" HIST_LAYOUT "\",\"total\":1,\"sum\":1,\"max\":1,"
                   "\"overflow\":0,\"buckets\":\"0:0 1:1\"}"},
    {"missing sum", "{\"layout\":\"" HIST_LAYOUT "\",\"total\":1,\"max\":1,"
                    "\"overflow\":0,\"buckets\":\"1:1\"}"},
    /* Counts whose sum wraps round 2^64 to the total. */
    {"sum wraps", "{\"layout\":\"" HIST_LAYOUT "\",\"total\":1,\"sum\":3,\"max\":2,"
                  "\"overflow\":0,\"buckets\":\"1:18446744073709551615 2:2\"}"},
    {"negative count", "{\"layout\":\"" HIST_LAYOUT "\",\"total\":1,\"sum\":3,\"max\":2,"
                       "\"overflow\":0,\"buckets\":\"1:-1 2:2\"}"},
};

static void test_json_bad_forms_refused(void **state)
{
    (void)state;
    static struct hist h;
    char err[128];
    for (size_t i = 0; i < sizeof bad_json_cases / sizeof bad_json_cases[0]; i++) {
        json_t *j = json_loads(bad_json_cases[i].text, 0, NULL);
        assert_non_null(j);
        if (hist_from_json(&h, j, err, sizeof err) == 0)
            fail_msg("%s: accepted", bad_json_cases[i].name);
        json_decref(j);
    }
    const char *ok = "{\"layout\":\"" HIST_LAYOUT "\",\"total\":2,\"sum\":3,\"max\":2,"
                     "\"overflow\":0,\"buckets\":\"1:1 2:1\"}";
    json_t *j = json_loads(ok, 0, NULL);
    assert_int_equal(hist_from_json(&h, j, err, sizeof err), 0);
    assert_int_equal(h.counts[1] + h.counts[2], 2);
    json_decref(j);
}

static void test_size_is_small(void **state)
{
    (void)state;
    assert_true(sizeof(struct hist) <= 12 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_distributions),
        cmocka_unit_test(test_integer_rank),
        cmocka_unit_test(test_bucket_bounds),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_merge_equals_single),
        cmocka_unit_test(test_size_is_small),
        cmocka_unit_test(test_json_halves_merge_exactly),
        cmocka_unit_test(test_json_bad_forms_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
