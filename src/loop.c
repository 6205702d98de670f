/*
 * loop.c - the pool's I/O thread: one thread for all of a pool's workers.
 *
 * Each round it reads the workers' result rings, finishes the calls whose
 * outcomes came (under pool->lock, once for all of them), hands queued calls
 * to workers with room, writes their records (outside the lock), and looks
 * after deadlines: timeouts, the grace of cancels, starts, retirements and
 * back-offs.  When nothing happens it spins for a few microseconds, then
 * sleeps in the poller, which wakes it for a result (a worker signals the
 * pool's wake object only when it sees this thread asleep), for a caller's
 * news (the same wake object), for a worker's end (its process), or at the
 * next deadline.
 *
 * Nothing here waits for a worker: a worker that stops reading (SIGSTOP, a
 * debugger) only stops taking calls, and is killed when a deadline of its
 * own runs out.  Cancels are words in shared memory, never messages.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Outcomes gathered per round before they are handed to their sources. */
#define PP__BATCH 256
/* How long past its due time a kill for a timeout or a cancel waits for
 * the worker's unread records (kill_for). */
#define PP__KILL_SETTLE_US 100000

typedef struct loop_s {
  pp_pool_t *pool;
  pp__outcome_t outs[PP__BATCH];
  size_t nouts;
  void *tags[64];
  int ntags;
  int busy;   /* this round did something: spin before sleeping */
  int assist; /* a caller's round (pp__loop_assist): plain outcomes only */
  int left;   /* ... and it left records to the I/O thread */
  int64_t steal_at; /* the next time a call may be taken back */
  pp__take_t *takes; /* the I/O thread's plan: PP__TAKE_MAX entries */
} loop_t;

/* Finishes the gathered outcomes; pool->lock held.  Returns 1 if the
 * waiters should be woken (pp__src_finish_locked). */
static int apply_outcomes_locked(loop_t *L) {
  pp_pool_t *pool = L->pool;
  size_t i;
  int wake = 0;
  for (i = 0; i < L->nouts; i++) {
    pp__outcome_t *o = &L->outs[i];
    pp__src_t *src = o->f.src;
    src->inflight--;
    pool->running--;
    if (o->status != PP_ECANCELED && (src->cancel || o->f.cancelled)) {
      /* A cancelled call reports the cancel whether it finished anyway or
       * gave up with an error of its own (a task that notices
       * pp_call_cancelled() usually returns pp_call_fail()), so the caller
       * sees one consistent outcome for what it asked. */
      char *msg =
          o->message
              ? pp__strdup_printf("call %llu was cancelled while it "
                                  "ran (the task said: %s)",
                                  (unsigned long long)o->f.id, o->message)
              : pp__strdup_printf("call %llu was cancelled while it "
                                  "ran",
                                  (unsigned long long)o->f.id);
      free(o->message);
      pp_free(o->data);
      o->data = NULL;
      o->len = 0;
      o->message = msg;
      o->status = PP_ECANCELED;
    }
    wake |= pp__src_finish_locked(src, o->f.index, o->status, o->data, o->len,
                                  o->message, 0, 0);
  }
  L->nouts = 0;
  return wake;
}

/* Returns 1 if a caller's round may take record `rec` of worker `s`: the
 * outcome of the call it is running, whose reading has no side effects
 * that cannot be undone (a blob result takes a descriptor from the
 * channel, so it is the I/O thread's). */
static int assist_may_take(pp__slot_t *s, const pp__rec_t *rec) {
  if (s->state != PP__W_READY || s->fl_n == 0 ||
      rec->id != pp__flight_at(s, 0)->id)
    return 0;
  /* The end of its output is the I/O thread's to deliver (log callbacks
   * run there only). */
  if (pp__lines_held(s->lines[0], rec->id) ||
      pp__lines_held(s->lines[1], rec->id))
    return 0;
  return (rec->kind == PP__REC_RESULT && rec->aux != 1) ||
         rec->kind == PP__REC_ERROR;
}

/* Reads what a worker has published.  Returns 0, or the reason to kill it
 * (a broken record: PP_EPROTO; PP_ENOMEM), told in *err. */
