/*
 * map.c - pp_pool_map(), pp_pool_starmap() and pp_pool_map_unordered().
 *
 * A map queues one future per argument, all in one group, and then consumes
 * the group's list of finished calls in the calling thread.  Arguments are
 * borrowed: the map does not return before every call has finished.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct map_state_s {
  pp_result_t *results; /* ordered map */
  pp_result_cb cb;      /* unordered map */
  void *cb_data;
  int first_status;     /* first failure in input order */
  size_t first_index;
  int stopped;
  size_t n;             /* calls in the map */
} map_state_t;

/* Python's map picks chunks of about n / (4 * workers); pipelining does the
 * same job here without losing per-call status. */
static size_t auto_chunk(pp_pool_t *pool, size_t n) {
  size_t workers = pool->nslots > 0 ? (size_t)pool->nslots : 1;
  size_t k = n / (4 * workers);
  if (k < 1)
    k = 1;
  if (k > 16)
    k = 16;
  return k;
}

static void record(map_state_t *st, pp_future_t *f, pp_result_t *r) {
  if (r->status != 0 &&
      (st->first_status == 0 || f->index < st->first_index)) {
    st->first_status = r->status;
    st->first_index = f->index;
  }
}

/* Cancels every call of the map that has not finished; pool->lock held. */
static void stop_group(pp_future_t **fs, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (fs[i] != NULL && fs[i]->state != PP__DONE)
      pp__future_cancel_locked(fs[i]);
}

/* Takes finished calls off the group's list and records them; with
 * `blocking`, waits until `n` calls are done.  `stoppable` is the number of
 * futures that are queued (stop_group may only cancel those).  pool->lock is
 * held; it is released while a callback runs. */
static void consume(pp_pool_t *pool, pp__group_t *group, map_state_t *st,
                    pp_future_t **fs, size_t stoppable, size_t *done,
                    int stop_on_error, int blocking) {
  while (*done < (blocking ? st->n : SIZE_MAX)) {
    pp_future_t *f = group->done_head;
    pp_result_t r;
    if (f == NULL) {
      if (!blocking)
        return;
      pp__cond_wait(pool->done_cond, pool->lock);
      continue;
    }
    group->done_head = f->qnext;
    if (group->done_head == NULL)
      group->done_tail = NULL;
    (*done)++;
    r = f->res;
    memset(&f->res, 0, sizeof(f->res));
    record(st, f, &r);
    if (r.status != 0 && stop_on_error && !st->stopped) {
      st->stopped = 1;
      stop_group(fs, stoppable);
    }
    if (st->results != NULL) {
      st->results[f->index] = r;
    } else {
      size_t index = f->index;
      int stop;
      pp__mutex_unlock(pool->lock);
      stop = st->cb(st->cb_data, index, &r);
      pp__mutex_lock(pool->lock);
      if (stop && !st->stopped) {
        st->stopped = 1;
        stop_group(fs, stoppable);
      }
    }
  }
}

