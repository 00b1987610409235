/* Unit tests of the chat room (common/room.h): scripts of what happened and what must follow. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "room.h"

#define NM 8
#define MS 1000000ull

/* One script step. Ops: J join, S say arg, L leave (n: flush), D deliver everything due
 * (take, sent, release), H hand out without sending (held), T the socket took n held bytes
 * (held lines are released once all are taken), K tick at time n ms, X forget, C forget what
 * `who` received so far.
 * Checks after the step: want_events (every event since the last step, as "W0 R1 X2 ..."
 * in collection order; NULL: not checked), and for E: member `who` has received exactly
 * arg; for P: paused == n; for G: distance == n; for B: log lines alive == n. */
struct step {
    char op;
    int who;
    const char *arg;
    long n;
    const char *want_events;
};

struct script {
    const char *name;
    struct room_config cfg;
    struct step steps[40];
};

/* The names are one letter so that lengths are easy: "*** a joined ***\n" is 17 bytes, a line
 * "a: xyz\n" is 3 + len + 1. */
static const char *const names[NM] = {"a", "b", "c", "d", "e", "f", "g", "h"};

struct sim {
    struct room r;
    struct room_member m[NM];
    char recv[NM][4096];
    struct room_line *held[NM][64];
    size_t nheld[NM], held_bytes[NM], held_taken[NM];
    uint64_t now;
};

static void collect(struct sim *s, char *ev, size_t cap)
{
    struct room_member *m;
    unsigned what;
    size_t used = 0;

    ev[0] = '\0';
    while ((m = room_next_event(&s->r, &what)) != NULL) {
        int i = (int)(m - s->m);
        const char *kinds = "WRX";
        for (int b = 0; b < 3; b++)
            if (what & (1u << b))
                used += (size_t)snprintf(ev + used, cap - used, "%s%c%d", used ? " " : "",
                                         kinds[b], i);
    }
}

static void deliver(struct sim *s, int i)
{
    struct room_line *out[16];
    size_t n;

    while ((n = room_take(&s->r, &s->m[i], out, 16, 1 << 20)) > 0)
        for (size_t k = 0; k < n; k++) {
            strncat(s->recv[i], out[k]->data, out[k]->len);
            room_taken(&s->r, &s->m[i], out[k]->len, s->now);
            room_release(out[k]);
        }
}

static void run_script(const struct script *sc)
{
    static struct sim s;
    char ev[512];

    memset(&s, 0, sizeof s);
    room_init(&s.r, &sc->cfg);
    for (size_t k = 0; k < sizeof sc->steps / sizeof sc->steps[0] && sc->steps[k].op; k++) {
        const struct step *st = &sc->steps[k];
        int i = st->who;
        struct room_member *m = &s.m[i];
        switch (st->op) {
        case 'J':
            assert_int_equal(room_join(&s.r, m, &s.m[i], names[i], s.now), 0);
            break;
        case 'S':
            assert_int_equal(room_say(&s.r, m, (const uint8_t *)st->arg, strlen(st->arg),
                                      s.now), 0);
            break;
        case 'L': room_leave(&s.r, m, (int)st->n, s.now); break;
        case 'D': deliver(&s, i); break;
        case 'H': {
            size_t n = room_take(&s.r, m, s.held[i] + s.nheld[i], 64 - s.nheld[i], 1 << 20);
            for (size_t h = s.nheld[i]; h < s.nheld[i] + n; h++) {
                strncat(s.recv[i], s.held[i][h]->data, s.held[i][h]->len);
                s.held_bytes[i] += s.held[i][h]->len;
            }
            s.nheld[i] += n;
            break;
        }
        case 'T':
            room_taken(&s.r, m, (size_t)st->n, s.now);
            s.held_taken[i] += (size_t)st->n;
            if (s.held_taken[i] >= s.held_bytes[i]) {
                for (size_t h = 0; h < s.nheld[i]; h++)
                    room_release(s.held[i][h]);
                s.nheld[i] = s.held_bytes[i] = s.held_taken[i] = 0;
            }
            break;
        case 'K':
            s.now = (uint64_t)st->n * MS;
            room_tick(&s.r, s.now);
            break;
        case 'X': room_forget(&s.r, m); break;
        case 'C': s.recv[i][0] = '\0'; break;
        case 'E':
            if (strcmp(s.recv[i], st->arg) != 0)
                fail_msg("%s step %zu: %s received \"%s\", want \"%s\"", sc->name, k, names[i],
                         s.recv[i], st->arg);
            break;
        case 'P':
            if (m->paused != st->n)
                fail_msg("%s step %zu: %s paused %d, want %ld", sc->name, k, names[i],
                         m->paused, st->n);
            break;
        case 'G':
            if (room_distance(&s.r, m) != (uint64_t)st->n)
                fail_msg("%s step %zu: %s distance %llu, want %ld", sc->name, k, names[i],
                         (unsigned long long)room_distance(&s.r, m), st->n);
            break;
        case 'B':
            if (s.r.stats.log_lines != (uint64_t)st->n)
                fail_msg("%s step %zu: %llu lines alive, want %ld", sc->name, k,
                         (unsigned long long)s.r.stats.log_lines, st->n);
            break;
        default: fail_msg("bad op %c", st->op);
        }
        collect(&s, ev, sizeof ev);
        if (st->want_events && strcmp(ev, st->want_events) != 0)
            fail_msg("%s step %zu (%c %s): events \"%s\", want \"%s\"", sc->name, k, st->op,
                     names[i], ev, st->want_events);
    }
    for (int i = 0; i < NM; i++) {
        for (size_t h = 0; h < s.nheld[i]; h++)
            room_release(s.held[i][h]);
        room_forget(&s.r, &s.m[i]);
    }
    if (s.r.stats.log_lines != 0 || s.r.head != NULL)
        fail_msg("%s: %llu lines left after every member was forgotten", sc->name,
                 (unsigned long long)s.r.stats.log_lines);
    room_free(&s.r);
}

