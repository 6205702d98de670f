/*
 * blob.c - large results handed to the caller in the shared mapping they
 * came in, and pp_free() and pp_results_free(), which know them.
 *
 * Large results stay in their mapping (no copy), and pp_free() must unmap
 * them instead of calling free().  They are few and large, so a short list
 * with a lock is enough; a counter lets pp_free() of ordinary memory skip
 * the lock altogether.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct blob_s {
  void *base;
  pp__shm_t *shm;
  struct blob_s *next;
} blob_t;

static blob_t *blobs;
static volatile uint64_t blobs_n;
static pp__mutex_t *blobs_lock;
static pp__once_t blobs_once = PP__ONCE_INIT;

static int blobs_setup(void) {
  return pp__mutex_new(&blobs_lock);
}

void *pp_shared_alloc(size_t len) {
  pp__shm_t *shm = NULL;
  if (len == 0) {
    pp__set_error(PP_EINVAL, "pp_shared_alloc: len is 0");
    return NULL;
  }
  if (pp__shm_create(len, &shm) != 0)
    return NULL;
  return pp__blob_adopt(shm);
}

int pp__blob_find(const void *ptr, size_t len, pp__shm_t **shm,
                  uint64_t *offset) {
  blob_t *b;
  int found = 0;
  if (PP__LOAD_ACQ64(&blobs_n) == 0)
    return 0;
  pp__mutex_lock(blobs_lock);
  for (b = blobs; b != NULL && !found; b = b->next) {
    const unsigned char *lo = b->base, *p = ptr;
    uint64_t size = pp__shm_len(b->shm);
    if (p >= lo && (uint64_t)(p - lo) <= size &&
        len <= size - (uint64_t)(p - lo)) {
      *shm = b->shm;
      *offset = (uint64_t)(p - lo);
      found = 1;
    }
  }
  pp__mutex_unlock(blobs_lock);
  return found;
}

void *pp__blob_adopt(pp__shm_t *shm) {
  blob_t *b = malloc(sizeof(*b));
  if (b == NULL || pp__once(&blobs_once, blobs_setup) != 0) {
    /* Without bookkeeping the mapping cannot be handed out: copy it. */
    void *copy = malloc(pp__shm_len(shm) ? (size_t)pp__shm_len(shm) : 1);
    free(b);
    if (copy != NULL)
      memcpy(copy, pp__shm_base(shm), (size_t)pp__shm_len(shm));
    pp__shm_close(shm);
    return copy;
  }
  b->base = pp__shm_base(shm);
  b->shm = shm;
  pp__mutex_lock(blobs_lock);
  b->next = blobs;
  blobs = b;
  PP__STORE_REL64(&blobs_n, blobs_n + 1);
  pp__mutex_unlock(blobs_lock);
  return b->base;
}

/* Returns 1 if `ptr` was a blob, now unmapped. */
static int blob_free(void *ptr) {
  blob_t **p, *b = NULL;
  if (PP__LOAD_ACQ64(&blobs_n) == 0)
    return 0;
  pp__mutex_lock(blobs_lock);
  for (p = &blobs; *p != NULL; p = &(*p)->next)
    if ((*p)->base == ptr) {
      b = *p;
      *p = b->next;
      PP__STORE_REL64(&blobs_n, blobs_n - 1);
      break;
    }
  pp__mutex_unlock(blobs_lock);
  if (b == NULL)
    return 0;
  pp__shm_close(b->shm);
  free(b);
  return 1;
}

void pp_free(void *ptr) {
  if (ptr != NULL && !blob_free(ptr))
    free(ptr);
}

void pp_results_free(pp_result_t *results, size_t n) {
  size_t i;
  if (results == NULL)
    return;
  for (i = 0; i < n; i++) {
    pp_free(results[i].data);
    free(results[i].message);
    memset(&results[i], 0, sizeof(results[i]));
  }
}
