/* Stackful coroutines on Boost.Context's fcontext (coro.h). The stack switch is theirs; the
 * stacks, the states and the tool annotations are ours. */
#include "coro.h"
#include "fcontext.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Valgrind must be told where each stack is, or it takes a switch for a wild stack-pointer
 * move and reports the coroutine's frames as invalid accesses. The client requests cost a few
 * instructions outside Valgrind. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CORO_VALGRIND 1
#endif
#endif

/* ASan keeps its own idea of the current stack; without the fiber calls a switch makes it see
 * stack accesses out of bounds, and freeing a stack would leave stale poison behind. */
#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif
#ifdef CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* TSan tracks happens-before per thread; each coroutine must be a fiber of its own to it, or it
 * sees one thread's stack jump about and reports races between a coroutine and itself. */
#if defined(__SANITIZE_THREAD__)
#define CORO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORO_TSAN 1
#endif
#endif
#ifdef CORO_TSAN
#include <sanitizer/tsan_interface.h>
#endif

struct coro {
    fcontext_t ctx;            /* the coroutine, while it is not running */
    fcontext_t caller;         /* the coro_resume that entered it, while it runs */
    enum coro_state state;
    void (*fn)(void *);
    void *arg;
    struct coro *resumer;      /* coro_current() to restore when it switches back */
    void *map;                 /* the whole mapping: guard page, stack, this record */
    size_t map_len;
    char *stack_lo;            /* usable stack: [stack_lo, (char *)this) */
    size_t stack_len;
    unsigned valgrind_id;
    void *asan_fake;           /* ASan's fake stack of the side that switched away */
    const void *caller_bottom; /* the resumer's stack, as ASan reported it on entry */
    size_t caller_size;
    void *tsan_fiber;          /* TSan's fiber for this coroutine, and its resumer's */
    void *tsan_caller;
    struct coro *next_cached;  /* in its thread's cache of freed stacks */
};

/* Owned by each thread: its running coroutine, its switch count, and the stacks of its freed
 * coroutines kept for the next ones (the record at the top of each links them). */
static _Thread_local struct coro *current;
static _Thread_local uint64_t switches;
static _Thread_local struct coro *cache;
static _Thread_local unsigned cached;

/* ---- sanitizer bookkeeping: no-ops in a normal build ------------------------------------ */

static void asan_leave(void **fake_save, const void *to_bottom, size_t to_size)
{
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(fake_save, to_bottom, to_size);
#else
    (void)fake_save;
    (void)to_bottom;
    (void)to_size;
#endif
}

static void asan_arrived(void *fake_save, const void **from_bottom, size_t *from_size)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(fake_save, from_bottom, from_size);
#else
    (void)fake_save;
    (void)from_bottom;
    (void)from_size;
#endif
}

/* Tells TSan the next jump goes to fiber (a no-op outside TSan builds). */
static void tsan_switch(void *fiber)
{
#ifdef CORO_TSAN
    __tsan_switch_to_fiber(fiber, 0);
#else
    (void)fiber;
#endif
}

/* ---- the switch ------------------------------------------------------------------------- */

/* Every coroutine starts here, on its own stack, from its first coro_resume. */
static void trampoline(struct transfer_t t)
{
    struct coro *c = t.data;

    c->caller = t.fctx;
    asan_arrived(NULL, &c->caller_bottom, &c->caller_size);
    c->fn(c->arg);
    c->state = CORO_FINISHED;
    switches++;
    current = c->resumer;
    /* NULL: this stack is done, ASan may drop its fake frames. */
    asan_leave(NULL, c->caller_bottom, c->caller_size);
    tsan_switch(c->tsan_caller);
    jump_fcontext(c->caller, NULL);
    /* Not reached: nothing resumes a finished coroutine. */
}

enum coro_state coro_resume(struct coro *c)
{
    void *fake = NULL;

    if (c->state != CORO_SUSPENDED)
        return c->state;
    c->state = CORO_RUNNING;
    c->resumer = current;
    current = c;
    switches++;
    asan_leave(&fake, c->stack_lo, c->stack_len);
#ifdef CORO_TSAN
    c->tsan_caller = __tsan_get_current_fiber();
#endif
    tsan_switch(c->tsan_fiber);
    struct transfer_t t = jump_fcontext(c->ctx, c);
    asan_arrived(fake, NULL, NULL);
    /* Back: c yielded or finished (both set current to c->resumer). */
    c->ctx = t.fctx;
    return c->state;
}

