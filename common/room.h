/* Pure. The chat room as a state machine (no I/O, no threads, no clock of its own): members,
 * join and leave notices, one shared log of the room's lines, the backlog, stall and
 * flow-control rules. A server tells it what happened and asks it what to send to whom. */
#ifndef TVSA_ROOM_H
#define TVSA_ROOM_H
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "opts.h"

struct room;

/* One message of the room, stored once however many members receive it. A line lives while
 * a member's cursor has not passed it or a server still holds it (room_take .. room_release);
 * then it is freed. */
struct room_line {
    struct room_line *next;  /* the log, oldest first */
    struct room *room;
    uint64_t seq;            /* 1, 2, 3...: the order of the room */
    uint64_t end;            /* log position (bytes since the room began) just after it */
    uint64_t from;           /* the sending member's id (never delivered to it); 0: a notice */
    unsigned refs;           /* cursors on or before it, plus holds */
    size_t len;
    char data[];             /* the whole message, '\n' included */
};

/* A member's place in the room. Both servers use these states for their clients. */
enum room_state {
    ROOM_OUT,       /* not joined yet, or gone (left or dropped): nothing more for it */
    ROOM_IN,        /* in the room: receives every line of the others */
    ROOM_FLUSHING,  /* left (its EOF, an idle timeout, a too-long line): is owed what was
                     * queued before it left, then is done */
};

enum room_drop {
    ROOM_DROP_NONE,
    ROOM_DROP_BACKLOG,  /* its distance in the log passed max_backlog */
    ROOM_DROP_STALLED,  /* data waited and it took no byte for stall_ns */
};

/* What the server must do for a member after a room call (room_next_event). */
enum {
    ROOM_EV_WAKE = 1u << 0,   /* it has lines to take (it had none) */
    ROOM_EV_READ = 1u << 1,   /* flow control changed: read from it again, or stop (paused) */
    ROOM_EV_DROP = 1u << 2,   /* it was dropped (dropped says why): close it now */
};

/* Embedded in a server's client; every field is the room's, read-only for the server. */
struct room_member {
    void *owner;                     /* the server's client */
    char name[CHAT_NAME_MAX];
    uint64_t id;
    enum room_state state;
    enum room_drop dropped;
    int paused;                      /* flow control: do not read its input */
    struct room_member *prev, *next; /* the room's members, or its flushing list */
    struct room_line *cursor;        /* next line to hand out; NULL: none yet */
    uint64_t limit_seq;              /* FLUSHING: the last line it is owed */
    uint64_t outstanding;            /* bytes handed out, not yet taken by its socket */
    uint64_t waiting_since_ns;       /* data waiting since, or its last progress */
    int above_low, above_high;       /* counted in the room's above_low / above_high */
    unsigned events;                 /* ROOM_EV_* not yet collected */
    struct room_member *ev_next;     /* on the event list while events != 0 */
    struct room_member *paused_next, *paused_prev;
    struct room_member *drop_next;   /* on the room's drops while dropped is set and IN */
};

struct room_config {
    uint64_t high, low;     /* flow control (bytes of distance); high 0: no flow control */
    uint64_t max_backlog;   /* bytes of distance that drop a member; 0: no cap */
    uint64_t stall_ns;      /* no progress this long with data waiting drops it; 0: never */
};

struct room_stats {
    uint64_t lines, notices;          /* appended */
    uint64_t dropped_backlog, dropped_stalled;
    uint64_t pauses;                  /* times a sender was paused */
    uint64_t log_bytes, log_lines;    /* alive now */
    uint64_t log_bytes_peak;
};

struct room {
    struct room_config cfg;
    struct room_line *head, *tail;    /* the log */
    uint64_t end;                     /* log position after the tail */
    uint64_t next_seq, next_id;
    struct room_member *members;      /* ROOM_IN */
    struct room_member *flushing;     /* ROOM_FLUSHING */
    size_t nmembers;
    unsigned above_low, above_high;   /* members (in the room) over each mark */
    struct room_member *paused;       /* senders held back */
    struct room_member *ev_head, *ev_tail;
    struct room_member *drops;        /* found over max_backlog, not yet taken out */
    struct room_stats stats;
};

