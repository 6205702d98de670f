/*
 * map.c - pp_pool_map(), pp_pool_starmap(), pp_pool_map_unordered() and
 * their forms that do not block, pp_pool_map_async() and
 * pp_pool_starmap_async() with the pp_map_* functions of their handle.
 *
 * A map is one source of n calls (source.c): no object per call.  The I/O
 * thread writes each outcome straight into results[i] (ordered map) or
 * into the map's list of finished calls, which the calling thread hands to
 * the callback (unordered map).  Arguments are borrowed: a map stays alive
 * until every call has finished.  Every field of the map but the fixed
 * ones is guarded by pool->lock.
 *
 * Every map goes through the same three steps: map_start() checks and
 * queues it, map_wait_locked() waits for it (and makes its progress
 * reports), map_leave_unlock() lets go of the pool.  A blocking map runs
 * them in a row on a map_t on its stack, so it allocates nothing; an
 * async map allocates its map_t once and runs the steps from
 * pp_pool_map_async(), pp_map_wait() and pp_map_free().
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct done_s {
  size_t index;
  pp_result_t r;
} done_t;

/* The public handle of an async map is the map itself. */
typedef struct pp_map_s map_t;

struct pp_map_s {
  pp__src_t src;
  pp_result_t *results;  /* ordered map */
  pp_result_cb cb;       /* unordered map */
  void *cb_data;
  done_t *done;          /* unordered: finished, not yet given to cb: */
  size_t dfirst, ndone, capdone; /* done[dfirst .. ndone) */
  int stop_on_error;
  int first_status;      /* the first failure in input order */
  int cause_status;      /* STOP_ON_ERROR: the failure that stopped it */
  size_t first_index;
  int oom;               /* the list of finished calls could not grow */
  size_t failed;         /* calls finished with a status but 0 */
  /* pool->lock (its callback and start are fixed at the start); an async
   * map may have several waiters, and only one of them at a time
   * reports. */
  pp__reporter_t rep;
  int reporting;         /* a thread is in the progress callback */
  int reported_final;    /* the final report has been made */
};

/* The caller of the map waits for all of its calls, or, with a callback,
 * for any result to hand over: only then is it woken. */
static int map_done(pp__src_t *src, size_t index, pp_result_t *r) {
  map_t *m = (map_t *)src;
  if (r->status != 0)
    m->failed++;
  if (r->status != 0 &&
      (m->first_status == 0 || index < m->first_index)) {
    m->first_status = r->status;
    m->first_index = index;
  }
  if (r->status != 0 && m->stop_on_error) {
    /* The failure that stops the map is its status: the calls it cancels
     * may come earlier in input order, but they are its consequence. */
    if (m->cause_status == 0)
      m->cause_status = r->status;
    pp__src_cancel_locked(src);
  }
  if (m->results != NULL) {
    m->results[index] = *r;
  } else {
    if (m->dfirst == m->ndone)
      m->dfirst = m->ndone = 0;
    if (m->ndone == m->capdone) {
      size_t cap = m->capdone ? 2 * m->capdone : 64;
      done_t *d = pp__realloc(m->done, cap * sizeof(*d));
      if (d == NULL) {
        /* The outcome cannot be kept for the callback; the map reports the
         * shortage instead of losing it silently. */
        pp_results_free(r, 1);
        m->oom = 1;
        return 1;
      }
      m->done = d;
      m->capdone = cap;
    }
    m->done[m->ndone].index = index;
    m->done[m->ndone].r = *r;
    m->ndone++;
    return 1;
  }
  return src->finished == src->n;
}

/* Hands finished calls to the callback in the calling thread; pool->lock
 * held, released while the callback runs. */
static void deliver(map_t *m) {
  pp_pool_t *pool = m->src.pool;
  while (m->dfirst < m->ndone) {
    done_t d = m->done[m->dfirst++];
    int stop;
    pp__mutex_unlock(pool->lock);
    stop = m->cb(m->cb_data, d.index, &d.r);
    pp__mutex_lock(pool->lock);
    if (stop)
      pp__src_cancel_locked(&m->src);
  }
}

/* Reports progress to the map's callback if a report is due (or `final`);
 * pool->lock held, released while the callback runs.  A callback that
 * returns non-zero stops the map.  Only one thread reports at a time, and
 * the final report is made once: when another waiter of an async map is
 * in the callback, this one skips its report, and whichever waiter next
 * sees the map ended makes the final one. */
