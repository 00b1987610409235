/* Unit tests of the coroutine runtime (async/lib/coro.h): create, switch, finish, many at once,
 * one parked forever and freed, the guard page, and what a stack costs in resident pages. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../async/lib/coro.h"
#include "cm.h"
#include "testsrv.h"

#define STACK (64 * 1024)

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static struct coro *new_or_fail(void (*fn)(void *), void *arg, size_t stack)
{
    char err[256];
    struct coro *c = coro_new(fn, arg, stack, err, sizeof err);
    if (c == NULL)
        fail_msg("coro_new: %s", err);
    return c;
}

/* ---- create, switch, finish ------------------------------------------------------------- */

struct steps {
    int step;
    struct coro *seen_inside;
};

static void three_steps(void *arg)
{
    struct steps *s = arg;
    s->seen_inside = coro_current();
    s->step = 1;
    coro_yield();
    s->step = 2;
    coro_yield();
    s->step = 3;
}

static void test_create_switch_finish(void **state)
{
    (void)state;
    struct steps s = {0, NULL};
    struct coro *c = new_or_fail(three_steps, &s, STACK);

    /* Created, not run. */
    assert_int_equal(coro_state(c), CORO_SUSPENDED);
    assert_int_equal(s.step, 0);
    assert_null(coro_current());

    uint64_t before = coro_switches();
    assert_int_equal(coro_resume(c), CORO_SUSPENDED);
    assert_int_equal(s.step, 1);
    assert_ptr_equal(s.seen_inside, c);
    assert_null(coro_current()); /* back on the thread's own stack */
    assert_int_equal(coro_resume(c), CORO_SUSPENDED);
    assert_int_equal(s.step, 2);
    assert_int_equal(coro_resume(c), CORO_FINISHED);
    assert_int_equal(s.step, 3);
    assert_int_equal(coro_state(c), CORO_FINISHED);
    /* Three entries and three returns. */
    assert_int_equal(coro_switches() - before, 6);

    /* A finished coroutine is not entered again. */
    assert_int_equal(coro_resume(c), CORO_FINISHED);
    assert_int_equal(s.step, 3);
    assert_int_equal(coro_switches() - before, 6);
    assert_int_equal(coro_free(c), 0);
}

static void test_yield_outside_and_bad_sizes(void **state)
{
    (void)state;
    char err[256] = "";
    assert_int_equal(coro_yield(), -1);
    assert_null(coro_new(three_steps, NULL, CORO_STACK_MIN - 1, err, sizeof err));
    assert_non_null(strstr(err, "stack"));
    assert_null(coro_new(three_steps, NULL, 0, err, sizeof err));
    assert_int_equal(coro_free(NULL), 0);
}

/* ---- what survives a switch ------------------------------------------------------------- */

struct keeper {
    double acc;
    long frames_ok;
};

/* Locals, callee-saved registers and floating point live across every yield. */
static void keep_locals(void *arg)
{
    struct keeper *k = arg;
    volatile long local[64];
    double x = 1.0;
    for (long i = 0; i < 64; i++)
        local[i] = i * 7;
    for (int round = 0; round < 100; round++) {
        x = x * 1.5 + 0.25;
        coro_yield();
        long ok = 1;
        for (long i = 0; i < 64; i++)
            ok &= local[i] == i * 7;
        k->frames_ok += ok;
    }
    k->acc = x;
}

static void test_locals_survive_switches(void **state)
{
    (void)state;
    struct keeper k = {0, 0};
    struct coro *c = new_or_fail(keep_locals, &k, STACK);
    double expect = 1.0;
    for (int round = 0; round < 100; round++)
        expect = expect * 1.5 + 0.25;
    int resumes = 0;
    while (coro_resume(c) == CORO_SUSPENDED)
        resumes++;
    assert_int_equal(resumes, 100);
    assert_int_equal(k.frames_ok, 100);
    assert_true(k.acc == expect);
    coro_free(c);
}

/* ---- many at once ----------------------------------------------------------------------- */

enum { MANY = 1000, ROUNDS = 20 };

struct worker {
    int id;
    long sum;             /* written only after the last round */
    void *frame;          /* its frame address (real stack, even where ASan moves locals) */
};

/* Each worker adds its id once per round on a local, yielding in between: if any two shared a
 * stack, or a switch landed in the wrong one, a sum would come out wrong. */
