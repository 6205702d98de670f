/*
 * master.c - rank 0: the engine that runs an MPI pool's calls on the other
 * ranks.
 *
 * One engine thread makes every MPI call of rank 0, from MPI_Init_thread to
 * MPI_Finalize (unless the application initialised MPI).  Each round it
 * receives what the ranks sent and finishes those calls (under pool->lock,
 * once for all), sends cancel records for cancelled calls, and hands queued
 * calls to ranks in batches: a rank holds up to two batches, and whichever
 * rank answers is refilled (dynamic load balancing).  Idle, it spins for
 * PPM_SPIN_US, then sleeps on its condition with a growing timeout (at
 * most PPM_SLEEP_MAX_US), from which new calls and cancels wake it.
 *
 * Open MPI 4.1 tells nobody that a rank died; the engine notices silence
 * instead.  A rank that holds calls and sends nothing (not even its
 * heartbeat, every 0.5 s) for PROCPOOL_MPI_DEADLINE_MS is dead: its calls
 * end PP_EWORKERDIED, it gets nothing more, and late results from it are
 * dropped (their ids are no longer in flight).
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

#include "ppm.h"

/* A call on a rank. */
typedef struct flight_s {
  uint64_t id; /* 0: an empty slot */
  pp__src_t *src;
  size_t index;
  int rank;
  int cancel_sent;
} flight_t;

typedef struct rank_s {
  int workers;     /* of its local pool */
  int offset;      /* its first worker's number in log records */
  int dead;
  int bye;
  size_t inflight; /* calls it holds */
  int64_t heard;   /* when it last sent anything (or got its first call) */
  uint64_t *cancels;
  size_t ncancel, capcancel;
} rank_t;

/* A call handed to a rank in this round. */
typedef struct take_s {
  pp__src_t *src;
  size_t index;
  int rank;
} take_t;

/* An outcome received, to be finished under pool->lock. */
typedef struct out_s {
  uint64_t id;
  int status, exit_code, term_signal;
  void *data;
  size_t len;
  char *message;
} out_t;

typedef struct eng_s {
  pp_pool_t *pool;
  pthread_t thread;
  pthread_mutex_t m; /* kick, stop, abandon, started; never held while
                        pool->lock is taken */
  pthread_cond_t cond;
  int kick, stop, abandon, started;
  pp__err_t err; /* how the start went */
  MPI_Comm comm;
  int we_init;
  int size;
  rank_t *ranks; /* by rank; [0] unused */
  volatile int workers;
  flight_t *fl; /* open addressing on the id, linear probing */
  size_t flcap, fln;
  ppm_sends_t sends;
  take_t *takes;
  out_t *outs;
  size_t nouts, capouts;
  int64_t deadline_us;
  int64_t hello_us;
  int next_rank; /* where the next round starts handing out */
} eng_t;

/* The process' MPI backend on rank 0: one MPI pool per job. */
static pthread_mutex_t G_m = PTHREAD_MUTEX_INITIALIZER;
static struct {
  int used; /* 0: never; 1: a pool runs; 2: MPI is done; G_m */
  eng_t *cur;
} G;

/* ---- the calls in flight, by id ---- */

static size_t fl_slot(const eng_t *E, uint64_t id) {
  return (size_t)(id * 11400714819323198485ull) & (E->flcap - 1);
}

static flight_t *fl_find(eng_t *E, uint64_t id) {
  size_t i;
  if (E->flcap == 0)
    return NULL;
  for (i = fl_slot(E, id); E->fl[i].id != 0; i = (i + 1) & (E->flcap - 1))
    if (E->fl[i].id == id)
      return &E->fl[i];
  return NULL;
}

static int fl_put(eng_t *E, const flight_t *f) {
  size_t i;
  if (2 * (E->fln + 1) > E->flcap) {
    size_t cap = E->flcap ? 2 * E->flcap : 256, k;
    flight_t *old = E->fl, *v = calloc(cap, sizeof(*v));
    if (v == NULL)
      return PP_ENOMEM;
    E->fl = v;
    E->flcap = cap;
    E->fln = 0;
    for (k = 0; old != NULL && k < cap / 2; k++)
      if (old[k].id != 0)
        fl_put(E, &old[k]);
    free(old);
  }
  for (i = fl_slot(E, f->id); E->fl[i].id != 0; i = (i + 1) & (E->flcap - 1))
    ;
  E->fl[i] = *f;
  E->fln++;
  return 0;
}