static void report_locked(map_t *m, int final) {
  pp_pool_t *pool = m->src.pool;
  size_t done = m->src.finished, failed = m->failed;
  int stop;
  if (m->reporting || m->reported_final || !pp__reporter_due(&m->rep, final))
    return;
  m->reported_final = final;
  m->reporting = 1;
  pp__mutex_unlock(pool->lock);
  stop = pp__reporter_call(&m->rep, done, failed, m->src.n, final);
  pp__mutex_lock(pool->lock);
  m->reporting = 0;
  if (stop != 0 && !final) {
    pp__src_cancel_locked(&m->src);
    /* Other waiters of an async map look at it again. */
    pp__cond_broadcast(pool->done_cond);
  }
}

/* Checks a map's input before anything is queued; returns 0 and its task,
 * or a status raised with pp__fail. */
static int map_check(pp_pool_t *pool, const char *task, const pp_buf_t *args,
                     size_t n, const pp_map_options_t *o, const pp_task_t **t) {
  size_t i;
  if (pool == NULL || task == NULL || (args == NULL && n > 0))
    return pp__fail(PP_EINVAL, "map: pool, task and args must be set");
  if (pp__pool_forked(pool, "map") != 0)
    return PP_ECLOSED;
  for (i = 0; i < n; i++)
    if (args[i].data == NULL && args[i].len > 0)
      return pp__fail(PP_EINVAL, "map: args[%zu] has NULL data", i);
  *t = pp__task_find(pool->tasks, task);
  if (*t == NULL)
    return pp__fail(PP_ENOTASK, "map: no task named '%s'", task);
  if (o != NULL &&
      (o->flags & ~(unsigned)(PP_MAP_STOP_ON_ERROR | PP_MAP_PROGRESS_BAR)))
    return pp__fail(PP_EINVAL, "map: unknown flags 0x%x", o->flags);
  return 0;
}

/* Runs every call of a queued map in the calling thread (inline mode), one
 * by one; a stop keeps the rest from running at all.  Locks NOT held. */
static void run_inline(map_t *m) {
  pp_pool_t *pool = m->src.pool;
  size_t i;
  for (i = 0; i < m->src.n; i++) {
    int cancelled;
    pp__mutex_lock(pool->lock);
    /* Results go to the callback as they come, so that it can stop the
     * map before the next call. */
    if (m->cb != NULL)
      deliver(m);
    cancelled = m->src.cancel;
    if (cancelled)
      pp__src_finish_locked(&m->src, i, PP_ECANCELED, NULL, 0,
                            pp__strdup_printf("call %zu of the map was "
                                              "cancelled before it ran",
                                              i),
                            0, 0);
    pp__mutex_unlock(pool->lock);
    if (!cancelled)
      pp__inline_run(&m->src, i);
    pp__mutex_lock(pool->lock);
    report_locked(m, 0);
    pp__mutex_unlock(pool->lock);
  }
}

/* Queues a checked map of task `t` (in inline mode: runs it).  Returns 0
 * with the map holding the pool, as a future does, until
 * map_leave_unlock(); or PP_ECLOSED, raised, with nothing queued and the
 * pool let go. */
static int map_start(map_t *m, pp_pool_t *pool, const pp_task_t *t,
                     const pp_buf_t *args, size_t n,
                     const pp_map_options_t *o) {
  int64_t timeout;
  size_t chunk;
  int rc;
  m->stop_on_error = o != NULL && (o->flags & PP_MAP_STOP_ON_ERROR);
  timeout = o && o->timeout_ms ? o->timeout_ms : pool->call_timeout_ms;
  chunk = o && o->chunksize
              ? o->chunksize
              : pp__src_auto_chunk(n, (size_t)pp__pool_width(pool));
  pp__src_init(&m->src, pool, t, args, n, timeout, chunk, map_done);
  pp__reporter_init(&m->rep, o);

  pp__mutex_lock(pool->lock);
  pool->live_futures++;
  rc = pp__src_queue_locked(&m->src);
  if (rc != 0) {
    /* A destroy that raced with this map may leave the pool to us. */
    pp__pool_leave_unlock(pool);
    return pp__fail(rc, "map: the pool is being destroyed");
  }
  if (!pool->inline_mode)
    pp__pool_wake_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (pool->inline_mode)
    run_inline(m);
  return 0;
}

/* Waits until every call of the map has finished and every result has
 * been handed to the callback, or until `end` (PP__NEVER: no limit), and
 * makes the progress reports on the way, the final one when the map has
 * ended.  Returns 1 if the map has ended, 0 at the deadline.  pool->lock
 * held, released while it sleeps and while callbacks run. */
