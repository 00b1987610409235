/* Pure. An intrusive doubly-linked list: a node lives inside the element, so linking and
 * unlinking never allocate and an element leaves its list in O(1). The list is circular
 * around a head node, so no operation has a NULL case. Not thread-safe: the owner of the list
 * (a loop thread, or whoever holds the lock named beside it) does every operation. */
#ifndef TVSA_LIST_H
#define TVSA_LIST_H
#include <stddef.h>

struct list_node {
    struct list_node *prev, *next;
};

/* The element that holds node `ptr` as its member `member`. */
#define LIST_ENTRY(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Iterates node over every element of head; node may be unlinked (only node) in the body. */
#define LIST_FOREACH_SAFE(node, tmp, head)                                                    \
    for ((node) = (head)->next, (tmp) = (node)->next; (node) != (head);                      \
         (node) = (tmp), (tmp) = (node)->next)

/* An empty list (or a node that is in no list). */
static inline void list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

static inline int list_empty(const struct list_node *head)
{
    return head->next == head;
}

/* Links n at the front of head. */
static inline void list_push(struct list_node *head, struct list_node *n)
{
    n->prev = head;
    n->next = head->next;
    head->next->prev = n;
    head->next = n;
}

/* Unlinks n from its list and leaves it as an empty list (so a second remove is harmless). */
static inline void list_remove(struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

/* The first node of head, or NULL when it is empty. */
static inline struct list_node *list_first(const struct list_node *head)
{
    return list_empty(head) ? NULL : head->next;
}

#endif
