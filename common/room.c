/* The chat room as a pure state machine (common/room.h): one shared log, a cursor per member. */
#include "room.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small list helpers ------------------------------------------------------------------ */

static void member_unlink(struct room_member **head, struct room_member *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else if (*head == m)
        *head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->prev = m->next = NULL;
}

static void member_push(struct room_member **head, struct room_member *m)
{
    m->prev = NULL;
    m->next = *head;
    if (*head)
        (*head)->prev = m;
    *head = m;
}

static void queue_event(struct room *r, struct room_member *m, unsigned what)
{
    if (m->events == 0) {
        m->ev_next = NULL;
        if (r->ev_tail)
            r->ev_tail->ev_next = m;
        else
            r->ev_head = m;
        r->ev_tail = m;
    }
    m->events |= what;
}

static void unqueue_event(struct room *r, struct room_member *m)
{
    struct room_member **pp = &r->ev_head, *prev = NULL;

    if (m->events == 0)
        return;
    while (*pp != NULL && *pp != m) {
        prev = *pp;
        pp = &(*pp)->ev_next;
    }
    if (*pp == m) {
        *pp = m->ev_next;
        if (r->ev_tail == m)
            r->ev_tail = prev;
    }
    m->events = 0;
    m->ev_next = NULL;
}

/* ---- the log ----------------------------------------------------------------------------- */

static void trim(struct room *r)
{
    while (r->head != NULL && r->head->refs == 0) {
        struct room_line *l = r->head;
        r->head = l->next;
        if (r->head == NULL)
            r->tail = NULL;
        r->stats.log_bytes -= l->len;
        r->stats.log_lines--;
        free(l);
    }
}

void room_release(struct room_line *l)
{
    if (--l->refs == 0)
        trim(l->room);
}

/* The bytes a member in the room has not taken. */
uint64_t room_distance(const struct room *r, const struct room_member *m)
{
    uint64_t log_part = m->cursor ? r->end - (m->cursor->end - m->cursor->len) : 0;
    return log_part + m->outstanding;
}

static int waiting(const struct room_member *m)
{
    return m->cursor != NULL || m->outstanding > 0;
}

/* Recounts m's flow-control marks (members in the room only). */
static void update_marks(struct room *r, struct room_member *m)
{
    uint64_t d = room_distance(r, m);
    int low = r->cfg.high > 0 && d > r->cfg.low, high = r->cfg.high > 0 && d > r->cfg.high;

    if (m->state != ROOM_IN)
        low = high = 0;
    r->above_low += (unsigned)low - (unsigned)m->above_low;
    r->above_high += (unsigned)high - (unsigned)m->above_high;
    m->above_low = low;
    m->above_high = high;
}

/* Resumes the paused senders no other member holds back: all of them once nobody in the room
 * is above the low mark, or, with one member above it, that member if it is paused itself. */
static void maybe_resume(struct room *r)
{
    struct room_member *p, *next;

    if (r->above_low > 1)
        return;
    for (p = r->paused; p != NULL; p = next) {
        next = p->paused_next;
        if (r->above_low == 1 && !p->above_low)
            continue;
        p->paused = 0;
        if (p->paused_prev)
            p->paused_prev->paused_next = p->paused_next;
        else
            r->paused = p->paused_next;
        if (p->paused_next)
            p->paused_next->paused_prev = p->paused_prev;
        p->paused_next = p->paused_prev = NULL;
        queue_event(r, p, ROOM_EV_READ);
    }
}

static void unpause(struct room *r, struct room_member *m)
{
    if (!m->paused)
        return;
    if (m->paused_prev)
        m->paused_prev->paused_next = m->paused_next;
    else
        r->paused = m->paused_next;
    if (m->paused_next)
        m->paused_next->paused_prev = m->paused_prev;
    m->paused_next = m->paused_prev = NULL;
    m->paused = 0;
}

