/*
 * outbound.c - rank 0's engine: what goes to the serving ranks.
 *
 * Each round takes queued calls under pool->lock and sends them after it:
 * a rank holds up to two batches, and a batch goes to a rank only when it
 * has room for a whole one while the queue can fill it, so calls travel
 * many to a message.  Cancelled calls in flight get cancel records.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, PATH_MAX for apr.h */
#endif
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "master.h"

/* ---- handing out calls ---- */

/* The index of the source's task in the pool's table (the ranks have the
 * same table: the hello checked it). */
static uint32_t task_index(const pp_pool_t *pool, const pp__src_t *src) {
  uint32_t i;
  for (i = 0; pool->tasks[i].name != NULL; i++)
    if (pool->tasks[i].name == src->task ||
        strcmp(pool->tasks[i].name, src->task) == 0)
      return i;
  return UINT32_MAX;
}

static int push_cancel(rank_t *rk, uint64_t id) {
  if (rk->ncancel == rk->capcancel) {
    size_t cap = rk->capcancel ? 2 * rk->capcancel : 64;
    uint64_t *v = realloc(rk->cancels, cap * sizeof(*v));
    if (v == NULL)
      return PP_ENOMEM;
    rk->cancels = v;
    rk->capcancel = cap;
  }
  rk->cancels[rk->ncancel++] = id;
  return 0;
}

/* Fails every queued call: no rank is left to run it.  pool->lock held;
 * returns the word on waking the waiters. */
static int fail_queued_locked(eng_t *E) {
  pp_pool_t *pool = E->pool;
  int wake = 0;
  while (!pp__queue_empty(&pool->pending)) {
    pp__src_t *src =
        pp__queue_data(pp__queue_head(&pool->pending), pp__src_t, link);
    size_t index;
    if (!ppm_core->take_locked(src, &index)) {
      pp__queue_remove(&src->link);
      continue;
    }
    do {
      char *msg = malloc(128);
      if (msg != NULL)
        snprintf(msg, 128, "no MPI rank is left to run call %llu",
                 (unsigned long long)(src->first_id + index));
      src->inflight--;
      pool->running--;
      wake |= ppm_core->finish_locked(src, index, PP_EWORKERDIED, NULL, 0, msg,
                                      0, 0);
    } while (ppm_core->take_locked(src, &index));
  }
  return wake;
}

/* Takes up to `n` queued calls for rank r; pool->lock held.  Returns how
 * many went into E->takes from position `at`. */
static size_t take_for_locked(eng_t *E, int r, size_t n, size_t at, int *wake) {
  pp_pool_t *pool = E->pool;
  size_t k = 0;
  while (k < n && !pp__queue_empty(&pool->pending)) {
    pp__src_t *src =
        pp__queue_data(pp__queue_head(&pool->pending), pp__src_t, link);
    flight_t f;
    size_t index;
    if (!ppm_core->take_locked(src, &index)) {
      /* Never on the queue without calls; should it be, it must go. */
      pp__queue_remove(&src->link);
      continue;
    }
    if (src->args[index].len > INT_MAX) {
      char *msg = malloc(160);
      if (msg != NULL)
        snprintf(msg, 160,
                 "the argument of %zu bytes is larger than the MPI "
                 "backend sends in one message (2 GiB)",
                 src->args[index].len);
      src->inflight--;
      pool->running--;
      *wake |=
          ppm_core->finish_locked(src, index, PP_EINVAL, NULL, 0, msg, 0, 0);
      continue;
    }
    memset(&f, 0, sizeof(f));
    f.id = src->first_id + index;
    f.src = src;
    f.index = index;
    f.rank = r;
    if (ppm_fl_put(E, &f) != 0) {
      char *msg = malloc(160);
      if (msg != NULL)
        snprintf(msg, 160,
                 "rank 0 had no memory to keep track of call %llu on the "
                 "MPI ranks",
                 (unsigned long long)f.id);
      src->inflight--;
      pool->running--;
      *wake |=
          ppm_core->finish_locked(src, index, PP_ENOMEM, NULL, 0, msg, 0, 0);
      continue;
    }
    if (E->ranks[r].inflight++ == 0)
      E->ranks[r].heard = ppm_now_us();
    E->takes[at + k].src = src;
    E->takes[at + k].index = index;
    E->takes[at + k].rank = r;
    k++;
  }
  return k;
}

/* Sends rank r its calls takes[from, to) as one batch, with the large
 * arguments after it.  Returns MPI's code, or PP_ENOMEM if nothing was
 * sent for want of memory (those calls have failed with PP_ENOMEM). */