static int run_map(pp_pool_t *pool, const char *task, const pp_buf_t *args,
                   size_t n, map_state_t *st, const pp_map_options_t *o) {
  pp_future_t **fs = NULL;
  pp__group_t group;
  const pp_task_t *t;
  size_t i, done = 0, chunk, created = 0;
  int64_t timeout;
  int rc = 0, stop_on_error, last;

  if (pool == NULL || task == NULL || (args == NULL && n > 0))
    return pp__set_error(PP_EINVAL, "map: pool, task and args must be set");
  for (i = 0; i < n; i++)
    if (args[i].data == NULL && args[i].len > 0)
      return pp__set_error(PP_EINVAL, "map: args[%zu] has NULL data", i);
  t = pp__task_find(pool->tasks, task);
  if (t == NULL)
    return pp__set_error(PP_ENOTASK, "map: no task named '%s'", task);
  if (o != NULL && (o->flags & ~(unsigned)PP_MAP_STOP_ON_ERROR))
    return pp__set_error(PP_EINVAL, "map: unknown flags 0x%x", o->flags);
  if (n == 0)
    return 0;
  st->n = n;
  stop_on_error = o != NULL && (o->flags & PP_MAP_STOP_ON_ERROR);
  timeout = o && o->timeout_ms ? o->timeout_ms : pool->call_timeout_ms;
  chunk = o && o->chunksize ? o->chunksize : auto_chunk(pool, n);

  fs = calloc(n, sizeof(*fs));
  if (fs == NULL)
    return pp__set_error(PP_ENOMEM, "map: cannot allocate %zu calls", n);
  memset(&group, 0, sizeof(group));
  for (i = 0; i < n; i++) {
    rc = pp__future_new(pool, t->name, args[i].data, args[i].len, timeout, 0,
                        &fs[i]);
    if (rc)
      goto cleanup;
    fs[i]->group = &group;
    fs[i]->index = i;
    fs[i]->chunk = chunk;
  }
  for (i = 0; i < n; i++) {
    if (pool->inline_mode && st->stopped) {
      /* Inline calls run as they are queued, so a stop has to keep the
       * rest from being queued at all. */
      pp__mutex_lock(pool->lock);
      pp__future_finish(fs[i], PP_ECANCELED, NULL, 0,
                        pp__strdup_printf("call %zu of the map was cancelled "
                                          "before it ran", i),
                        0, 0);
      pp__mutex_unlock(pool->lock);
      continue;
    }
    if (pp__future_enqueue(fs[i]) != 0) {
      /* Only PP_ECLOSED can get here: another thread is destroying the pool.
       * The rest end PP_ECLOSED; what was queued is cancelled and awaited. */
      size_t j;
      pp__mutex_lock(pool->lock);
      for (j = i; j < n; j++)
        pp__future_finish(fs[j], PP_ECLOSED, NULL, 0, NULL, 0, 0);
      stop_group(fs, i);
      pp__mutex_unlock(pool->lock);
      break;
    }
    if (pool->inline_mode) {
      /* Deliver each inline result at once: callbacks see them as they
       * come, and a failure can stop the map before the next call. */
      pp__mutex_lock(pool->lock);
      consume(pool, &group, st, fs, i + 1, &done, stop_on_error, 0);
      pp__mutex_unlock(pool->lock);
    }
  }
  created = n;

  /* Consume finished calls until all n are in. */
  pp__mutex_lock(pool->lock);
  consume(pool, &group, st, fs, n, &done, stop_on_error, 1);
  pp__mutex_unlock(pool->lock);
  rc = st->first_status;

cleanup:
  pp__mutex_lock(pool->lock);
  for (i = 0; i < n; i++) {
    if (fs[i] == NULL)
      continue;
    /* Futures made but never queued (a failure while making them) still
     * hold the pool's reference too. */
    if (created < n)
      fs[i]->refs = 1;
    pp__future_unref(fs[i]);
  }
  /* Another thread may have destroyed the pool while this map ran; then the
   * last of its futures frees it. */
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
  free(fs);
  return rc;
}

int pp_pool_map(pp_pool_t *pool, const char *task, const pp_buf_t *args,
                size_t n, pp_result_t *results,
                const pp_map_options_t *options) {
  map_state_t st;
  if (results == NULL && n > 0)
    return pp__set_error(PP_EINVAL, "pp_pool_map: results is NULL");
  if (results != NULL)
    memset(results, 0, n * sizeof(*results));
  memset(&st, 0, sizeof(st));
  st.results = results;
  return run_map(pool, task, args, n, &st, options);
}

int pp_pool_starmap(pp_pool_t *pool, const char *task, const pp_buf_t *tuples,
                    size_t n, pp_result_t *results,
                    const pp_map_options_t *options) {
  size_t i;
  if (results != NULL)
    memset(results, 0, n * sizeof(*results));
  if (tuples == NULL && n > 0)
    return pp__set_error(PP_EINVAL, "pp_pool_starmap: tuples is NULL");
  for (i = 0; i < n; i++)
    if (pp_tuple_count(tuples[i].data, tuples[i].len) < 0)
      return pp__set_error(PP_EBADARGS,
                           "pp_pool_starmap: tuples[%zu] is not a tuple made "
                           "by pp_pack()", i);
  return pp_pool_map(pool, task, tuples, n, results, options);
}

int pp_pool_map_unordered(pp_pool_t *pool, const char *task,
                          const pp_buf_t *args, size_t n, pp_result_cb cb,
                          void *cb_data, const pp_map_options_t *options) {
  map_state_t st;
  if (cb == NULL)
    return pp__set_error(PP_EINVAL, "pp_pool_map_unordered: cb is NULL");
  memset(&st, 0, sizeof(st));
  st.cb = cb;
  st.cb_data = cb_data;
  return run_map(pool, task, args, n, &st, options);
}
