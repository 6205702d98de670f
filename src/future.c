/*
 * future.c - one call: submit, wait, take the result, cancel, release.
 *
 * A future is a source of one call (source.c).  It has two references
 * while its call is queued or running: the caller's and the pool's.  The
 * pool drops its own when the call finishes, the caller when it calls
 * pp_future_free(), so either may go first; the last future of a destroyed
 * pool frees the pool.  Every field but the fixed ones is guarded by
 * pool->lock.
 *
 * Watchers: a future keeps a list of internal {fn, data} that future_done
 * calls once, under pool->lock, in whatever thread finishes the call (the
 * I/O thread, a waiting caller's assist, a cancel, a destroy, an inline
 * call).  A watcher therefore must be quick and may take no lock but its
 * own, which nothing else may hold while it takes pool->lock.  Two kinds:
 *   - a completion callback (pp_future_on_done) takes a reference on the
 *     future and posts a job to the pool's callback thread (callback.c),
 *     which runs the user's function with no lock held, then drops it;
 *   - a wait over futures of several pools (pp_future_wait_many) signals
 *     the waiter's own mutex and condition, and a completion queue's
 *     watcher moves its future to the queue's ready list (wait.c).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A completion callback: a watcher, then a job of the callback thread. */
typedef struct user_cb_s {
  pp__watch_t w;
  pp__cbjob_t job;
  pp_future_cb cb;
  void *data;
  pp_future_t *f;
} user_cb_t;

/* Drops one reference; pool->lock held.  Frees at zero. */
void pp__future_unref_locked(pp_future_t *f) {
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
  pp__queue_t *q;
  (void)index;
  f->res = *r;
  f->done = 1;
  /* Before the pool's reference goes: a callback takes one of its own. */
  while (!pp__queue_empty(&f->watchers)) {
    q = pp__queue_head(&f->watchers);
    pp__queue_remove(q);
    pp__queue_data(q, pp__watch_t, link)
        ->fn(pp__queue_data(q, pp__watch_t, link), f);
  }
  pp__future_unref_locked(f);
  return 1;
}

/* ---- completion callbacks ---- */

/* The callback thread runs it, no lock held; it owns the reference the
 * watcher took. */
static void user_cb_run(pp__cbjob_t *job) {
  user_cb_t *u = pp__queue_data(job, user_cb_t, job);
  pp_future_t *f = u->f;
  pp_pool_t *pool = f->src.pool;
  u->cb(u->data, f);
  free(u);
  /* The pool outlives this: pp_pool_destroy marks it destroyed only after
   * this thread has stopped, so the last reference cannot free it here. */
  pp__mutex_lock(pool->lock);
  pp__future_unref_locked(f);
  pp__mutex_unlock(pool->lock);
}

/* The call finished (pool->lock held, any thread): hand it over. */
static void user_cb_fire(pp__watch_t *w, pp_future_t *f) {
  user_cb_t *u = (user_cb_t *)w;
  f->refs++;
  pp__cb_post_locked(f->src.pool, &u->job);
}

static user_cb_t *user_cb_new(pp_future_cb cb, void *data) {
  user_cb_t *u = pp__calloc(1, sizeof(*u));
  if (u == NULL)
    return NULL;
  pp__queue_init(&u->w.link);
  u->w.fn = user_cb_fire;
  u->job.run = user_cb_run;
  u->cb = cb;
  u->data = data;
  return u;
}

/* Adds `u` to an unfinished future, starting the callback thread first;
 * pool->lock held.  Returns 0 or a status with the reason in *err. */
static int user_cb_add_locked(pp_future_t *f, user_cb_t *u, pp__err_t *err) {
  int rc = pp__cb_start_locked(f->src.pool, err);
  if (rc != 0)
    return rc;
  u->f = f;
  pp__queue_insert_tail(&f->watchers, &u->w.link);
  return 0;
}

