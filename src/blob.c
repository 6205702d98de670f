/*
 * blob.c - large results handed to the caller in the shared mapping they
 * came in, pp_shared_alloc(), pp_free() and pp_results_free(), which know
 * them, and the spare mappings they go back to.
 *
 * Large results stay in their mapping (no copy), and pp_free() must unmap
 * them instead of calling free().  They are few and large, so a short list
 * with a lock is enough; a counter lets pp_free() of ordinary memory skip
 * the lock altogether.
 *
 * A freed blob is not unmapped at once but kept as a spare (up to
 * PP__SPARE_BYTES in all), and the next large transfer reuses it: the copy
 * of an argument, the memory a worker writes a large result into (a reply
 * hint, see loop.c), or pp_shared_alloc().  Fresh shared memory costs a
 * page fault and a zeroed page per 4 KiB on first touch, several times the
 * cost of the copy itself, and a program that sends large calls sends
 * many.  Spares hold old bytes of this process' own calls; they never go
 * to another process than this one's workers.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct blob_s {
  void *base;
  pp__shm_t *shm;
  int refs; /* pointers into it handed out and not yet given to pp_free,
               and calls in flight that send it (pp__blob_hold) */
  struct blob_s *next;
} blob_t;

/* All under blobs_lock: the blobs handed out, and the spares. */
static blob_t *blobs;
static volatile uint64_t blobs_n;
static pp__shm_t *spares[PP__SPARE_MAX];
static int spares_n;
static uint64_t spares_bytes;
static int spares_users; /* pools alive: with none, nothing is kept */
static pp__mutex_t *blobs_lock;
static pp__once_t blobs_once = PP__ONCE_INIT;

static int blobs_setup(void) {
  return pp__mutex_new(&blobs_lock);
}

pp__shm_t *pp__spare_take(uint64_t min, uint64_t max) {
  pp__shm_t *best = NULL;
  int i, at = -1;
  if (pp__once(&blobs_once, blobs_setup) != 0)
    return NULL;
  pp__mutex_lock(blobs_lock);
  for (i = 0; i < spares_n; i++) {
    uint64_t len = pp__shm_len(spares[i]);
    if (len >= min && len <= max &&
        (best == NULL || len < pp__shm_len(best))) {
      best = spares[i];
      at = i;
    }
  }
  if (best != NULL) {
    spares[at] = spares[--spares_n];
    spares_bytes -= pp__shm_len(best);
  }
  pp__mutex_unlock(blobs_lock);
  return best;
}

void pp__spare_give(pp__shm_t *shm) {
  uint64_t len;
  if (shm == NULL)
    return;
  len = pp__shm_len(shm);
  if (len >= PP__SPARE_MIN && len <= PP__SPARE_BYTES &&
      pp__once(&blobs_once, blobs_setup) == 0) {
    pp__mutex_lock(blobs_lock);
    if (spares_users == 0) {
      pp__mutex_unlock(blobs_lock);
      pp__shm_close(shm);
      return;
    }
    /* The oldest spares make room: the newest are the likeliest to fit the
     * next transfer, which is usually like the last one. */
    while (spares_n > 0 && (spares_n == PP__SPARE_MAX ||
                            spares_bytes + len > PP__SPARE_BYTES)) {
      pp__shm_t *old = spares[0];
      spares_bytes -= pp__shm_len(old);
      memmove(&spares[0], &spares[1], (size_t)(--spares_n) * sizeof(*spares));
      pp__mutex_unlock(blobs_lock);
      pp__shm_close(old);
      pp__mutex_lock(blobs_lock);
    }
    if (spares_n < PP__SPARE_MAX && spares_bytes + len <= PP__SPARE_BYTES) {
      spares[spares_n++] = shm;
      spares_bytes += len;
      shm = NULL;
    }
    pp__mutex_unlock(blobs_lock);
  }
  pp__shm_close(shm);
}

int pp__spare_users(int delta) {
  pp__shm_t *all[PP__SPARE_MAX];
  int i, n = 0, rc = pp__once(&blobs_once, blobs_setup);
  if (rc != 0)
    return rc;
  pp__mutex_lock(blobs_lock);
  spares_users += delta;
  if (spares_users > 0) {
    pp__mutex_unlock(blobs_lock);
    return 0;
  }
  n = spares_n;
  memcpy(all, spares, (size_t)n * sizeof(*all));
  spares_n = 0;
  spares_bytes = 0;
  pp__mutex_unlock(blobs_lock);
  for (i = 0; i < n; i++)
    pp__shm_close(all[i]);
  return 0;
}

