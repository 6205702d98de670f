/*
 * thread.c (POSIX) - the monotonic clock, mutexes, condition variables timed
 * on that clock, and one-time set-up.
 *
 * APR's condition variables compute their deadline from the wall clock, so a
 * step of the system clock ends a wait at once (a step forward) or makes it
 * last as long as the step (a step back).  Here every timed wait is set up
 * with CLOCK_MONOTONIC (pthread_condattr_setclock); macOS, which lacks that,
 * waits for a relative time instead.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

struct pp__mutex_s {
  pthread_mutex_t m;
};

struct pp__cond_s {
  pthread_cond_t c;
};

int64_t pp__now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int pp__mutex_new(pp__mutex_t **out) {
  pp__mutex_t *m;
  int rc;
  *out = NULL;
  PP__FAULT_RETURN(PP_ENOMEM);
  m = pp__malloc(sizeof(*m));
  if (m == NULL)
    return pp__os_fail(PP_ENOMEM, "cannot allocate a mutex");
  rc = pthread_mutex_init(&m->m, NULL);
  if (rc != 0) {
    free(m);
    return pp__posix_error(pp__posix_status(rc, PP_EIO), rc,
                           "pthread_mutex_init");
  }
  *out = m;
  return 0;
}

void pp__mutex_free(pp__mutex_t *m) {
  if (m == NULL)
    return;
  pthread_mutex_destroy(&m->m);
  free(m);
}

void pp__mutex_lock(pp__mutex_t *m) {
  pthread_mutex_lock(&m->m);
}

int pp__mutex_trylock(pp__mutex_t *m) {
  return pthread_mutex_trylock(&m->m) == 0;
}

void pp__mutex_unlock(pp__mutex_t *m) {
  pthread_mutex_unlock(&m->m);
}

int pp__cond_new(pp__cond_t **out) {
  pp__cond_t *c;
  pthread_condattr_t attr;
  int rc;
  *out = NULL;
  PP__FAULT_RETURN(PP_ENOMEM);
  c = pp__malloc(sizeof(*c));
  if (c == NULL)
    return pp__os_fail(PP_ENOMEM, "cannot allocate a condition variable");
  rc = pthread_condattr_init(&attr);
#if !defined(__APPLE__)
  if (rc == 0)
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
#endif
  if (rc == 0) {
    rc = pthread_cond_init(&c->c, &attr);
    pthread_condattr_destroy(&attr);
  }
  if (rc != 0) {
    free(c);
    return pp__posix_error(pp__posix_status(rc, PP_EIO), rc,
                           "pthread_cond_init");
  }
  *out = c;
  return 0;
}

void pp__cond_free(pp__cond_t *c) {
  if (c == NULL)
    return;
  pthread_cond_destroy(&c->c);
  free(c);
}

void pp__cond_wait(pp__cond_t *c, pp__mutex_t *m) {
  pthread_cond_wait(&c->c, &m->m);
}

int pp__cond_timedwait(pp__cond_t *c, pp__mutex_t *m, int64_t timeout_us) {
  struct timespec ts;
  int rc;
  /* A day at most per wait: callers loop on their own deadline, and the
   * seconds then never overflow time_t arithmetic. */
  if (timeout_us > (int64_t)86400 * 1000000)
    timeout_us = (int64_t)86400 * 1000000;
  if (timeout_us < 0)
    timeout_us = 0;
#if defined(__APPLE__)
  ts.tv_sec = (time_t)(timeout_us / 1000000);
  ts.tv_nsec = (long)(timeout_us % 1000000) * 1000;
  rc = pthread_cond_timedwait_relative_np(&c->c, &m->m, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(timeout_us / 1000000);
  ts.tv_nsec += (long)(timeout_us % 1000000) * 1000;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  rc = pthread_cond_timedwait(&c->c, &m->m, &ts);
#endif
  return rc == ETIMEDOUT ? PP_ETIMEDOUT : 0;
}

void pp__cond_signal(pp__cond_t *c) {
  pthread_cond_signal(&c->c);
}

void pp__cond_broadcast(pp__cond_t *c) {
  pthread_cond_broadcast(&c->c);
}

/* A statically initialized mutex needs no set-up of its own, so it can guard
 * the first call from any number of threads. */
static pthread_mutex_t once_lock = PTHREAD_MUTEX_INITIALIZER;
int pp__once(pp__once_t *once, int (*init)(void)) {
  int status;
  pthread_mutex_lock(&once_lock);
  if (!once->done) {
    status = init();
    once->done = status == 0; /* a failure is tried again next time */
  } else {
    status = 0;
  }
  pthread_mutex_unlock(&once_lock);
  return status;
}
