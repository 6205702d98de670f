/*
 * thread.c (Win32) - the monotonic clock, mutexes, condition variables and
 * one-time set-up.
 *
 * Slim reader/writer locks and condition variables (Windows Vista and later)
 * need no clean-up, cannot fail to initialize, and time their waits as a
 * relative number of milliseconds on the interrupt-time clock, which the
 * wall clock does not move.
 */
#include "internal.h"

#include <stdlib.h>

struct pp__mutex_s {
  SRWLOCK lock;
};

struct pp__cond_s {
  CONDITION_VARIABLE cv;
};

int64_t pp__now_us(void) {
  LARGE_INTEGER freq, now;
  /* The frequency is fixed at boot and cheap to ask for (it is read from a
   * page the kernel shares), so it is not cached in a global. */
  QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  /* Split to keep the multiplication in range for years of uptime. */
  return (int64_t)(now.QuadPart / freq.QuadPart) * 1000000 +
         (int64_t)(now.QuadPart % freq.QuadPart) * 1000000 / freq.QuadPart;
}

int pp__mutex_new(pp__mutex_t **out) {
  pp__mutex_t *m;
  *out = NULL;
  PP__FAULT_RETURN(PP_ENOMEM);
  m = pp__malloc(sizeof(*m));
  if (m == NULL)
    return pp__os_fail(PP_ENOMEM, "cannot allocate a mutex");
  InitializeSRWLock(&m->lock);
  *out = m;
  return 0;
}

void pp__mutex_free(pp__mutex_t *m) {
  free(m);
}

void pp__mutex_lock(pp__mutex_t *m) {
  AcquireSRWLockExclusive(&m->lock);
}

int pp__mutex_trylock(pp__mutex_t *m) {
  return TryAcquireSRWLockExclusive(&m->lock) != 0;
}

void pp__mutex_unlock(pp__mutex_t *m) {
  ReleaseSRWLockExclusive(&m->lock);
}

int pp__cond_new(pp__cond_t **out) {
  pp__cond_t *c;
  *out = NULL;
  PP__FAULT_RETURN(PP_ENOMEM);
  c = pp__malloc(sizeof(*c));
  if (c == NULL)
    return pp__os_fail(PP_ENOMEM, "cannot allocate a condition variable");
  InitializeConditionVariable(&c->cv);
  *out = c;
  return 0;
}

void pp__cond_free(pp__cond_t *c) {
  free(c);
}

void pp__cond_wait(pp__cond_t *c, pp__mutex_t *m) {
  SleepConditionVariableSRW(&c->cv, &m->lock, INFINITE, 0);
}

int pp__cond_timedwait(pp__cond_t *c, pp__mutex_t *m, int64_t timeout_us) {
  DWORD ms;
  /* Rounded up, so a wait never ends before its time; a day at most, as
   * callers loop on their own deadline. */
  if (timeout_us < 0)
    timeout_us = 0;
  if (timeout_us > (int64_t)86400 * 1000000)
    timeout_us = (int64_t)86400 * 1000000;
  ms = (DWORD)((timeout_us + 999) / 1000);
  if (SleepConditionVariableSRW(&c->cv, &m->lock, ms, 0))
    return 0;
  return GetLastError() == ERROR_TIMEOUT ? PP_ETIMEDOUT : 0;
}

void pp__cond_signal(pp__cond_t *c) {
  WakeConditionVariable(&c->cv);
}

void pp__cond_broadcast(pp__cond_t *c) {
  WakeAllConditionVariable(&c->cv);
}

/* A statically initialized SRW lock guards the first call from any number
 * of threads. */
static SRWLOCK once_lock = SRWLOCK_INIT;
int pp__once(pp__once_t *once, int (*init)(void)) {
  int status;
  AcquireSRWLockExclusive(&once_lock);
  if (!once->done) {
    status = init();
    once->done = status == 0; /* a failure is tried again next time */
  } else {
    status = 0;
  }
  ReleaseSRWLockExclusive(&once_lock);
  return status;
}
