/* switch-cost: what a switch costs on this machine, on one pinned CPU, in nanoseconds: two kernel
 * threads handing a token back and forth (futex, pipe), two coroutines (async/lib/coro and raw
 * swapcontext), a libevent callback dispatch, and a plain function call as the floor.
 * docs/metrics.md describes the method and the JSON (--json, schema tvsa-switch-cost/1). */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "../async/lib/coro.h"
#include "../async/lib/fcontext.h"
#include "mono.h"
#include "opts.h"

#define NAME "switch-cost"
#define MAX_ROUNDS 101
#define STACK_BYTES (64 * 1024)

struct config {
    long iterations;  /* operations per round for the cheap measures */
    long rounds;
    long cpu;         /* -1: the CPU the process starts on */
    int json;
};

static const struct config defaults = {1000000, 5, -1, 0};

/* One measure: runs `ops` operations and returns the nanoseconds they took. */
struct measure {
    const char *key;
    const char *unit;     /* what one operation is: "switch", "dispatch", "call" */
    const char *what;
    long ops_divisor;     /* ops = iterations / divisor: kernel switches are slower */
    int ops_per_iter;     /* switches per iteration (a round trip is two) */
    uint64_t (*run)(long iters);
};

/* ---- the floor: a call the compiler cannot inline or remove ------------------------------ */

static volatile uint64_t sink;
static void __attribute__((noinline)) bump(void)
{
    sink++;
}
static void (*volatile bump_ptr)(void) = bump;

static uint64_t run_function(long iters)
{
    uint64_t t0 = mono_now_ns();
    for (long i = 0; i < iters; i++)
        bump_ptr();
    return mono_now_ns() - t0;
}

/* ---- our coroutines ------------------------------------------------------------------------ */

static int coro_stop;

static void coro_pingpong(void *arg)
{
    (void)arg;
    while (!coro_stop)
        coro_yield();
}

static uint64_t run_coro(long iters)
{
    char err[256];
    struct coro *c = coro_new(coro_pingpong, NULL, STACK_BYTES, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, NAME ": %s\n", err);
        exit(1);
    }
    coro_stop = 0;
    coro_resume(c); /* the first entry builds the frame: not a steady-state switch */
    uint64_t t0 = mono_now_ns();
    for (long i = 0; i < iters; i++)
        coro_resume(c);
    uint64_t dt = mono_now_ns() - t0;
    coro_stop = 1;
    coro_resume(c);
    coro_free(c);
    return dt;
}

/* ---- Boost.Context's jump_fcontext alone, called straight from the loops -------------------- */

/* Switches back at once, forever: no call returns on either side after a switch, so the CPU's
 * return-address predictor is never wrong (the runtime's coro_resume/coro_yield return after
 * every switch, and mispredict those returns). */
static void fctx_pingpong(struct transfer_t t)
{
    for (;;)
        t = jump_fcontext(t.fctx, NULL);
}

static uint64_t run_fcontext(long iters)
{
    static char stack[STACK_BYTES];
    fcontext_t f = make_fcontext(stack + sizeof stack, sizeof stack, fctx_pingpong);
    f = jump_fcontext(f, NULL).fctx;
    uint64_t t0 = mono_now_ns();
    for (long i = 0; i < iters; i++)
        f = jump_fcontext(f, NULL).fctx;
    return mono_now_ns() - t0; /* left parked; the next round makes a new one */
}

/* ---- glibc swapcontext ------------------------------------------------------------------- */

static ucontext_t uc_main, uc_co;

static void uc_pingpong(void)
{
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

static uint64_t run_swapcontext(long iters)
{
    static char stack[STACK_BYTES];
    if (getcontext(&uc_co) < 0) {
        perror(NAME ": getcontext");
        exit(1);
    }
    uc_co.uc_stack.ss_sp = stack;
    uc_co.uc_stack.ss_size = sizeof stack;
    uc_co.uc_link = NULL;
    makecontext(&uc_co, uc_pingpong, 0);
    swapcontext(&uc_main, &uc_co);
    uint64_t t0 = mono_now_ns();
    for (long i = 0; i < iters; i++)
        swapcontext(&uc_main, &uc_co);
    return mono_now_ns() - t0; /* the context is left parked; the next round makes a new one */
}

/* ---- libevent ---------------------------------------------------------------------------- */

struct ev_count {
    long n, want;
    struct event *ev;
};

static void count_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ((struct ev_count *)arg)->n++;
}

