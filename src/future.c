/*
 * future.c - one call: submit, wait, take the result, cancel, release.
 *
 * A future has two references while it is queued or running: the caller's
 * and the pool's.  The pool drops its own when the call finishes
 * (pp__future_finish), the caller when it calls pp_future_free(), so either
 * may go first.  Everything here runs under pool->lock.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int pp__future_new(pp_pool_t *pool, const char *task, const void *arg,
                   size_t len, int64_t timeout_ms, int copy, pp_future_t **out) {
  pp_future_t *f = calloc(1, sizeof(*f));
  if (f == NULL)
    return pp__set_error(PP_ENOMEM, "cannot allocate a future");
  if (copy && len > 0) {
    f->arg_owned = malloc(len);
    if (f->arg_owned == NULL) {
      free(f);
      return pp__set_error(PP_ENOMEM, "cannot copy an argument of %zu bytes",
                           len);
    }
    memcpy(f->arg_owned, arg, len);
    arg = f->arg_owned;
  }
  f->pool = pool;
  f->task = task;
  f->arg = arg;
  f->arg_len = len;
  f->timeout_ms = timeout_ms;
  f->chunk = 1;
  f->refs = 2;
  f->deadline = PP__NEVER;
  f->cancel_deadline = PP__NEVER;
  pp__mutex_lock(pool->lock);
  pool->live_futures++;
  pp__mutex_unlock(pool->lock);
  *out = f;
  return 0;
}

void pp__future_unref(pp_future_t *f) {
  if (--f->refs > 0)
    return;
  f->pool->live_futures--;
  free(f->arg_owned);
  free(f->res.data);
  free(f->res.message);
  free(f);
}

void pp__future_finish(pp_future_t *f, int status, void *data, size_t len,
                       char *message, int exit_code, int term_signal) {
  pp_pool_t *pool = f->pool;
  /* PP_EAGAIN means "not finished" to pp_future_status(); no finished call
   * may report it (call.c and the wire already map other codes away). */
  if (status == PP_EAGAIN)
    status = PP_ETASK;
  if (status != 0 && message == NULL)
    message = pp__strdup_printf("%s", pp_strerror(status));
  f->state = PP__DONE;
  f->res.status = status;
  f->res.data = data;
  f->res.len = len;
  f->res.message = message;
  f->res.exit_code = exit_code;
  f->res.term_signal = term_signal;
  pool->stats.calls_completed++;
  if (f->group != NULL) {
    f->qnext = NULL;
    if (f->group->done_tail)
      f->group->done_tail->qnext = f;
    else
      f->group->done_head = f;
    f->group->done_tail = f;
  }
  /* The slot thread's hot path wakes the waiters after it has let go of the
   * lock, so that they do not wake only to block on it. */
  if (pool->defer_wakeup)
    pool->wakeup_pending = 1;
  else
    pp__cond_broadcast(pool->done_cond);
  pp__future_unref(f);
}

int pp__future_enqueue(pp_future_t *f) {
  pp_pool_t *pool = f->pool;
  pp__mutex_lock(pool->lock);
  if (pool->closing) {
    pp__mutex_unlock(pool->lock);
    return pp__set_error(PP_ECLOSED, "the pool is being destroyed");
  }
  f->id = ++pool->next_id;
  pool->stats.calls_submitted++;
  if (pool->inline_mode) {
    pp__mutex_unlock(pool->lock);
    pp__inline_run(f);
    return 0;
  }
  if (pp__pool_hopeless_locked(pool)) {
    /* No worker can start (each slot failed again and again): the call
     * fails now rather than wait for a worker that may never come.  The
     * slots keep trying, and calls queue again once one succeeds. */
    pp__future_finish(f, PP_ESPAWN, NULL, 0,
                      pp__strdup_printf("no worker of the pool can be "
                                        "started: %s", pool->broken_reason),
                      0, 0);
    pp__mutex_unlock(pool->lock);
    return 0;
  }
  f->qnext = NULL;
  f->qprev = pool->q_tail;
  if (pool->q_tail)
    pool->q_tail->qnext = f;
  else
    pool->q_head = f;
  pool->q_tail = f;
  pp__cond_signal(pool->work_cond);
  pp__mutex_unlock(pool->lock);
  return 0;
}