pp__shm_t *pp__spare_or_new(uint64_t len) {
  pp__shm_t *shm = pp__spare_take(len, 2 * len);
  if (shm == NULL && pp__shm_create(len ? len : 1, PP__SHM_POPULATE, &shm) != 0)
    return NULL;
  return shm;
}

void *pp_shared_alloc(size_t len) {
  pp__shm_t *shm;
  void *p;
  if (len == 0) {
    pp__fail(PP_EINVAL, "pp_shared_alloc: len is 0");
    return NULL;
  }
  shm = pp__spare_or_new(len);
  if (shm == NULL) {
    pp__fail_os(PP_ENOMEM);
    return NULL;
  }
  p = pp__blob_adopt(shm);
  if (p == NULL)
    pp__fail(PP_ENOMEM, "pp_shared_alloc: out of memory");
  return p;
}

int pp__blob_hold(const void *ptr, size_t len, pp__shm_t **shm,
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
      /* Taken under the same lock as the look-up, so a pp_free() in
       * another thread either came first (the blob is not found) or
       * leaves the memory to this reference. */
      b->refs++;
      *shm = b->shm;
      *offset = (uint64_t)(p - lo);
      found = 1;
    }
  }
  pp__mutex_unlock(blobs_lock);
  return found;
}

/* Drops one reference of `b` (blobs_lock held) and returns 1 if it was
 * the last: `b` is then off the list, and the caller gives its mapping
 * back and frees it once the lock is released. */
static int blob_unref_locked(blob_t **link, blob_t *b) {
  if (--b->refs > 0)
    return 0;
  *link = b->next;
  PP__STORE_REL64(&blobs_n, blobs_n - 1);
  return 1;
}

static void blob_gone(blob_t *b) {
  pp__spare_give(b->shm);
  free(b);
}

void pp__blob_release(pp__shm_t *shm) {
  blob_t **p, *b = NULL;
  int last = 0;
  if (shm == NULL)
    return;
  pp__mutex_lock(blobs_lock);
  for (p = &blobs; *p != NULL; p = &(*p)->next)
    if ((*p)->shm == shm) {
      b = *p;
      last = blob_unref_locked(p, b);
      break;
    }
  pp__mutex_unlock(blobs_lock);
  if (last)
    blob_gone(b);
}

void *pp__blob_adopt(pp__shm_t *shm) {
  blob_t *b = pp__malloc(sizeof(*b));
  if (b == NULL || pp__once(&blobs_once, blobs_setup) != 0) {
    /* Without bookkeeping the mapping cannot be handed out: copy it. */
    void *copy = pp__malloc(pp__shm_len(shm) ? (size_t)pp__shm_len(shm) : 1);
    free(b);
    if (copy != NULL)
      memcpy(copy, pp__shm_base(shm), (size_t)pp__shm_len(shm));
    pp__shm_close(shm);
    return copy;
  }
  b->base = pp__shm_base(shm);
  b->shm = shm;
  b->refs = 1;
  pp__mutex_lock(blobs_lock);
  b->next = blobs;
  blobs = b;
  PP__STORE_REL64(&blobs_n, blobs_n + 1);
  pp__mutex_unlock(blobs_lock);
  return b->base;
}

void *pp__blob_share(pp__shm_t *shm, uint64_t offset) {
  blob_t *b;
  void *p = NULL;
  if (PP__LOAD_ACQ64(&blobs_n) == 0)
    return NULL;
  pp__mutex_lock(blobs_lock);
  for (b = blobs; b != NULL; b = b->next)
    if (b->shm == shm && offset <= pp__shm_len(shm)) {
      b->refs++;
      p = (unsigned char *)b->base + offset;
      break;
    }
  pp__mutex_unlock(blobs_lock);
  return p;
}

/* Returns 1 if `ptr` points into a blob, whose count it takes back (and
 * which it unmaps when that was the last reference). */
static int blob_free(void *ptr) {
  blob_t **p, *b = NULL;
  int last = 0;
  if (PP__LOAD_ACQ64(&blobs_n) == 0)
    return 0;
  pp__mutex_lock(blobs_lock);
  for (p = &blobs; *p != NULL; p = &(*p)->next) {
    const unsigned char *lo = (*p)->base, *q = ptr;
    if (q >= lo && (uint64_t)(q - lo) < pp__shm_len((*p)->shm)) {
      b = *p;
      last = blob_unref_locked(p, b);
      break;
    }
  }
  pp__mutex_unlock(blobs_lock);
  if (b == NULL)
    return 0;
  if (last)
    blob_gone(b);
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