/* Removes an entry, moving back the ones its slot kept from their home. */
static void fl_del(eng_t *E, flight_t *f) {
  size_t mask = E->flcap - 1, i = (size_t)(f - E->fl), j = i, home;
  E->fl[i].id = 0;
  E->fln--;
  for (;;) {
    j = (j + 1) & mask;
    if (E->fl[j].id == 0)
      return;
    home = fl_slot(E, E->fl[j].id);
    /* Entry j may move to the hole i if its home is not in (i, j]. */
    if ((j > i && (home <= i || home > j)) ||
        (j < i && (home <= i && home > j))) {
      E->fl[i] = E->fl[j];
      E->fl[j].id = 0;
      i = j;
    }
  }
}

/* ---- finishing calls ---- */

/* Finishes a call in flight with its outcome; pool->lock held.  Returns
 * pp__src_finish_locked's word on waking the waiters. */
static int finish_locked(eng_t *E, flight_t *f, out_t *o) {
  pp__src_t *src = f->src;
  size_t index = f->index;
  int cancelled = f->cancel_sent || src->cancel;
  E->ranks[f->rank].inflight--;
  fl_del(E, f);
  src->inflight--;
  E->pool->running--;
  if (cancelled && o->status != PP_ECANCELED) {
    /* As in a local pool (loop.c): a cancelled call reports the cancel,
     * whether it finished anyway or failed on its own. */
    char *msg = malloc(256);
    if (msg != NULL)
      snprintf(msg, 256, "call %llu was cancelled while it ran%s%.160s%s",
               (unsigned long long)o->id, o->message ? " (the task said: " : "",
               o->message ? o->message : "", o->message ? ")" : "");
    free(o->message);
    pp_free(o->data);
    o->data = NULL;
    o->len = 0;
    o->message = msg;
    o->status = PP_ECANCELED;
  }
  return ppm_core->finish_locked(src, index, o->status, o->data, o->len,
                                 o->message, o->exit_code, o->term_signal);
}

/* Finishes the outcomes received in this round. */
static void apply_outs(eng_t *E) {
  pp_pool_t *pool = E->pool;
  size_t i;
  int wake = 0;
  if (E->nouts == 0)
    return;
  ppm_core->lock(pool);
  for (i = 0; i < E->nouts; i++) {
    out_t *o = &E->outs[i];
    flight_t *f = fl_find(E, o->id);
    if (f == NULL) {
      /* A late result of a rank declared dead: its call has its outcome. */
      pp_free(o->data);
      free(o->message);
      continue;
    }
    wake |= finish_locked(E, f, o);
  }
  ppm_core->unlock(pool);
  E->nouts = 0;
  if (wake)
    ppm_core->broadcast(pool);
}

/* A rank is dead (silent too long, or MPI failed on it): its calls end
 * PP_EWORKERDIED with `why`, and it gets nothing more. */
static void kill_rank(eng_t *E, int r, const char *why) {
  pp_pool_t *pool = E->pool;
  size_t i;
  int wake = 0;
  rank_t *rk = &E->ranks[r];
  if (rk->dead)
    return;
  rk->dead = 1;
  E->workers -= rk->workers;
  ppm_sends_drop(&E->sends, r);
  ppm_core->lock(pool);
  for (i = 0; i < E->flcap;) {
    flight_t *f = &E->fl[i];
    out_t o;
    if (f->id == 0 || f->rank != r) {
      i++;
      continue;
    }
    memset(&o, 0, sizeof(o));
    o.id = f->id;
    o.status = PP_EWORKERDIED;
    o.message = malloc(512);
    if (o.message != NULL)
      snprintf(o.message, 512, "call %llu was lost with MPI rank %d: %s",
               (unsigned long long)f->id, r, why);
    wake |= finish_locked(E, f, &o);
    /* fl_del may have moved another entry into slot i: look again. */
  }
  ppm_core->unlock(pool);
  if (wake)
    ppm_core->broadcast(pool);
  {
    char line[640];
    snprintf(line, sizeof(line), "procpool: MPI rank %d is lost: %s", r, why);
    ppm_core->log(pool, -1, 0, PP_LOG_STDERR, 0, line, strlen(line));
  }
}

/* ---- receiving ---- */