/* Moves m's cursor past its current line; then past its own lines, which it never gets. */
static void advance(struct room_member *m)
{
    struct room_line *l = m->cursor;
    if (l == NULL)
        return;
    m->cursor = l->next;
    if (m->state == ROOM_FLUSHING && m->cursor && m->cursor->seq > m->limit_seq)
        m->cursor = NULL;
    while (m->cursor != NULL && m->cursor->from == m->id) {
        struct room_line *own = m->cursor;
        m->cursor = own->next;
        if (m->state == ROOM_FLUSHING && m->cursor && m->cursor->seq > m->limit_seq)
            m->cursor = NULL;
        room_release(own);
    }
}

/* Gives up every line m's cursor still holds (it will never pass them). */
static void release_cursor(struct room_member *m)
{
    struct room_line *l = m->cursor, *next;

    m->cursor = NULL;
    for (; l != NULL; l = next) {
        /* Decided before l goes: a line past a flushing member's limit is not held by it, so
         * releasing l may free it. */
        next = l->next;
        if (m->state == ROOM_FLUSHING && next != NULL && next->seq > m->limit_seq)
            next = NULL;
        room_release(l);
    }
}

/* Appends one message (formatted by fmt into the line) for every member in the room; from is
 * the sender (NULL: a notice). Members pushed over max_backlog are queued on r->drops.
 * 0, or -1 (no memory). */
static int append(struct room *r, struct room_member *from, size_t len,
                  size_t (*fmt)(char *dst, size_t cap, const void *a, const void *b, size_t n),
                  const void *a, const void *b, size_t n, uint64_t now)
{
    uint64_t seq = ++r->next_seq;

    if (r->nmembers == 0 || (r->nmembers == 1 && from != NULL))
        return 0; /* nobody to hear it: not stored */
    struct room_line *l = malloc(sizeof *l + len);
    if (l == NULL)
        return -1;
    fmt(l->data, len, a, b, n);
    l->next = NULL;
    l->room = r;
    l->seq = seq;
    l->len = len;
    l->from = from ? from->id : 0;
    l->refs = (unsigned)r->nmembers;
    if (r->tail)
        r->tail->next = l;
    else
        r->head = l;
    r->tail = l;
    r->end += len;
    l->end = r->end;
    r->stats.log_bytes += len;
    r->stats.log_lines++;
    if (r->stats.log_bytes > r->stats.log_bytes_peak)
        r->stats.log_bytes_peak = r->stats.log_bytes;

    for (struct room_member *m = r->members; m != NULL; m = m->next) {
        if (m->cursor == NULL) {
            if (m == from) {
                l->refs--; /* caught up: its own line is passed at once */
                continue;
            }
            m->cursor = l;
            if (m->outstanding == 0)
                m->waiting_since_ns = now;
            queue_event(r, m, ROOM_EV_WAKE);
        }
        update_marks(r, m);
        if (r->cfg.max_backlog > 0 && m->dropped == ROOM_DROP_NONE &&
            room_distance(r, m) > r->cfg.max_backlog) {
            m->dropped = ROOM_DROP_BACKLOG;
            m->drop_next = r->drops;
            r->drops = m;
        }
    }
    if (l->refs == 0) /* only the caught-up sender was there */
        trim(r);
    return 0;
}

static size_t fmt_joined(char *dst, size_t cap, const void *a, const void *b, size_t n)
{
    (void)b;
    (void)n;
    return chat_fmt_joined(dst, cap, a);
}

static size_t fmt_left(char *dst, size_t cap, const void *a, const void *b, size_t n)
{
    (void)b;
    (void)n;
    return chat_fmt_left(dst, cap, a);
}

static size_t fmt_line(char *dst, size_t cap, const void *a, const void *b, size_t n)
{
    return chat_fmt_line(dst, cap, a, b, n);
}

/* Takes m out of the room's membership (it is then FLUSHING or OUT) and announces it. The
 * notice may queue more drops; settle() handles them. */
