/*
 * waiter.c (Win32) - wake objects, and the parent's poller over many
 * workers.
 *
 * A wake object is an auto-reset event: SetEvent signals it, and the one
 * wait it satisfies consumes the signal, so several signals before a wait
 * wake it once, as the contract asks.  An auto-reset event releases one
 * waiting thread, while the contract asks that a signal wake every thread
 * that sleeps on the object (a worker's main thread waiting for calls and
 * a thread waiting for room in its result ring), so only one thread at a
 * time waits on the event itself, the watcher; the others sleep on a
 * condition variable.  The watcher counts each signal it takes and wakes
 * them all; a sleeper returns once the count has moved past its ticket,
 * whichever thread took the signal, and one of them becomes the watcher
 * when the watcher leaves.  A manual-reset event would release them all,
 * but someone would have to reset it, and a reset could swallow the
 * signal meant for a thread that had taken its ticket and not yet begun
 * to wait; the parent's poller, too, needs an event that resets itself.
 *
 * The poller has to watch the pool's wake object and the process of every
 * worker, and a pool may have hundreds of workers, where
 * WaitForMultipleObjects stops at 64 handles.  Each source is therefore
 * handed to the system thread pool with RegisterWaitForSingleObject, whose
 * wait threads watch up to 63 handles each; a callback marks its source
 * ready and wakes the I/O thread through a condition variable.  Waiter
 * threads of our own would do the same with more code, and an I/O
 * completion port would add nothing: a callback has one flag to set.  A
 * process is registered once (WT_EXECUTEONLYONCE: its handle stays
 * signalled, and a repeating wait would fire without end) and stays ready
 * until it is removed; the wake object is registered for good, and each
 * signal is reported once.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct pp__wake_s {
  HANDLE event;
  /* The worker side's sleepers (pp__wake_wait): `lock` guards the rest. */
  SRWLOCK lock;
  CONDITION_VARIABLE taken; /* a signal was counted, or the watcher left */
  uint64_t signals;         /* signals taken from the event so far */
  int watching;             /* a thread waits on the event itself */
};