int coro_yield(void)
{
    struct coro *c = current;

    if (c == NULL)
        return -1;
    c->state = CORO_SUSPENDED;
    current = c->resumer;
    switches++;
    asan_leave(&c->asan_fake, c->caller_bottom, c->caller_size);
    tsan_switch(c->tsan_caller);
    struct transfer_t t = jump_fcontext(c->caller, NULL);
    /* Resumed, perhaps by another resumer than last time. */
    asan_arrived(c->asan_fake, &c->caller_bottom, &c->caller_size);
    c->caller = t.fctx;
    return 0;
}

/* ---- life cycle ------------------------------------------------------------------------- */

/* A cached mapping of exactly map_len bytes (its guard page still in place), or NULL. Reusing
 * one saves an mmap, an mprotect, a munmap and the page faults of its first frames: a new
 * connection's coroutine costs no system call. */
static char *cache_take(size_t map_len)
{
    for (struct coro **pp = &cache; *pp; pp = &(*pp)->next_cached) {
        struct coro *c = *pp;
        if (c->map_len == map_len) {
            *pp = c->next_cached;
            cached--;
            return c->map;
        }
    }
    return NULL;
}

/* Keeps c's mapping for a later coro_new of this thread; 0 if the cache is full. */
static int cache_put(struct coro *c)
{
    if (cached >= CORO_CACHE_MAX)
        return 0;
    c->next_cached = cache;
    cache = c;
    cached++;
    return 1;
}

void coro_cache_drop(void)
{
    while (cache) {
        struct coro *c = cache;
        cache = c->next_cached;
        munmap(c->map, c->map_len);
    }
    cached = 0;
}

struct coro *coro_new(void (*fn)(void *arg), void *arg, size_t stack_bytes, char *err,
                      size_t errlen)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    if (stack_bytes < CORO_STACK_MIN || stack_bytes > ((size_t)1 << 40)) {
        snprintf(err, errlen, "coroutine stack of %zu bytes (want %d or more)", stack_bytes,
                 CORO_STACK_MIN);
        return NULL;
    }
    size_t map_len = page + (stack_bytes + page - 1) / page * page;
    char *map = cache_take(map_len);
    if (map == NULL) {
        /* NORESERVE: a stack's untouched pages are neither memory nor commit charge. */
        map = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (map == MAP_FAILED) {
            snprintf(err, errlen, "mmap of a %zu-byte coroutine stack: %s", map_len,
                     strerror(errno));
            return NULL;
        }
        if (mprotect(map, page, PROT_NONE) < 0) {
            snprintf(err, errlen, "mprotect of a coroutine guard page: %s", strerror(errno));
            munmap(map, map_len);
            return NULL;
        }
    }
    /* The record sits at the very top, in the page the first frames touch anyway: a
     * coroutine costs no page beyond its stack's. */
    uintptr_t top = ((uintptr_t)(map + map_len) - sizeof(struct coro)) & ~(uintptr_t)63;
    struct coro *c = (struct coro *)top;
    memset(c, 0, sizeof *c);
    c->state = CORO_SUSPENDED;
    c->fn = fn;
    c->arg = arg;
    c->map = map;
    c->map_len = map_len;
    c->stack_lo = map + page;
    c->stack_len = (size_t)((char *)c - c->stack_lo);
    c->ctx = make_fcontext(c->stack_lo + c->stack_len, c->stack_len, trampoline);
#ifdef CORO_VALGRIND
    c->valgrind_id = VALGRIND_STACK_REGISTER(c->stack_lo, c->stack_lo + c->stack_len);
#endif
#ifdef CORO_TSAN
    c->tsan_fiber = __tsan_create_fiber(0);
#endif
    return c;
}

int coro_free(struct coro *c)
{
    if (c == NULL)
        return 0;
    if (c->state == CORO_RUNNING)
        return -1;
#ifdef CORO_VALGRIND
    VALGRIND_STACK_DEREGISTER(c->valgrind_id);
#endif
#ifdef CORO_TSAN
    __tsan_destroy_fiber(c->tsan_fiber);
#endif
#ifdef CORO_ASAN
    /* A suspended coroutine's frames keep their redzones poisoned; the next coroutine on this
     * stack (or the next mapping at this address) must not inherit them. */
    ASAN_UNPOISON_MEMORY_REGION(c->stack_lo, c->stack_len);
#endif
    if (!cache_put(c))
        munmap(c->map, c->map_len);
    return 0;
}

struct coro *coro_current(void)
{
    return current;
}

enum coro_state coro_state(const struct coro *c)
{
    return c->state;
}

void coro_stack(const struct coro *c, void **lo, size_t *len)
{
    *lo = c->stack_lo;
    *len = c->stack_len;
}

uint64_t coro_switches(void)
{
    return switches;
}

const char *coro_backend(void)
{
    return "boost-fcontext";
}
