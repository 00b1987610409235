/* A small stackful coroutine runtime: each coroutine runs a function on its own mmap'd stack
 * (with a guard page below it) and switches back to whoever resumed it. Built on Boost.Context's
 * fcontext switch (no system call per switch, unlike glibc's swapcontext: docs/metrics.md has
 * the measurement). No libevent: the event loop that drives coroutines lives in the server.
 * One thread's coroutines are that thread's alone; never resume one from another thread. */
#ifndef TVSA_CORO_H
#define TVSA_CORO_H
#include <stddef.h>
#include <stdint.h>

struct coro;

enum coro_state {
    CORO_SUSPENDED,  /* created and not yet run, or parked in coro_yield */
    CORO_RUNNING,    /* on the CPU, or resuming another coroutine (nested) */
    CORO_FINISHED,   /* its function returned; only coro_free is left */
};

/* The smallest stack coro_new accepts (bytes, before rounding up to whole pages). */
#define CORO_STACK_MIN 4096

/* Creates a suspended coroutine that will run fn(arg) on a stack of stack_bytes (rounded up to
 * whole pages; the coroutine's own record takes its top ~200 bytes) with one PROT_NONE guard
 * page below, so an overflow faults instead of corrupting memory. Only touched pages cost RSS.
 * Returns NULL with a reason in err (stack_bytes < CORO_STACK_MIN, mmap failed). */
struct coro *coro_new(void (*fn)(void *arg), void *arg, size_t stack_bytes, char *err,
                      size_t errlen);

/* Switches into c until it calls coro_yield (returns CORO_SUSPENDED) or its function returns
 * (CORO_FINISHED). On a coroutine that is running or finished it switches nothing and returns
 * that state. May be called from the thread's own stack or from inside another coroutine. */
enum coro_state coro_resume(struct coro *c);

/* Inside a coroutine: switches back to the coro_resume that entered it; returns when the
 * coroutine is resumed again. Outside any coroutine it does nothing and returns -1; else 0. */
int coro_yield(void);

/* The coroutine running on this thread, or NULL on the thread's own stack. */
struct coro *coro_current(void);

enum coro_state coro_state(const struct coro *c);

/* The usable stack: [*lo, *lo + *len) (the guard page is just below *lo). */
void coro_stack(const struct coro *c, void **lo, size_t *len);

/* Frees c: its stack goes to this thread's cache of up to CORO_CACHE_MAX stacks for the next
 * coro_new of the same size (the pages it touched stay resident), or is unmapped when the
 * cache is full. A suspended coroutine is discarded without unwinding: what its frames own
 * must be reachable, and freed, from elsewhere. Returns 0, or -1 (nothing freed) when c is
 * running. NULL is a no-op. */
int coro_free(struct coro *c);

/* Freed stacks one thread keeps for reuse (like glibc's cache of thread stacks). */
#define CORO_CACHE_MAX 64

/* Unmaps every stack this thread's cache holds. A thread that ends without calling it leaves
 * them mapped (address space and their touched pages) until the process exits. */
void coro_cache_drop(void);

/* Switches this thread has made (each resume and each return to the resumer counts one). */
uint64_t coro_switches(void);

/* "boost-fcontext": the switch underneath, for reports. */
const char *coro_backend(void);

#endif