/* The rules a chat server's flags ask for: --high-water (low mark a quarter of it),
 * --max-backlog, --stall-ms; none with --broadcast naive, which waits instead. */
struct room_config room_rules(const struct server_opts *o);
/* How often a server looks for stalls and write timeouts: a quarter of --stall-ms and of
 * --idle-timeout, within 10..250 ms. */
long room_tick_ms(const struct server_opts *o);
void room_init(struct room *r, const struct room_config *cfg);
/* Frees what is left of the log; every member must be out (room_forget). */
void room_free(struct room *r);

/* m (zeroed or forgotten) enters: the others get "*** NAME joined ***" first, so m never
 * hears its own arrival. owner is the server's client. 0, or -1 (no memory; m stays out). */
int room_join(struct room *r, struct room_member *m, void *owner, const char *name,
              uint64_t now_ns);
/* m's line text[0..len) (without '\n') goes to every other member as "NAME: TEXT\n". May
 * pause m (flow control) or drop others (backlog). 0, or -1 (no memory: the line is lost). */
int room_say(struct room *r, struct room_member *m, const uint8_t *text, size_t len,
             uint64_t now_ns);
/* m leaves; the others hear "*** NAME left ***". flush = 1: m stays FLUSHING and is still
 * handed what was queued for it before it left (room_flushed says when that is out); 0: m
 * is out at once and what was queued is dropped. Nothing for a member already out. */
void room_leave(struct room *r, struct room_member *m, int flush, uint64_t now_ns);
/* After m is out (or flushed): takes it off every list of the room, so it can be freed. */
void room_forget(struct room *r, struct room_member *m);

/* Hands out m's next lines: up to max lines, stopping once max_bytes are reached (always at
 * least one if any is due). Each line is held for the caller, who sends line->data[0..len)
 * and then calls room_release. Returns how many; 0 when nothing is due. */
size_t room_take(struct room *r, struct room_member *m, struct room_line **out, size_t max,
                 size_t max_bytes);
/* m's socket took n more bytes of what was handed out (progress: the stall clock restarts). */
void room_taken(struct room *r, struct room_member *m, size_t n, uint64_t now_ns);
/* m's peer took bytes that the server has not counted with room_taken (its socket's unacked
 * queue shrank, SIOCOUTQ, while the socket did not become writable yet): the stall clock
 * restarts, nothing else changes. */
void room_progress(struct room *r, struct room_member *m, uint64_t now_ns);
/* The caller is done with a line room_take gave it. */
void room_release(struct room_line *l);
/* 1 while lines are due to m that room_take has not handed out yet. */
int room_has_lines(const struct room_member *m);
/* 1 when a FLUSHING member was handed and sent everything it is owed. */
int room_flushed(const struct room_member *m);
/* Bytes m has not taken yet: its distance in the log (its own lines past its cursor count,
 * since they stay in memory for it). */
uint64_t room_distance(const struct room *r, const struct room_member *m);

/* Drops m if data has waited for it for stall_ns without progress. 1 if it was dropped. */
int room_check_stall(struct room *r, struct room_member *m, uint64_t now_ns);
/* room_check_stall for every member in the room. */
void room_tick(struct room *r, uint64_t now_ns);

/* The next member with something to do: returns it and its ROOM_EV_* bits in *what, and
 * clears them; NULL when none is left. Collect after every room call. */
struct room_member *room_next_event(struct room *r, unsigned *what);

/* The state changes a server's client may make (its own, on top of the room's). */
enum chat_client_state {
    CLIENT_IN_ROOM,    /* reading, receiving */
    CLIENT_FLUSHING,   /* out of the room: what is owed to it drains until the deadline */
    CLIENT_LINGERING,  /* too-long notice out, our side shut: input discarded until EOF */
    CLIENT_CLOSED,     /* nothing more to do: free it */
};
/* 1 if a client may go from `from` to `to`: IN_ROOM -> FLUSHING | CLOSED, FLUSHING ->
 * LINGERING | CLOSED, LINGERING -> CLOSED. */
int chat_client_state_legal(enum chat_client_state from, enum chat_client_state to);
const char *chat_client_state_name(enum chat_client_state s);

#endif
