/*
 * future.c - one call: submit, wait, take the result, cancel, release.
 *
 * A future is a source of one call (source.c).  It has two references
 * while its call is queued or running: the caller's and the pool's.  The
 * pool drops its own when the call finishes, the caller when it calls
 * pp_future_free(), so either may go first; the last future of a destroyed
 * pool frees the pool.  Every field but the fixed ones is guarded by
 * pool->lock.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct pp_future_s {
  pp__src_t src;      /* its one call */
  pp_buf_t arg;       /* the argument src.args points to */
  void *arg_owned;    /* a copy of it, unless borrowed */
  int refs;
  int done;
  pp_result_t res;
};

/* Drops one reference; pool->lock held.  Frees at zero. */
static void unref_locked(pp_future_t *f) {
  if (--f->refs > 0)
    return;
  f->src.pool->live_futures--;
  free(f->arg_owned);
  pp_free(f->res.data);
  free(f->res.message);
  free(f->src.retry);
  free(f);
}

static int future_done(pp__src_t *src, size_t index, pp_result_t *r) {
  pp_future_t *f = (pp_future_t *)src;
  (void)index;
  f->res = *r;
  f->done = 1;
  unref_locked(f);
  return 1;
}

int pp_pool_submit(pp_pool_t *pool, const char *task, const void *arg,
                   size_t len, const pp_call_options_t *options,
                   pp_future_t **future) {
  const pp_task_t *t;
  pp_future_t *f;
  int64_t timeout;
  int rc, last = 0;

  if (future != NULL)
    *future = NULL;
  if (pool == NULL || task == NULL || future == NULL || (arg == NULL && len))
    return pp__fail(PP_EINVAL, "pp_pool_submit: pool, task and future "
                               "must be set, and arg unless len is 0");
  t = pp__task_find(pool->tasks, task);
  if (t == NULL)
    return pp__fail(PP_ENOTASK, "pp_pool_submit: no task named '%s'", task);
  f = calloc(1, sizeof(*f));
  if (f == NULL)
    return pp__fail(PP_ENOMEM, "cannot allocate a future");
  if (!(options && options->borrow_arg) && len > 0) {
    f->arg_owned = malloc(len);
    if (f->arg_owned == NULL) {
      free(f);
      return pp__fail(PP_ENOMEM, "cannot copy an argument of %zu bytes", len);
    }
    memcpy(f->arg_owned, arg, len);
    arg = f->arg_owned;
  }
  f->arg.data = arg;
  f->arg.len = len;
  f->refs = 2;
  timeout = options && options->timeout_ms ? options->timeout_ms
                                           : pool->call_timeout_ms;
  pp__src_init(&f->src, pool, t, &f->arg, 1, timeout, 1, future_done);

  pp__mutex_lock(pool->lock);
  pool->live_futures++;
  rc = pp__src_queue_locked(&f->src);
  if (rc != 0) {
    /* A destroy that raced with this submit may leave the pool to us. */
    f->refs = 1;
    unref_locked(f);
    last = pp__pool_unused_locked(pool);
  }
  pp__mutex_unlock(pool->lock);
  if (rc != 0) {
    if (last)
      pp__pool_free(pool);
    return pp__fail(rc, "pp_pool_submit: the pool is being destroyed");
  }
  if (pool->inline_mode) {
    pp__inline_run(&f->src, 0);
  } else if (!pp__dispatch_try(pool)) {
    /* The I/O thread was busy, or has more to do than this thread did. */
    pp__mutex_lock(pool->lock);
    pp__pool_wake_locked(pool);
    pp__mutex_unlock(pool->lock);
  }
  *future = f;
  return 0;
}

/* Returns f->done, read under the lock. */
static int is_done(pp_future_t *f) {
  int done;
  pp__mutex_lock(f->src.pool->lock);
  done = f->done;
  pp__mutex_unlock(f->src.pool->lock);
  return done;
}

/* Before it sleeps, a waiter looks for its result itself for a short
 * while (pp__loop_assist): a tiny call's result is there within tens of
 * microseconds, and reading it here saves two thread wake-ups (the I/O
 * thread's and then ours), which cost more than the call.  The spin is
 * bounded in time and gives the CPU away every few turns. */
static void wait_spin(pp_future_t *f, int64_t end) {
  int64_t until = pp__now_us() + PP__WAIT_SPIN_US;
  unsigned turn = 0;
  if (end != PP__NEVER && end < until)
    until = end;
  for (;;) {
    if (pp__loop_assist(f->src.pool) && is_done(f))
      return;
    pp__spin_turn(turn);
    if ((turn & 15) == 0 && (pp__now_us() >= until || is_done(f)))
      return;
  }
}