static void reactivate_cb(evutil_socket_t fd, short what, void *arg)
{
    struct ev_count *c = arg;
    (void)fd;
    if (++c->n < c->want)
        event_active(c->ev, what, 0);
}

static struct event_base *new_base(void)
{
    struct event_base *base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, NAME ": event_base_new failed\n");
        exit(1);
    }
    return base;
}

static void check_count(const struct ev_count *c, long want)
{
    if (c->n != want) {
        fprintf(stderr, NAME ": %ld callbacks ran, %ld expected\n", c->n, want);
        exit(1);
    }
}

/* What one turn of an event loop costs a callback: make it active, run one loop iteration
 * (which also polls the backend once, with a zero timeout), dispatch. */
static uint64_t run_libevent_loop(long iters)
{
    struct event_base *base = new_base();
    struct ev_count c = {0, iters, NULL};
    c.ev = event_new(base, -1, 0, count_cb, &c);
    uint64_t t0 = mono_now_ns();
    for (long i = 0; i < iters; i++) {
        event_active(c.ev, EV_READ, 0);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    uint64_t dt = mono_now_ns() - t0;
    check_count(&c, iters);
    event_free(c.ev);
    event_base_free(base);
    return dt;
}

/* Dispatch alone: the callback makes itself active again, libevent runs it from its active
 * queue without polling in between. */
static uint64_t run_libevent_callback(long iters)
{
    struct event_base *base = new_base();
    struct ev_count c = {0, iters, NULL};
    c.ev = event_new(base, -1, 0, reactivate_cb, &c);
    uint64_t t0 = mono_now_ns();
    event_active(c.ev, EV_READ, 0);
    event_base_dispatch(base);
    uint64_t dt = mono_now_ns() - t0;
    check_count(&c, iters);
    event_free(c.ev);
    event_base_free(base);
    return dt;
}

/* ---- two kernel threads on one CPU ------------------------------------------------------- */

/* The token: 0 the main thread's turn, 1 the partner's, 2 the partner must leave. */
static _Atomic int token;

static void futex_wait(_Atomic int *addr, int val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic int *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *futex_partner(void *arg)
{
    (void)arg;
    for (;;) {
        int v;
        while ((v = atomic_load(&token)) == 0)
            futex_wait(&token, 0);
        if (v == 2)
            return NULL;
        atomic_store(&token, 0);
        futex_wake(&token);
    }
}

static void futex_handoff(void)
{
    atomic_store(&token, 1);
    futex_wake(&token);
    while (atomic_load(&token) == 1)
        futex_wait(&token, 1);
}

static void start_partner(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(tid, NULL, fn, arg);
    if (rc != 0) {
        fprintf(stderr, NAME ": pthread_create: %s\n", strerror(rc));
        exit(1);
    }
}

static uint64_t run_thread_futex(long iters)
{
    pthread_t tid;
    atomic_store(&token, 0);
    start_partner(&tid, futex_partner, NULL);
    futex_handoff(); /* the partner is up and waiting */
    uint64_t t0 = mono_now_ns();
    for (long i = 0; i < iters; i++)
        futex_handoff();
    uint64_t dt = mono_now_ns() - t0;
    atomic_store(&token, 2);
    futex_wake(&token);
    pthread_join(tid, NULL);
    return dt;
}

struct pipes {
    int to_partner[2], to_main[2];
};

static void *pipe_partner(void *arg)
{
    struct pipes *p = arg;
    char b;
    while (read(p->to_partner[0], &b, 1) == 1)
        if (write(p->to_main[1], &b, 1) != 1)
            break;
    return NULL;
}

static int pipe_handoff(struct pipes *p)
{
    char b = 't';
    return write(p->to_partner[1], &b, 1) == 1 && read(p->to_main[0], &b, 1) == 1 ? 0 : -1;
}

static uint64_t run_thread_pipe(long iters)
{
    struct pipes p;
    pthread_t tid;
    if (pipe(p.to_partner) < 0 || pipe(p.to_main) < 0) {
        perror(NAME ": pipe");
        exit(1);
    }
    start_partner(&tid, pipe_partner, &p);
    int rc = pipe_handoff(&p);
    uint64_t t0 = mono_now_ns();
    for (long i = 0; i < iters && rc == 0; i++)
        rc = pipe_handoff(&p);
    uint64_t dt = mono_now_ns() - t0;
    close(p.to_partner[1]); /* the partner reads EOF and leaves */
    pthread_join(tid, NULL);
    close(p.to_partner[0]);
    close(p.to_main[0]);
    close(p.to_main[1]);
    if (rc < 0) {
        perror(NAME ": pipe ping-pong");
        exit(1);
    }
    return dt;
}

/* ---- running, summarising, reporting ----------------------------------------------------- */

static const struct measure measures[] = {
    {"function", "call", "an indirect call of a non-inlined function (the floor)", 1, 1,
     run_function},
    {"coro", "switch", "async/lib/coro: resume + yield between two stacks", 1, 2, run_coro},
    {"fcontext_raw", "switch", "Boost.Context jump_fcontext called straight from both loops",
     1, 2, run_fcontext},
    {"swapcontext", "switch", "glibc swapcontext between two ucontexts", 10, 2, run_swapcontext},
    {"libevent_callback", "dispatch", "a callback re-activated from itself: dispatch only", 1, 1,
     run_libevent_callback},
    {"libevent_loop", "dispatch", "event_active + one non-blocking loop turn (polls once)", 10, 1,
     run_libevent_loop},
    {"thread_futex", "switch", "two pinned threads handing a token over a futex", 20, 2,
     run_thread_futex},
    {"thread_pipe", "switch", "two pinned threads handing a byte through two pipes", 20, 2,
     run_thread_pipe},
};
#define NMEASURES (sizeof measures / sizeof measures[0])

static size_t measure_index(const char *key)
{
    size_t m = 0;
    while (m < NMEASURES - 1 && strcmp(measures[m].key, key) != 0)
        m++;
    return m;
}

static long kernel_switches(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* every thread of the process, the partner included */
    return ru.ru_nvcsw + ru.ru_nivcsw;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: " NAME " [--iterations N] [--rounds R] [--cpu C] [--json]\n"
            "Nanoseconds per switch on one pinned CPU: kernel threads (futex, pipe), coroutines\n"
            "(async/lib/coro, swapcontext), a libevent dispatch, a function call.\n\n"
            "  --iterations N  operations per round for the cheap measures (default %ld); the\n"
            "                  slower ones do N/10 or N/20\n"
            "  --rounds R      rounds, measures interleaved; the median is reported (default %ld)\n"
            "  --cpu C         the CPU to pin to (default: the one it starts on)\n"
            "  --json          the figures as one JSON document on stdout (schema\n"
            "                  tvsa-switch-cost/1); the table goes to stderr either way\n"
            "  -h, --help      this help\n",
            defaults.iterations, defaults.rounds);
}

static void parse_or_exit(int argc, char **argv, struct config *cfg)
{
    static const struct option longopts[] = {
        {"iterations", required_argument, NULL, 'i'},
        {"rounds", required_argument, NULL, 'r'},
        {"cpu", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *cfg = defaults;
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, "h", longopts, NULL);
        if (c == -1)
            break;
        int ok = 1;
        switch (c) {
        case 'i': ok = opts_parse_long(optarg, 100, 1000000000, &cfg->iterations) == 0; break;
        case 'r': ok = opts_parse_long(optarg, 1, MAX_ROUNDS, &cfg->rounds) == 0; break;
        case 'c': ok = opts_parse_long(optarg, 0, CPU_SETSIZE - 1, &cfg->cpu) == 0; break;
        case 'j': cfg->json = 1; break;
        case 'h': usage(stdout); exit(0);
        default: ok = 0; break;
        }
        if (!ok) {
            fprintf(stderr, NAME ": bad option or value '%s'\nTry '" NAME " --help'.\n",
                    argv[optind - 1]);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, NAME ": unexpected argument '%s'\nTry '" NAME " --help'.\n",
                argv[optind]);
        exit(2);
    }
}

/* Pins the process (threads created later inherit it) to one CPU. Returns the CPU, or -1. */
static int pin(long want)
{
    cpu_set_t set;
    int cpu = want >= 0 ? (int)want : sched_getcpu();
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
        fprintf(stderr, NAME ": pinning to CPU %d: %s\n", cpu, strerror(errno));
        return -1;
    }
    return cpu;
}