static int map_wait_locked(map_t *m, int64_t end) {
  pp_pool_t *pool = m->src.pool;
  int64_t until;
  for (;;) {
    if (m->cb != NULL && m->dfirst < m->ndone) {
      deliver(m);
      continue;
    }
    if (m->src.finished == m->src.n)
      break;
    until = end;
    if (m->rep.cb != NULL) {
      /* Waiters are woken when the map ends (or a result is there for
       * the callback): between two, a waiter wakes for its reports. */
      report_locked(m, 0);
      if (m->src.finished == m->src.n)
        continue;
      if (!m->reporting && m->rep.next < until)
        until = m->rep.next;
    }
    if (until == PP__NEVER) {
      pp__cond_wait(pool->done_cond, pool->lock);
      continue;
    }
    if (end != PP__NEVER && pp__now_us() >= end)
      return 0;
    pp__cond_timedwait(pool->done_cond, pool->lock, pp__us_left(until));
  }
  report_locked(m, 1);
  return 1;
}

/* The map lets go of its pool and of what it allocated (not the map
 * itself); pool->lock held, released on return.  The pool may be freed
 * here, if it was destroyed meanwhile and this map was its last user. */
static void map_leave_unlock(map_t *m) {
  pp__pool_leave_unlock(m->src.pool);
  free(m->src.retry);
  free(m->done);
}

static int run_map(pp_pool_t *pool, const char *task, const pp_buf_t *args,
                   size_t n, map_t *m, const pp_map_options_t *o) {
  const pp_task_t *t;
  int rc;

  rc = map_check(pool, task, args, n, o, &t);
  if (rc != 0 || n == 0)
    return rc;
  rc = map_start(m, pool, t, args, n, o);
  if (rc != 0)
    return rc;
  pp__mutex_lock(pool->lock);
  map_wait_locked(m, PP__NEVER);
  map_leave_unlock(m);
  if (m->oom)
    return pp__fail(PP_ENOMEM, "map: out of memory for finished calls");
  return m->cause_status ? m->cause_status : m->first_status;
}

/* Starmap: every argument must be a tuple, checked before anything runs. */
static int check_tuples(const pp_buf_t *tuples, size_t n, const char *who) {
  size_t i;
  if (tuples == NULL && n > 0)
    return pp__fail(PP_EINVAL, "%s: tuples is NULL", who);
  for (i = 0; i < n; i++)
    if (pp_tuple_count(tuples[i].data, tuples[i].len) < 0)
      return pp__fail(PP_EBADARGS,
                      "%s: tuples[%zu] is not a tuple made by pp_pack()", who,
                      i);
  return 0;
}

int pp_pool_map(pp_pool_t *pool, const char *task, const pp_buf_t *args,
                size_t n, pp_result_t *results,
                const pp_map_options_t *options) {
  map_t m;
  if (results == NULL && n > 0)
    return pp__fail(PP_EINVAL, "pp_pool_map: results is NULL");
  if (results != NULL)
    memset(results, 0, n * sizeof(*results));
  memset(&m, 0, sizeof(m));
  m.results = results;
  return run_map(pool, task, args, n, &m, options);
}

int pp_pool_starmap(pp_pool_t *pool, const char *task, const pp_buf_t *tuples,
                    size_t n, pp_result_t *results,
                    const pp_map_options_t *options) {
  int rc;
  if (results != NULL)
    memset(results, 0, n * sizeof(*results));
  rc = check_tuples(tuples, n, "pp_pool_starmap");
  if (rc != 0)
    return rc;
  return pp_pool_map(pool, task, tuples, n, results, options);
}

int pp_pool_map_unordered(pp_pool_t *pool, const char *task,
                          const pp_buf_t *args, size_t n, pp_result_cb cb,
                          void *cb_data, const pp_map_options_t *options) {
  map_t m;
  if (cb == NULL)
    return pp__fail(PP_EINVAL, "pp_pool_map_unordered: cb is NULL");
  memset(&m, 0, sizeof(m));
  m.cb = cb;
  m.cb_data = cb_data;
  return run_map(pool, task, args, n, &m, options);
}

/* ---- async maps ---- */