static out_t *out_new(eng_t *E) {
  if (E->nouts == E->capouts) {
    size_t cap = E->capouts ? 2 * E->capouts : 256;
    out_t *v = realloc(E->outs, cap * sizeof(*v));
    if (v == NULL)
      abort(); /* the outcomes cannot be kept: nothing sane is left */
    E->outs = v;
    E->capouts = cap;
  }
  memset(&E->outs[E->nouts], 0, sizeof(out_t));
  return &E->outs[E->nouts++];
}

/* Receives the message `msg` (matched by a probe) into a new buffer. */
static int recv_msg(MPI_Message *msg, MPI_Status *st, unsigned char **p,
                    int *n) {
  MPI_Get_count(st, MPI_BYTE, n);
  *p = malloc(*n > 0 ? (size_t)*n : 1);
  if (*p == NULL)
    abort();
  return MPI_Mrecv(*p, *n, MPI_BYTE, msg, MPI_STATUS_IGNORE);
}

/* A batch of results from rank r. */
static void handle_results(eng_t *E, int r, const unsigned char *p, size_t n) {
  size_t off = 0;
  while (off + sizeof(ppm_result_t) <= n) {
    ppm_result_t h;
    out_t *o;
    memcpy(&h, p + off, sizeof(h));
    off += sizeof(h);
    if (h.msg_len > n - off)
      return;
    o = out_new(E);
    o->id = h.id;
    o->status = h.status;
    o->exit_code = h.exit_code;
    o->term_signal = h.term_signal;
    if (h.msg_len > 0 && (o->message = malloc(h.msg_len + 1)) != NULL) {
      memcpy(o->message, p + off, h.msg_len);
      o->message[h.msg_len] = '\0';
    }
    off += PPM_PAD8(h.msg_len);
    if (h.flags & PPM_SEPARATE) {
      /* Its data is the next RDATA message from r, already on its way. */
      MPI_Message msg;
      MPI_Status st;
      int len = 0;
      unsigned char *d = NULL;
      if (MPI_Mprobe(r, PPM_TAG_RDATA, E->comm, &msg, &st) == MPI_SUCCESS &&
          recv_msg(&msg, &st, &d, &len) == MPI_SUCCESS &&
          (uint64_t)len == h.len) {
        o->data = d;
        o->len = (size_t)len;
      } else {
        free(d);
        o->status = PP_EPROTO;
      }
    } else {
      if (h.len > n - off) {
        E->nouts--;
        free(o->message);
        return;
      }
      if (h.len > 0 && (o->data = malloc((size_t)h.len)) != NULL) {
        memcpy(o->data, p + off, (size_t)h.len);
        o->len = (size_t)h.len;
      } else if (h.len > 0) {
        o->status = PP_ENOMEM;
      }
      off += PPM_PAD8(h.len);
    }
  }
}

/* A line of output of a rank's local pool. */
static void handle_log(eng_t *E, int r, const unsigned char *p, size_t n) {
  ppm_log_t h;
  if (n < sizeof(h))
    return;
  memcpy(&h, p, sizeof(h));
  if (h.len > n - sizeof(h))
    return;
  ppm_core->log(E->pool, E->ranks[r].offset + h.worker, 0,
                (pp_log_source_t)h.source, h.level,
                (const char *)p + sizeof(h), h.len);
}

/* Receives what has come; returns 1 if anything did. */
static int receive(eng_t *E) {
  int any = 0, k;
  for (k = 0; k < 256; k++) {
    MPI_Message msg;
    MPI_Status st;
    unsigned char *p;
    int flag = 0, n = 0, r;
    if (MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, E->comm, &flag, &msg, &st) !=
            MPI_SUCCESS ||
        !flag)
      break;
    any = 1;
    r = st.MPI_SOURCE;
    if (recv_msg(&msg, &st, &p, &n) != MPI_SUCCESS) {
      free(p);
      continue;
    }
    if (r > 0 && r < E->size && !E->ranks[r].dead) {
      E->ranks[r].heard = ppm_now_us();
      if (st.MPI_TAG == PPM_TAG_RESULTS)
        handle_results(E, r, p, (size_t)n);
      else if (st.MPI_TAG == PPM_TAG_LOG)
        handle_log(E, r, p, (size_t)n);
      else if (st.MPI_TAG == PPM_TAG_BYE)
        E->ranks[r].bye = 1;
    }
    free(p);
  }
  apply_outs(E);
  return any;
}

