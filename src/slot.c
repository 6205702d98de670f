/*
 * slot.c - one thread per worker: start it, hand it calls, read its replies,
 * notice its death and replace it.
 *
 * The thread owns the worker's channel for reading and, with slot->wlock,
 * for writing.  It takes calls from the pool's queue (several at once when a
 * map pipelines them), sends them, and reads frames until each has its
 * RESULT or ERROR.  If the channel ends early the worker has died: the call
 * it was running fails with the reason (signal, exit code, or the timeout or
 * cancel the watch thread killed it for), the calls queued behind it on the
 * worker go back to the pool's queue, and a new worker is started.  So no
 * call is lost or reported twice, and nothing waits for a dead process.
 *
 * The channel is tied to the worker's process (pp__chan_bind_proc), so a
 * worker that dies is noticed even when a process its task forked still
 * holds the worker's end of the channel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Consecutive start failures after which a slot counts as broken.  When
 * every slot of a pool is broken, no worker can serve, and queued calls
 * fail with PP_ESPAWN instead of waiting. */
#define PP__SPAWN_GIVE_UP 3
/* Attempts at a worker's first start before pp_pool_create() fails. */
#define PP__START_TRIES 3
/* How long a worker that was sent BYE may take to exit before it is
 * killed. */
#define PP__RETIRE_WAIT_MS 2000

static void slot_set_start_error(pp__slot_t *s, int status) {
  pp__format(s->start_error, sizeof(s->start_error), "%s", pp_last_error());
  s->start_status = status;
}

void pp__slot_publish(pp__slot_t *s, pp__proc_t *proc, pp__chan_t *chan) {
  pp_pool_t *pool = s->pool;
  pp__mutex_lock(s->wlock);
  pp__mutex_lock(pool->lock);
  s->proc = proc;
  s->chan = chan;
  s->pid = proc != NULL ? pp__proc_pid(proc) : 0;
  pp__mutex_unlock(pool->lock);
  pp__mutex_unlock(s->wlock);
}

void pp__slot_reap(pp__slot_t *s, int kill_now, pp__exit_t *st,
                   char *last_err, size_t cap) {
  pp_pool_t *pool = s->pool;
  pp__chan_t *chan = s->chan;
  pp__proc_t *proc = s->proc;

  memset(st, 0, sizeof(*st));
  if (last_err != NULL && cap > 0)
    last_err[0] = '\0';
  pp__mutex_lock(pool->lock);
  s->dying = 1;
  pp__mutex_unlock(pool->lock);

  if (proc != NULL) {
    if (kill_now || pp__proc_wait(proc, PP__RETIRE_WAIT_MS, st) != 0)
      pp__proc_kill(proc);
    if (!st->reason[0])
      pp__proc_wait(proc, -1, st);
  }
  /* The worker has ended, so what it wrote is all in the streams: the
   * drains deliver that and stop at once, whoever else (a process its task
   * started) still holds the other end. */
  pp__drain_stop(s->out);
  pp__drain_stop(s->err);
  pp__drain_join(s->out, NULL, 0);
  pp__drain_join(s->err, last_err, cap);
  s->out = s->err = NULL;

  pp__slot_publish(s, NULL, NULL);
  pp__chan_close(chan);
  pp__proc_free(proc);

  pp__mutex_lock(pool->lock);
  s->ready = 0;
  s->dying = 0;
  s->kill_target = NULL;
  pp__mutex_unlock(pool->lock);
}

/* Marks the head call as running on the worker from now on. */
static void start_head_locked(pp__slot_t *s) {
  pp_future_t *f;
  if (s->ninflight == 0)
    return;
  f = s->inflight[0];
  if (f->timeout_ms > 0) {
    f->deadline = pp__deadline_ms(f->timeout_ms);
    if (f->deadline != PP__NEVER)
      pp__watch_poke(s->pool);
  }
}

/* Waits for queued work; takes up to a chunk of it, and never more calls
 * than the worker has left before it is replaced.  Returns 0 when the pool
 * is stopping and the queue is empty. */