void pp__future_cancel_locked(pp_future_t *f) {
  pp_pool_t *pool = f->pool;
  if (f->state == PP__DONE || f->cancel)
    return;
  f->cancel = 1;
  if (f->state == PP__QUEUED) {
    if (f->qprev)
      f->qprev->qnext = f->qnext;
    else
      pool->q_head = f->qnext;
    if (f->qnext)
      f->qnext->qprev = f->qprev;
    else
      pool->q_tail = f->qprev;
    f->qnext = f->qprev = NULL;
    pp__future_finish(f, PP_ECANCELED, NULL, 0,
                      pp__strdup_printf("call %llu of '%s' was cancelled "
                                        "before it ran",
                                        (unsigned long long)f->id, f->task),
                      0, 0);
    return;
  }
  /* Running: the watch thread tells the worker, and kills it when the grace
   * period is over. */
  f->cancel_deadline = pp__deadline_ms(pool->grace_ms);
  pp__watch_poke(pool);
}

int pp_pool_submit(pp_pool_t *pool, const char *task, const void *arg,
                   size_t len, const pp_call_options_t *options,
                   pp_future_t **future) {
  const pp_task_t *t;
  pp_future_t *f = NULL;
  int64_t timeout;
  int rc;

  if (future != NULL)
    *future = NULL;
  if (pool == NULL || task == NULL || future == NULL || (arg == NULL && len))
    return pp__set_error(PP_EINVAL, "pp_pool_submit: pool, task and future "
                         "must be set, and arg unless len is 0");
  t = pp__task_find(pool->tasks, task);
  if (t == NULL)
    return pp__set_error(PP_ENOTASK, "pp_pool_submit: no task named '%s'",
                         task);
  timeout = options && options->timeout_ms ? options->timeout_ms
                                           : pool->call_timeout_ms;
  rc = pp__future_new(pool, t->name, arg, len, timeout,
                      !(options && options->borrow_arg), &f);
  if (rc)
    return rc;
  rc = pp__future_enqueue(f);
  if (rc) {
    int last;
    pp__mutex_lock(pool->lock);
    f->refs = 1;
    pp__future_unref(f);
    /* A destroy that raced with this submit left the pool to us. */
    last = pp__pool_unused_locked(pool);
    pp__mutex_unlock(pool->lock);
    if (last)
      pp__pool_free(pool);
    return rc;
  }
  *future = f;
  return 0;
}

int pp_future_wait(pp_future_t *f, int64_t timeout_ms) {
  pp_pool_t *pool;
  int64_t end;
  int rc = 0;
  if (f == NULL)
    return pp__set_error(PP_EINVAL, "pp_future_wait: future is NULL");
  pool = f->pool;
  end = timeout_ms < 0 ? PP__NEVER : pp__deadline_ms(timeout_ms);
  pp__mutex_lock(pool->lock);
  while (f->state != PP__DONE) {
    if (end == PP__NEVER) {
      pp__cond_wait(pool->done_cond, pool->lock);
      continue;
    }
    if (pp__now_us() >= end) {
      rc = pp__set_error(PP_ETIMEDOUT, "call %llu has not finished in %lld ms",
                         (unsigned long long)f->id, (long long)timeout_ms);
      break;
    }
    pp__cond_timedwait(pool->done_cond, pool->lock, pp__us_left(end));
  }
  pp__mutex_unlock(pool->lock);
  return rc;
}

int pp_future_status(pp_future_t *f) {
  int rc;
  if (f == NULL)
    return pp__set_error(PP_EINVAL, "pp_future_status: future is NULL");
  pp__mutex_lock(f->pool->lock);
  rc = f->state == PP__DONE ? f->res.status : PP_EAGAIN;
  pp__mutex_unlock(f->pool->lock);
  return rc;
}

int pp_future_take(pp_future_t *f, pp_result_t *result) {
  int rc = 0;
  if (f == NULL || result == NULL)
    return pp__set_error(PP_EINVAL, "pp_future_take: NULL argument");
  pp__mutex_lock(f->pool->lock);
  if (f->state != PP__DONE) {
    rc = pp__set_error(PP_EAGAIN, "call %llu has not finished",
                       (unsigned long long)f->id);
  } else {
    *result = f->res;
    f->res.data = NULL;
    f->res.len = 0;
    f->res.message = NULL;
  }
  pp__mutex_unlock(f->pool->lock);
  return rc;
}

int pp_future_cancel(pp_future_t *f) {
  if (f == NULL)
    return pp__set_error(PP_EINVAL, "pp_future_cancel: future is NULL");
  pp__mutex_lock(f->pool->lock);
  pp__future_cancel_locked(f);
  pp__mutex_unlock(f->pool->lock);
  return 0;
}

void pp_future_free(pp_future_t *f) {
  pp_pool_t *pool;
  int last;
  if (f == NULL)
    return;
  pool = f->pool;
  pp__mutex_lock(pool->lock);
  pp__future_cancel_locked(f);
  pp__future_unref(f);
  /* The last future of a destroyed pool frees what the pool left for it. */
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
}