/* Ranks silent too long while they hold calls are dead. */
static void check_deadlines(eng_t *E) {
  int64_t now = ppm_now_us();
  int r;
  for (r = 1; r < E->size; r++) {
    rank_t *rk = &E->ranks[r];
    char why[200];
    if (rk->dead || rk->inflight == 0 || now - rk->heard < E->deadline_us)
      continue;
    snprintf(why, sizeof(why),
             "it has sent nothing for %lld ms (PROCPOOL_MPI_DEADLINE_MS); "
             "it died or hangs",
             (long long)((now - rk->heard) / 1000));
    kill_rank(E, r, why);
  }
}

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
    pp__src_t *src = pp__queue_data(pp__queue_head(&pool->pending), pp__src_t,
                                    link);
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
      wake |= ppm_core->finish_locked(src, index, PP_EWORKERDIED, NULL, 0,
                                      msg, 0, 0);
    } while (ppm_core->take_locked(src, &index));
  }
  return wake;
}

/* Takes up to `n` queued calls for rank r; pool->lock held.  Returns how
 * many went into E->takes from position `at`. */
static size_t take_for_locked(eng_t *E, int r, size_t n, size_t at,
                              int *wake) {
  pp_pool_t *pool = E->pool;
  size_t k = 0;
  while (k < n && !pp__queue_empty(&pool->pending)) {
    pp__src_t *src = pp__queue_data(pp__queue_head(&pool->pending), pp__src_t,
                                    link);
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
      *wake |= ppm_core->finish_locked(src, index, PP_EINVAL, NULL, 0, msg,
                                       0, 0);
      continue;
    }
    memset(&f, 0, sizeof(f));
    f.id = src->first_id + index;
    f.src = src;
    f.index = index;
    f.rank = r;
    if (fl_put(E, &f) != 0) {
      ppm_core->give_back_locked(src, index);
      break;
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
 * arguments after it.  Returns MPI's code. */
static int send_batch(eng_t *E, int r, size_t from, size_t to) {
  ppm_buf_t b = {0};
  size_t i;
  int rc;
  for (i = from; i < to; i++) {
    take_t *t = &E->takes[i];
    const pp_buf_t *arg = &t->src->args[t->index];
    ppm_call_t c;
    memset(&c, 0, sizeof(c));
    c.id = t->src->first_id + t->index;
    c.timeout_ms = t->src->timeout_ms;
    c.task = task_index(E->pool, t->src);
    c.len = arg->len;
    c.flags = arg->len > PPM_BIG ? PPM_SEPARATE : 0;
    if (ppm_buf_put(&b, &c, sizeof(c)) != 0 ||
        (!(c.flags & PPM_SEPARATE) && ppm_buf_put(&b, arg->data, arg->len)))
      abort(); /* no memory for a batch: nothing sane is left */
  }
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
static int hand_out(eng_t *E, int stop_asked, int *stop) {
  pp_pool_t *pool = E->pool;
  size_t ntakes = 0, start[64 + 1], i;
  int r, k, nlive = 0, wake = 0, any = 0, nr = E->size - 1;
  int order[64 + 1];
  ppm_core->lock(pool);
  if (pool->news || pool->cancel_all) {
    pool->news = 0;
    for (i = 0; i < E->flcap; i++) {
      flight_t *f = &E->fl[i];
      if (f->id == 0 || f->cancel_sent ||
          !(pool->cancel_all || f->src->cancel))
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
      if (copy != NULL) {
        memcpy(copy, rk->cancels, bytes);
        rc = ppm_isend(&E->sends, E->comm, order[k], PPM_TAG_CANCEL, copy,
                       bytes, copy, free);
        any = 1;
      }
      rk->ncancel = 0;
    }
    if (rc == MPI_SUCCESS && start[k + 1] > start[k]) {
      rc = send_batch(E, order[k], start[k], start[k + 1]);
      any = 1;
    }
    if (rc != MPI_SUCCESS) {
      snprintf(why, sizeof(why), "sending to it failed: %s",
               ppm_strerror(rc, es, sizeof(es)));
      kill_rank(E, order[k], why);
    }
  }
  return any;
}

/* ---- the world: start and end ---- */

/* Ends the serving ranks' service: STOP to every live rank that said
 * hello, then what they still send is read (and dropped) until each says
 * BYE, at most 10 s; then MPI ends, if procpool began it. */
static void world_end(eng_t *E) {
  int64_t end = ppm_now_us() + 10000000;
  int r, waiting;
  for (r = 1; r < E->size; r++) {
    rank_t *rk = &E->ranks[r];
    if (rk->dead || rk->bye)
      continue;
    if (ppm_isend(&E->sends, E->comm, r, PPM_TAG_STOP, NULL, 0, NULL, NULL) !=
        MPI_SUCCESS)
      rk->dead = 1;
  }
  do {
    MPI_Message msg;
    MPI_Status st;
    unsigned char *p;
    int flag = 0, n;
    ppm_sends_test(&E->sends);
    waiting = 0;
    for (r = 1; r < E->size; r++)
      waiting += !E->ranks[r].dead && !E->ranks[r].bye;
    if (waiting == 0 && E->sends.n == 0)
      break;
    if (MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, E->comm, &flag, &msg, &st) !=
            MPI_SUCCESS ||
        !flag) {
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
      continue;
    }
    if (recv_msg(&msg, &st, &p, &n) == MPI_SUCCESS &&
        st.MPI_TAG == PPM_TAG_BYE && st.MPI_SOURCE > 0 &&
        st.MPI_SOURCE < E->size)
      E->ranks[st.MPI_SOURCE].bye = 1;
    free(p);
  } while (ppm_now_us() < end);
  /* Sends to ranks that never answered may never complete: forgotten. */
  for (r = 1; r < E->size; r++)
    if (!E->ranks[r].bye)
      ppm_sends_drop(&E->sends, r);
  ppm_sends_free(&E->sends);
  MPI_Comm_free(&E->comm);
  if (E->we_init)
    MPI_Finalize();
}

/* Begins MPI (unless the application did) and meets the serving ranks:
 * each says hello with its task table's hash and its local pool's size.
 * Returns 0, PP__ENGINE_FALLBACK, or PP_ESPAWN, with the reason in
 * E->err; on failure MPI has been ended as far as procpool began it. */
static int world_start(eng_t *E) {
  int init = 0, provided = 0, r, said = 0, rc, offset = 0;
  uint32_t ntasks;
  uint64_t hash;
  int64_t end;
  char es[MPI_MAX_ERROR_STRING];
  MPI_Initialized(&init);
  if (init) {
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_SERIALIZED) {
      E->err.code = PP__ENGINE_FALLBACK;
      snprintf(E->err.text, sizeof(E->err.text),
               "the application initialised MPI below "
               "MPI_THREAD_SERIALIZED, and the MPI backend calls MPI from "
               "a thread of its own");
      return PP__ENGINE_FALLBACK;
    }
  } else {
    rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) {
      E->err.code = PP__ENGINE_FALLBACK;
      snprintf(E->err.text, sizeof(E->err.text), "MPI_Init_thread failed: %s",
               ppm_strerror(rc, es, sizeof(es)));
      return PP__ENGINE_FALLBACK;
    }
    E->we_init = 1;
  }
  MPI_Comm_size(MPI_COMM_WORLD, &E->size);
  if (E->size <= 1) {
    /* The launcher's variables said otherwise; MPI has the last word. */
    E->err.code = PP__ENGINE_FALLBACK;
    snprintf(E->err.text, sizeof(E->err.text),
             "the MPI world has one process");
    if (E->we_init)
      MPI_Finalize();
    E->we_init = 0;
    return PP__ENGINE_FALLBACK;
  }
  E->ranks = calloc((size_t)(E->size > 1 ? E->size : 1), sizeof(rank_t));
  E->takes = calloc((size_t)(E->size > 1 ? E->size : 1) * 2 * PPM_BATCH_MAX,
                    sizeof(take_t));
  if (E->ranks == NULL || E->takes == NULL)
    abort();
  MPI_Comm_dup(MPI_COMM_WORLD, &E->comm);
  MPI_Comm_set_errhandler(E->comm, MPI_ERRORS_RETURN);
  hash = ppm_tasks_hash(E->pool != NULL ? E->pool->tasks
                                        : ppm_core->default_tasks(),
                        &ntasks);
  for (r = 1; r < E->size; r++)
    E->ranks[r].dead = 1; /* until it says hello */
  end = ppm_now_us() + E->hello_us;
  E->err.code = 0;
  while (said < E->size - 1 && ppm_now_us() < end) {
    MPI_Message msg;
    MPI_Status st;
    ppm_hello_t h;
    int flag = 0;
    MPI_Improbe(MPI_ANY_SOURCE, PPM_TAG_HELLO, E->comm, &flag, &msg, &st);
    if (!flag) {
      struct timespec ts = {0, 500000};
      nanosleep(&ts, NULL);
      continue;
    }
    memset(&h, 0, sizeof(h));
    MPI_Mrecv(&h, (int)sizeof(h), MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    r = st.MPI_SOURCE;
    if (r <= 0 || r >= E->size || !E->ranks[r].dead)
      continue;
    said++;
    E->ranks[r].dead = 0;
    E->ranks[r].workers = h.workers;
    h.why[sizeof(h.why) - 1] = '\0';
    if (E->err.code == 0 && h.status != 0)
      snprintf(E->err.text, sizeof(E->err.text),
               "MPI rank %d could not start its local pool: %s", r, h.why);
    else if (E->err.code == 0 && h.hash != hash)
      snprintf(E->err.text, sizeof(E->err.text),
               "MPI rank %d has another task table than rank 0 (is it "
               "another program or build?); every rank must run the same "
               "program",
               r);
    else
      continue;
    E->err.code = PP_ESPAWN;
  }
  if (E->err.code == 0 && said < E->size - 1) {
    E->err.code = PP_ESPAWN;
    snprintf(E->err.text, sizeof(E->err.text),
             "only %d of the %d serving MPI ranks said hello within %lld ms "
             "(is pp_mpi_enable() called before the worker guard on every "
             "rank?)",
             said, E->size - 1, (long long)(E->hello_us / 1000));
  }
  if (E->err.code != 0) {
    world_end(E);
    return E->err.code;
  }
  for (r = 1; r < E->size; r++) {
    E->ranks[r].offset = offset;
    offset += E->ranks[r].workers;
  }
  E->workers = offset;
  return 0;
}

/* ---- the engine thread and the engine's functions ---- */

/* Sleeps until woken (new calls, cancels, stop) or `us` have passed. */
static void nap(eng_t *E, int64_t us) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += (long)(us * 1000);
  while (ts.tv_nsec >= 1000000000L) {
    ts.tv_nsec -= 1000000000L;
    ts.tv_sec++;
  }
  pthread_mutex_lock(&E->m);
  while (!E->kick && !E->stop && !E->abandon)
    if (pthread_cond_timedwait(&E->cond, &E->m, &ts) == ETIMEDOUT)
      break;
  pthread_mutex_unlock(&E->m);
}