int pp_pool_map_async(pp_pool_t *pool, const char *task, const pp_buf_t *args,
                      size_t n, pp_result_t *results,
                      const pp_map_options_t *options, pp_map_t **map) {
  const pp_task_t *t;
  map_t *m;
  int rc;
  if (map != NULL)
    *map = NULL;
  if (map == NULL || (results == NULL && n > 0))
    return pp__fail(PP_EINVAL, "pp_pool_map_async: map and results must be "
                               "set");
  if (results != NULL)
    memset(results, 0, n * sizeof(*results));
  rc = map_check(pool, task, args, n, options, &t);
  if (rc != 0)
    return rc;
  /* The one allocation of an async map: its state outlives this call. */
  m = pp__calloc(1, sizeof(*m));
  if (m == NULL)
    return pp__fail(PP_ENOMEM, "pp_pool_map_async: out of memory");
  m->results = results;
  rc = map_start(m, pool, t, args, n, options);
  if (rc != 0) {
    free(m);
    return rc;
  }
  *map = m;
  return 0;
}

int pp_pool_starmap_async(pp_pool_t *pool, const char *task,
                          const pp_buf_t *tuples, size_t n,
                          pp_result_t *results, const pp_map_options_t *options,
                          pp_map_t **map) {
  int rc;
  if (map != NULL)
    *map = NULL;
  if (results != NULL)
    memset(results, 0, n * sizeof(*results));
  rc = check_tuples(tuples, n, "pp_pool_starmap_async");
  if (rc != 0)
    return rc;
  return pp_pool_map_async(pool, task, tuples, n, results, options, map);
}

int pp_map_wait(pp_map_t *m, int64_t timeout_ms) {
  pp_pool_t *pool;
  size_t left = 0;
  int ended, rc;
  if (m == NULL)
    return pp__fail(PP_EINVAL, "pp_map_wait: map is NULL");
  if (pp__pool_forked(m->src.pool, "pp_map_wait") != 0)
    return PP_ECLOSED;
  pool = m->src.pool;
  pp__mutex_lock(pool->lock);
  ended = map_wait_locked(m, timeout_ms < 0 ? PP__NEVER
                                            : pp__deadline_ms(timeout_ms));
  rc = m->cause_status ? m->cause_status : m->first_status;
  if (!ended)
    left = m->src.n - m->src.finished;
  pp__mutex_unlock(pool->lock);
  if (!ended)
    return pp__fail(PP_ETIMEDOUT,
                    "pp_map_wait: %zu of the map's %zu calls have not "
                    "finished in %lld ms",
                    left, m->src.n, (long long)timeout_ms);
  return rc;
}

int pp_map_status(pp_map_t *m) {
  int rc;
  if (m == NULL)
    return pp__fail(PP_EINVAL, "pp_map_status: map is NULL");
  if (pp__pool_forked(m->src.pool, "pp_map_status") != 0)
    return PP_ECLOSED;
  pp__mutex_lock(m->src.pool->lock);
  rc = m->src.finished < m->src.n ? PP_EAGAIN
       : m->cause_status     ? m->cause_status
                             : m->first_status;
  pp__mutex_unlock(m->src.pool->lock);
  return rc;
}

int pp_map_progress(pp_map_t *m, pp_progress_t *out) {
  if (m == NULL || out == NULL)
    return pp__fail(PP_EINVAL, "pp_map_progress: NULL argument");
  if (pp__pool_forked(m->src.pool, "pp_map_progress") != 0)
    return PP_ECLOSED;
  pp__mutex_lock(m->src.pool->lock);
  out->done = m->src.finished;
  out->failed = m->failed;
  out->total = m->src.n;
  out->final = m->src.finished == m->src.n;
  pp__mutex_unlock(m->src.pool->lock);
  out->elapsed_ms = (pp__now_us() - m->rep.started) / 1000;
  return 0;
}

int pp_map_cancel(pp_map_t *m) {
  if (m == NULL)
    return pp__fail(PP_EINVAL, "pp_map_cancel: map is NULL");
  if (pp__pool_forked(m->src.pool, "pp_map_cancel") != 0)
    return PP_ECLOSED;
  pp__mutex_lock(m->src.pool->lock);
  pp__src_cancel_locked(&m->src);
  pp__mutex_unlock(m->src.pool->lock);
  return 0;
}

void pp_map_free(pp_map_t *m) {
  pp_pool_t *pool;
  /* In a forked child the map is a copy that cannot be waited for: it is
   * left as it is. */
  if (m == NULL || pp__pool_forked(m->src.pool, "pp_map_free") != 0)
    return;
  pool = m->src.pool;
  pp__mutex_lock(pool->lock);
  /* The pool writes into the caller's results and reads its arguments
   * until every call has finished, so the map cannot simply be dropped:
   * it is cancelled, and its calls on workers end within the pool's
   * cancel grace. */
  pp__src_cancel_locked(&m->src);
  while (m->src.finished < m->src.n)
    pp__cond_wait(pool->done_cond, pool->lock);
  map_leave_unlock(m);
  free(m);
}