static void add_rounds(void *arg)
{
    struct worker *w = arg;
    volatile long local = 0;
    w->frame = __builtin_frame_address(0);
    for (int r = 0; r < ROUNDS; r++) {
        local += w->id;
        coro_yield();
    }
    w->sum = local;
}

static void test_many_at_once(void **state)
{
    (void)state;
    static struct worker w[MANY];
    static struct coro *c[MANY];
    for (int i = 0; i < MANY; i++) {
        w[i] = (struct worker){i + 1, 0, NULL};
        c[i] = new_or_fail(add_rounds, &w[i], 16 * 1024);
    }
    /* Round-robin, like a loop serving many connections. */
    int live = MANY;
    while (live > 0) {
        live = 0;
        for (int i = 0; i < MANY; i++)
            if (coro_resume(c[i]) == CORO_SUSPENDED)
                live++;
    }
    for (int i = 0; i < MANY; i++) {
        void *lo;
        size_t len;
        coro_stack(c[i], &lo, &len);
        assert_int_equal(w[i].sum, (long)(i + 1) * ROUNDS);
        /* Its frame was on its own stack. */
        assert_true((char *)w[i].frame >= (char *)lo && (char *)w[i].frame < (char *)lo + len);
        assert_int_equal(coro_state(c[i]), CORO_FINISHED);
        assert_int_equal(coro_free(c[i]), 0);
    }
}

/* ---- nesting ---------------------------------------------------------------------------- */

struct nest {
    struct coro *inner;
    int trace[8];
    int n;
};

static void inner_fn(void *arg)
{
    struct nest *n = arg;
    n->trace[n->n++] = 2;
    coro_yield(); /* back to the outer coroutine, not to the thread's stack */
    n->trace[n->n++] = 4;
}

static void outer_fn(void *arg)
{
    struct nest *n = arg;
    struct coro *self = coro_current();
    n->trace[n->n++] = 1;
    coro_resume(n->inner);
    if (coro_current() == self)
        n->trace[n->n++] = 3;
    coro_yield();
    coro_resume(n->inner);
    n->trace[n->n++] = 5;
}

static void test_nested_resume(void **state)
{
    (void)state;
    struct nest n = {NULL, {0}, 0};
    n.inner = new_or_fail(inner_fn, &n, STACK);
    struct coro *outer = new_or_fail(outer_fn, &n, STACK);
    assert_int_equal(coro_resume(outer), CORO_SUSPENDED);
    assert_int_equal(coro_state(n.inner), CORO_SUSPENDED);
    assert_int_equal(coro_resume(outer), CORO_FINISHED);
    assert_int_equal(coro_state(n.inner), CORO_FINISHED);
    int want[] = {1, 2, 3, 4, 5};
    assert_int_equal(n.n, 5);
    assert_memory_equal(n.trace, want, sizeof want);
    coro_free(n.inner);
    coro_free(outer);
}

/* ---- a running coroutine cannot be freed or re-entered ---------------------------------- */

struct self_check {
    int free_rc;
    enum coro_state resume_rc;
};

static void try_free_self(void *arg)
{
    struct self_check *s = arg;
    s->free_rc = coro_free(coro_current());
    s->resume_rc = coro_resume(coro_current());
}

static void test_running_is_left_alone(void **state)
{
    (void)state;
    struct self_check s = {0, CORO_SUSPENDED};
    struct coro *c = new_or_fail(try_free_self, &s, STACK);
    assert_int_equal(coro_resume(c), CORO_FINISHED);
    assert_int_equal(s.free_rc, -1);
    assert_int_equal(s.resume_rc, CORO_RUNNING);
    assert_int_equal(coro_free(c), 0);
}

/* ---- parked forever, then freed: the server's stop --------------------------------------- */

static void park_forever(void *arg)
{
    int *entered = arg;
    (*entered)++;
    for (;;)
        coro_yield(); /* like a connection waiting for a client that never speaks */
}

/* mincore() fails with ENOMEM on an address with no mapping. */
static int mapped(void *addr)
{
    unsigned char vec;
    void *pg = (void *)((uintptr_t)addr & ~(uintptr_t)(page_size() - 1));
    return mincore(pg, page_size(), &vec) == 0 ? 1 : errno == ENOMEM ? 0 : -1;
}