static void *engine_main(void *arg) {
  eng_t *E = arg;
  ppm_idle_t idle;
  int rc = world_start(E);
  pthread_mutex_lock(&E->m);
  E->started = rc == 0 ? 1 : -1;
  pthread_cond_broadcast(&E->cond);
  pthread_mutex_unlock(&E->m);
  if (rc != 0)
    return NULL;
  ppm_idle_reset(&idle);
  for (;;) {
    int did, stop_asked, abandon, stop = 0;
    int64_t us;
    pthread_mutex_lock(&E->m);
    stop_asked = E->stop;
    abandon = E->abandon;
    E->kick = 0;
    pthread_mutex_unlock(&E->m);
    if (abandon)
      break;
    did = receive(E);
    check_deadlines(E);
    did |= hand_out(E, stop_asked, &stop);
    did |= ppm_sends_test(&E->sends);
    if (stop)
      break;
    if (did) {
      ppm_idle_reset(&idle);
      continue;
    }
    us = ppm_idle_next(&idle);
    if (us > 0)
      nap(E, us);
  }
  world_end(E);
  return NULL;
}

static void eng_free(eng_t *E) {
  int r;
  for (r = 0; E->ranks != NULL && r < E->size; r++)
    free(E->ranks[r].cancels);
  free(E->ranks);
  free(E->takes);
  free(E->outs);
  free(E->fl);
  pthread_cond_destroy(&E->cond);
  pthread_mutex_destroy(&E->m);
  free(E);
}

