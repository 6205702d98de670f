/*
 * arena.c - an arena of bytes for copies that live and die together: the
 * arguments a streaming map's batch has read (imap.c).
 *
 * Memory comes in blocks that are kept when the arena is reset, so an
 * arena that is filled again and again settles at the size it needs and
 * stops allocating.  Nothing in a block ever moves: a pointer it gave out
 * stays valid until the next reset, which is what lets another thread
 * read the bytes while more are added.
 */
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

/* A block's header; its bytes follow. */
struct pp__arena_block_s {
  pp__arena_block_t *next;
  size_t cap, used;
};

void *pp__arena_alloc(pp__arena_t *a, size_t len) {
  pp__arena_block_t *k;
  size_t cap;
  while (a->cur != NULL && a->cur->cap - a->cur->used < len)
    a->cur = a->cur->next;
  if (a->cur == NULL) {
    cap = len > PP__ARENA_BLOCK ? len : PP__ARENA_BLOCK;
    if (cap > SIZE_MAX - sizeof(*k))
      return NULL;
    k = pp__malloc(sizeof(*k) + cap);
    if (k == NULL)
      return NULL;
    k->cap = cap;
    k->used = 0;
    k->next = NULL;
    /* Appended, so that after a reset the blocks are used again in the
     * order they were made. */
    if (a->blocks == NULL) {
      a->blocks = k;
    } else {
      pp__arena_block_t *t = a->blocks;
      while (t->next != NULL)
        t = t->next;
      t->next = k;
    }
    a->cur = k;
  }
  k = a->cur;
  k->used += len;
  return (char *)(k + 1) + (k->used - len);
}

void pp__arena_reset(pp__arena_t *a) {
  pp__arena_block_t *k;
  for (k = a->blocks; k != NULL; k = k->next)
    k->used = 0;
  a->cur = a->blocks;
}

void pp__arena_free(pp__arena_t *a) {
  while (a->blocks != NULL) {
    pp__arena_block_t *k = a->blocks;
    a->blocks = k->next;
    free(k);
  }
  a->cur = NULL;
}