static int take_work(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  size_t k;
  pp__mutex_lock(pool->lock);
  while (pool->q_head == NULL && !pool->stopping)
    pp__cond_wait(pool->work_cond, pool->lock);
  if (pool->q_head == NULL) {
    pp__mutex_unlock(pool->lock);
    return 0;
  }
  k = pool->q_head->chunk;
  if (k < 1)
    k = 1;
  if (k > PP__MAX_CHUNK)
    k = PP__MAX_CHUNK;
  if (pool->max_calls > 0 && pool->max_calls - s->calls < k)
    k = (size_t)(pool->max_calls - s->calls);
  while (pool->q_head != NULL && s->ninflight < k) {
    pp_future_t *f = pool->q_head;
    pool->q_head = f->qnext;
    if (pool->q_head)
      pool->q_head->qprev = NULL;
    else
      pool->q_tail = NULL;
    f->qnext = f->qprev = NULL;
    f->state = PP__RUNNING;
    f->slot = s;
    s->inflight[s->ninflight++] = f;
    pool->running++;
  }
  start_head_locked(s);
  pp__mutex_unlock(pool->lock);
  return 1;
}

/* Sends the in-flight calls.  The arguments of borrowed or owned futures
 * stay valid: a future is only freed after it is finished, and it is only
 * finished by this thread while it is in flight. */
static int send_calls(pp__slot_t *s) {
  unsigned char prefix[2 + PP__NAME_MAX];
  unsigned char batch[16384];
  size_t i, used = 0;
  int rc = 0;
  pp__mutex_lock(s->wlock);
  for (i = 0; i < s->ninflight && rc == 0; i++) {
    pp_future_t *f = s->inflight[i];
    size_t plen = pp__wire_call_prefix(prefix, f->task);
    size_t size = PP__WIRE_HEADER + plen + f->arg_len;
    /* Small calls of a chunk go out together in one write. */
    if (used + size > sizeof(batch) && used > 0) {
      rc = pp__chan_write(s->chan, batch, used);
      used = 0;
    }
    if (rc == 0 && size <= sizeof(batch))
      used += pp__wire_put_frame(batch + used, PP__FRAME_CALL, f->id, prefix,
                                 plen, f->arg, f->arg_len);
    else if (rc == 0)
      rc = pp__wire_send(s->chan, PP__FRAME_CALL, f->id, prefix, plen, f->arg,
                         f->arg_len, NULL, 0);
  }
  if (rc == 0 && used > 0)
    rc = pp__chan_write(s->chan, batch, used);
  pp__mutex_unlock(s->wlock);
  return rc;
}

/* Finishes the head call; pool->lock held. */
static void finish_head_locked(pp__slot_t *s, int status, void *data,
                               size_t len, char *msg, int code, int sig) {
  pp_future_t *f = s->inflight[0];
  size_t i;
  for (i = 1; i < s->ninflight; i++)
    s->inflight[i - 1] = s->inflight[i];
  s->ninflight--;
  s->pool->running--;
  s->calls++;
  f->slot = NULL;
  f->deadline = PP__NEVER;
  pp__future_finish(f, status, data, len, msg, code, sig);
  start_head_locked(s);
}