static int collect(loop_t *L, pp__slot_t *s, pp__err_t *err) {
  pp__rec_t rec;
  int rc = 0, released = 0;
  uint64_t end = 0, before = s->results.tail;
  while (L->nouts < PP__BATCH &&
         (rc = pp__ring_next(&s->results, &rec, err)) == 1) {
    if (L->assist && !assist_may_take(s, &rec)) {
      s->results.tail = before; /* unread: the I/O thread's */
      L->left = 1;
      break;
    }
    L->busy = 1;
    end = rec.end;
    released = 1;
    if (pp__record_side(s, &rec))
      continue;
    if (s->state == PP__W_STARTING || s->state == PP__W_INIT) {
      pp__life_start_record(s, &rec);
      if (s->state == PP__W_NONE)
        return 0; /* the start failed; the slot is clean again */
      continue;
    }
    if (s->fl_n == 0 || rec.id != pp__flight_at(s, 0)->id) {
      pp__record_drop(&rec);
      return pp__err_set(err, PP_EPROTO,
                         "worker %d answered call %llu, which "
                         "it was not running",
                         s->index, (unsigned long long)rec.id);
    }
    if (!L->assist) {
      pp__lines_call_end(s->pool, s->lines[0], rec.id);
      pp__lines_call_end(s->pool, s->lines[1], rec.id);
    }
    rc = pp__record_outcome(s, &rec, pp__flight_at(s, 0), &L->outs[L->nouts],
                            err);
    if (rc != 0 && L->assist) {
      /* Nothing of it was taken (assist_may_take): the I/O thread reads
       * it again and buries the worker. */
      s->results.tail = before;
      L->left = 1;
      rc = 0;
      break;
    }
    if (rc != 0)
      return rc;
    if (pp__flight_at(s, 0)->withdrawn) {
      /* Taken back (pp__dispatch_steal_locked): the worker skipped it,
       * and the call is another worker's. */
      pp__outcome_drop(&L->outs[L->nouts]);
    } else {
      L->nouts++;
      s->ran++;
    }
    pp__flight_pop(s);
    before = s->results.tail;
  }
  if (rc < 0 && L->assist) {
    L->left = 1;
    rc = 0;
  }
  if (rc < 0)
    return rc;
  if (released && pp__ring_release(&s->results, end))
    pp__life_wake(s); /* it waits for room */
  return 0;
}

/* Cancels the calls in flight whose sources were cancelled.  A call the
 * worker has not started is withdrawn from its ring (the state word's
 * compare-and-swap decides against the worker's start, as a steal does)
 * and finishes cancelled at once: it never runs, and it does not wait for
 * the call ahead of it to end.  A call that started gets its cancel word,
 * and a cancelled head its grace period.  Returns 1 if waiters should be
 * woken. */
static int send_cancels(loop_t *L) {
  pp_pool_t *pool = L->pool;
  int i, wake = 0;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    size_t k;
    if (s->state != PP__W_READY && s->state != PP__W_RETIRING)
      continue;
    for (k = 0; k < s->fl_n; k++) {
      pp__flight_t *f = pp__flight_at(s, k);
      int cancel;
      if (f->withdrawn)
        continue;
      pp__mutex_lock(pool->lock);
      if (pool->cancel_all)
        f->src->cancel = 1;
      cancel = f->src->cancel;
      if (cancel && !f->cancelled && !f->refused &&
          pp__ring_withdraw(&s->calls, f->rec, f->id)) {
        /* The worker skips it; its answer is dropped (collect). */
        f->withdrawn = 1;
        pp__src_give_back_locked(f->src, f->index); /* ends it cancelled */
        wake = 1;
        pp__mutex_unlock(pool->lock);
        continue;
      }
      pp__mutex_unlock(pool->lock);
      if (!cancel || f->cancelled)
        continue;
      f->cancelled = 1;
      pp__ring_set_cancel(&s->calls, f->rec, f->id);
      if (k == 0 && s->cancel_deadline == PP__NEVER)
        s->cancel_deadline = pp__deadline_ms(pool->grace_ms);
    }
  }
  return wake;
}

/* Kills a worker for its head call (a timeout, the end of a cancel's grace
 * period) that fell due at `due`; its death settles the call.  Returns the
 * time to look again instead, if the kill is put off.
 *
 * The head may have finished just now: its outcome would be in the result
 * ring, and the worker may already run the next call, which the kill would
 * fail for nothing (life.c fails every call that had started).  So while
 * the ring holds something unread, the kill waits for the next round,
 * which reads it first; but not beyond PP__KILL_SETTLE_US past the due
 * time, so a worker that keeps writing cannot put its kill off for ever. */