int ppm_master_start(pp_pool_t *pool, pp__err_t *err) {
  eng_t *E;
  int rank = 0, size = 0, rc, used;
  pthread_mutex_lock(&G_m);
  used = G.used;
  if (used == 0)
    G.used = 1;
  pthread_mutex_unlock(&G_m);
  err->code = PP__ENGINE_FALLBACK;
  if (used != 0) {
    snprintf(err->text, sizeof(err->text),
             "this job has had its MPI pool already (one per job in this "
             "version)");
    return PP__ENGINE_FALLBACK;
  }
  if (!ppm_world(&rank, &size) || size <= 1 || rank != 0) {
    pthread_mutex_lock(&G_m);
    G.used = 0;
    pthread_mutex_unlock(&G_m);
    if (size > 1)
      snprintf(err->text, sizeof(err->text),
               "this is MPI rank %d; MPI pools run on rank 0", rank);
    else
      snprintf(err->text, sizeof(err->text),
               "the program was not launched by mpirun (an MPI world of "
               "one process)");
    return PP__ENGINE_FALLBACK;
  }
  E = calloc(1, sizeof(*E));
  if (E == NULL)
    abort();
  pthread_mutex_init(&E->m, NULL);
  pthread_cond_init(&E->cond, NULL);
  E->pool = pool;
  E->deadline_us = ppm_env_int("PROCPOOL_MPI_DEADLINE_MS", 10000) * 1000;
  E->hello_us = (pool->start_timeout_ms > 0 ? pool->start_timeout_ms : 30000) *
                1000;
  pool->engine_state = E;
  if (pthread_create(&E->thread, NULL, engine_main, E) != 0) {
    eng_free(E);
    pool->engine_state = NULL;
    pthread_mutex_lock(&G_m);
    G.used = 0;
    pthread_mutex_unlock(&G_m);
    snprintf(err->text, sizeof(err->text),
             "the MPI engine's thread could not start");
    return PP__ENGINE_FALLBACK;
  }
  pthread_mutex_lock(&E->m);
  while (E->started == 0)
    pthread_cond_wait(&E->cond, &E->m);
  pthread_mutex_unlock(&E->m);
  if (E->started > 0) {
    pthread_mutex_lock(&G_m);
    G.cur = E;
    pthread_mutex_unlock(&G_m);
    return 0;
  }
  pthread_join(E->thread, NULL);
  *err = E->err;
  rc = E->err.code;
  pthread_mutex_lock(&G_m);
  /* A failed start ended MPI, unless it never began. */
  G.used = rc == PP__ENGINE_FALLBACK && !E->we_init ? 0 : 2;
  pthread_mutex_unlock(&G_m);
  pool->engine_state = NULL;
  eng_free(E);
  return rc;
}

