/*
 * callback.c - the pool's callback thread: runs completion callbacks
 * (pp_future_on_done) one at a time, in the order their calls finished,
 * never in the I/O thread and never under a lock.
 *
 * This file knows nothing of futures: it runs jobs (pp__cbjob_t) that
 * future.c posts when a call with callbacks finishes.  The queue has one
 * producer side and one owner, as in libuv's threadpool:
 *   - jobs are posted under pool->lock (wherever a call finishes: the I/O
 *     thread, a caller's assist, a cancel, a destroy, an inline call);
 *   - the callback thread alone takes them off, under pool->lock, and runs
 *     each with no lock held.  A job may take pool->lock itself (future.c
 *     drops its reference on the future that way).
 * So the only lock here is pool->lock, and the callback thread never holds
 * it while user code runs.
 *
 * The thread is started by the first registration (pp__cb_start_locked),
 * and stopped by pp_pool_destroy (pp__cb_stop) after the pool's calls have
 * all finished: nothing can be posted after that, since a post needs an
 * unfinished call.  Told to stop, the thread still runs every job left,
 * so the join is the wait for the last callback.
 *
 * A callback may destroy another pool, whose callback thread it then
 * joins.  If that thread is itself in a destroy that joins this one (two
 * pools whose callbacks destroy each other, or a longer ring), neither
 * join ends; the destroy that would close the ring is refused instead
 * (pp__cb_wait_begin), as a callback's destroy of its own pool is.
 */
#include <stdlib.h>

#include <apr_thread_proc.h>

#include "internal.h"

/* The pool whose callback thread this is; NULL in every other thread. */
static PP__THREAD_LOCAL pp_pool_t *cb_pool;

/* The edges of a wait-for graph between callback threads: a callback
 * thread inside pp_pool_destroy() of another pool will join that pool's
 * callback thread, and notes it in its own pool's cb_waits_for.  A thread
 * runs one destroy at a time, so each pool has one edge at most, and a
 * cycle is found by following them.  All cb_waits_for are guarded by
 * waits_lock, a lock of its own that is taken with no other held. */
static pp__mutex_t *waits_lock;
static pp__once_t waits_once = PP__ONCE_INIT;

static int waits_setup(void) {
  return pp__mutex_new(&waits_lock);
}

static void *APR_THREAD_FUNC cb_main(apr_thread_t *thread, void *data) {
  pp_pool_t *pool = data;
  pp__queue_t *q;
  pp__cbjob_t *job;
  cb_pool = pool;
  pp__mutex_lock(pool->lock);
  for (;;) {
    while (pp__queue_empty(&pool->cb_queue) && !pool->cb_stop)
      pp__cond_wait(pool->cb_cond, pool->lock);
    if (pp__queue_empty(&pool->cb_queue))
      break; /* stopping, and nothing is left */
    q = pp__queue_head(&pool->cb_queue);
    pp__queue_remove(q);
    job = pp__queue_data(q, pp__cbjob_t, link);
    pp__mutex_unlock(pool->lock);
    /* No lock held: the job runs user code. */
    job->run(job);
    pp__mutex_lock(pool->lock);
  }
  pp__mutex_unlock(pool->lock);
  cb_pool = NULL;
  /* Returned, not apr_thread_exit(): see pp__loop_main. */
  (void)thread;
  return NULL;
}

int pp__cb_start_locked(pp_pool_t *pool, pp__err_t *err) {
  apr_status_t rv;
  int rc;
  if (pool->cb_thread != NULL)
    return 0;
  if (pool->cb_stop)
    return pp__err_set(err, PP_ECLOSED,
                       "the pool's callback thread has stopped (the pool "
                       "is destroyed)");
  if (pool->cb_cond == NULL) {
    rc = pp__cond_new(&pool->cb_cond);
    if (rc)
      return pp__err_os(err, rc);
  }
  /* A memory pool of its own: pool->mem is not for threads other than
   * the creator's, and a top-level APR pool may be made from any thread. */
  if (pool->cb_mem == NULL) {
    rv = PP__FAULT_HIT("apr_pool_create")
             ? APR_ENOMEM
             : apr_pool_create(&pool->cb_mem, NULL);
    if (rv != APR_SUCCESS) {
      pool->cb_mem = NULL;
      return pp__from_apr(err, rv, "apr_pool_create");
    }
  }
  rv = PP__FAULT_HIT("apr_thread_create")
           ? APR_EAGAIN
           : apr_thread_create(&pool->cb_thread, NULL, cb_main, pool,
                               pool->cb_mem);
  if (rv != APR_SUCCESS) {
    pool->cb_thread = NULL;
    return pp__from_apr(err, rv, "starting the pool's callback thread");
  }
  return 0;
}

void pp__cb_post_locked(pp_pool_t *pool, pp__cbjob_t *job) {
  /* pp__cb_start_locked ran before anything that can post (a job is
   * posted for a callback registered on an unfinished call). */
  pp__queue_insert_tail(&pool->cb_queue, &job->link);
  pp__cond_signal(pool->cb_cond);
}

int pp__cb_in_thread(const pp_pool_t *pool) {
  return pool != NULL && cb_pool == pool;
}

int pp__cb_wait_begin(pp_pool_t *pool, pp__err_t *err) {
  pp_pool_t *p;
  int rc;
  if (cb_pool == NULL)
    return 0; /* no callback thread: nothing can wait for this one */
  /* It would wait for its own thread to go idle. */
  if (cb_pool == pool)
    return pp__err_set(err, PP_EINVAL,
                       "pp_pool_destroy: called from a completion callback "
                       "of this pool (a callback may not destroy its own "
                       "pool; the pool is left untouched)");
  rc = pp__once(&waits_once, waits_setup);
  if (rc != 0)
    return pp__err_os(err, rc);
  pp__mutex_lock(waits_lock);
  /* The pool's callback thread waits (maybe through others) for this
   * one: joining it would never end. */
  for (p = pool; p != NULL && p != cb_pool; p = p->cb_waits_for)
    ;
  if (p == NULL)
    cb_pool->cb_waits_for = pool;
  pp__mutex_unlock(waits_lock);
  if (p != NULL)
    return pp__err_set(err, PP_EINVAL,
                       "pp_pool_destroy: called from a completion callback "
                       "while the callback thread of the pool to destroy "
                       "waits, in pp_pool_destroy(), for this callback's "
                       "own pool (callbacks of pools that destroy each "
                       "other); neither wait could end, so this pool is "
                       "left untouched: destroy it after that callback has "
                       "returned, or from another thread");
  return 0;
}

void pp__cb_wait_end(pp_pool_t *pool) {
  if (cb_pool == NULL || cb_pool == pool)
    return;
  pp__mutex_lock(waits_lock);
  cb_pool->cb_waits_for = NULL;
  pp__mutex_unlock(waits_lock);
}

void pp__cb_stop(pp_pool_t *pool) {
  apr_status_t rv;
  apr_thread_t *t;
  pp__mutex_lock(pool->lock);
  pool->cb_stop = 1;
  t = pool->cb_thread;
  if (t != NULL)
    pp__cond_signal(pool->cb_cond);
  pp__mutex_unlock(pool->lock);
  if (t != NULL)
    apr_thread_join(&rv, t);
  /* cb_thread stays set (it is not NULL for pp__cb_start_locked, which
   * refuses because cb_stop is set); its memory goes with cb_mem. */
}
