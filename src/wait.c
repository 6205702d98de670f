/*
 * wait.c - waiting for several futures at once: pp_future_wait_many()
 * (concurrent.futures.wait) and completion queues (as_completed).
 *
 * pp_future_wait_many() looks at every future it is given each time it
 * wakes, which suits a few futures; a loop that calls it until all have
 * finished costs O(n) per completion, O(n^2) in all.  A completion queue
 * costs O(1) per completion instead: each future added to it gets a
 * watcher (future.c) that moves it, when its call finishes, from the
 * queue's pending list to its ready list, in the order the calls
 * finished, and pp_cq_next() takes the oldest ready one.
 *
 * Locks: a watcher runs under its future's pool->lock and takes the
 * queue's lock inside it, so nothing takes a pool's lock while it holds a
 * queue's.  A queue holds a reference on each of its futures, so a future
 * the program frees while it is in a queue (pp_future_free() takes it out,
 * future.c) is never freed under the queue.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The position that ends a wait for `mode` over fs[0..n), n + 1 if it
 * must go on, or n when all finished and none failed (the modes that wait
 * for all).  With `lock_each` each future is read under its own pool's
 * lock (futures of several pools); without, the one pool's lock is held. */
static size_t wait_check(pp_future_t *const *fs, size_t n, pp_wait_mode_t mode,
                         int lock_each) {
  size_t i, first_done = n, first_failed = n, live = 0, done = 0;
  int is_done, status;
  for (i = 0; i < n; i++) {
    if (fs[i] == NULL)
      continue;
    live++;
    if (lock_each)
      pp__mutex_lock(fs[i]->src.pool->lock);
    is_done = fs[i]->done;
    status = fs[i]->res.status;
    if (lock_each)
      pp__mutex_unlock(fs[i]->src.pool->lock);
    if (!is_done)
      continue;
    done++;
    if (first_done == n)
      first_done = i;
    if (status != 0 && first_failed == n)
      first_failed = i;
  }
  if (mode == PP_WAIT_FIRST_COMPLETED)
    return first_done < n ? first_done : n + 1;
  if (mode == PP_WAIT_FIRST_FAILED && first_failed < n)
    return first_failed;
  return done == live ? first_failed : n + 1;
}

/* ---- waiting on futures of several pools ---- */

/* The waiter's side: its own lock, which a watcher takes under pool->lock
 * and nothing takes the other way round. */
typedef struct multi_s {
  pp__mutex_t *m;
  pp__cond_t *c;
  int fired; /* m: a watched call finished since the waiter last looked */
} multi_t;

typedef struct multi_watch_s {
  pp__watch_t w;
  multi_t *waiter;
} multi_pp__watch_t;

/* Runs in whatever thread finishes the call, pool->lock held. */
static void multi_fire(pp__watch_t *w, pp_future_t *f) {
  multi_t *mt = ((multi_pp__watch_t *)w)->waiter;
  (void)f;
  pp__mutex_lock(mt->m);
  mt->fired = 1;
  pp__cond_signal(mt->c);
  pp__mutex_unlock(mt->m);
}

/* pp_future_wait_many() when the futures belong to several pools: a
 * watcher on each unfinished one signals this thread.  Returns 0 and the
 * position in *at, or a status (not yet raised) with the reason in *err. */