static int64_t kill_for(pp__slot_t *s, int status, int64_t due, int64_t now) {
  if (s->kill_status != 0)
    return PP__NEVER;
  if (now - due < PP__KILL_SETTLE_US && pp__ring_has_data(&s->results))
    return now;
  s->kill_status = status;
  s->kill_id = pp__flight_at(s, 0)->id;
  pp__proc_kill(s->proc);
  return PP__NEVER;
}

/* Looks after every worker's deadlines; returns the next one. */
static int64_t deadlines(loop_t *L, int64_t now) {
  pp_pool_t *pool = L->pool;
  int64_t next = PP__NEVER;
  int i;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    int64_t d = PP__NEVER;
    switch (s->state) {
      case PP__W_STARTING:
        if (now >= s->deadline) {
          pp__err_t err;
          pp__err_set(&err, PP_ETIMEDOUT,
                      "worker %d (%s) did not say hello "
                      "within %lld ms",
                      s->index, pp__image_path(pool->image),
                      (long long)pool->start_timeout_ms);
          pp__life_start_failed(s, &err);
          d = s->deadline;
        } else {
          d = s->deadline;
        }
        break;
      case PP__W_RETIRING:
        if (now >= s->deadline && s->kill_status == 0) {
          s->kill_status = PP_ECLOSED;
          pp__proc_kill(s->proc);
        }
        d = s->deadline;
        break;
      case PP__W_READY:
        if (s->fl_n > 0 && s->kill_status == 0 &&
            !pp__flight_at(s, 0)->withdrawn) {
          pp__flight_t *head = pp__flight_at(s, 0);
          int64_t t = head->src->timeout_ms;
          if (s->head_since == 0)
            s->head_since = now;
          if (t > 0 && t < (PP__NEVER - s->head_since) / 1000) {
            int64_t due = s->head_since + t * 1000;
            d = now >= due ? kill_for(s, PP_ETIMEDOUT, due, now) : due;
          }
          if (head->cancelled && s->cancel_deadline == PP__NEVER)
            s->cancel_deadline = pp__deadline_ms(pool->grace_ms);
          if (head->cancelled && now >= s->cancel_deadline) {
            int64_t again = kill_for(s, PP_ECANCELED, s->cancel_deadline, now);
            if (again < d)
              d = again;
          } else if (head->cancelled && s->cancel_deadline < d) {
            d = s->cancel_deadline;
          }
        }
        break;
      case PP__W_NONE:
        d = s->deadline; /* the next start */
        break;
      default:
        break;
    }
    if (d < next)
      next = d;
  }
  return next;
}

/* Reacts to what the poller reported: ended workers are settled. */
static void handle_tags(loop_t *L) {
  pp_pool_t *pool = L->pool;
  int i;
  for (i = 0; i < L->ntags; i++) {
    pp__slot_t *s = L->tags[i];
    if ((void *)s == (void *)pool) {
      pp__wake_clear(pool->wake);
      continue;
    }
    L->busy = 1;
    if (s->state == PP__W_STARTING || s->state == PP__W_INIT) {
      pp__err_t err;
      pp__err_set(&err, PP_ECLOSED, "ended");
      pp__life_start_failed(s, &err);
    } else if (s->state != PP__W_NONE)
      pp__life_bury(s, 0, NULL);
  }
  L->ntags = 0;
}

/* Prepares to sleep: every result ring is told, and looked at once more.
 * Returns 1 if something arrived meanwhile (then it does not sleep). */
static int sleep_prepare(pp_pool_t *pool) {
  int i, arrived = 0;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state != PP__W_NONE && pp__ring_sleep_prepare(&s->results))
      arrived = 1;
  }
  return arrived;
}

static void sleep_end(pp_pool_t *pool) {
  int i;
  for (i = 0; i < pool->nslots; i++)
    if (pool->slots[i].state != PP__W_NONE)
      pp__ring_awake(&pool->slots[i].results);
}