static void depart(struct room *r, struct room_member *m, int flush, uint64_t now)
{
    member_unlink(&r->members, m);
    r->nmembers--;
    unpause(r, m);
    m->state = ROOM_OUT;
    update_marks(r, m); /* out: no longer counted above any mark */
    if (flush) {
        m->state = ROOM_FLUSHING;
        m->limit_seq = r->next_seq;
        member_push(&r->flushing, m);
    } else {
        release_cursor(m);
    }
    size_t len = chat_fmt_left(NULL, 0, m->name);
    append(r, NULL, len, fmt_left, m->name, NULL, 0, now);
    maybe_resume(r);
}

static void drop(struct room *r, struct room_member *m, enum room_drop why, uint64_t now)
{
    m->dropped = why;
    if (why == ROOM_DROP_BACKLOG)
        r->stats.dropped_backlog++;
    else
        r->stats.dropped_stalled++;
    depart(r, m, 0, now);
    queue_event(r, m, ROOM_EV_DROP);
}

/* Takes out every member an append pushed over max_backlog; their leave notices may push
 * more. */
static void settle(struct room *r, uint64_t now)
{
    while (r->drops != NULL) {
        struct room_member *m = r->drops;
        r->drops = m->drop_next;
        m->drop_next = NULL;
        if (m->state == ROOM_IN)
            drop(r, m, ROOM_DROP_BACKLOG, now);
    }
}

/* ---- what the servers call --------------------------------------------------------------- */

struct room_config room_rules(const struct server_opts *o)
{
    struct room_config rc = {0, 0, 0, 0};
    if (o->broadcast == OPTS_BROADCAST_QUEUED) {
        rc.high = (uint64_t)o->high_water_kib * 1024;
        rc.low = rc.high / 4;
        rc.max_backlog = (uint64_t)o->max_backlog_kib * 1024;
        rc.stall_ns = (uint64_t)o->stall_ms * 1000000u;
    }
    return rc;
}

long room_tick_ms(const struct server_opts *o)
{
    long t = o->stall_ms / 4;
    if (o->idle_timeout_s > 0 && o->idle_timeout_s * 250 < t)
        t = o->idle_timeout_s * 250;
    return t < 10 ? 10 : t > 250 ? 250 : t;
}

void room_init(struct room *r, const struct room_config *cfg)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
}

void room_free(struct room *r)
{
    while (r->head != NULL) {
        struct room_line *l = r->head;
        r->head = l->next;
        free(l);
    }
    r->tail = NULL;
}

int room_join(struct room *r, struct room_member *m, void *owner, const char *name,
              uint64_t now_ns)
{
    size_t len = chat_fmt_joined(NULL, 0, name);

    memset(m, 0, sizeof *m);
    m->owner = owner;
    snprintf(m->name, sizeof m->name, "%s", name);
    if (append(r, NULL, len, fmt_joined, m->name, NULL, 0, now_ns) < 0)
        return -1;
    m->id = ++r->next_id;
    m->state = ROOM_IN;
    m->waiting_since_ns = now_ns;
    member_push(&r->members, m);
    r->nmembers++;
    settle(r, now_ns);
    return 0;
}

int room_say(struct room *r, struct room_member *m, const uint8_t *text, size_t len,
             uint64_t now_ns)
{
    if (m->state != ROOM_IN)
        return 0;
    size_t n = chat_fmt_line(NULL, 0, m->name, text, len);
    if (append(r, m, n, fmt_line, m->name, text, len, now_ns) < 0)
        return -1;
    r->stats.lines++;
    if (r->cfg.high > 0 && m->state == ROOM_IN && m->dropped == ROOM_DROP_NONE &&
        !m->paused && r->above_high > (unsigned)m->above_high) {
        m->paused = 1;
        m->paused_prev = NULL;
        m->paused_next = r->paused;
        if (r->paused)
            r->paused->paused_prev = m;
        r->paused = m;
        r->stats.pauses++;
        queue_event(r, m, ROOM_EV_READ);
    }
    settle(r, now_ns);
    return 0;
}