static int send_batch(eng_t *E, int r, size_t from, size_t to) {
  ppm_buf_t b = {0};
  size_t i, big = 0;
  int rc;
  for (i = from; i < to; i++) {
    take_t *t = &E->takes[i];
    const pp_buf_t *arg = &t->src->args[t->index];
    ppm_call_t c;
    memset(&c, 0, sizeof(c));
    c.id = t->src->first_id + t->index;
    c.group = t->src->first_id;
    c.timeout_ms = t->src->timeout_ms;
    c.task = task_index(E->pool, t->src);
    c.len = arg->len;
    c.flags = arg->len > PPM_BIG ? PPM_SEPARATE : 0;
    big += c.flags & PPM_SEPARATE ? 1 : 0;
    if (ppm_buf_put(&b, "batch", &c, sizeof(c)) != 0 ||
        (!(c.flags & PPM_SEPARATE) &&
         ppm_buf_put(&b, "batch", arg->data, arg->len) != 0))
      break;
  }
  /* The batch and its large arguments go whole or not at all: a rank
   * that got a batch waits for the arguments it announces. */
  if (i < to || ppm_sends_reserve(&E->sends, 1 + big) != 0) {
    char why[160];
    snprintf(why, sizeof(why),
             "rank 0 had no memory to send it to MPI rank %d (a batch of "
             "%zu calls)",
             r, to - from);
    ppm_buf_free(&b);
    ppm_fail_takes(E, E->takes + from, to - from, PP_ENOMEM, why);
    return PP_ENOMEM;
  }
  E->n_batches++;
  E->n_calls += to - from;
  rc = ppm_isend(&E->sends, E->comm, r, PPM_TAG_CALLS, b.p, b.len, b.p, free);
  if (rc != MPI_SUCCESS) {
    ppm_buf_free(&b);
    return rc;
  }
  /* Straight from the caller's buffer, which stays valid until the call
   * finishes, and the call cannot finish before the rank has it. */
  for (i = from; i < to && rc == MPI_SUCCESS; i++) {
    take_t *t = &E->takes[i];
    const pp_buf_t *arg = &t->src->args[t->index];
    if (arg->len > PPM_BIG)
      rc = ppm_isend(&E->sends, E->comm, r, PPM_TAG_ARG, arg->data, arg->len,
                     NULL, NULL);
  }
  return rc;
}

/* One round under pool->lock: cancels to send and calls to hand out; then
 * sends them.  Returns 1 if it sent anything; *stop is set when the pool
 * is done with the engine. */
int ppm_hand_out(eng_t *E, int stop_asked, int *stop) {
  pp_pool_t *pool = E->pool;
  size_t ntakes = 0, start[64 + 1], i;
  int r, k, nlive = 0, wake = 0, any = 0, nr = E->size - 1;
  int order[64 + 1];
  ppm_core->lock(pool);
  if (pool->news || pool->cancel_all) {
    pool->news = 0;
    for (i = 0; i < E->flcap; i++) {
      flight_t *f = &E->fl[i];
      if (f->id == 0 || f->cancel_sent || !(pool->cancel_all || f->src->cancel))
        continue;
      if (push_cancel(&E->ranks[f->rank], f->id) == 0)
        f->cancel_sent = 1;
    }
  }
  for (r = 1; r < E->size; r++)
    nlive += !E->ranks[r].dead;
  if (nlive == 0) {
    wake |= fail_queued_locked(E);
  } else {
    /* Round robin from a moving start, so no rank is always served last;
     * at most 64 ranks per round (the others in later rounds). */
    for (k = 0; k < nr && k < 64; k++) {
      rank_t *rk;
      size_t batch, room, n;
      r = 1 + (E->next_rank + k) % nr;
      rk = &E->ranks[r];
      order[k] = r;
      start[k] = ntakes;
      if (rk->dead || pool->queued == 0)
        continue;
      /* A batch keeps the rank's workers busy, and is smaller when the
       * queue is short, so that the other ranks get their share. */
      batch = pool->queued / (4 * (size_t)nlive);
      if (batch < (size_t)rk->workers)
        batch = (size_t)rk->workers;
      if (batch > PPM_BATCH_MAX)
        batch = PPM_BATCH_MAX;
      if (batch < 1)
        batch = 1;
      room = 2 * batch > rk->inflight ? 2 * batch - rk->inflight : 0;
      n = room < batch ? room : batch;
      /* Wait for a whole batch of room while the queue can fill it: one
       * message of many calls, not many of one. */
      if (n == 0 || (n < batch && pool->queued > n))
        continue;
      ntakes += take_for_locked(E, r, n, ntakes, &wake);
    }
    start[k] = ntakes;
    E->next_rank = (E->next_rank + 1) % (nr > 0 ? nr : 1);
  }
  *stop = stop_asked && pool->queued == 0 && pool->running == 0;
  ppm_core->unlock(pool);
  if (wake)
    ppm_core->broadcast(pool);
  for (k = 0; nlive > 0 && k < nr && k < 64; k++) {
    rank_t *rk = &E->ranks[order[k]];
    int rc = MPI_SUCCESS;
    char why[MPI_MAX_ERROR_STRING + 64], es[MPI_MAX_ERROR_STRING];
    if (rk->ncancel > 0 && !rk->dead) {
      size_t bytes = rk->ncancel * sizeof(uint64_t);
      void *copy = malloc(bytes);
      /* Without memory the cancel records are dropped: those calls run
       * to their end on the rank, and report the cancel all the same. */
      if (copy != NULL && ppm_sends_reserve(&E->sends, 1) == 0) {
        memcpy(copy, rk->cancels, bytes);
        rc = ppm_isend(&E->sends, E->comm, order[k], PPM_TAG_CANCEL, copy,
                       bytes, copy, free);
        any = 1;
      } else {
        free(copy);
      }
      rk->ncancel = 0;
    }
    if (rc == MPI_SUCCESS && start[k + 1] > start[k]) {
      rc = send_batch(E, order[k], start[k], start[k + 1]);
      any = 1;
    }
    if (rc != MPI_SUCCESS && rc != PP_ENOMEM) {
      snprintf(why, sizeof(why), "sending to it failed: %s",
               ppm_strerror(rc, es, sizeof(es)));
      ppm_kill_rank(E, order[k], PP_EWORKERDIED, why);
    }
  }
  return any;
}