/* Returns 1 if some result ring has something to read. */
static int results_waiting(pp_pool_t *pool) {
  int i;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state != PP__W_NONE && pp__ring_has_data(&s->results))
      return 1;
  }
  return 0;
}

/* Before a spin without io_lock: marks how far each result ring has been
 * read, and returns 1 if one already holds records (then there is no
 * point in spinning).  io_lock held.  During the spin a caller may read
 * the rings (pp__loop_assist) and move their private cursors, so the spin
 * looks only at the producers' heads in shared memory (spin_news), never
 * at the cursors. */
static int spin_mark(pp_pool_t *pool) {
  int i;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state == PP__W_NONE)
      continue;
    if (pp__ring_has_data(&s->results))
      return 1;
    s->spin_mark = s->results.seen;
  }
  return 0;
}

/* Returns 1 if a worker has published records since spin_mark(). */
static int spin_news(pp_pool_t *pool) {
  int i;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state != PP__W_NONE &&
        PP__LOAD_ACQ64(&s->results.hdr->head) != s->spin_mark)
      return 1;
  }
  return 0;
}

/* The pool is stopping and every call is done: workers are sent away,
 * waited for (at most their retire deadline, then killed) and reaped.
 * Returns 1 once none is left. */
static int wind_down(loop_t *L) {
  pp_pool_t *pool = L->pool;
  int i, left = 0;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state == PP__W_READY && s->fl_n == 0)
      pp__life_retire(s);
    else if (s->state == PP__W_STARTING || s->state == PP__W_INIT) {
      pp__err_t err;
      pp__err_set(&err, PP_ECANCELED, "the pool is being destroyed");
      pp__life_start_failed(s, &err);
    }
    if (s->state != PP__W_NONE)
      left++;
  }
  return left == 0;
}

/* The pool broke (pool->fatal: its poller or a wake object failed, which
 * happens when its descriptors were closed behind its back): every worker
 * is killed and settled now, since the poller that would tell of their
 * ends cannot be trusted.  What they finished keeps its result, what had
 * started fails with the reason, and the rest fails from the queue with
 * it; no worker starts again. */
static void break_down(loop_t *L) {
  pp_pool_t *pool = L->pool;
  int i;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state == PP__W_STARTING || s->state == PP__W_INIT) {
      pp__err_t err;
      pp__err_set(&err, PP_ECANCELED, "the pool broke");
      pp__life_start_failed(s, &err);
    } else if (s->state != PP__W_NONE) {
      pp__proc_kill(s->proc);
      pp__life_bury(s, 0, NULL);
    }
    s->deadline = PP__NEVER;
  }
  pp__mutex_lock(pool->lock);
  pp__pool_fail_queue_locked(pool);
  pp__mutex_unlock(pool->lock);
  pp__cond_broadcast(pool->done_cond);
}

/* Waits in the poller up to timeout_us; a poller that fails breaks the
 * pool (a wait that fails at once would otherwise make the loop spin). */
static void poll_tags(loop_t *L, int64_t timeout_us) {
  pp_pool_t *pool = L->pool;
  L->ntags = pp__poller_wait(pool->poller, timeout_us, L->tags, 64);
  if (L->ntags < 0) {
    char why[512];
    pp__format(why, sizeof(why), "its poller failed: %s", pp__os_reason());
    L->ntags = 0;
    pp__mutex_lock(pool->lock);
    pp__pool_break_locked(pool, PP_EIO, why);
    pp__mutex_unlock(pool->lock);
  }
}

/* The longest sleep now: short while any worker holds calls, whose results
 * may come without a signal (PP__LOOP_SLEEP_BUSY_US). */
static int64_t sleep_cap(pp_pool_t *pool) {
  int i;
  for (i = 0; i < pool->nslots; i++)
    if (pool->slots[i].fl_n > 0 || pool->slots[i].state == PP__W_STARTING ||
        pool->slots[i].state == PP__W_INIT)
      return PP__LOOP_SLEEP_BUSY_US;
  return PP__LOOP_SLEEP_IDLE_US;
}