/* Reads replies until every in-flight call is finished. */
static int read_replies(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  pp__frame_t fr;
  void *payload;
  int rc, status, wake;
  char *msg;

  while (s->ninflight > 0) {
    rc = pp__wire_recv_header(s->rd, &fr);
    if (rc)
      return rc;
    if (fr.type != PP__FRAME_LOG && fr.type != PP__FRAME_RESULT &&
        fr.type != PP__FRAME_ERROR)
      return pp__set_error(PP_EPROTO, "worker %d sent frame type %d",
                           s->index, fr.type);
    if (fr.type != PP__FRAME_LOG && fr.id != s->inflight[0]->id)
      return pp__set_error(PP_EPROTO,
                           "worker %d answered call %llu, not %llu", s->index,
                           (unsigned long long)fr.id,
                           (unsigned long long)s->inflight[0]->id);
    rc = pp__wire_recv_payload(s->rd, &fr, &payload);
    if (rc)
      return rc;
    if (fr.type == PP__FRAME_LOG) {
      pp__log_frame(s->pool, s->index, &fr, payload);
      free(payload);
      continue;
    }
    msg = NULL;
    status = 0;
    if (fr.type == PP__FRAME_ERROR) {
      rc = pp__wire_parse_error(payload, fr.len, &status, &msg);
      free(payload);
      payload = NULL;
      if (rc)
        return rc;
    }
    pp__mutex_lock(pool->lock);
    if (status != PP_ECANCELED && s->inflight[0]->cancel) {
      /* A cancelled call reports the cancel whether it finished anyway or
       * gave up with an error of its own (a task that notices
       * pp_call_cancelled() usually returns pp_call_fail()), so the caller
       * sees one consistent outcome for what it asked. */
      char *why = msg;
      free(payload);
      payload = NULL;
      status = PP_ECANCELED;
      msg = why ? pp__strdup_printf("call %llu was cancelled while it ran "
                                    "(the task said: %s)",
                                    (unsigned long long)fr.id, why)
                : pp__strdup_printf("call %llu was cancelled while it ran",
                                    (unsigned long long)fr.id);
      free(why);
    }
    pool->defer_wakeup = 1;
    finish_head_locked(s, status, payload, status ? 0 : (size_t)fr.len, msg,
                       0, 0);
    pool->defer_wakeup = 0;
    wake = pool->wakeup_pending;
    pool->wakeup_pending = 0;
    pp__mutex_unlock(pool->lock);
    if (wake)
      pp__cond_broadcast(pool->done_cond);
  }
  return 0;
}

/* Puts the in-flight calls from index `from` on back to the front of the
 * queue, in their order (cancelled ones finish instead); pool->lock held. */
static void requeue_locked(pp__slot_t *s, size_t from) {
  pp_pool_t *pool = s->pool;
  size_t i;
  for (i = s->ninflight; i-- > from;) {
    pp_future_t *f = s->inflight[i];
    f->slot = NULL;
    f->deadline = PP__NEVER;
    pool->running--;
    if (f->cancel) {
      pp__future_finish(f, PP_ECANCELED, NULL, 0,
                        pp__strdup_printf("call %llu was cancelled",
                                          (unsigned long long)f->id),
                        0, 0);
      continue;
    }
    f->state = PP__QUEUED;
    f->qprev = NULL;
    f->qnext = pool->q_head;
    if (pool->q_head)
      pool->q_head->qprev = f;
    else
      pool->q_tail = f;
    pool->q_head = f;
  }
  s->ninflight = from;
}