int pp_future_wait(pp_future_t *f, int64_t timeout_ms) {
  pp_pool_t *pool;
  int64_t end;
  int rc = 0;
  if (f == NULL)
    return pp__fail(PP_EINVAL, "pp_future_wait: future is NULL");
  pool = f->src.pool;
  end = timeout_ms < 0 ? PP__NEVER : pp__deadline_ms(timeout_ms);
  if (timeout_ms != 0 && !pool->inline_mode)
    wait_spin(f, end);
  pp__mutex_lock(pool->lock);
  while (!f->done) {
    if (end == PP__NEVER) {
      pp__cond_wait(pool->done_cond, pool->lock);
      continue;
    }
    if (pp__now_us() >= end) {
      rc = pp__fail(PP_ETIMEDOUT, "call %llu has not finished in %lld ms",
                    (unsigned long long)f->src.first_id, (long long)timeout_ms);
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
    return pp__fail(PP_EINVAL, "pp_future_status: future is NULL");
  pp__mutex_lock(f->src.pool->lock);
  rc = f->done ? f->res.status : PP_EAGAIN;
  pp__mutex_unlock(f->src.pool->lock);
  return rc;
}

/* The position that ends a wait for `mode` over fs[0..n), n + 1 if it
 * must go on, or n when all finished and none failed (the modes that wait
 * for all).  pool->lock held. */
static size_t wait_many_check_locked(pp_future_t *const *fs, size_t n,
                                     pp_wait_mode_t mode) {
  size_t i, first_done = n, first_failed = n, live = 0, done = 0;
  for (i = 0; i < n; i++) {
    if (fs[i] == NULL)
      continue;
    live++;
    if (!fs[i]->done)
      continue;
    done++;
    if (first_done == n)
      first_done = i;
    if (fs[i]->res.status != 0 && first_failed == n)
      first_failed = i;
  }
  if (mode == PP_WAIT_FIRST_COMPLETED)
    return first_done < n ? first_done : n + 1;
  if (mode == PP_WAIT_FIRST_FAILED && first_failed < n)
    return first_failed;
  return done == live ? first_failed : n + 1;
}

int pp_future_wait_many(pp_future_t *const *fs, size_t n, pp_wait_mode_t mode,
                        int64_t timeout_ms, size_t *index) {
  pp_pool_t *pool = NULL;
  int64_t end;
  size_t i, at;
  int rc = 0;
  if (index != NULL)
    *index = n;
  if (fs == NULL ||
      (mode != PP_WAIT_FIRST_COMPLETED && mode != PP_WAIT_FIRST_FAILED &&
       mode != PP_WAIT_ALL_COMPLETED))
    return pp__fail(PP_EINVAL,
                    "pp_future_wait_many: futures is NULL or the "
                    "mode %d is unknown",
                    (int)mode);
  for (i = 0; i < n; i++) {
    if (fs[i] == NULL)
      continue;
    if (pool != NULL && fs[i]->src.pool != pool)
      return pp__fail(PP_EINVAL,
                      "pp_future_wait_many: futures[%zu] is of "
                      "another pool than the ones before it",
                      i);
    pool = fs[i]->src.pool;
  }
  if (pool == NULL)
    return pp__fail(PP_EINVAL, "pp_future_wait_many: no future to wait for");
  end = timeout_ms < 0 ? PP__NEVER : pp__deadline_ms(timeout_ms);
  pp__mutex_lock(pool->lock);
  /* Every finished call of the pool wakes done_cond's waiters. */
  while ((at = wait_many_check_locked(fs, n, mode)) == n + 1) {
    if (end == PP__NEVER) {
      pp__cond_wait(pool->done_cond, pool->lock);
      continue;
    }
    if (pp__now_us() >= end) {
      rc = pp__fail(PP_ETIMEDOUT, "pp_future_wait_many: not done in %lld ms",
                    (long long)timeout_ms);
      break;
    }
    pp__cond_timedwait(pool->done_cond, pool->lock, pp__us_left(end));
  }
  pp__mutex_unlock(pool->lock);
  if (rc == 0 && index != NULL)
    *index = at;
  return rc;
}

int pp_future_state(pp_future_t *f) {
  pp_pool_t *pool;
  int state;
  if (f == NULL)
    return pp__fail(PP_EINVAL, "pp_future_state: future is NULL");
  pool = f->src.pool;
  /* io_lock first (internal.h): with it held, every call a worker holds
   * has its record written, and the records stay where they are. */
  pp__mutex_lock(pool->io_lock);
  pp__mutex_lock(pool->lock);
  if (f->done)
    state = PP_FUTURE_DONE;
  else if (f->src.inflight == 0)
    state = PP_FUTURE_QUEUED;
  else
    state = pp__dispatch_started_locked(pool, f->src.first_id)
                ? PP_FUTURE_RUNNING
                : PP_FUTURE_QUEUED;
  pp__mutex_unlock(pool->lock);
  pp__mutex_unlock(pool->io_lock);
  return state;
}

int pp_future_take(pp_future_t *f, pp_result_t *result) {
  int rc = 0;
  if (f == NULL || result == NULL)
    return pp__fail(PP_EINVAL, "pp_future_take: NULL argument");
  pp__mutex_lock(f->src.pool->lock);
  if (!f->done) {
    rc = pp__fail(PP_EAGAIN, "call %llu has not finished",
                  (unsigned long long)f->src.first_id);
  } else {
    *result = f->res;
    f->res.data = NULL;
    f->res.len = 0;
    f->res.message = NULL;
  }
  pp__mutex_unlock(f->src.pool->lock);
  return rc;
}

int pp_future_cancel(pp_future_t *f) {
  if (f == NULL)
    return pp__fail(PP_EINVAL, "pp_future_cancel: future is NULL");
  pp__mutex_lock(f->src.pool->lock);
  if (!f->done)
    pp__src_cancel_locked(&f->src);
  pp__mutex_unlock(f->src.pool->lock);
  return 0;
}

void pp_future_free(pp_future_t *f) {
  pp_pool_t *pool;
  int last;
  if (f == NULL)
    return;
  pool = f->src.pool;
  pp__mutex_lock(pool->lock);
  if (!f->done)
    pp__src_cancel_locked(&f->src);
  unref_locked(f);
  /* The last future of a destroyed pool frees what the pool left for it. */
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
}