static int wait_multi(pp_future_t *const *fs, size_t n, pp_wait_mode_t mode,
                      int64_t timeout_ms, size_t *at, pp__err_t *err) {
  multi_t mt;
  multi_pp__watch_t *ws;
  int64_t end = timeout_ms < 0 ? PP__NEVER : pp__deadline_ms(timeout_ms);
  size_t i;
  int rc;
  ws = pp__calloc(n, sizeof(*ws));
  if (ws == NULL)
    return pp__err_set(err, PP_ENOMEM, "pp_future_wait_many: out of memory");
  memset(&mt, 0, sizeof(mt));
  rc = pp__mutex_new(&mt.m);
  if (rc == 0)
    rc = pp__cond_new(&mt.c);
  if (rc != 0) {
    pp__err_os(err, rc);
    goto out;
  }
  for (i = 0; i < n; i++) {
    pp__queue_init(&ws[i].w.link);
    if (fs[i] == NULL)
      continue;
    ws[i].w.fn = multi_fire;
    ws[i].waiter = &mt;
    pp__mutex_lock(fs[i]->src.pool->lock);
    if (!fs[i]->done)
      pp__queue_insert_tail(&fs[i]->watchers, &ws[i].w.link);
    pp__mutex_unlock(fs[i]->src.pool->lock);
  }
  /* A call that finishes between a look and the wait has set `fired`. */
  while ((*at = wait_check(fs, n, mode, 1)) == n + 1) {
    pp__mutex_lock(mt.m);
    while (!mt.fired && rc == 0) {
      if (end == PP__NEVER)
        pp__cond_wait(mt.c, mt.m);
      else if (pp__now_us() >= end)
        rc = PP_ETIMEDOUT;
      else
        pp__cond_timedwait(mt.c, mt.m, pp__us_left(end));
    }
    mt.fired = 0;
    pp__mutex_unlock(mt.m);
    if (rc != 0) {
      /* One last look: the time is up, but a call may just have ended. */
      if ((*at = wait_check(fs, n, mode, 1)) != n + 1)
        rc = 0;
      else
        pp__err_set(err, rc, "pp_future_wait_many: not done in %lld ms",
                    (long long)timeout_ms);
      break;
    }
  }
  for (i = 0; i < n; i++) {
    /* A watcher that fired has left its list already.  The link is read
     * under the pool's lock: the thread finishing the call unlinks it
     * under that lock, maybe at this very moment. */
    if (fs[i] == NULL)
      continue;
    pp__mutex_lock(fs[i]->src.pool->lock);
    if (pp__queue_linked(&ws[i].w.link))
      pp__queue_remove(&ws[i].w.link);
    pp__mutex_unlock(fs[i]->src.pool->lock);
  }
out:
  pp__cond_free(mt.c);
  pp__mutex_free(mt.m);
  free(ws);
  return rc;
}