/* The worker died or broke the protocol: settle its calls and reap it. */
static void slot_bury(pp__slot_t *s, int rc) {
  pp_pool_t *pool = s->pool;
  char why[512];
  pp__exit_t st;
  int64_t pid = s->pid;
  pp_future_t *target;
  int kill_status;

  pp__format(why, sizeof(why), "%s", pp_last_error());
  pp__mutex_lock(pool->lock);
  target = s->kill_target;
  kill_status = s->kill_status;
  pp__mutex_unlock(pool->lock);
  pp__slot_reap(s, rc != PP_ECLOSED, &st, NULL, 0);

  pp__mutex_lock(pool->lock);
  if (s->ninflight > 0 && target != NULL && target != s->inflight[0]) {
    /* The pool killed this worker for a call that then finished in time; the
     * calls still on it are innocent and run again elsewhere. */
    requeue_locked(s, 0);
  } else if (s->ninflight > 0) {
    pp_future_t *head = s->inflight[0];
    int status = PP_EWORKERDIED;
    char *msg;
    pool->stats.workers_died++;
    if (target == head && kill_status == PP_ETIMEDOUT) {
      status = PP_ETIMEDOUT;
      msg = pp__strdup_printf("call %llu of '%s' ran past its timeout of "
                              "%lld ms; worker %d (pid %lld) was killed",
                              (unsigned long long)head->id, head->task,
                              (long long)head->timeout_ms, s->index,
                              (long long)pid);
    } else if (head->cancel) {
      status = PP_ECANCELED;
      msg = pp__strdup_printf("call %llu of '%s' was cancelled; worker %d "
                              "(pid %lld) %s",
                              (unsigned long long)head->id, head->task,
                              s->index, (long long)pid, st.reason);
    } else if (rc == PP_EPROTO || rc == PP_ENOMEM) {
      status = rc;
      msg = pp__strdup_printf("worker %d (pid %lld): %s", s->index,
                              (long long)pid, why);
    } else {
      msg = pp__strdup_printf("worker %d (pid %lld) %s during call %llu of "
                              "'%s'", s->index, (long long)pid, st.reason,
                              (unsigned long long)head->id, head->task);
    }
    /* Only the head was running; the calls behind it never started. */
    requeue_locked(s, 1);
    finish_head_locked(s, status, NULL, 0, msg, st.exit_code, st.term_signal);
  }
  pp__cond_broadcast(pool->work_cond);
  pp__mutex_unlock(pool->lock);
}

/* Returns 1 if the worker ended while the slot was waiting for work (a
 * stray signal, such as a terminal's Ctrl-C sent to its process group, or
 * the OOM killer), after settling the calls just taken: they have not been
 * sent, so they go back to the front of the queue and run on a replacement,
 * instead of failing with PP_EWORKERDIED as if the worker had died running
 * them.  A worker that dies after this check and before it reads its calls
 * still fails the first one; only a reply could tell the two cases apart. */
static int slot_lost_idle_worker(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  pp__exit_t st;
  if (pp__proc_wait(s->proc, 0, &st) != 0)
    return 0;
  pp__mutex_lock(pool->lock);
  requeue_locked(s, 0);
  pp__cond_broadcast(pool->work_cond);
  pp__mutex_unlock(pool->lock);
  pp__slot_reap(s, 0, &st, NULL, 0);
  return 1;
}

/* Asks the worker to finish and reaps it. */
static void slot_retire(pp__slot_t *s) {
  pp__exit_t st;
  if (s->proc == NULL)
    return;
  pp__mutex_lock(s->wlock);
  pp__wire_send(s->chan, PP__FRAME_BYE, 0, NULL, 0, NULL, 0, NULL, 0);
  pp__mutex_unlock(s->wlock);
  pp__slot_reap(s, 0, &st, NULL, 0);
}

/* Fails every queued call with PP_ESPAWN when no slot of the pool can start
 * a worker, so callers are told at once instead of waiting for a worker
 * that will not come; pool->lock held.  While any slot may still serve,
 * queued calls wait for it. */
static void fail_queue_if_hopeless_locked(pp_pool_t *pool) {
  while (pool->broken_slots == pool->nslots && pool->q_head != NULL) {
    pp_future_t *f = pool->q_head;
    pool->q_head = f->qnext;
    if (pool->q_head)
      pool->q_head->qprev = NULL;
    else
      pool->q_tail = NULL;
    f->qnext = f->qprev = NULL;
    pp__future_finish(f, PP_ESPAWN, NULL, 0,
                      pp__strdup_printf("no worker of the pool can be "
                                        "started: %s", pool->broken_reason),
                      0, 0);
  }
}

/* Counts a failed start; after PP__SPAWN_GIVE_UP in a row the slot is
 * broken, and if that leaves no slot that can serve, the queue fails. */
static void note_spawn_failure(pp__slot_t *s, const char *why) {
  pp_pool_t *pool = s->pool;
  s->spawn_failures++;
  pp__mutex_lock(pool->lock);
  if (s->spawn_failures >= PP__SPAWN_GIVE_UP) {
    if (!s->broken) {
      s->broken = 1;
      pool->broken_slots++;
    }
    pp__format(pool->broken_reason, sizeof(pool->broken_reason), "%s", why);
    fail_queue_if_hopeless_locked(pool);
  }
  pp__mutex_unlock(pool->lock);
}