int pp__loop_assist(pp_pool_t *pool) {
  pp__take_t takes[PP__DISPATCH_MAX];
  pp__err_t err; /* unused: a broken record is left to the I/O thread */
  loop_t *L;
  size_t n;
  int i, wake = 0, took = 0;
  if (!pp__mutex_trylock(pool->io_lock))
    return 0; /* the I/O thread is in a round */
  if (!results_waiting(pool))
    goto cleanup;
  if (pool->assist == NULL) {
    pool->assist = pp__calloc(1, sizeof(loop_t));
    if (pool->assist == NULL)
      goto cleanup; /* the I/O thread does it, as always */
  }
  L = pool->assist;
  L->pool = pool;
  L->assist = 1;
  L->left = 0;
  for (i = 0; i < pool->nslots && L->nouts < PP__BATCH; i++)
    if (pool->slots[i].state == PP__W_READY)
      (void)collect(L, &pool->slots[i], &err);
  /* A call that is now at the head of a worker may have a timeout the
   * sleeping I/O thread does not know of: it must look. */
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state == PP__W_READY && s->fl_n > 0 &&
        !pp__flight_at(s, 0)->withdrawn &&
        pp__flight_at(s, 0)->src->timeout_ms > 0)
      L->left = 1;
  }
  pp__mutex_lock(pool->lock);
  took = L->nouts > 0;
  if (took)
    wake = apply_outcomes_locked(L);
  n = pp__dispatch_plan_locked(pool, takes, PP__DISPATCH_MAX);
  for (i = 0; i < (int)n; i++)
    if (takes[i].src->timeout_ms > 0)
      L->left = 1;
  if (pp__dispatch_steal_possible_locked(pool))
    L->left = 1;
  if (!pp__queue_empty(&pool->pending) || L->left)
    pp__pool_wake_locked(pool);
  pp__mutex_unlock(pool->lock);
  pp__dispatch_write(pool, takes, n);
  if (wake)
    pp__cond_broadcast(pool->done_cond);

cleanup:
  pp__mutex_unlock(pool->io_lock);
  return took;
}

int pp__loop_new(pp_pool_t *pool, pp__err_t *err) {
  loop_t *L = pp__calloc(1, sizeof(*L));
  if (L != NULL)
    L->takes = pp__malloc(PP__TAKE_MAX * sizeof(*L->takes));
  if (L == NULL || L->takes == NULL) {
    free(L);
    return pp__err_set(err, PP_ENOMEM,
                       "pp_pool_create: out of memory for the I/O thread");
  }
  L->pool = pool;
  L->steal_at = PP__NEVER;
  pool->io = L;
  return 0;
}

void pp__loop_free(pp_pool_t *pool) {
  loop_t *L = pool->io;
  if (L != NULL)
    free(L->takes);
  free(L);
  free(pool->assist);
  pool->io = pool->assist = NULL;
}

