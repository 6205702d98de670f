/*
 * watch.c - the pool's timer thread: call timeouts and cancels.
 *
 * A slot thread is blocked reading its worker's channel while a call runs,
 * so it cannot notice time passing.  This thread sleeps until the nearest
 * deadline of a running call (or until poked), then kills the worker of a
 * call that ran past its timeout, sends CANCEL messages for cancelled calls,
 * and kills the worker of a cancelled call whose grace period is over.  The
 * kill makes the slot thread's read end, and the slot settles the call with
 * the reason recorded here (kill_target, kill_status).
 *
 * Lock order: slot->wlock before pool->lock.  This thread never writes to a
 * channel while it holds pool->lock.
 */
#include "internal.h"

void pp__watch_poke(pp_pool_t *pool) {
  apr_thread_cond_signal(pool->watch_cond);
}

/* Kills the worker of `s` for its head call; pool->lock held. */
static void kill_for(pp__slot_t *s, int status) {
  if (s->dying || s->proc == NULL || s->kill_target != NULL)
    return;
  s->kill_target = s->inflight[0];
  s->kill_status = status;
  pp__proc_kill(s->proc);
}

/* Sends CANCEL for the first in-flight call of a slot that asked for it and
 * has not been told yet.  Returns 1 if it sent (or tried), with pool->lock
 * released and re-taken in between. */
static int send_one_cancel(pp_pool_t *pool) {
  int i;
  size_t j;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    for (j = 0; j < s->ninflight; j++) {
      pp_future_t *f = s->inflight[j];
      uint64_t id;
      if (!f->cancel || f->cancel_sent)
        continue;
      f->cancel_sent = 1;
      id = f->id;
      apr_thread_mutex_unlock(pool->lock);
      /* If the worker has been replaced meanwhile, the new one does not know
       * the id and ignores the message. */
      apr_thread_mutex_lock(s->wlock);
      if (s->chan != NULL)
        pp__wire_send(s->chan, PP__FRAME_CANCEL, id, NULL, 0, NULL, 0, NULL,
                      0);
      apr_thread_mutex_unlock(s->wlock);
      apr_thread_mutex_lock(pool->lock);
      return 1;
    }
  }
  return 0;
}

void *APR_THREAD_FUNC pp__watch_main(apr_thread_t *thread, void *data) {
  pp_pool_t *pool = data;
  apr_thread_mutex_lock(pool->lock);
  while (!pool->stopping) {
    apr_time_t now = apr_time_now(), next = 0;
    int i;
    if (send_one_cancel(pool))
      continue;
    for (i = 0; i < pool->nslots; i++) {
      pp__slot_t *s = &pool->slots[i];
      pp_future_t *f;
      if (s->ninflight == 0)
        continue;
      f = s->inflight[0];
      if (f->deadline != 0) {
        if (now >= f->deadline)
          kill_for(s, PP_ETIMEDOUT);
        else if (next == 0 || f->deadline < next)
          next = f->deadline;
      }
      if (f->cancel && f->cancel_deadline != 0) {
        if (now >= f->cancel_deadline)
          kill_for(s, PP_ECANCELED);
        else if (next == 0 || f->cancel_deadline < next)
          next = f->cancel_deadline;
      }
    }
    if (next == 0)
      apr_thread_cond_wait(pool->watch_cond, pool->lock);
    else
      apr_thread_cond_timedwait(pool->watch_cond, pool->lock, next - now);
  }
  apr_thread_mutex_unlock(pool->lock);
  /* Returned, not apr_thread_exit(): see pp__slot_main. */
  (void)thread;
  return NULL;
}