static void note_spawn_success(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  s->spawn_failures = 0;
  pp__mutex_lock(pool->lock);
  if (s->broken) {
    s->broken = 0;
    pool->broken_slots--;
  }
  s->ready = 1;
  pp__mutex_unlock(pool->lock);
}

int pp__pool_hopeless_locked(const pp_pool_t *pool) {
  return pool->nslots > 0 && pool->broken_slots == pool->nslots;
}

/* Sleeps for a back-off, returning early when the pool stops. */
static void backoff(pp__slot_t *s) {
  pp_pool_t *pool = s->pool;
  int n = s->spawn_failures < 5 ? s->spawn_failures : 5;
  int64_t end = pp__now_us() + ((int64_t)50000 << n);
  pp__mutex_lock(pool->lock);
  while (!pool->stopping && pp__now_us() < end)
    pp__cond_timedwait(pool->work_cond, pool->lock, pp__us_left(end));
  pp__mutex_unlock(pool->lock);
}

void *APR_THREAD_FUNC pp__slot_main(apr_thread_t *thread, void *data) {
  pp__slot_t *s = data;
  pp_pool_t *pool = s->pool;
  int rc;

  for (;;) {
    /* (A worker that died while idle is noticed after work is taken, by
     * slot_lost_idle_worker, and replaced before it gets a call.) */
    if (s->proc == NULL) {
      rc = pp__slot_spawn(s);
      pp__mutex_lock(pool->lock);
      /* A first start that failed for a reason that may pass (the system
       * was short of something, a slow start-up) is tried again before
       * pp_pool_create() gives up; an initializer's failure is final. */
      if (!s->started &&
          (rc == 0 || rc == PP_ETASK || rc == PP_ENOTASK ||
           s->spawn_failures + 1 >= PP__START_TRIES || pool->stopping)) {
        s->started = 1;
        if (rc != 0)
          slot_set_start_error(s, rc);
        pp__cond_broadcast(pool->done_cond);
      }
      pp__mutex_unlock(pool->lock);
      if (rc != 0) {
        char why[512];
        pp__format(why, sizeof(why), "%s", pp_last_error());
        note_spawn_failure(s, why);
        pp__mutex_lock(pool->lock);
        rc = pool->stopping;
        pp__mutex_unlock(pool->lock);
        if (rc)
          break;
        backoff(s);
        continue;
      }
      note_spawn_success(s);
    }
    if (!take_work(s))
      break;
    if (slot_lost_idle_worker(s))
      continue;
    rc = send_calls(s);
    if (rc == 0)
      rc = read_replies(s);
    if (rc != 0) {
      slot_bury(s, rc);
      continue;
    }
    if (pool->max_calls > 0 && s->calls >= pool->max_calls)
      slot_retire(s);
  }
  slot_retire(s);
  /* Returning ends the thread (APR frees its pool with the parent pool).
   * apr_thread_exit() would call pthread_exit(), whose forced unwinding
   * leaves AddressSanitizer's stack poison behind and makes the thread's
   * teardown report a false stack-buffer-overflow. */
  (void)thread;
  return NULL;
}

int pp__slot_start(pp__slot_t *s) {
  apr_status_t rv;
  int rc;
  s->rd = malloc(sizeof(*s->rd));
  if (s->rd == NULL)
    return pp__set_error(PP_ENOMEM, "cannot allocate a worker's reader");
  rc = pp__mutex_new(&s->wlock);
  if (rc)
    return rc;
  rv = apr_thread_create(&s->thread, NULL, pp__slot_main, s, s->pool->mem);
  if (rv != APR_SUCCESS)
    return pp__from_apr(rv, "apr_thread_create");
  return 0;
}
