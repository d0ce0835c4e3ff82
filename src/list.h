/*
 * list.h - the intrusive doubly-linked list every file uses (tasks on the
 * ready list, waiters, tickers, writers, processes).  A head is an
 * orch_list whose next and prev point at itself when empty; a node is an
 * orch_list inside the struct it links, found back with list_entry.
 * (Named orch_list, not link, which unistd.h declares.)
 */
#ifndef ORCH_LIST_H
#define ORCH_LIST_H

#include <stddef.h>

typedef struct orch_list {
  struct orch_list *prev, *next;
} orch_list;

#define list_entry(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void list_init(orch_list *l) { l->prev = l->next = l; }

static inline int list_empty(const orch_list *l) { return l->next == l; }

/* Appends l at the tail of head. */
static inline void list_push(orch_list *head, orch_list *l) {
  l->prev = head->prev;
  l->next = head;
  head->prev->next = l;
  head->prev = l;
}

/* Unlinks l; harmless on a node never linked (zeroed) or already unlinked. */
static inline void list_remove(orch_list *l) {
  if (l->next == NULL || l->next == l) return;
  l->prev->next = l->next;
  l->next->prev = l->prev;
  l->next = l->prev = l;
}

/* Moves every node of from to the head to (which it initialises). */
static inline void list_take(orch_list *to, orch_list *from) {
  list_init(to);
  if (list_empty(from)) return;
  to->next = from->next;
  to->prev = from->prev;
  to->next->prev = to;
  to->prev->next = to;
  list_init(from);
}

#endif
