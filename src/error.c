/*
 * error.c - status names and messages, the thread-local last error, version.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static PP__THREAD_LOCAL char last_error[512];

unsigned pp_version(void) {
  return PP_VERSION_HEX;
}

#define PP__STR2(x) #x
#define PP__STR(x) PP__STR2(x)

const char *pp_version_string(void) {
  return PP__STR(PP_VERSION_MAJOR) "." PP__STR(PP_VERSION_MINOR) "." PP__STR(
      PP_VERSION_PATCH);
}

const char *pp_strerror(int status) {
  switch (status) {
    case 0:
      return "success";
#define PP__STRERROR_GEN(name, value, text)                                    \
  case PP_##name:                                                              \
    return text;
      PP_ERRNO_MAP(PP__STRERROR_GEN)
#undef PP__STRERROR_GEN
    default:
      return "unknown error";
  }
}

const char *pp_err_name(int status) {
  switch (status) {
    case 0:
      return "PP_OK";
#define PP__NAME_GEN(name, value, text)                                        \
  case PP_##name:                                                              \
    return "PP_" #name;
      PP_ERRNO_MAP(PP__NAME_GEN)
#undef PP__NAME_GEN
    default:
      return "PP_UNKNOWN";
  }
}

const char *pp_last_error(void) {
  return last_error;
}

int pp__set_error(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof(last_error), fmt, ap);
  va_end(ap);
  return status;
}

char *pp__format(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  if (size == 0)
    return buf;
  va_start(ap, fmt);
  if (vsnprintf(buf, size, fmt, ap) < 0)
    buf[0] = '\0';
  va_end(ap);
  return buf;
}

char *pp__strdup_printf(const char *fmt, ...) {
  va_list ap;
  int n;
  char *s;
  va_start(ap, fmt);
  n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0)
    return NULL;
  s = malloc((size_t)n + 1);
  if (s == NULL)
    return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* ---- blobs handed to the caller ---- */

/* Large results stay in the shared mapping they came in (no copy), and
 * pp_free() must unmap them instead of calling free().  They are few and
 * large, so a short list with a lock is enough; `blobs_n` lets pp_free() of
 * ordinary memory skip the lock altogether. */
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
