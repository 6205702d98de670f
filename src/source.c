/*
 * source.c - sources of calls and how their calls finish.
 *
 * A source is what a caller hands a pool: a submitted future (one call) or
 * a map (many).  It waits on the pool's queue (pool->pending) while it has
 * calls to hand out; the I/O thread takes its calls one by one, in order,
 * without a per-call object: a map of a million calls is one source and a
 * counter.  A call that goes back (its worker died before it started) is
 * kept in the source's retry list and handed out again first.
 *
 * Every function here runs with pool->lock held, except pp__src_init.
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"

size_t pp__src_auto_chunk(size_t n, size_t workers) {
  size_t k;
  if (workers < 1)
    workers = 1;
  /* n / (4 * workers), rounded up without n + 4 * workers - 1, which a
   * streaming map's n could wrap. */
  k = n / (4 * workers) + (n % (4 * workers) != 0);
  return k < 1 ? 1 : k;
}

void pp__src_init(pp__src_t *src, pp_pool_t *pool, const pp_task_t *task,
                  const pp_buf_t *args, size_t n, int64_t timeout_ms,
                  size_t chunk, pp__src_done_fn done) {
  memset(src, 0, sizeof(*src));
  src->pool = pool;
  src->task = task->name;
  src->task_len = strlen(task->name);
  src->args = args;
  src->n = n;
  src->timeout_ms = timeout_ms;
  src->chunk = chunk < 1 ? 1 : chunk;
  src->done = done;
  pp__queue_init(&src->link);
}

int pp__pool_hopeless_locked(const pp_pool_t *pool) {
  return pool->fatal != 0 ||
         (pool->nslots > 0 && pool->broken_slots == pool->nslots);
}

int pp__pool_hopeless_why_locked(const pp_pool_t *pool, char **message) {
  if (pool->fatal != 0) {
    *message = pp__strdup_printf("the pool cannot run calls any more: %s",
                                 pool->fatal_why);
    return pool->fatal;
  }
  *message = pp__strdup_printf("no worker of the pool can be started: %s",
                               pool->broken_reason);
  return PP_ESPAWN;
}

void pp__pool_break_locked(pp_pool_t *pool, int status, const char *why) {
  if (pool->fatal != 0)
    return;
  pool->fatal = status;
  pp__format(pool->fatal_why, sizeof(pool->fatal_why), "%s", why);
  /* The I/O thread may sleep on the very object that failed: it looks
   * again within its longest sleep (loop.c), and so does every caller's
   * wait that depends on it. */
  pool->news = 1;
}

void pp__pool_wake_locked(pp_pool_t *pool) {
  /* An engine has no I/O thread: it is told instead. */
  if (pool->engine != NULL) {
    pool->engine->wake(pool);
    return;
  }
  /* The I/O thread says it sleeps (under the lock) before it does, and
   * looks at the queue again after that; a signal sent while it is awake
   * would only cost a system call. */
  if (pool->loop_asleep) {
    pool->loop_asleep = 0;
    if (pp__wake_signal(pool->wake) != 0) {
      char why[512];
      pp__format(why, sizeof(why), "cannot wake its I/O thread: %s",
                 pp__os_reason());
      pp__pool_break_locked(pool, PP_EIO, why);
    }
  }
}

/* Fails calls [from, n) of a source at once: no worker of the pool can
 * start, or the pool broke. */
static void fail_hopeless_locked(pp__src_t *src, size_t from) {
  size_t i;
  for (i = from; i < src->n; i++) {
    char *msg;
    int status = pp__pool_hopeless_why_locked(src->pool, &msg);
    pp__src_finish_locked(src, i, status, NULL, 0, msg, 0, 0);
  }
  src->next = src->n;
}

int pp__src_queue_locked(pp__src_t *src) {
  pp_pool_t *pool = src->pool;
  if (pool->closing)
    return PP_ECLOSED;
  src->first_id = pool->next_id + 1;
  /* A growing source keeps ids for every call it may get, so that no
   * other source's ids fall among them. */
  pool->next_id += src->cap > src->n ? src->cap : src->n;
  pool->stats.calls_submitted += src->n;
  if (src->n == 0)
    return 0;
  if (pp__pool_hopeless_locked(pool)) {
    /* No worker can start (each slot failed again and again): the calls
     * fail now rather than wait for a worker that may never come.  The
     * slots keep trying, and calls queue again once one succeeds. */
    fail_hopeless_locked(src, 0);
    return 0;
  }
  if (pool->inline_mode) {
    /* The caller runs the calls itself (inline.c). */
    src->next = src->n;
    return 0;
  }
  pool->queued += src->n;
  pp__queue_insert_tail(&pool->pending, &src->link);
  return 0;
}

static int finish_unrun_locked(pp__src_t *src, size_t index);

