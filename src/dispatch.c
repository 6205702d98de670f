/*
 * dispatch.c - handing calls to workers: which worker gets which queued
 * call (planned under pool->lock), the records written into the workers'
 * call rings (outside it), and taking back a call that waits behind a long
 * one while another worker has nothing to do (work stealing).
 *
 * Everything here runs with io_lock held, by the I/O thread in its round
 * (loop.c) or by a caller that hands out what it submitted
 * (pp__dispatch_try) or reads its own result (pp__loop_assist): io_lock
 * makes the holder the one writer of every call ring.  The functions named
 * _locked also need pool->lock, for the queue and the sources.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Calls a worker holds beyond its chunk, not started, so that it never
 * waits for us between two (pp__dispatch_steal_locked takes them back if
 * need be). */
#define PP__EXTRA_CALLS 1
/* A call waiting behind one that has run this long is taken back for a
 * worker with nothing to do.  Shorter calls finish before a steal would
 * pay off. */
#define PP__STEAL_US 1000

/* Returns 1 if call `index` of `src` must travel as a blob: its record
 * would not fit in a ring record. */
static int needs_blob(const pp__slot_t *s, const pp__src_t *src, size_t index) {
  return pp__call_rec_len(src->task_len, (uint64_t)src->args[index].len, 0) >
         pp__ring_max_payload(&s->calls);
}

/* Plans the next call of `src` into `plan` (a copy of worker `s`'s call
 * ring) and returns the position its record will take, or UINT64_MAX if
 * the worker has no room for it: it holds the chunk of `src` plus
 * PP__EXTRA_CALLS, it has reached max_calls_per_worker, or its ring is
 * full.  pool->lock held. */
static uint64_t plan_next_locked(pp_pool_t *pool, pp__slot_t *s,
                                 pp__ring_t *plan, const pp__src_t *src) {
  size_t index = src->nretry > 0 ? src->retry[src->nretry - 1] : src->next;
  int blob;
  /* fl_n > chunk + EXTRA, written so that no chunk size can wrap it. */
  if (s->state != PP__W_READY ||
      (s->fl_n >= PP__EXTRA_CALLS && s->fl_n - PP__EXTRA_CALLS >= src->chunk) ||
      (pool->max_calls > 0 && s->ran + s->fl_n >= pool->max_calls))
    return UINT64_MAX;
  blob = needs_blob(s, src, index);
  return pp__ring_plan(
      plan, pp__call_rec_len(src->task_len,
                             blob ? 0 : (uint64_t)src->args[index].len, blob));
}

/* Hands worker `s` queued calls, appending them to takes[*n] (up to cap);
 * pool->lock held.  The plan is a copy of the worker's ring, so a worker
 * must be planned once per plan: a second copy would not see the room the
 * first one gave away. */
static void plan_slot_locked(pp_pool_t *pool, pp__slot_t *s, pp__take_t *takes,
                             size_t *n, size_t cap) {
  pp__ring_t plan = s->calls;
  size_t per = 0;
  while (*n < cap && per < PP__TAKE_MAX && !pp__queue_empty(&pool->pending)) {
    pp__src_t *src =
        pp__queue_data(pp__queue_head(&pool->pending), pp__src_t, link);
    pp__flight_t f;
    size_t index;
    memset(&f, 0, sizeof(f));
    f.rec = plan_next_locked(pool, s, &plan, src);
    if (f.rec == UINT64_MAX)
      break; /* the next round */
    pp__src_take_locked(src, &index);
    f.src = src;
    f.index = index;
    f.id = src->first_id + index;
    if (pp__flight_push(s, &f) != 0) {
      pp__src_give_back_locked(src, index);
      break;
    }
    if (s->fl_n == 1)
      s->head_since = pp__now_us();
    takes[*n].slot = s;
    takes[*n].src = src;
    takes[*n].index = index;
    takes[*n].flight = s->fl_n - 1;
    (*n)++;
    per++;
  }
}

size_t pp__dispatch_plan_locked(pp_pool_t *pool, pp__take_t *takes,
                                size_t cap) {
  size_t n = 0, first, k = 0;
  int i;
  /* First the idle workers, so that a call does not wait behind another
   * while a worker has nothing to do. */
  for (i = 0; i < pool->nslots && n < cap; i++)
    if (pool->slots[i].fl_n == 0)
      plan_slot_locked(pool, &pool->slots[i], takes, &n, cap);
  /* Then the busy ones.  A worker planned above holds calls now, and is
   * told apart by its takes, which are in the order of the slots. */
  first = n;
  for (i = 0; i < pool->nslots && n < cap; i++) {
    pp__slot_t *s = &pool->slots[i];
    while (k < first && takes[k].slot < s)
      k++;
    if (s->fl_n > 0 && !(k < first && takes[k].slot == s))
      plan_slot_locked(pool, s, takes, &n, cap);
  }
  return n;
}