#define NOFLOW {0, 0, 0, 0}
/* high 60, low 20 bytes; backlog 200; stall 500 ms */
#define FLOW {60, 20, 200, 500 * MS}

static const struct script scripts[] = {
    {"fan-out, no echo, no own join", NOFLOW, {
        {'J', 0, 0, 0, ""},                 /* alone: the notice is stored for nobody */
        {'B', 0, 0, 0, NULL},
        {'J', 1, 0, 0, "W0"},
        {'J', 2, 0, 0, "W1"},              /* a was woken already and has not taken */
        {'S', 0, "hi", 0, "W2"},            /* b was already woken and has not taken */
        {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL},
        {'E', 0, "*** b joined ***\n*** c joined ***\n", 0, NULL},
        {'E', 1, "*** c joined ***\na: hi\n", 0, NULL},
        {'E', 2, "a: hi\n", 0, NULL},
        {'B', 0, 0, 0, NULL},               /* everyone passed every line: all freed */
        {'L', 1, 0, 0, "W2 W0"},  /* newest member first */
        {'D', 0, 0, 0, NULL}, {'D', 2, 0, 0, NULL},
        {'E', 2, "a: hi\n*** b left ***\n", 0, NULL},
    }},
    {"a line is stored once for every receiver", NOFLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'J', 2, 0, 0, NULL}, {'J', 3, 0, 0, NULL}, {'J', 4, 0, 0, NULL}, {'J', 5, 0, 0, NULL}, {'J', 6, 0, 0, NULL}, {'J', 7, 0, 0, NULL},
        {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL}, {'D', 3, 0, 0, NULL}, {'D', 4, 0, 0, NULL}, {'D', 5, 0, 0, NULL}, {'D', 6, 0, 0, NULL}, {'D', 7, 0, 0, NULL},
        {'B', 0, 0, 0, NULL},
        {'S', 3, "one", 0, "W7 W6 W5 W4 W2 W1 W0"},
        {'B', 0, 0, 1, NULL},
        {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL}, {'D', 4, 0, 0, NULL}, {'D', 5, 0, 0, NULL}, {'D', 6, 0, 0, NULL},
        {'B', 0, 0, 1, NULL},               /* h has not taken it yet */
        {'D', 7, 0, 0, NULL},
        {'B', 0, 0, 0, NULL},
    }},
    {"the sender's own lines are skipped, and count while it is behind", NOFLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'D', 0, 0, 0, NULL},
        {'S', 0, "x", 0, "W1"},             /* a caught up: its own line passes at once */
        {'G', 0, 0, 0, NULL},
        {'S', 1, "yy", 0, "W0"},            /* "b: yy\n" 6 bytes for a */
        {'S', 0, "zzz", 0, NULL},           /* a is behind: its own line waits behind b's */
        {'G', 0, 0, 13, NULL},              /* 6 + "a: zzz\n" 7 */
        {'D', 0, 0, 0, NULL}, {'G', 0, 0, 0, NULL},
        {'E', 0, "*** b joined ***\nb: yy\n", 0, NULL},
        {'D', 1, 0, 0, NULL},
        {'E', 1, "a: x\na: zzz\n", 0, NULL},
    }},
    {"leaving with a flush gets what was queued before, not after", NOFLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'J', 2, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL},
        {'C', 0, 0, 0, NULL}, {'C', 1, 0, 0, NULL}, {'C', 2, 0, 0, NULL},
        {'S', 0, "before", 0, NULL},
        {'L', 1, 0, 1, NULL},               /* b leaves, is owed "a: before" */
        {'S', 0, "after", 0, NULL},
        {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL},
        {'E', 1, "a: before\n", 0, NULL},
        {'E', 2, "a: before\n*** b left ***\na: after\n", 0, NULL},
        {'X', 1, 0, 0, NULL},
        {'D', 0, 0, 0, NULL},
        {'B', 0, 0, 0, NULL},
    }},
    {"a flushing member forgotten before the lines after its leave are freed", NOFLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL},
        {'S', 0, "owed", 0, NULL},
        {'L', 1, 0, 1, NULL},               /* b owes "a: owed"; its leave notice is a's */
        {'D', 0, 0, 0, NULL},               /* a passed the notice; b still holds the log */
        {'B', 0, 0, 2, NULL},
        {'X', 1, 0, 0, NULL},               /* frees both: nothing past b's limit is read */
        {'B', 0, 0, 0, NULL},
    }},
    {"leaving without a flush gives up the queue", NOFLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'J', 2, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL},
        {'C', 0, 0, 0, NULL}, {'C', 1, 0, 0, NULL}, {'C', 2, 0, 0, NULL},
        {'S', 0, "lost", 0, NULL},
        {'L', 1, 0, 0, NULL},
        {'D', 1, 0, 0, NULL}, {'E', 1, "", 0, NULL},
        {'D', 2, 0, 0, NULL}, {'E', 2, "a: lost\n*** b left ***\n", 0, NULL},
        {'B', 0, 0, 1, NULL},               /* a has not taken the notice */
        {'D', 0, 0, 0, NULL},
        {'B', 0, 0, 0, NULL},
    }},
    {"over max_backlog: dropped, announced", {0, 0, 40, 0}, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'J', 2, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL},
        {'C', 0, 0, 0, NULL}, {'C', 1, 0, 0, NULL}, {'C', 2, 0, 0, NULL},
        {'S', 0, "0123456789", 0, "W2 W1"}, /* 14 bytes each */
        {'D', 2, 0, 0, NULL},
        {'S', 0, "0123456789", 0, "W2"},    /* b: 28 */
        {'D', 2, 0, 0, NULL},
        {'S', 0, "0123456789", 0, "W2 W0 X1"}, /* b: 42 > 40: dropped; a, c hear it left */
        {'D', 2, 0, 0, NULL},
        {'E', 2, "a: 0123456789\na: 0123456789\na: 0123456789\n*** b left ***\n", 0, NULL},
        {'D', 0, 0, 0, NULL},
        {'E', 0, "*** b left ***\n", 0, NULL},
    }},
    {"flow control: a slow receiver pauses the sender, resumes it under low", FLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL},
        {'S', 0, "0123456789012345678901234567890", 0, "W1"}, /* 35 bytes */
        {'P', 0, 0, 0, NULL},
        {'S', 0, "0123456789012345678901234567890", 0, "R0"}, /* b at 70 > 60 */
        {'P', 0, 0, 1, NULL},
        {'H', 1, 0, 0, NULL},               /* handed out: still 70 until the socket takes */
        {'G', 1, 0, 70, NULL},
        {'T', 1, 0, 40, NULL},              /* 30 left: above low 20 */
        {'P', 0, 0, 1, NULL},
        {'T', 1, 0, 30, "R0"},              /* 0: resumed */
        {'P', 0, 0, 0, NULL},
    }},
    {"the paused sender does not hold itself back", FLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL},
        {'S', 1, "0123456789012345678901234567890123456789012345678901234567890", 0,
         "W0 R1"},                          /* a 65 > 60: b paused */
        {'S', 0, "a", 0, "W1"},             /* a is above high itself, b is not: no pause */
        {'P', 0, 0, 0, NULL},
    }},
    {"stall: no byte taken for stall_ns drops it and resumes the senders", FLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'J', 2, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL}, {'D', 2, 0, 0, NULL},
        {'C', 0, 0, 0, NULL}, {'C', 1, 0, 0, NULL}, {'C', 2, 0, 0, NULL},
        {'S', 0, "0123456789012345678901234567890123456789012345678901234567890", 0,
         "W2 W1 R0"},
        {'D', 2, 0, 0, NULL},
        {'K', 0, 0, 400, ""},               /* 400 ms: not yet */
        {'K', 0, 0, 501, "W2 W0 R0 X1"},    /* b dropped: a, c hear it left; a resumed */
        {'D', 2, 0, 0, NULL},
        {'E', 2, "a: 0123456789012345678901234567890123456789012345678901234567890\n"
                 "*** b left ***\n", 0, NULL},
    }},
    {"a pause shorter than stall_ns is not a stall", FLOW, {
        {'J', 0, 0, 0, NULL}, {'J', 1, 0, 0, NULL}, {'D', 0, 0, 0, NULL}, {'D', 1, 0, 0, NULL},
        {'S', 0, "0123456789", 0, "W1"},
        {'S', 0, "0123456789", 0, NULL},
        {'H', 1, 0, 0, NULL},
        {'K', 0, 0, 300, ""},
        {'T', 1, 0, 5, NULL},               /* a byte at 300 ms restarts the clock */
        {'K', 0, 0, 700, ""},               /* 400 ms since: fine */
        {'T', 1, 0, 23, NULL},
        {'K', 0, 0, 5000, ""},              /* nothing waits: never a stall */
        {'E', 1, "a: 0123456789\na: 0123456789\n", 0, NULL},
    }},
};

