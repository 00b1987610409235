/* connmem: what one idle async-echo connection costs in malloc'd memory, part by part
 * (bufferevent, its evbuffers, its events, a raw event, libevent's per-fd map), measured by
 * creating N of each on socketpairs and reading mallinfo2() around it (docs/metrics.md).
 * Usage: connmem [N] (default 2000). Prints one line per part, bytes per connection. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Heap bytes in use, chunk headers included: what RSS follows once the heap is dense. */
static size_t heap_used(void)
{
    return mallinfo2().uordblks;
}

static void row(const char *part, size_t before, size_t after, int n, const char *note)
{
    printf("%-44s %7.1f B  %s\n", part, ((double)after - (double)before) / n, note);
}

static void noop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    struct rlimit rl;
    if (n < 1 || n > 8000) {
        fprintf(stderr, "usage: connmem [N] (1..8000)\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int (*sv)[2] = calloc((size_t)n, sizeof *sv);
    struct bufferevent **bev = calloc((size_t)n, sizeof *bev);
    struct evbuffer **buf = calloc((size_t)n, sizeof *buf);
    struct event **ev = calloc((size_t)n, sizeof *ev);
    struct event_base *base = event_base_new();
    if (sv == NULL || bev == NULL || buf == NULL || ev == NULL || base == NULL) {
        fprintf(stderr, "connmem: set-up failed\n");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]) < 0) {
            perror("connmem: socketpair (raise ulimit -n)");
            return 1;
        }
        evutil_make_socket_nonblocking(sv[i][0]);
    }
    /* Warm-up: libevent's per-fd map is an array indexed by fd, grown by doubling; size it for
     * every fd first, so the rows below count the per-connection parts only. */
    printf("connmem: %d connections, libevent %s, sizeof(struct event) %zu\n", n,
           event_get_version(), event_get_struct_event_size());
    size_t h0, h1;
    for (int i = 0; i < n; i++)
        ev[i] = event_new(base, sv[i][0], EV_READ | EV_PERSIST, noop_cb, NULL);
    h0 = heap_used();
    for (int i = 0; i < n; i++)
        event_add(ev[i], NULL);
    h1 = heap_used();
    row("fd map: first event_add on an fd", h0, h1, n,
        "(its entry, kept until the base is freed, + the fd-indexed array)");
    for (int i = 0; i < n; i++)
        event_free(ev[i]);

    h0 = heap_used();
    for (int i = 0; i < n; i++)
        buf[i] = evbuffer_new();
    h1 = heap_used();
    row("evbuffer_new (one empty evbuffer)", h0, h1, n, "");
    size_t one = malloc_usable_size(buf[0]);
    for (int i = 0; i < n; i++)
        evbuffer_add(buf[i], "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                     64);
    h0 = heap_used();
    row("  + 64 bytes added (its first chain)", h1, h0, n, "");
    for (int i = 0; i < n; i++)
        evbuffer_drain(buf[i], 64);
    h1 = heap_used();
    row("  + drained again (chain freed)", h0, h1, n, "");
    for (int i = 0; i < n; i++)
        evbuffer_free(buf[i]);
    printf("  malloc_usable_size(evbuffer) %zu\n", one);

    h0 = heap_used();
    for (int i = 0; i < n; i++)
        bev[i] = bufferevent_socket_new(base, sv[i][0], 0);
    h1 = heap_used();
    row("bufferevent_socket_new (struct + 2 evbuffers)", h0, h1, n,
        "(its 2 events are inside the struct)");
    printf("  malloc_usable_size(bufferevent) %zu\n", malloc_usable_size(bev[0]));
    for (int i = 0; i < n; i++)
        bufferevent_enable(bev[i], EV_READ);
    h0 = heap_used();
    row("  + bufferevent_enable(EV_READ) (fd map entry)", h1, h0, n, "");
    for (int i = 0; i < n; i++)
        bufferevent_free(bev[i]);

    h0 = heap_used();
    for (int i = 0; i < n; i++)
        ev[i] = event_new(base, sv[i][0], EV_READ | EV_PERSIST, noop_cb, NULL);
    h1 = heap_used();
    row("event_new (one raw event)", h0, h1, n, "");
    printf("  malloc_usable_size(event) %zu\n", malloc_usable_size(ev[0]));
    for (int i = 0; i < n; i++)
        event_add(ev[i], NULL);
    h0 = heap_used();
    row("  + event_add (fd map entry)", h1, h0, n, "");
    for (int i = 0; i < n; i++)
        event_free(ev[i]);

    for (int i = 0; i < n; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    event_base_free(base);
    free(sv);
    free(bev);
    free(buf);
    free(ev);
    return 0;
}