int pp__dispatch_can_take_locked(pp_pool_t *pool) {
  pp__src_t *src;
  int i;
  if (pp__queue_empty(&pool->pending))
    return 0;
  src = pp__queue_data(pp__queue_head(&pool->pending), pp__src_t, link);
  for (i = 0; i < pool->nslots; i++) {
    pp__ring_t plan = pool->slots[i].calls;
    if (plan_next_locked(pool, &pool->slots[i], &plan, src) != UINT64_MAX)
      return 1;
  }
  return 0;
}

/* Sends a mapping with the record being written, unless the worker kept it
 * from an earlier call (ring.h, pp__mapcache_t: our copy of its
 * bookkeeping says which).  Sets *sent. */
static int send_map(pp__slot_t *s, pp__shm_t *shm, uint64_t *handle, int *sent,
                    pp__err_t *err) {
  void *obj, *out[PP__MAPCACHE_N];
  int rc, n;
  *sent = 0;
  *handle = 0;
  if (pp__mapcache_find(&s->maps, pp__shm_serial(shm), &obj))
    return 0;
  rc = pp__shm_send(s->chan, shm, s->proc, 0, handle, NULL);
  if (rc != 0)
    return pp__err_os(err, rc);
  *sent = 1;
  pp__mapcache_put(&s->maps, pp__shm_serial(shm), pp__shm_len(shm), NULL, out,
                   &n);
  return 0;
}

/* Sends a large argument's mapping, and a reply hint with it: a spare
 * about the argument's size, which the worker may write a large result
 * into (results are often the size of their arguments) so that neither
 * side touches fresh memory.  Returns 0, or the error that refuses the
 * call. */
static int send_blob(pp__slot_t *s, const pp_buf_t *arg, pp__flight_t *f,
                     pp__call_blob_t *cb, pp__err_t *err) {
  pp__shm_t *shm = NULL;
  pp__shm_t *hint;
  int rc, sent;
  memset(cb, 0, sizeof(*cb));
  /* Memory from pp_shared_alloc() is such a mapping already: it goes as
   * it is.  Anything else is copied into one (a spare if there is one). */
  if (pp__blob_hold(arg->data, arg->len, &shm, &cb->offset)) {
    f->arg_shared = shm;
  } else {
    shm = pp__spare_or_new(arg->len);
    if (shm == NULL)
      return pp__err_os(err, PP_ENOMEM);
    memcpy(pp__shm_base(shm), arg->data, arg->len);
    f->arg_copy = shm;
  }
  rc = send_map(s, shm, &cb->handle, &sent, err);
  if (rc != 0)
    return rc;
  cb->map_size = pp__shm_len(shm);
  cb->serial = pp__shm_serial(shm);
  cb->flags = sent ? PP__BLOB_SENT_ARG : 0;
  hint = pp__spare_take(arg->len, 2 * (uint64_t)arg->len);
  if (hint != NULL && send_map(s, hint, &cb->hint_handle, &sent, err) == 0) {
    cb->hint_size = pp__shm_len(hint);
    cb->hint_serial = pp__shm_serial(hint);
    cb->flags |= sent ? PP__BLOB_SENT_HINT : 0;
    f->hint = hint;
  } else {
    pp__spare_give(hint);
  }
  return 0;
}

/* Writes one planned call record.  A large argument travels in a mapping
 * of its own, whose descriptor goes on the channel just before the record
 * that names it. */
static void write_call(pp__slot_t *s, pp__src_t *src, size_t index,
                       pp__flight_t *f) {
  const pp_buf_t *arg = &src->args[index];
  int blob = needs_blob(s, src, index);
  uint64_t len = pp__call_rec_len(src->task_len, blob ? 0 : arg->len, blob);
  pp__call_blob_t cb;
  unsigned char *p;
  pp__err_t err;
  int rc = blob ? send_blob(s, arg, f, &cb, &err) : 0;
  if (rc != 0) {
    /* The argument cannot reach the worker (no memory for its mapping, a
     * failed hand-over).  The record still goes, in the room planned for
     * it, marked refused: the worker answers at once without looking for a
     * mapping, and the call fails with this reason (pp__record_outcome). */
    f->refused = rc;
    f->refused_why = pp__strdup_printf("cannot hand an argument of %zu bytes "
                                       "to worker %d: %s",
                                       arg->len, s->index, err.text);
    memset(&cb, 0, sizeof(cb));
  }
  p = pp__ring_begin(&s->calls, PP__REC_CALL,
                     rc     ? 2
                     : blob ? 1
                            : 0,
                     src->first_id + index, len);
  pp__call_rec_put(p, src->task, src->task_len, arg->data, arg->len,
                   blob ? &cb : NULL);
}

/* Writes the planned calls and publishes them, waking the workers that
 * sleep.  Returns 1 if there were any. */