int pp_future_on_done(pp_future_t *f, pp_future_cb cb, void *data) {
  pp_pool_t *pool;
  user_cb_t *u;
  pp__err_t err;
  int rc = 0, done;
  if (f == NULL || cb == NULL)
    return pp__fail(PP_EINVAL, "pp_future_on_done: future and callback "
                               "must be set");
  if (pp__pool_forked(f->src.pool, "pp_future_on_done") != 0)
    return PP_ECLOSED;
  pool = f->src.pool;
  u = user_cb_new(cb, data);
  if (u == NULL)
    return pp__fail(PP_ENOMEM, "pp_future_on_done: out of memory");
  pp__mutex_lock(pool->lock);
  done = f->done;
  if (!done)
    rc = user_cb_add_locked(f, u, &err);
  pp__mutex_unlock(pool->lock);
  if (done) {
    /* Finished already: at once, in this thread, as Python does.  The
     * caller's reference keeps the future alive. */
    free(u);
    cb(data, f);
    return 0;
  }
  if (rc != 0) {
    free(u);
    return pp__err_raise(&err);
  }
  return 0;
}

int pp_pool_submit(pp_pool_t *pool, const char *task, const void *arg,
                   size_t len, const pp_call_options_t *options,
                   pp_future_t **future) {
  const pp_task_t *t;
  pp_future_t *f;
  user_cb_t *u = NULL;
  pp__err_t err;
  int64_t timeout;
  int rc = 0, last = 0;

  if (future != NULL)
    *future = NULL;
  if (pool == NULL || task == NULL || future == NULL || (arg == NULL && len))
    return pp__fail(PP_EINVAL, "pp_pool_submit: pool, task and future "
                               "must be set, and arg unless len is 0");
  if (pp__pool_forked(pool, "pp_pool_submit") != 0)
    return PP_ECLOSED;
  t = pp__task_find(pool->tasks, task);
  if (t == NULL)
    return pp__fail(PP_ENOTASK, "pp_pool_submit: no task named '%s'", task);
  if (options && options->on_done) {
    u = user_cb_new(options->on_done, options->on_done_data);
    if (u == NULL)
      return pp__fail(PP_ENOMEM, "cannot allocate a completion callback");
  }
  f = pp__calloc(1, sizeof(*f));
  if (f == NULL) {
    free(u);
    return pp__fail(PP_ENOMEM, "cannot allocate a future");
  }
  pp__queue_init(&f->watchers);
  pp__queue_init(&f->cq_link);
  pp__queue_init(&f->cq_watch.link);
  if (!(options && options->borrow_arg) && len > 0) {
    f->arg_owned = pp__malloc(len);
    if (f->arg_owned == NULL) {
      free(f);
      free(u);
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
  /* The callback goes on before the call can finish (a hopeless pool
   * finishes it inside pp__src_queue_locked). */
  if (pool->closing)
    rc = pp__err_set(&err, PP_ECLOSED,
                     "pp_pool_submit: the pool is being destroyed");
  else if (u != NULL)
    rc = user_cb_add_locked(f, u, &err);
  if (rc == 0 && pp__src_queue_locked(&f->src) != 0)
    rc = pp__err_set(&err, PP_ECLOSED,
                     "pp_pool_submit: the pool is being destroyed");
  if (rc != 0) {
    /* A destroy that raced with this submit may leave the pool to us. */
    if (u != NULL && pp__queue_linked(&u->w.link))
      pp__queue_remove(&u->w.link);
    f->refs = 1;
    pp__future_unref_locked(f);
    last = pp__pool_unused_locked(pool);
  }
  pp__mutex_unlock(pool->lock);
  if (rc != 0) {
    free(u);
    if (last)
      pp__pool_free(pool);
    return pp__err_raise(&err);
  }
  if (pool->inline_mode) {
    pp__inline_run(&f->src, 0);
  } else if (pool->engine != NULL || !pp__dispatch_try(pool)) {
    /* An engine hands out its calls itself; a local pool's I/O thread was
     * busy, or has more to do than this thread did. */
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
  if (pp__pool_forked(f->src.pool, "pp_future_wait") != 0)
    return PP_ECLOSED;
  pool = f->src.pool;
  end = timeout_ms < 0 ? PP__NEVER : pp__deadline_ms(timeout_ms);
  /* An engine's calls have no results here to collect. */
  if (timeout_ms != 0 && !pool->inline_mode && pool->engine == NULL)
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
  if (pp__pool_forked(f->src.pool, "pp_future_status") != 0)
    return PP_ECLOSED;
  pp__mutex_lock(f->src.pool->lock);
  rc = f->done ? f->res.status : PP_EAGAIN;
  pp__mutex_unlock(f->src.pool->lock);
  return rc;
}

int pp_future_state(pp_future_t *f) {
  pp_pool_t *pool;
  int state;
  if (f == NULL)
    return pp__fail(PP_EINVAL, "pp_future_state: future is NULL");
  pool = f->src.pool;
  if (pp__pool_forked(pool, "pp_future_state") != 0)
    return PP_ECLOSED;
  if (pool->engine != NULL) {
    /* An engine's call runs (or waits on its rank) from the moment it was
     * handed out: nothing here can tell which. */
    pp__mutex_lock(pool->lock);
    state = f->done               ? PP_FUTURE_DONE
            : f->src.inflight > 0 ? PP_FUTURE_RUNNING
                                  : PP_FUTURE_QUEUED;
    pp__mutex_unlock(pool->lock);
    return state;
  }
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
  if (pp__pool_forked(f->src.pool, "pp_future_take") != 0)
    return PP_ECLOSED;
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
  if (pp__pool_forked(f->src.pool, "pp_future_cancel") != 0)
    return PP_ECLOSED;
  pp__mutex_lock(f->src.pool->lock);
  if (!f->done)
    pp__src_cancel_locked(&f->src);
  pp__mutex_unlock(f->src.pool->lock);
  return 0;
}

/* The program frees a future that is in a completion queue (pool->lock
 * held): it leaves the queue now, and the queue's reference goes with it;
 * unless the queue has just taken it off its lists to hand it out or to
 * let it go (wait.c), which then drops it itself, seeing cq_freed. */
static void cq_forget_locked(pp_future_t *f) {
  pp_cq_t *cq = f->cq;
  int listed;
  pp__mutex_lock(cq->lock);
  listed = pp__queue_linked(&f->cq_link);
  if (listed) {
    /* Under pool->lock a finished future is on the ready list (its
     * watcher moved it there when it finished). */
    if (f->done)
      PP__STORE_REL32(&cq->nready, cq->nready - 1);
    pp__queue_remove(&f->cq_link);
    /* Its last future gone, threads waiting on the queue return. */
    if (--cq->n == 0)
      pp__cond_broadcast(cq->cond);
  }
  pp__mutex_unlock(cq->lock);
  if (!listed) {
    f->cq_freed = 1;
    return;
  }
  if (pp__queue_linked(&f->cq_watch.link))
    pp__queue_remove(&f->cq_watch.link);
  f->cq = NULL;
  /* The program's own reference is still there: this is not the last. */
  f->refs--;
}

void pp_future_free(pp_future_t *f) {
  pp_pool_t *pool;
  int last;
  /* In a forked child the future is a copy, left as it is. */
  if (f == NULL || pp__pool_forked(f->src.pool, "pp_future_free") != 0)
    return;
  pool = f->src.pool;
  pp__mutex_lock(pool->lock);
  if (f->cq != NULL)
    cq_forget_locked(f);
  if (!f->done)
    pp__src_cancel_locked(&f->src);
  pp__future_unref_locked(f);
  /* The last future of a destroyed pool frees what the pool left for it. */
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
}