int pp_future_wait_many(pp_future_t *const *fs, size_t n, pp_wait_mode_t mode,
                        int64_t timeout_ms, size_t *index) {
  pp_pool_t *pool = NULL;
  pp__err_t err;
  int64_t end;
  size_t i, at = n; /* set by wait_multi(); GCC -O3 cannot tell */
  int rc = 0, several = 0;
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
    if (pp__pool_forked(fs[i]->src.pool, "pp_future_wait_many") != 0)
      return PP_ECLOSED;
    if (pool != NULL && fs[i]->src.pool != pool)
      several = 1;
    pool = fs[i]->src.pool;
  }
  if (pool == NULL)
    return pp__fail(PP_EINVAL, "pp_future_wait_many: no future to wait for");
  if (several) {
    rc = wait_multi(fs, n, mode, timeout_ms, &at, &err);
    if (rc != 0)
      return pp__err_raise(&err);
    if (index != NULL)
      *index = at;
    return 0;
  }
  /* One pool: its done_cond, which every finished call wakes. */
  end = timeout_ms < 0 ? PP__NEVER : pp__deadline_ms(timeout_ms);
  pp__mutex_lock(pool->lock);
  while ((at = wait_check(fs, n, mode, 0)) == n + 1) {
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

/* ---- completion queues ---- */

/* Returns 0, or PP_ECLOSED raised, when the queue was made by another
 * process (a child forked without exec: its lock is a copy, perhaps of a
 * held one, and its futures' pools do not serve it). */
static int cq_forked(const pp_cq_t *cq, const char *fn) {
  int64_t self = pp__self_pid();
  if (cq->owner_pid == self)
    return 0;
  return pp__fail(PP_ECLOSED,
                  "%s: the completion queue was created by process %lld, "
                  "and this is process %lld, forked from it without exec: "
                  "here the queue can only be left alone",
                  fn, (long long)cq->owner_pid, (long long)self);
}

/* A call of a future in the queue has finished (its pool->lock held, any
 * thread): the future becomes the newest ready one. */
static void cq_fire(pp__watch_t *w, pp_future_t *f) {
  pp_cq_t *cq = f->cq;
  (void)w;
  pp__mutex_lock(cq->lock);
  /* Unless pp_cq_free() has just taken it off. */
  if (pp__queue_linked(&f->cq_link)) {
    pp__queue_remove(&f->cq_link);
    pp__queue_insert_tail(&cq->ready, &f->cq_link);
    PP__STORE_REL32(&cq->nready, cq->nready + 1);
    pp__cond_signal(cq->cond);
  }
  pp__mutex_unlock(cq->lock);
}

/* The queue lets go of a future it has taken off its lists: its watcher
 * goes, and the queue's reference.  Returns 1 if the program had freed the
 * future meanwhile (pp_future_free() left it to the queue), which may
 * then be gone.  No lock held. */
static int cq_let_go(pp_future_t *f) {
  pp_pool_t *pool = f->src.pool;
  int freed, last;
  pp__mutex_lock(pool->lock);
  if (pp__queue_linked(&f->cq_watch.link))
    pp__queue_remove(&f->cq_watch.link);
  freed = f->cq_freed;
  f->cq = NULL;
  f->cq_freed = 0;
  pp__future_unref_locked(f);
  last = pp__pool_unused_locked(pool);
  pp__mutex_unlock(pool->lock);
  if (last)
    pp__pool_free(pool);
  return freed;
}

int pp_cq_create(pp_cq_t **out) {
  pp_cq_t *cq;
  int rc;
  if (out == NULL)
    return pp__fail(PP_EINVAL, "pp_cq_create: cq is NULL");
  *out = NULL;
  cq = pp__calloc(1, sizeof(*cq));
  if (cq == NULL)
    return pp__fail(PP_ENOMEM, "pp_cq_create: out of memory");
  rc = pp__mutex_new(&cq->lock);
  if (rc == 0)
    rc = pp__cond_new(&cq->cond);
  if (rc != 0) {
    pp__mutex_free(cq->lock);
    free(cq);
    return pp__fail_os(rc);
  }
  cq->owner_pid = pp__self_pid();
  pp__queue_init(&cq->pending);
  pp__queue_init(&cq->ready);
  *out = cq;
  return 0;
}

int pp_cq_add(pp_cq_t *cq, pp_future_t *f) {
  pp_pool_t *pool;
  int done;
  if (cq == NULL || f == NULL)
    return pp__fail(PP_EINVAL, "pp_cq_add: cq and future must be set");
  if (cq_forked(cq, "pp_cq_add") != 0 ||
      pp__pool_forked(f->src.pool, "pp_cq_add") != 0)
    return PP_ECLOSED;
  pool = f->src.pool;
  pp__mutex_lock(pool->lock);
  if (f->cq != NULL) {
    int same = f->cq == cq;
    pp__mutex_unlock(pool->lock);
    return pp__fail(PP_EINVAL,
                    "pp_cq_add: the future is in %s completion queue "
                    "already (a future is in one queue at a time, until "
                    "pp_cq_next() hands it out)",
                    same ? "this" : "another");
  }
  done = f->done;
  f->cq = cq;
  f->cq_freed = 0;
  f->refs++;
  if (!done) {
    f->cq_watch.fn = cq_fire;
    pp__queue_insert_tail(&f->watchers, &f->cq_watch.link);
  }
  pp__mutex_lock(cq->lock);
  if (cq->assist == NULL && !pool->inline_mode && pool->engine == NULL) {
    /* Held like a map holds its pool, so that a taker may collect its
     * results even after every future of it has left. */
    cq->assist = pool;
    pool->live_futures++;
  }
  pp__queue_insert_tail(done ? &cq->ready : &cq->pending, &f->cq_link);
  cq->n++;
  if (done) {
    PP__STORE_REL32(&cq->nready, cq->nready + 1);
    pp__cond_signal(cq->cond);
  }
  pp__mutex_unlock(cq->lock);
  pp__mutex_unlock(pool->lock);
  return 0;
}

/* Looks for a ready future for a short while (PP__WAIT_SPIN_US, at most
 * until `end`), collecting the results of the queue's assist pool itself
 * meanwhile (pp__loop_assist, as pp_future_wait does), and giving the CPU
 * away every few turns.  A tiny call's result is there within tens of
 * microseconds, and taking it here saves two thread wake-ups (the pool's
 * I/O thread's and this one's), which cost more than the call, and more
 * still on a loaded machine. */
static void cq_spin(pp_cq_t *cq, pp_pool_t *assist, int64_t end) {
  int64_t until = pp__now_us() + PP__WAIT_SPIN_US;
  unsigned turn = 0;
  if (end != PP__NEVER && end < until)
    until = end;
  while (PP__LOAD_ACQ32(&cq->nready) == 0) {
    if (assist != NULL && pp__loop_assist(assist)) {
      /* Calls finished, maybe none of this queue's: bounded all the same. */
      if (pp__now_us() >= until)
        return;
      continue;
    }
    pp__spin_turn(turn);
    if ((turn & 15) == 0 && pp__now_us() >= until)
      return;
  }
}

int pp_cq_next(pp_cq_t *cq, int64_t timeout_ms, pp_future_t **out) {
  int64_t end;
  pp__queue_t *q;
  int spun = 0;
  if (out != NULL)
    *out = NULL;
  if (cq == NULL || out == NULL)
    return pp__fail(PP_EINVAL, "pp_cq_next: cq and future must be set");
  if (cq_forked(cq, "pp_cq_next") != 0)
    return PP_ECLOSED;
  end = timeout_ms < 0 ? PP__NEVER : pp__deadline_ms(timeout_ms);
  for (;;) {
    pp__mutex_lock(cq->lock);
    while (pp__queue_empty(&cq->ready)) {
      size_t n = cq->n;
      if (n == 0) {
        pp__mutex_unlock(cq->lock);
        return 0;
      }
      if (!spun && timeout_ms != 0) {
        /* Tiny calls finish every few microseconds: a short look first
         * saves the sleep and the wake-up, which cost more. */
        pp_pool_t *assist = cq->assist;
        pp__mutex_unlock(cq->lock);
        cq_spin(cq, assist, end);
        spun = 1;
        pp__mutex_lock(cq->lock);
        continue;
      }
      if (end == PP__NEVER) {
        pp__cond_wait(cq->cond, cq->lock);
        continue;
      }
      if (pp__now_us() >= end) {
        pp__mutex_unlock(cq->lock);
        return pp__fail(PP_ETIMEDOUT,
                        "pp_cq_next: none of the queue's %zu futures "
                        "finished in %lld ms",
                        n, (long long)timeout_ms);
      }
      pp__cond_timedwait(cq->cond, cq->lock, pp__us_left(end));
    }
    q = pp__queue_head(&cq->ready);
    pp__queue_remove(q);
    PP__STORE_REL32(&cq->nready, cq->nready - 1);
    /* The last one out: other threads waiting on the queue return. */
    if (--cq->n == 0)
      pp__cond_broadcast(cq->cond);
    pp__mutex_unlock(cq->lock);
    if (!cq_let_go(pp__queue_data(q, pp_future_t, cq_link))) {
      *out = pp__queue_data(q, pp_future_t, cq_link);
      return 1;
    }
    /* Freed by the program while it was being handed out: the next. */
  }
}

void pp_cq_free(pp_cq_t *cq) {
  pp__queue_t *q;
  if (cq == NULL || cq_forked(cq, "pp_cq_free") != 0)
    return;
  for (;;) {
    pp__mutex_lock(cq->lock);
    q = !pp__queue_empty(&cq->ready)     ? pp__queue_head(&cq->ready)
        : !pp__queue_empty(&cq->pending) ? pp__queue_head(&cq->pending)
                                         : NULL;
    if (q != NULL && !pp__queue_empty(&cq->ready))
      PP__STORE_REL32(&cq->nready, cq->nready - 1);
    if (q != NULL) {
      pp__queue_remove(q);
      cq->n--;
    }
    pp__mutex_unlock(cq->lock);
    if (q == NULL)
      break;
    cq_let_go(pp__queue_data(q, pp_future_t, cq_link));
  }
  if (cq->assist != NULL) {
    pp__mutex_lock(cq->assist->lock);
    pp__pool_leave_unlock(cq->assist);
  }
  pp__cond_free(cq->cond);
  pp__mutex_free(cq->lock);
  free(cq);
}