static int wake_wrap(HANDLE event, pp__wake_t **out) {
  pp__wake_t *w = pp__calloc(1, sizeof(*w));
  *out = NULL;
  if (w == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a wake object");
  w->event = event;
  InitializeSRWLock(&w->lock);
  InitializeConditionVariable(&w->taken);
  *out = w;
  return 0;
}

int pp__wake_new(pp__wake_t **out) {
  HANDLE event;
  char why[160];
  int status;

  *out = NULL;
  PP__FAULT_RETURN(PP_ESPAWN);
  /* Not inheritable: a worker gets its copy by DuplicateHandle. */
  event = CreateEventW(NULL, FALSE, FALSE, NULL);
  if (event == NULL)
    return pp__os_fail(pp__win_status(GetLastError(), PP_EIO),
                       "CreateEventW: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  status = wake_wrap(event, out);
  if (status != 0)
    CloseHandle(event);
  return status;
}

int pp__win_wake_wrap(HANDLE event, pp__wake_t **out) {
  return wake_wrap(event, out);
}

HANDLE pp__win_wake_handle(const pp__wake_t *w) {
  return w->event;
}

void pp__wake_free(pp__wake_t *w) {
  if (w == NULL)
    return;
  CloseHandle(w->event);
  free(w);
}

int pp__wake_signal(pp__wake_t *w) {
  char why[160];
  if (!SetEvent(w->event))
    return pp__os_fail(PP_EIO, "SetEvent: %s",
                       pp__win_strerror(GetLastError(), why, sizeof(why)));
  return 0;
}

void pp__wake_clear(pp__wake_t *w) {
  ResetEvent(w->event);
}

uint64_t pp__wake_ticket(pp__wake_t *w) {
  uint64_t ticket;
  AcquireSRWLockShared(&w->lock);
  ticket = w->signals;
  ReleaseSRWLockShared(&w->lock);
  return ticket;
}

/* Waits on the event itself, without the lock.  Returns 1 when it was
 * signalled, 0 at the timeout, or a status with its sentence. */
static int watch(pp__wake_t *w, pp__chan_t *alive, DWORD ms) {
  HANDLE objects[2];
  DWORD count = 1, wait;
  char why[160];

  objects[0] = w->event;
  /* The parent's process, to which a worker's channel is bound: its end is
   * the parent's, and the wait ends with it at once. */
  if (alive != NULL && pp__win_chan_process(alive) != NULL)
    objects[count++] = pp__win_chan_process(alive);
  wait = WaitForMultipleObjects(count, objects, FALSE, ms);
  if (wait == WAIT_OBJECT_0)
    return 1;
  if (wait == WAIT_OBJECT_0 + 1)
    return pp__os_fail(PP_ECLOSED, "the parent has ended");
  if (wait == WAIT_TIMEOUT)
    return 0;
  /* WAIT_FAILED: a handle closed behind our back (or one we may not wait
   * on).  Waiting again would fail again at once, so it is no timeout. */
  return pp__os_fail(PP_EIO, "waiting for a wake-up: %s",
                     pp__win_strerror(GetLastError(), why, sizeof(why)));
}

int pp__wake_wait(pp__wake_t *w, uint64_t ticket, pp__chan_t *alive,
                  int64_t timeout_ms) {
  int64_t deadline_us = timeout_ms < 0 ? -1 : pp__now_us() + timeout_ms * 1000;
  int looked = 0, rc;

  AcquireSRWLockExclusive(&w->lock);
  for (;;) {
    int64_t now_us = pp__now_us();
    /* Negative: no limit; 0 once the deadline has passed. */
    int64_t left_us = deadline_us < 0        ? -1
                      : deadline_us > now_us ? deadline_us - now_us
                                             : 0;
    DWORD ms;
    if (w->signals != ticket) {
      rc = 1;
      break;
    }
    /* A wait without time still looks once, unless another thread does. */
    if (deadline_us >= 0 && left_us <= 0 && (looked || w->watching)) {
      rc = 0;
      break;
    }
    ms = left_us < 0                    ? INFINITE
         : left_us / 1000 >= 0x7FFFFFFF ? 0x7FFFFFFF
                                        : (DWORD)((left_us + 999) / 1000);
    if (w->watching) {
      SleepConditionVariableSRW(&w->taken, &w->lock, ms, 0);
      continue;
    }
    w->watching = 1;
    ReleaseSRWLockExclusive(&w->lock);
    rc = watch(w, alive, ms);
    AcquireSRWLockExclusive(&w->lock);
    w->watching = 0;
    looked = 1;
    if (rc == 1)
      w->signals++;
    /* Every sleeper looks at the count, and one of them watches next. */
    WakeAllConditionVariable(&w->taken);
    if (rc < 0)
      break;
  }
  ReleaseSRWLockExclusive(&w->lock);
  return rc;
}

/* ---- the poller ---------------------------------------------------------- */

typedef struct source_s {
  struct source_s *next;
  pp__poller_t *poller;
  HANDLE object;   /* the event or process handle (not owned) */
  HANDLE wait;     /* the registered wait, NULL once unregistered */
  int is_proc;
  volatile int ready; /* set by the callback, under the lock */
  void *tag;
} source_t;

struct pp__poller_s {
  SRWLOCK lock;
  CONDITION_VARIABLE changed;
  source_t *sources; /* each one a heap object: callbacks point at it */
};

/* Runs on a thread-pool wait thread when a source is signalled. */
static VOID CALLBACK on_signal(PVOID arg, BOOLEAN timed_out) {
  source_t *src = arg;
  pp__poller_t *p = src->poller;
  (void)timed_out;
  AcquireSRWLockExclusive(&p->lock);
  src->ready = 1;
  ReleaseSRWLockExclusive(&p->lock);
  WakeAllConditionVariable(&p->changed);
}

int pp__poller_new(pp__poller_t **out) {
  pp__poller_t *p;
  *out = NULL;
  PP__FAULT_RETURN(PP_ESPAWN);
  p = pp__calloc(1, sizeof(*p));
  if (p == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a poller");
  InitializeSRWLock(&p->lock);
  InitializeConditionVariable(&p->changed);
  *out = p;
  return 0;
}

/* Stops a source's wait and waits for a callback that is running: after
 * this the callback will not touch `src` again.  Called without the lock,
 * which the callback takes. */
static void unregister(source_t *src) {
  if (src->wait != NULL)
    UnregisterWaitEx(src->wait, INVALID_HANDLE_VALUE);
  src->wait = NULL;
}

void pp__poller_free(pp__poller_t *p) {
  source_t *src, *next;
  if (p == NULL)
    return;
  for (src = p->sources; src != NULL; src = next) {
    next = src->next;
    unregister(src);
    free(src);
  }
  free(p);
}

static int add(pp__poller_t *p, HANDLE object, int is_proc, void *tag) {
  source_t *src = pp__calloc(1, sizeof(*src));
  char why[160];
  if (src == NULL)
    return pp__os_fail(PP_ENOMEM, "out of memory for a poller");
  src->poller = p;
  src->object = object;
  src->is_proc = is_proc;
  src->tag = tag;
  /* Linked in first: the callback may run before the call returns. */
  AcquireSRWLockExclusive(&p->lock);
  src->next = p->sources;
  p->sources = src;
  ReleaseSRWLockExclusive(&p->lock);
  if (!RegisterWaitForSingleObject(
          &src->wait, object, on_signal, src, INFINITE,
          WT_EXECUTEINWAITTHREAD |
              (is_proc ? WT_EXECUTEONLYONCE : 0))) {
    int status =
        pp__os_fail(pp__win_status(GetLastError(), PP_EIO),
                    "RegisterWaitForSingleObject: %s",
                    pp__win_strerror(GetLastError(), why, sizeof(why)));
    src->wait = NULL;
    AcquireSRWLockExclusive(&p->lock);
    {
      source_t **link = &p->sources;
      while (*link != src)
        link = &(*link)->next;
      *link = src->next;
    }
    ReleaseSRWLockExclusive(&p->lock);
    free(src);
    return status;
  }
  return 0;
}

int pp__poller_add_wake(pp__poller_t *p, pp__wake_t *w, void *tag) {
  PP__FAULT_RETURN(PP_ENOMEM);
  return add(p, w->event, 0, tag);
}

int pp__poller_add_proc(pp__poller_t *p, pp__proc_t *proc, void *tag) {
  PP__FAULT_RETURN(PP_ENOMEM);
  return add(p, pp__win_proc_handle(proc), 1, tag);
}

static void remove_object(pp__poller_t *p, HANDLE object, int is_proc) {
  source_t **link, *src = NULL;
  AcquireSRWLockExclusive(&p->lock);
  for (link = &p->sources; *link != NULL; link = &(*link)->next)
    if ((*link)->object == object && (*link)->is_proc == is_proc) {
      src = *link;
      *link = src->next;
      break;
    }
  ReleaseSRWLockExclusive(&p->lock);
  if (src != NULL) {
    unregister(src);
    free(src);
  }
}

void pp__poller_remove_proc(pp__poller_t *p, pp__proc_t *proc) {
  if (proc != NULL)
    remove_object(p, pp__win_proc_handle(proc), 1);
}

/* Collects the tags of ready sources; the lock is held.  A wake object's
 * signal is reported once; an ended process until it is removed. */
static int collect(pp__poller_t *p, void **tags, int max) {
  source_t *src;
  int got = 0;
  for (src = p->sources; src != NULL && got < max; src = src->next)
    if (src->ready) {
      tags[got++] = src->tag;
      if (!src->is_proc)
        src->ready = 0;
    }
  return got;
}

int pp__poller_wait(pp__poller_t *p, int64_t timeout_us, void **tags,
                    int max) {
  int64_t deadline = timeout_us < 0 ? -1 : pp__now_us() + timeout_us;
  int got;
  AcquireSRWLockExclusive(&p->lock);
  for (;;) {
    int64_t left_us;
    DWORD ms;
    got = collect(p, tags, max);
    if (got > 0 || timeout_us == 0)
      break;
    left_us = deadline < 0 ? -1 : deadline - pp__now_us();
    if (deadline >= 0 && left_us <= 0)
      break;
    ms = left_us < 0 ? INFINITE
         : left_us / 1000 >= 0x7FFFFFFF
             ? 0x7FFFFFFF
             : (DWORD)((left_us + 999) / 1000);
    SleepConditionVariableSRW(&p->changed, &p->lock, ms, 0);
  }
  ReleaseSRWLockExclusive(&p->lock);
  return got;
}
