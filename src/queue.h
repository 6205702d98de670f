/*
 * queue.h - an intrusive, circular, doubly linked queue (after libuv's
 * src/queue.h).
 *
 * An element embeds a pp__queue_t link for every list it can be on; the list
 * head is a pp__queue_t too, empty when it points at itself.  Nothing is
 * allocated: insert and remove are a few pointer writes, and an element
 * knows how to leave its list without a search.  Who may touch a list (which
 * lock guards it) is said where the list is declared, not here.
 */
#ifndef PP_QUEUE_H
#define PP_QUEUE_H

#include <stddef.h>

typedef struct pp__queue_s {
  struct pp__queue_s *next;
  struct pp__queue_s *prev;
} pp__queue_t;

/* The element of type `type` whose member `field` is the link `ptr`. */
#define pp__queue_data(ptr, type, field)                                       \
  ((type *)((char *)(ptr) - offsetof(type, field)))

static inline void pp__queue_init(pp__queue_t *q) {
  q->next = q;
  q->prev = q;
}

static inline int pp__queue_empty(const pp__queue_t *q) {
  return q == q->next;
}

static inline pp__queue_t *pp__queue_head(const pp__queue_t *q) {
  return q->next;
}

static inline void pp__queue_insert_tail(pp__queue_t *h, pp__queue_t *q) {
  q->next = h;
  q->prev = h->prev;
  q->prev->next = q;
  h->prev = q;
}

static inline void pp__queue_insert_head(pp__queue_t *h, pp__queue_t *q) {
  q->next = h->next;
  q->prev = h;
  q->next->prev = q;
  h->next = q;
}

/* Removes `q` from its list and leaves it linked to itself, so that a
 * second remove is harmless. */
static inline void pp__queue_remove(pp__queue_t *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  q->next = q;
  q->prev = q;
}

/* Returns 1 if the element is on a list (its link is not its own). */
static inline int pp__queue_linked(const pp__queue_t *q) {
  return q->next != q;
}

#endif /* PP_QUEUE_H */