int main(int argc, char **argv)
{
    struct config cfg;
    static double ns[NMEASURES][MAX_ROUNDS];
    double ctx_per_op[NMEASURES] = {0};

    parse_or_exit(argc, argv, &cfg);
    int cpu = pin(cfg.cpu);
    if (cpu < 0)
        return 1;

    /* Interleaved: every round runs each measure once, so a noisy moment hits all of them. */
    for (long r = 0; r < cfg.rounds; r++) {
        for (size_t m = 0; m < NMEASURES; m++) {
            long iters = cfg.iterations / measures[m].ops_divisor;
            long ops = iters * measures[m].ops_per_iter;
            long k0 = kernel_switches();
            uint64_t dt = measures[m].run(iters);
            ctx_per_op[m] += (double)(kernel_switches() - k0) / (double)ops / (double)cfg.rounds;
            ns[m][r] = (double)dt / (double)ops;
        }
    }

    json_t *results = json_object();
    double median[NMEASURES];
    fprintf(stderr, "%-18s %10s %10s %10s  %-8s %s\n", "measure", "ns", "min", "max", "per",
            "kernel switches per op");
    for (size_t m = 0; m < NMEASURES; m++) {
        const struct measure *me = &measures[m];
        double *v = ns[m];
        qsort(v, (size_t)cfg.rounds, sizeof v[0], cmp_double);
        median[m] = v[cfg.rounds / 2];
        long ops = cfg.iterations / me->ops_divisor * me->ops_per_iter;
        fprintf(stderr, "%-18s %10.1f %10.1f %10.1f  %-8s %.3f\n", me->key, median[m], v[0],
                v[cfg.rounds - 1], me->unit, ctx_per_op[m]);
        json_object_set_new(results, me->key,
                            json_pack("{s:s, s:s, s:I, s:f, s:f, s:f, s:f}", "unit", me->unit,
                                      "what", me->what, "ops", (json_int_t)ops, "ns", median[m],
                                      "ns_min", v[0], "ns_max", v[cfg.rounds - 1],
                                      "kernel_switches_per_op", ctx_per_op[m]));
    }
    /* The goal (issue 15): a coroutine switch costs at most a tenth of a kernel one. */
    double ratio = median[measure_index("coro")] / median[measure_index("thread_futex")];
    fprintf(stderr, "coro / thread_futex = %.4f (goal <= 0.1: %s)\n", ratio,
            ratio <= 0.1 ? "met" : "missed");
    if (cfg.json) {
        json_t *doc = json_pack("{s:s, s:i, s:I, s:I, s:s, s:i, s:o, s:{s:f, s:f, s:b}}",
                                "schema", "tvsa-switch-cost/1", "cpu", cpu, "rounds",
                                (json_int_t)cfg.rounds, "iterations",
                                (json_int_t)cfg.iterations, "coro_backend", coro_backend(),
                                "coro_stack_bytes", STACK_BYTES, "results", results, "goal",
                                "coro_over_thread_futex", ratio, "max", 0.1, "met",
                                ratio <= 0.1);
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(doc);
    } else {
        json_decref(results);
    }
    return 0;
}