int pp__src_grow_locked(pp__src_t *src, size_t k) {
  pp_pool_t *pool = src->pool;
  size_t i, first = src->n;
  if (pool->closing)
    return PP_ECLOSED;
  if (k > src->cap - src->n)
    return PP_EINVAL;
  src->n += k;
  pool->stats.calls_submitted += k;
  if (src->cancel) {
    /* A stopped map still hands in what it had read: those calls end
     * cancelled, so that every argument gets an outcome. */
    for (i = first; i < src->n; i++)
      finish_unrun_locked(src, i);
    src->next = src->n;
    return 0;
  }
  if (pp__pool_hopeless_locked(pool)) {
    fail_hopeless_locked(src, first);
    return 0;
  }
  if (pool->inline_mode) {
    /* The caller runs them itself (inline.c). */
    src->next = src->n;
    return 0;
  }
  pool->queued += k;
  if (!pp__queue_linked(&src->link))
    pp__queue_insert_tail(&pool->pending, &src->link);
  pp__pool_wake_locked(pool);
  return 0;
}

int pp__src_take_locked(pp__src_t *src, size_t *index) {
  pp_pool_t *pool = src->pool;
  if (src->nretry > 0) {
    *index = src->retry[--src->nretry];
  } else if (src->next < src->n) {
    *index = src->next++;
  } else {
    return 0;
  }
  pool->queued--;
  pool->running++;
  src->inflight++;
  if (src->nretry == 0 && src->next == src->n)
    pp__queue_remove(&src->link);
  return 1;
}

/* Finishes call `index` of a cancelled source that never ran; returns
 * pp__src_finish_locked's word on waking the waiters. */
static int finish_unrun_locked(pp__src_t *src, size_t index) {
  return pp__src_finish_locked(
      src, index, PP_ECANCELED, NULL, 0,
      pp__strdup_printf("call %llu was cancelled before it "
                        "ran",
                        (unsigned long long)(src->first_id + index)),
      0, 0);
}

int pp__src_give_back_locked(pp__src_t *src, size_t index) {
  pp_pool_t *pool = src->pool;
  src->inflight--;
  pool->running--;
  if (src->cancel) {
    if (finish_unrun_locked(src, index))
      pp__cond_broadcast(pool->done_cond); /* as below */
    return 0;
  }
  if (src->nretry == src->capretry) {
    size_t cap = src->capretry ? 2 * src->capretry : 8;
    size_t *r = pp__realloc(src->retry, cap * sizeof(*r));
    if (r == NULL) {
      /* Its waiter is woken here: a caller that gives a call back (a
       * plan that could not record it) does not look for finished ones. */
      if (pp__src_finish_locked(
              src, index, PP_ENOMEM, NULL, 0,
              pp__strdup_printf("out of memory to run call "
                                "%llu again",
                                (unsigned long long)(src->first_id + index)),
              0, 0))
        pp__cond_broadcast(pool->done_cond);
      return PP_ENOMEM;
    }
    src->retry = r;
    src->capretry = cap;
  }
  /* The list is taken from its end, and life.c gives a worker's calls back
   * newest first, so they are handed out again in their order. */
  src->retry[src->nretry++] = index;
  pool->queued++;
  if (!pp__queue_linked(&src->link))
    pp__queue_insert_head(&pool->pending, &src->link);
  pp__pool_wake_locked(pool);
  return 0;
}

int pp__src_finish_locked(pp__src_t *src, size_t index, int status, void *data,
                          size_t len, char *message, int exit_code,
                          int term_signal) {
  pp_result_t r;
  /* PP_EAGAIN means "not finished" to pp_future_status(); no finished call
   * may report it (call.c and the records already map other codes away). */
  if (status == PP_EAGAIN)
    status = PP_ETASK;
  if (status != 0 && message == NULL)
    message = pp__strdup_printf("%s", pp_strerror(status));
  r.status = status;
  r.data = data;
  r.len = len;
  r.message = message;
  r.exit_code = exit_code;
  r.term_signal = term_signal;
  src->finished++;
  src->pool->stats.calls_completed++;
  return src->done(src, index, &r) ||
         (src->pool->queued == 0 && src->pool->running == 0);
}

void pp__src_cancel_locked(pp__src_t *src) {
  pp_pool_t *pool = src->pool;
  size_t i;
  int wake = 0;
  if (src->cancel)
    return;
  src->cancel = 1;
  /* Calls not handed out never run. */
  while (src->nretry > 0) {
    i = src->retry[--src->nretry];
    pool->queued--;
    wake |= finish_unrun_locked(src, i);
  }
  for (i = src->next; i < src->n; i++) {
    pool->queued--;
    wake |= finish_unrun_locked(src, i);
  }
  src->next = src->n;
  pp__queue_remove(&src->link);
  /* Those calls have finished here, not in the I/O thread, which would
   * wake their waiters: a thread waiting on a cancelled future must not
   * sleep on. */
  if (wake)
    pp__cond_broadcast(pool->done_cond);
  /* Calls on workers: the I/O thread sets their cancel words and starts
   * their grace periods. */
  if (src->inflight > 0) {
    pool->news = 1;
    pp__pool_wake_locked(pool);
  }
}
