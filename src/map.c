/*
 * map.c - pp_pool_map(), pp_pool_starmap() and pp_pool_map_unordered().
 *
 * A map is one source of n calls (source.c): no object per call.  The I/O
 * thread writes each outcome straight into results[i] (ordered map) or
 * into the map's list of finished calls, which the calling thread hands to
 * the callback (unordered map).  Arguments are borrowed: the map does not
 * return before every call has finished.  Every field of the map but the
 * fixed ones is guarded by pool->lock.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct done_s {
  size_t index;
  pp_result_t r;
} done_t;

typedef struct map_s {
  pp__src_t src;
  pp_result_t *results;  /* ordered map */
  pp_result_cb cb;       /* unordered map */
  void *cb_data;
  done_t *done;          /* unordered: finished, not yet given to cb: */
  size_t dfirst, ndone, capdone; /* done[dfirst .. ndone) */
  int stop_on_error;
  int first_status;      /* the first failure in input order */
  size_t first_index;
  int oom;               /* the list of finished calls could not grow */
  size_t failed;         /* calls finished with a status but 0 */
  pp__reporter_t rep;    /* the calling thread's */
} map_t;

/* Python's map sends chunks of about n / (4 * workers) calls; here that
 * many calls may be in flight on one worker, each with its own outcome. */
static size_t auto_chunk(pp_pool_t *pool, size_t n) {
  size_t workers = pool->nslots > 0 ? (size_t)pool->nslots : 1;
  size_t k = (n + 4 * workers - 1) / (4 * workers);
  return k < 1 ? 1 : k;
}

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
  if (r->status != 0 && m->stop_on_error)
    pp__src_cancel_locked(src);
  if (m->results != NULL) {
    m->results[index] = *r;
  } else {
    if (m->dfirst == m->ndone)
      m->dfirst = m->ndone = 0;
    if (m->ndone == m->capdone) {
      size_t cap = m->capdone ? 2 * m->capdone : 64;
      done_t *d = realloc(m->done, cap * sizeof(*d));
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

/* Reports progress to the caller's callback if a report is due (or
 * `final`); pool->lock held, released while the callback runs.  A callback
 * that returns non-zero stops the map. */
static void report_locked(map_t *m, int final) {
  pp_pool_t *pool = m->src.pool;
  size_t done = m->src.finished, failed = m->failed;
  if (!pp__reporter_due(&m->rep, final))
    return;
  pp__mutex_unlock(pool->lock);
  if (pp__reporter_call(&m->rep, done, failed, m->src.n, final) != 0 &&
      !final) {
    pp__mutex_lock(pool->lock);
    pp__src_cancel_locked(&m->src);
    return;
  }
  pp__mutex_lock(pool->lock);
}

static int run_map(pp_pool_t *pool, const char *task, const pp_buf_t *args,
                   size_t n, map_t *m, const pp_map_options_t *o) {
  const pp_task_t *t;
  size_t i;
  int64_t timeout;
  int rc, last;

  if (pool == NULL || task == NULL || (args == NULL && n > 0))
    return pp__fail(PP_EINVAL, "map: pool, task and args must be set");
  for (i = 0; i < n; i++)
    if (args[i].data == NULL && args[i].len > 0)
      return pp__fail(PP_EINVAL, "map: args[%zu] has NULL data", i);
  t = pp__task_find(pool->tasks, task);
  if (t == NULL)
    return pp__fail(PP_ENOTASK, "map: no task named '%s'", task);
  if (o != NULL &&
      (o->flags & ~(unsigned)(PP_MAP_STOP_ON_ERROR | PP_MAP_PROGRESS_BAR)))
    return pp__fail(PP_EINVAL, "map: unknown flags 0x%x", o->flags);
  if (n == 0)
    return 0;
  m->stop_on_error = o != NULL && (o->flags & PP_MAP_STOP_ON_ERROR);
  timeout = o && o->timeout_ms ? o->timeout_ms : pool->call_timeout_ms;
  pp__src_init(&m->src, pool, t, args, n, timeout,
               o && o->chunksize ? o->chunksize : auto_chunk(pool, n),
               map_done);
  pp__reporter_init(&m->rep, o);

  pp__mutex_lock(pool->lock);
  /* The map uses the pool until it returns, like a future. */
  pool->live_futures++;
  rc = pp__src_queue_locked(&m->src);
  if (rc == 0 && !pool->inline_mode)
    pp__pool_wake_locked(pool);
  if (rc == 0 && pool->inline_mode) {
    /* Inline calls run here, one by one; a stop keeps the rest from
     * running at all. */
    pp__mutex_unlock(pool->lock);
    for (i = 0; i < n; i++) {
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
    pp__mutex_lock(pool->lock);
  }
  while (rc == 0 && (m->src.finished < n || m->dfirst < m->ndone)) {
    if (m->cb != NULL && m->dfirst < m->ndone) {
      deliver(m);
      continue;
    }
    if (m->rep.cb == NULL) {
      pp__cond_wait(pool->done_cond, pool->lock);
      continue;
    }
    /* Waiters are woken when the map ends (or a result is there for the
     * callback): between two, the caller wakes for its reports. */
    report_locked(m, 0);
    if (m->src.finished < n)
      pp__cond_timedwait(pool->done_cond, pool->lock,
                         pp__us_left(m->rep.next));
  }
  if (rc == 0)
    report_locked(m, 1);
  /* Another thread may have destroyed the pool while this map ran; then
   * the map's end frees it. */
  pool->live_futures--;
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
  free(m->src.retry);
  free(m->done);
  if (rc != 0)
    return pp__fail(rc, "map: the pool is being destroyed");
  if (m->oom)
    return pp__fail(PP_ENOMEM, "map: out of memory for finished calls");
  return m->first_status;
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
  size_t i;
  if (results != NULL)
    memset(results, 0, n * sizeof(*results));
  if (tuples == NULL && n > 0)
    return pp__fail(PP_EINVAL, "pp_pool_starmap: tuples is NULL");
  for (i = 0; i < n; i++)
    if (pp_tuple_count(tuples[i].data, tuples[i].len) < 0)
      return pp__fail(PP_EBADARGS,
                      "pp_pool_starmap: tuples[%zu] is not a tuple made "
                      "by pp_pack()",
                      i);
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