void room_leave(struct room *r, struct room_member *m, int flush, uint64_t now_ns)
{
    if (m->state != ROOM_IN)
        return;
    depart(r, m, flush, now_ns);
    settle(r, now_ns);
}

void room_forget(struct room *r, struct room_member *m)
{
    if (m->state == ROOM_IN) {
        member_unlink(&r->members, m);
        r->nmembers--;
        unpause(r, m);
        m->state = ROOM_OUT;
        update_marks(r, m);
        maybe_resume(r);
    }
    if (m->state == ROOM_FLUSHING) {
        member_unlink(&r->flushing, m);
        release_cursor(m);
        m->state = ROOM_OUT;
    }
    release_cursor(m);
    unqueue_event(r, m);
}

size_t room_take(struct room *r, struct room_member *m, struct room_line **out, size_t max,
                 size_t max_bytes)
{
    size_t n = 0, bytes = 0;

    if (m->state == ROOM_OUT)
        return 0;
    while (m->cursor != NULL && n < max && (n == 0 || bytes < max_bytes)) {
        struct room_line *l = m->cursor;
        advance(m); /* the cursor's reference on l becomes the caller's hold */
        out[n++] = l;
        bytes += l->len;
    }
    m->outstanding += bytes;
    if (m->state == ROOM_IN)
        update_marks(r, m); /* own lines skipped may have shortened it */
    return n;
}

void room_taken(struct room *r, struct room_member *m, size_t n, uint64_t now_ns)
{
    if (n == 0)
        return;
    m->outstanding = n < m->outstanding ? m->outstanding - n : 0;
    m->waiting_since_ns = now_ns;
    if (m->state == ROOM_IN) {
        update_marks(r, m);
        maybe_resume(r);
    }
}

void room_progress(struct room *r, struct room_member *m, uint64_t now_ns)
{
    (void)r;
    m->waiting_since_ns = now_ns;
}

int room_has_lines(const struct room_member *m)
{
    return m->cursor != NULL;
}

int room_flushed(const struct room_member *m)
{
    return m->state == ROOM_FLUSHING && m->cursor == NULL && m->outstanding == 0;
}

int room_check_stall(struct room *r, struct room_member *m, uint64_t now_ns)
{
    if (r->cfg.stall_ns == 0 || m->state != ROOM_IN || !waiting(m) ||
        now_ns - m->waiting_since_ns <= r->cfg.stall_ns)
        return 0;
    drop(r, m, ROOM_DROP_STALLED, now_ns);
    settle(r, now_ns);
    return 1;
}

void room_tick(struct room *r, uint64_t now_ns)
{
    struct room_member *m, *next;

    for (m = r->members; m != NULL; m = next) {
        next = m->next;
        if (room_check_stall(r, m, now_ns))
            next = r->members; /* the list changed under us; start over (rare) */
    }
}

struct room_member *room_next_event(struct room *r, unsigned *what)
{
    struct room_member *m = r->ev_head;
    if (m == NULL)
        return NULL;
    r->ev_head = m->ev_next;
    if (r->ev_head == NULL)
        r->ev_tail = NULL;
    m->ev_next = NULL;
    *what = m->events;
    m->events = 0;
    return m;
}

/* ---- the clients' own states ------------------------------------------------------------- */

int chat_client_state_legal(enum chat_client_state from, enum chat_client_state to)
{
    switch (from) {
    case CLIENT_IN_ROOM: return to == CLIENT_FLUSHING || to == CLIENT_CLOSED;
    case CLIENT_FLUSHING: return to == CLIENT_LINGERING || to == CLIENT_CLOSED;
    case CLIENT_LINGERING: return to == CLIENT_CLOSED;
    case CLIENT_CLOSED: return 0;
    }
    return 0;
}

const char *chat_client_state_name(enum chat_client_state s)
{
    switch (s) {
    case CLIENT_IN_ROOM: return "in-room";
    case CLIENT_FLUSHING: return "flushing";
    case CLIENT_LINGERING: return "lingering";
    case CLIENT_CLOSED: return "closed";
    }
    return "?";
}