static void test_parked_forever_is_freed(void **state)
{
    (void)state;
    int entered = 0;
    struct coro *c = new_or_fail(park_forever, &entered, STACK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(coro_resume(c), CORO_SUSPENDED);
    assert_int_equal(entered, 1);
    void *lo;
    size_t len;
    coro_stack(c, &lo, &len);
    assert_int_equal(mapped(lo), 1);
    assert_int_equal(mapped((char *)lo + len - 1), 1);

    assert_int_equal(coro_free(c), 0);
    /* The stack is kept for the next coroutine of its size, which runs and finishes on it. */
    assert_int_equal(mapped(lo), 1);
    struct steps s = {0, NULL};
    struct coro *d = new_or_fail(three_steps, &s, STACK);
    void *lo2;
    size_t len2;
    coro_stack(d, &lo2, &len2);
    assert_ptr_equal(lo2, lo);
    assert_int_equal(len2, len);
    assert_int_equal(coro_state(d), CORO_SUSPENDED);
    while (coro_resume(d) == CORO_SUSPENDED)
        ;
    assert_int_equal(s.step, 3);
    assert_int_equal(entered, 1); /* the old coroutine never ran again */
    coro_free(d);

    /* Dropping the cache unmaps it all, guard page included. */
    coro_cache_drop();
    assert_int_equal(mapped(lo), 0);
    assert_int_equal(mapped((char *)lo + len - 1), 0);
    assert_int_equal(mapped((char *)lo - 1), 0);
}

/* The cache keeps CORO_CACHE_MAX stacks at most; the rest are unmapped at once. */
static void test_stack_cache_is_bounded(void **state)
{
    (void)state;
    enum { N = CORO_CACHE_MAX + 10 };
    static struct coro *c[N];
    static void *lo[N];
    size_t len;
    int entered = 0;
    coro_cache_drop();
    for (int i = 0; i < N; i++) {
        c[i] = new_or_fail(park_forever, &entered, STACK);
        coro_stack(c[i], &lo[i], &len);
        coro_resume(c[i]);
    }
    assert_int_equal(entered, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(coro_free(c[i]), 0);
    static int is_cached[N];
    int still = 0;
    for (int i = 0; i < N; i++)
        still += is_cached[i] = mapped(lo[i]);
    assert_int_equal(still, CORO_CACHE_MAX);
    /* A stack of another size is not taken from the cache (an unmapped one's address may be
     * mapped again, a cached one's not). */
    struct coro *other = new_or_fail(park_forever, &entered, 2 * STACK);
    void *olo;
    coro_stack(other, &olo, &len);
    for (int i = 0; i < N; i++)
        if (is_cached[i])
            assert_ptr_not_equal(olo, lo[i]);
    coro_free(other);
    coro_cache_drop();
    still = 0;
    for (int i = 0; i < N; i++)
        still += mapped(lo[i]);
    assert_int_equal(still, 0);
}

/* ---- the guard page ----------------------------------------------------------------------- */

static void write_below_stack(void *arg)
{
    (void)arg;
    void *lo;
    size_t len;
    coro_stack(coro_current(), &lo, &len);
    ((volatile char *)lo)[-1] = 1; /* the first byte past the stack's end */
}

/* In a child: a coroutine writes the byte just past its stack's low end. That byte is in the
 * coroutine's own mapping: were it not a PROT_NONE guard page, the write would succeed and the
 * child would exit 0. A second coroutine is mapped first so that a neighbour lies below too. */
static void test_guard_page_faults(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        signal(SIGSEGV, SIG_DFL); /* cmocka's handler would carry on in the child */
        struct coro *a = coro_new(park_forever, &(int){0}, STACK, err, sizeof err);
        struct coro *b = coro_new(write_below_stack, NULL, STACK, err, sizeof err);
        if (a == NULL || b == NULL)
            _exit(3);
        coro_resume(b);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* SIGSEGV; under ASan its handler reports the fault and exits non-zero instead. */
    if (WIFEXITED(status))
        assert_true(WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3);
    else
        assert_int_equal(WTERMSIG(status), SIGSEGV);
}

/* ---- resident pages: a stack costs what it touches ---------------------------------------- */

static void touch_little(void *arg)
{
    volatile char small[256];
    small[0] = 1;
    small[255] = (char)small[0];
    *(int *)arg = small[255];
    coro_yield();
}

static long resident_pages(void *lo, size_t len)
{
    size_t pages = len / page_size();
    unsigned char *vec = malloc(pages);
    long n = 0;
    if (vec == NULL || mincore(lo, len, vec) < 0) {
        free(vec);
        return -1;
    }
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

static void test_untouched_stack_is_not_resident(void **state)
{
    (void)state;
    int out = 0;
    struct coro *c = new_or_fail(touch_little, &out, 1024 * 1024);
    void *lo;
    size_t len;
    coro_stack(c, &lo, &len);
    assert_true(len >= 1024 * 1024 - 256);
    assert_int_equal(coro_resume(c), CORO_SUSPENDED);
    assert_int_equal(out, 1);
    long resident = resident_pages(lo, (len + page_size() - 1) / page_size() * page_size());
    print_message("  1 MiB stack, small frame: %ld resident pages\n", resident);
    /* The top page or two (the record and the first frames), not 256 of them. */
    assert_true(resident >= 1);
    assert_true(resident <= 4);
    coro_free(c);
}

/* ---- bin/switch-cost: its JSON, every figure present and positive ------------------------- */

static void test_switch_cost_json(void **state)
{
    (void)state;
    static char out[64 * 1024], err[16 * 1024];
    const char *argv[] = {"switch-cost", "--json", "--iterations", "2000", "--rounds", "1",
                          NULL};
    assert_int_equal(testsrv_run(argv, out, sizeof out, err, sizeof err, 60000), 0);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    if (doc == NULL)
        fail_msg("switch-cost --json printed no JSON (%s): %s", jerr.text, out);
    assert_string_equal(json_string_value(json_object_get(doc, "schema")),
                        "tvsa-switch-cost/1");
    assert_true(json_integer_value(json_object_get(doc, "cpu")) >= 0);
    json_t *results = json_object_get(doc, "results");
    static const char *const keys[] = {"function", "coro", "fcontext_raw", "swapcontext",
                                       "libevent_callback", "libevent_loop", "thread_futex",
                                       "thread_pipe"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *r = json_object_get(results, keys[i]);
        if (r == NULL)
            fail_msg("no results.%s", keys[i]);
        for (const char *const *f = (const char *const[]){"ns", "ns_min", "ns_max", NULL}; *f;
             f++)
            if (!json_is_real(json_object_get(r, *f)) ||
                json_real_value(json_object_get(r, *f)) <= 0)
                fail_msg("results.%s.%s missing or not positive", keys[i], *f);
        assert_true(json_integer_value(json_object_get(r, "ops")) > 0);
        assert_non_null(json_string_value(json_object_get(r, "unit")));
        json_t *k = json_object_get(r, "kernel_switches_per_op");
        assert_true(json_is_real(k) && json_real_value(k) >= 0);
        /* A count, not a time: on one CPU every hand-over between threads is a kernel
         * switch, and a coroutine switch is none (a stray preemption is far below 0.5). */
        if (strncmp(keys[i], "thread_", 7) == 0)
            assert_true(json_real_value(k) >= 0.9);
        if (strcmp(keys[i], "coro") == 0)
            assert_true(json_real_value(k) < 0.5);
    }
    json_t *goal = json_object_get(doc, "goal");
    assert_true(json_real_value(json_object_get(goal, "coro_over_thread_futex")) > 0);
    assert_true(json_is_boolean(json_object_get(goal, "met")));
    json_decref(doc);

    const char *const bad[][4] = {
        {"switch-cost", "--rounds", "0", NULL},
        {"switch-cost", "--iterations", "x", NULL},
        {"switch-cost", "--bogus", NULL, NULL},
        {"switch-cost", "extra", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = testsrv_run(bad[i], out, sizeof out, err, sizeof err, 5000);
        if (rc != 2 || strstr(err, "--help") == NULL)
            fail_msg("%s %s: exit %d, stderr '%s'", bad[i][1], bad[i][2] ? bad[i][2] : "", rc,
                     err);
    }
    const char *help[] = {"switch-cost", "--help", NULL};
    assert_int_equal(testsrv_run(help, out, sizeof out, err, sizeof err, 5000), 0);
    assert_non_null(strstr(out, "--json"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_switch_finish),
        cmocka_unit_test(test_yield_outside_and_bad_sizes),
        cmocka_unit_test(test_locals_survive_switches),
        cmocka_unit_test(test_many_at_once),
        cmocka_unit_test(test_nested_resume),
        cmocka_unit_test(test_running_is_left_alone),
        cmocka_unit_test(test_parked_forever_is_freed),
        cmocka_unit_test(test_stack_cache_is_bounded),
        cmocka_unit_test(test_guard_page_faults),
        cmocka_unit_test(test_untouched_stack_is_not_resident),
        cmocka_unit_test(test_switch_cost_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
