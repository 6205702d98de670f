/*
 * watch.c - the pool's timer thread: call timeouts and cancels.
 *
 * A slot thread is blocked reading its worker's channel while a call runs,
 * so it cannot notice time passing.  This thread sleeps until the nearest
 * deadline of a running call (or until poked), then kills the worker of a
 * call that ran past its timeout, sends CANCEL messages for cancelled calls,
 * and kills the worker of a cancelled call whose grace period is over.  The
 * kill (which also aborts the worker's channel, since a process the task
 * forked may hold it open) makes the slot thread's read end, and the slot
 * settles the call with the reason recorded here (kill_target,
 * kill_status).
 *
 * This thread never waits for a worker: it runs with pool->lock held, only
 * *tries* a slot's write lock and writes a CANCEL only if that cannot block
 * (pp__chan_try_write), and tries again a little later otherwise.  So a
 * worker that stopped reading (SIGSTOP, a debugger, swapping) while its slot
 * thread was writing to it delays nothing but its own cancel, and its grace
 * period still ends in a kill.
 */
#include "internal.h"

/* How soon a CANCEL that could not be written is tried again. */
#define PP__CANCEL_RETRY_US 20000

void pp__watch_poke(pp_pool_t *pool) {
  pp__cond_signal(pool->watch_cond);
}

/* Kills the worker of `s` for its head call; pool->lock held. */
static void kill_for(pp__slot_t *s, int status) {
  if (s->dying || s->proc == NULL || s->kill_target != NULL)
    return;
  s->kill_target = s->inflight[0];
  s->kill_status = status;
  pp__proc_kill(s->proc);
  pp__chan_abort(s->chan);
}

/* Tries to send CANCEL for call `f` on slot `s` without blocking; pool->lock
 * held (trying the write lock out of the usual order cannot deadlock).
 * Returns 1 once it is sent (or cannot ever be: the worker is gone), 0 to
 * try again later. */
static int try_cancel(pp__slot_t *s, pp_future_t *f) {
  unsigned char frame[PP__WIRE_HEADER];
  int rc;
  if (!pp__mutex_trylock(s->wlock))
    return 0;
  rc = PP_ECLOSED;
  if (s->chan != NULL) {
    pp__wire_put_header(frame, PP__FRAME_CANCEL, f->id, 0);
    rc = pp__chan_try_write(s->chan, frame, sizeof(frame));
  }
  pp__mutex_unlock(s->wlock);
  return rc != PP_EAGAIN;
}

void *APR_THREAD_FUNC pp__watch_main(apr_thread_t *thread, void *data) {
  pp_pool_t *pool = data;
  pp__mutex_lock(pool->lock);
  while (!pool->stopping) {
    int64_t now = pp__now_us(), next = PP__NEVER;
    int i;
    size_t j;
    for (i = 0; i < pool->nslots; i++) {
      pp__slot_t *s = &pool->slots[i];
      pp_future_t *f;
      for (j = 0; j < s->ninflight; j++) {
        f = s->inflight[j];
        if (!f->cancel || f->cancel_sent)
          continue;
        if (try_cancel(s, f))
          f->cancel_sent = 1;
        else if (now + PP__CANCEL_RETRY_US < next)
          next = now + PP__CANCEL_RETRY_US;
      }
      if (s->ninflight == 0)
        continue;
      f = s->inflight[0];
      if (f->deadline != PP__NEVER) {
        if (now >= f->deadline)
          kill_for(s, PP_ETIMEDOUT);
        else if (f->deadline < next)
          next = f->deadline;
      }
      if (f->cancel && f->cancel_deadline != PP__NEVER) {
        if (now >= f->cancel_deadline)
          kill_for(s, PP_ECANCELED);
        else if (f->cancel_deadline < next)
          next = f->cancel_deadline;
      }
    }
    if (next == PP__NEVER)
      pp__cond_wait(pool->watch_cond, pool->lock);
    else
      pp__cond_timedwait(pool->watch_cond, pool->lock, next - now);
  }
  pp__mutex_unlock(pool->lock);
  /* Returned, not apr_thread_exit(): see pp__slot_main. */
  (void)thread;
  return NULL;
}