void ppm_master_wake(pp_pool_t *pool) {
  eng_t *E = pool->engine_state;
  pthread_mutex_lock(&E->m);
  E->kick = 1;
  pthread_cond_signal(&E->cond);
  pthread_mutex_unlock(&E->m);
}

/* Stops the engine thread (its pool's calls are done, or the process
 * ends) and frees the engine. */
static void stop_engine(eng_t *E, int abandon) {
  pthread_mutex_lock(&E->m);
  if (abandon)
    E->abandon = 1;
  else
    E->stop = 1;
  pthread_cond_signal(&E->cond);
  pthread_mutex_unlock(&E->m);
  pthread_join(E->thread, NULL);
}

void ppm_master_stop(pp_pool_t *pool) {
  eng_t *E = pool->engine_state;
  pthread_mutex_lock(&G_m);
  G.cur = NULL;
  G.used = 2;
  pthread_mutex_unlock(&G_m);
  stop_engine(E, 0);
  pool->engine_state = NULL;
  eng_free(E);
}

int ppm_master_workers(const pp_pool_t *pool) {
  const eng_t *E = pool->engine_state;
  int w = E != NULL ? E->workers : 0;
  return w > 0 ? w : 1;
}

void ppm_master_atexit(void) {
  eng_t *E, local;
  pthread_mutex_lock(&G_m);
  E = G.cur;
  G.cur = NULL;
  if (E == NULL && G.used != 0) {
    pthread_mutex_unlock(&G_m);
    return;
  }
  G.used = 2;
  pthread_mutex_unlock(&G_m);
  if (E != NULL) {
    /* The program ends with its MPI pool alive: the ranks are stopped
     * (their calls cancelled) and MPI ends; the pool is left to the
     * process' end. */
    stop_engine(E, 1);
    return;
  }
  /* No MPI pool ran: the ranks wait in their service (or in MPI_Init)
   * for rank 0, which meets them only to let them go.  Nothing can be
   * done if the application has ended MPI itself. */
  {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin)
      return;
  }
  memset(&local, 0, sizeof(local));
  local.hello_us = 30000000;
  if (world_start(&local) == 0)
    world_end(&local);
  free(local.ranks);
  free(local.takes);
}