void *APR_THREAD_FUNC pp__loop_main(apr_thread_t *thread, void *data) {
  pp_pool_t *pool = data;
  /* Made before the thread (pp__loop_new): a thread that cannot allocate
   * would have nobody to tell. */
  loop_t *L = pool->io;
  pp__take_t *takes = L->takes;
  int i, stopping = 0, broken = 0;

  for (;;) {
    int64_t now, next, cap;
    size_t ntakes;
    int news, wake;

    pp__mutex_lock(pool->io_lock);
    /* Ended workers are settled first: what they published still counts. */
    L->busy = 0;
    handle_tags(L);

    /* Starts (and restarts after a back-off). */
    now = pp__now_us();
    if (!stopping && !broken)
      for (i = 0; i < pool->nslots; i++)
        if (pool->slots[i].state == PP__W_NONE &&
            now >= pool->slots[i].deadline)
          pp__life_spawn(&pool->slots[i]);

    /* Results. */
    for (i = 0; i < pool->nslots; i++) {
      pp__slot_t *s = &pool->slots[i];
      pp__err_t err;
      if (s->state == PP__W_NONE)
        continue;
      if (collect(L, s, &err) != 0) {
        pp__mutex_lock(pool->lock);
        apply_outcomes_locked(L);
        pp__mutex_unlock(pool->lock);
        pp__life_bury(s, err.code, err.text);
      }
      if (L->nouts == PP__BATCH) {
        pp__mutex_lock(pool->lock);
        wake = apply_outcomes_locked(L);
        pp__mutex_unlock(pool->lock);
        if (wake)
          pp__cond_broadcast(pool->done_cond);
      }
    }

    /* Outcomes, news and new work, under the lock once. */
    pp__mutex_lock(pool->lock);
    wake = L->nouts > 0 ? apply_outcomes_locked(L) : 0;
    news = pool->news;
    pool->news = 0;
    ntakes = pp__dispatch_plan_locked(pool, takes, PP__TAKE_MAX);
    if (pp__dispatch_steal_locked(pool, &L->steal_at)) {
      /* A call taken back from a cancelled source finished as cancelled. */
      wake = 1;
      ntakes +=
          pp__dispatch_plan_locked(pool, takes + ntakes, PP__TAKE_MAX - ntakes);
    }
    stopping = pool->stopping && pool->queued == 0 && pool->running == 0;
    if (pool->fatal != 0 && !broken) {
      broken = 1;
      ntakes = 0; /* planned flights are settled with their workers */
    }
    pp__mutex_unlock(pool->lock);
    /* After the unlock: a waiter woken under the lock would only block on
     * it again (a second wake-up for every finished call). */
    if (wake)
      pp__cond_broadcast(pool->done_cond);
    if (broken == 1) {
      broken = 2;
      break_down(L);
    }

    if (news && send_cancels(L))
      pp__cond_broadcast(pool->done_cond);
    if (pp__dispatch_write(pool, takes, ntakes))
      L->busy = 1;
    /* Workers that have run their calls go (max_calls_per_worker). */
    for (i = 0; i < pool->nslots; i++) {
      pp__slot_t *s = &pool->slots[i];
      if (s->state == PP__W_READY && s->fl_n == 0 && pool->max_calls > 0 &&
          s->ran >= pool->max_calls)
        pp__life_retire(s);
    }

    next = deadlines(L, pp__now_us());
    if (L->steal_at < next)
      next = L->steal_at;
    if (stopping && wind_down(L)) {
      pp__mutex_unlock(pool->io_lock);
      break;
    }

    /* A broken pool has no poller to trust: it waits for its end on the
     * pool's condition, looking now and then. */
    if (broken) {
      pp__mutex_unlock(pool->io_lock);
      pp__mutex_lock(pool->lock);
      if (!pool->stopping)
        pp__cond_timedwait(pool->done_cond, pool->lock, PP__LOOP_SLEEP_BUSY_US);
      pp__mutex_unlock(pool->lock);
      continue;
    }

    /* Sleep, after a short spin if this round was busy: the next results
     * are likely microseconds away, and a sleep costs more.  Callers may
     * hand out calls meanwhile (pp__dispatch_try). */
    if (L->busy) {
      int64_t until = pp__now_us() + PP__SPIN_US;
      int waiting = spin_mark(pool);
      unsigned turn = 0;
      pp__mutex_unlock(pool->io_lock);
      while (!waiting && pp__now_us() < until && !spin_news(pool))
        pp__spin_turn(turn);
      /* A busy pool still notices a worker's end at once. */
      poll_tags(L, 0);
      continue;
    }
    if (sleep_prepare(pool)) {
      sleep_end(pool);
      pp__mutex_unlock(pool->io_lock);
      continue;
    }
    pp__mutex_lock(pool->lock);
    /* News, or work that came in since the plan, means no sleep. */
    if (pool->news || pp__dispatch_can_take_locked(pool) ||
        (pool->stopping && !stopping && pool->queued == 0 &&
         pool->running == 0)) {
      pp__mutex_unlock(pool->lock);
      sleep_end(pool);
      pp__mutex_unlock(pool->io_lock);
      continue;
    }
    pool->loop_asleep = 1;
    pp__mutex_unlock(pool->lock);
    cap = sleep_cap(pool);
    pp__mutex_unlock(pool->io_lock);
    now = pp__now_us();
    poll_tags(L, next - now > cap ? cap : next > now ? next - now : 0);
    pp__mutex_lock(pool->lock);
    pool->loop_asleep = 0;
    pp__mutex_unlock(pool->lock);
    sleep_end(pool);
  }
  /* Returning ends the thread (APR frees its pool with the parent pool).
   * apr_thread_exit() would call pthread_exit(), whose forced unwinding
   * leaves AddressSanitizer's stack poison behind and makes the thread's
   * teardown report a false stack-buffer-overflow. */
  (void)thread;
  return NULL;
}