static void test_room_scripts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++)
        run_script(&scripts[i]);
}

/* Memory: 2,000 members, 50 lines: the log holds 50 lines however many receive them, and is
 * empty once they all took them. */
static void test_room_memory_is_lines_not_lines_times_members(void **state)
{
    static struct room r;
    static struct room_member m[2000];
    struct room_config cfg = {256 * 1024, 64 * 1024, 1024 * 1024, 500 * MS};
    struct room_line *out[64];
    struct room_member *e;
    unsigned what;
    (void)state;

    room_init(&r, &cfg);
    for (int i = 0; i < 2000; i++) {
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        assert_int_equal(room_join(&r, &m[i], NULL, name, 0), 0);
    }
    uint64_t joins = r.stats.log_lines;
    assert_true(joins <= 1999);             /* one notice each, never one per receiver */
    for (int k = 0; k < 50; k++)
        assert_int_equal(room_say(&r, &m[k % 7], (const uint8_t *)"hello", 5, 0), 0);
    assert_int_equal(r.stats.log_lines, joins + 50);
    while ((e = room_next_event(&r, &what)) != NULL)
        ;
    for (int i = 0; i < 2000; i++) {
        size_t n;
        while ((n = room_take(&r, &m[i], out, 64, 1 << 20)) > 0)
            for (size_t k = 0; k < n; k++) {
                room_taken(&r, &m[i], out[k]->len, 0);
                room_release(out[k]);
            }
    }
    assert_int_equal(r.stats.log_lines, 0);
    assert_int_equal(r.stats.log_bytes, 0);
    for (int i = 0; i < 2000; i++)
        room_leave(&r, &m[i], 0, 0);
    for (int i = 0; i < 2000; i++)
        room_forget(&r, &m[i]);
    assert_int_equal(r.stats.log_lines, 0);
    room_free(&r);
}