int pp__dispatch_write(pp_pool_t *pool, pp__take_t *takes, size_t n) {
  size_t k;
  int i;
  for (k = 0; k < n; k++)
    write_call(takes[k].slot, takes[k].src, takes[k].index,
               pp__flight_at(takes[k].slot, takes[k].flight));
  if (n == 0)
    return 0;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state == PP__W_READY && s->calls.head != s->calls.hdr->head &&
        pp__ring_commit(&s->calls))
      pp__life_wake(s);
  }
  return 1;
}

/* Counts the workers a steal concerns: *idle gets those that could take
 * a call taken back, and the return value those that hold a call they
 * have not started (a head and at least one behind it).  Workers being
 * killed count as neither: their calls are about to be settled. */
static int steal_counts(pp_pool_t *pool, int *idle) {
  int i, busy = 0;
  *idle = 0;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    if (s->state != PP__W_READY || s->kill_status != 0)
      continue;
    if (s->fl_n == 0 && (pool->max_calls == 0 || s->ran < pool->max_calls))
      (*idle)++;
    else if (s->fl_n >= 2)
      busy++;
  }
  return busy;
}

int pp__dispatch_steal_possible_locked(pp_pool_t *pool) {
  int idle, busy = steal_counts(pool, &idle);
  return idle > 0 && busy > 0;
}

/* Work stealing.  A worker holds up to chunk + 1 calls, so that it never
 * waits for us between two; but a call that waits behind a long one while
 * another worker has nothing to do should go there.  When the queue is
 * empty and a worker is idle, a call that a busy worker has not started is
 * taken back (pp__ring_withdraw: it never runs there; the worker skips it,
 * and we drop what it says of it), newest first, and handed out again.
 * Returns 1 if it took any; sets *steal_at to when it may next take one.
 * pool->lock held. */
int pp__dispatch_steal_locked(pp_pool_t *pool, int64_t *steal_at) {
  int i, idle, took = 0;
  int64_t now;
  *steal_at = PP__NEVER;
  if (!pp__queue_empty(&pool->pending) || steal_counts(pool, &idle) == 0 ||
      idle == 0)
    return 0;
  now = pp__now_us();
  for (i = 0; i < pool->nslots && idle > 0; i++) {
    pp__slot_t *s = &pool->slots[i];
    size_t k;
    if (s->state != PP__W_READY || s->kill_status != 0 || s->fl_n < 2 ||
        pp__flight_at(s, 0)->withdrawn)
      continue;
    if (s->head_since == 0)
      s->head_since = now;
    if (now - s->head_since < PP__STEAL_US) {
      if (s->head_since + PP__STEAL_US < *steal_at)
        *steal_at = s->head_since + PP__STEAL_US;
      continue;
    }
    for (k = s->fl_n - 1; k >= 1 && idle > 0; k--) {
      pp__flight_t *f = pp__flight_at(s, k);
      if (f->withdrawn || f->cancelled || f->refused)
        continue;
      if (!pp__ring_withdraw(&s->calls, f->rec, f->id))
        break; /* the worker has moved on: nothing behind is waiting long */
      f->withdrawn = 1;
      pp__src_give_back_locked(f->src, f->index);
      idle--;
      took = 1;
    }
  }
  return took;
}

int pp__dispatch_started_locked(pp_pool_t *pool, uint64_t id) {
  int i;
  for (i = 0; i < pool->nslots; i++) {
    pp__slot_t *s = &pool->slots[i];
    size_t k;
    if (s->state != PP__W_READY && s->state != PP__W_RETIRING)
      continue;
    for (k = 0; k < s->fl_n; k++) {
      pp__flight_t *f = pp__flight_at(s, k);
      if (f->id == id && !f->withdrawn)
        return pp__ring_started(&s->calls, f->rec, id);
    }
  }
  return 0;
}

int pp__dispatch_try(pp_pool_t *pool) {
  pp__take_t takes[PP__DISPATCH_MAX];
  size_t n, k;
  int done = 1;
  if (!pp__mutex_trylock(pool->io_lock))
    return 0; /* the I/O thread is in a round: it will see the queue */
  pp__mutex_lock(pool->lock);
  n = pp__dispatch_plan_locked(pool, takes, PP__DISPATCH_MAX);
  /* The I/O thread must still look if calls are left, or if one has a
   * timeout to watch (it may sleep with no deadline). */
  if (!pp__queue_empty(&pool->pending))
    done = 0;
  for (k = 0; k < n; k++)
    if (takes[k].src->timeout_ms > 0)
      done = 0;
  if (pp__dispatch_steal_possible_locked(pool))
    done = 0;
  pp__mutex_unlock(pool->lock);
  pp__dispatch_write(pool, takes, n);
  pp__mutex_unlock(pool->io_lock);
  return done;
}