static void test_room_client_states(void **state)
{
    static const struct {
        enum chat_client_state from, to;
        int legal;
    } cases[] = {
        {CLIENT_IN_ROOM, CLIENT_FLUSHING, 1}, {CLIENT_IN_ROOM, CLIENT_CLOSED, 1},
        {CLIENT_IN_ROOM, CLIENT_LINGERING, 0}, {CLIENT_FLUSHING, CLIENT_LINGERING, 1},
        {CLIENT_FLUSHING, CLIENT_CLOSED, 1}, {CLIENT_FLUSHING, CLIENT_IN_ROOM, 0},
        {CLIENT_LINGERING, CLIENT_CLOSED, 1}, {CLIENT_LINGERING, CLIENT_FLUSHING, 0},
        {CLIENT_CLOSED, CLIENT_IN_ROOM, 0}, {CLIENT_CLOSED, CLIENT_CLOSED, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (chat_client_state_legal(cases[i].from, cases[i].to) != cases[i].legal)
            fail_msg("%s -> %s: legal %d, want %d", chat_client_state_name(cases[i].from),
                     chat_client_state_name(cases[i].to), !cases[i].legal, cases[i].legal);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_room_scripts),
        cmocka_unit_test(test_room_memory_is_lines_not_lines_times_members),
        cmocka_unit_test(test_room_client_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
