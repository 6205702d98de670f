/*
 * inbound.c - rank 0's engine: what comes from the serving ranks.
 *
 * Calls in flight are kept by id in an open-addressing table, so that a
 * result finds its call (and a late one, from a rank declared dead, finds
 * none and is dropped).  Results of a round are finished under pool->lock
 * once.  Open MPI 4.1 tells nobody that a rank died; silence decides: a
 * rank that holds calls and sends nothing (not even its heartbeat, every
 * 0.5 s) for PROCPOOL_MPI_DEADLINE_MS is dead, its calls end
 * PP_EWORKERDIED, and it gets nothing more.
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

/* ---- the calls in flight, by id ---- */

static size_t fl_slot(const eng_t *E, uint64_t id) {
  return (size_t)(id * 11400714819323198485ull) & (E->flcap - 1);
}

flight_t *ppm_fl_find(eng_t *E, uint64_t id) {
  size_t i;
  if (E->flcap == 0)
    return NULL;
  for (i = fl_slot(E, id); E->fl[i].id != 0; i = (i + 1) & (E->flcap - 1))
    if (E->fl[i].id == id)
      return &E->fl[i];
  return NULL;
}

int ppm_fl_put(eng_t *E, const flight_t *f) {
  size_t i;
  if (2 * (E->fln + 1) > E->flcap) {
    size_t cap = E->flcap ? 2 * E->flcap : 256, k;
    flight_t *old = E->fl, *v = ppm_calloc("flight", cap, sizeof(*v));
    if (v == NULL)
      return PP_ENOMEM;
    E->fl = v;
    E->flcap = cap;
    E->fln = 0;
    for (k = 0; old != NULL && k < cap / 2; k++)
      if (old[k].id != 0)
        ppm_fl_put(E, &old[k]);
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
    flight_t *f = ppm_fl_find(E, o->id);
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

void ppm_fail_takes(eng_t *E, const take_t *t, size_t n, int status,
                    const char *why) {
  size_t i;
  int wake = 0;
  ppm_core->lock(E->pool);
  for (i = 0; i < n; i++) {
    uint64_t id = t[i].src->first_id + t[i].index;
    flight_t *f = ppm_fl_find(E, id);
    out_t o;
    if (f == NULL)
      continue;
    memset(&o, 0, sizeof(o));
    o.id = id;
    o.status = status;
    o.message = malloc(256);
    if (o.message != NULL)
      snprintf(o.message, 256, "call %llu: %s", (unsigned long long)id, why);
    wake |= finish_locked(E, f, &o);
  }
  ppm_core->unlock(E->pool);
  if (wake)
    ppm_core->broadcast(E->pool);
}

void ppm_kill_rank(eng_t *E, int r, int status, const char *why) {
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
    o.status = status;
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
    ppm_core->log(pool, 0, -1, 0, PP_LOG_STDERR, 0, line, strlen(line));
  }
}

/* ---- receiving ---- */

/* A new outcome for this round.  When the array cannot grow, the
 * outcomes received so far are finished at once, which empties it. */
static out_t *out_new(eng_t *E) {
  if (E->nouts == E->capouts) {
    size_t cap = 2 * E->capouts;
    out_t *v = ppm_realloc("outs", E->outs, cap * sizeof(*v));
    if (v != NULL) {
      E->outs = v;
      E->capouts = cap;
    } else {
      apply_outs(E);
    }
  }
  memset(&E->outs[E->nouts], 0, sizeof(out_t));
  return &E->outs[E->nouts++];
}

int ppm_recv_msg(MPI_Message *msg, MPI_Status *st, unsigned char **p, int *n) {
  static unsigned char none;
  int64_t end = ppm_now_us() + PPM_END_US;
  MPI_Request req;
  int done = 0;
  MPI_Get_count(st, MPI_BYTE, n);
  *p = NULL;
  if (*n <= 0)
    return MPI_Mrecv(&none, 0, MPI_BYTE, msg, MPI_STATUS_IGNORE);
  *p = ppm_malloc("recv", (size_t)*n);
  if (*p == NULL) {
    ppm_discard(msg, st, end);
    return MPI_ERR_NO_MEM;
  }
  /* A message over the eager limit needs its sender, which may die
   * meanwhile: the wait is bounded. */
  if (MPI_Imrecv(*p, *n, MPI_BYTE, msg, &req) != MPI_SUCCESS)
    return MPI_ERR_OTHER;
  for (;;) {
    struct timespec ts = {0, 50000};
    int rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || done)
      return rc;
    if (ppm_now_us() > end) {
      *p = NULL; /* the buffer stays MPI's: it may still be written into */
      return MPI_ERR_OTHER;
    }
    nanosleep(&ts, NULL);
  }
}

/* Receives the RDATA message that follows a batch of results from rank
 * r, into a new buffer.  The rank may die meanwhile, and a large message
 * needs its sender to arrive: both the probe and the receive give up at
 * the rank's deadline, so rank 0 never hangs on it.  Returns 0, -1 (the
 * rank is to be declared dead), or PP_ENOMEM (no memory for the data,
 * which was received into nothing: the stream goes on). */
static int recv_rdata(eng_t *E, int r, unsigned char **p, int *n) {
  int64_t end = ppm_now_us() + E->deadline_us;
  MPI_Message msg;
  MPI_Status st;
  MPI_Request req;
  int flag = 0;
  struct timespec ts = {0, 50000};
  *p = NULL;
  for (;;) {
    if (MPI_Improbe(r, PPM_TAG_RDATA, E->comm, &flag, &msg, &st) != MPI_SUCCESS)
      return -1;
    if (flag)
      break;
    if (ppm_now_us() > end)
      return -1;
    nanosleep(&ts, NULL);
  }
  MPI_Get_count(&st, MPI_BYTE, n);
  *p = ppm_malloc("rdata", *n > 0 ? (size_t)*n : 1);
  if (*p == NULL)
    return ppm_discard(&msg, &st, end) >= 0 ? PP_ENOMEM : -1;
  if (MPI_Imrecv(*p, *n, MPI_BYTE, &msg, &req) != MPI_SUCCESS)
    return -1;
  for (flag = 0; !flag;) {
    if (MPI_Test(&req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return -1;
    if (!flag && ppm_now_us() > end) {
      /* The buffer stays MPI's: it may still be written into. */
      *p = NULL;
      return -1;
    }
  }
  return 0;
}

/* A batch of results from rank r; *broken is set if the rank broke off
 * in the middle (it is then to be declared dead). */
static void handle_results(eng_t *E, int r, const unsigned char *p, size_t n,
                           int *broken) {
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
      unsigned char *d = NULL;
      int len = 0, rc = recv_rdata(E, r, &d, &len);
      if (rc == 0 && (uint64_t)len == h.len) {
        o->data = d;
        o->len = (size_t)len;
      } else if (rc == PP_ENOMEM) {
        o->status = PP_ENOMEM;
        free(o->message);
        o->message = malloc(160);
        if (o->message != NULL)
          snprintf(o->message, 160,
                   "rank 0 had no memory for the result of call %llu (%llu "
                   "bytes)",
                   (unsigned long long)h.id, (unsigned long long)h.len);
      } else {
        free(d);
        o->status = PP_EWORKERDIED;
        free(o->message);
        o->message = malloc(160);
        if (o->message != NULL)
          snprintf(o->message, 160,
                   "the result of call %llu did not arrive whole from MPI "
                   "rank %d",
                   (unsigned long long)h.id, r);
        *broken = 1;
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
        free(o->message);
        o->message = malloc(160);
        if (o->message != NULL)
          snprintf(o->message, 160,
                   "rank 0 had no memory for the result of call %llu (%llu "
                   "bytes)",
                   (unsigned long long)h.id, (unsigned long long)h.len);
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
  ppm_core->log(E->pool, r, E->ranks[r].offset + h.worker, 0,
                (pp_log_source_t)h.source, h.level, (const char *)p + sizeof(h),
                h.len);
}

void ppm_stop_lost(eng_t *E, int r) {
  rank_t *rk = &E->ranks[r];
  /* Only a rank that has just spoken is sent anything once it is lost: a
   * send to a rank that died can go wrong inside MPI (over TCP, Open MPI
   * 4.1 retries a connection to the dead peer and warns that the job may
   * hang). */
  if (rk->stop_sent || rk->bye)
    return;
  if (ppm_isend(&E->sends, E->comm, r, PPM_TAG_STOP, NULL, 0, NULL, NULL) ==
      MPI_SUCCESS)
    rk->stop_sent = 1;
}

void ppm_answer_ask(eng_t *E, int r) {
  if (E->ranks[r].dead)
    ppm_stop_lost(E, r);
  else
    ppm_isend(&E->sends, E->comm, r, PPM_TAG_BEAT, NULL, 0, NULL, NULL);
}

/* Receives what has come; returns 1 if anything did. */
int ppm_receive(eng_t *E) {
  int any = 0, k;
  for (k = 0; k < 256; k++) {
    MPI_Message msg;
    MPI_Status st;
    unsigned char *p;
    rank_t *rk;
    int flag = 0, n = 0, r, rc;
    if (MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, E->comm, &flag, &msg, &st) !=
            MPI_SUCCESS ||
        !flag)
      break;
    any = 1;
    r = st.MPI_SOURCE;
    if (r <= 0 || r >= E->size || !E->ranks[r].hello || E->ranks[r].dead) {
      /* What a rank declared lost sends now is dropped unread (it may be
       * large, and its sender may die meanwhile).  Speaking again, it
       * lives after all (it was stopped, say, and continued): its calls
       * have their outcomes, and it is told to end its service. */
      ppm_discard(&msg, &st, ppm_now_us() + E->deadline_us);
      if (r > 0 && r < E->size && E->ranks[r].hello) {
        if (st.MPI_TAG == PPM_TAG_BYE)
          E->ranks[r].bye = 1;
        else
          ppm_stop_lost(E, r);
      }
      continue;
    }
    rk = &E->ranks[r];
    rc = ppm_recv_msg(&msg, &st, &p, &n);
    if (rc != MPI_SUCCESS) {
      int nomem = rc == MPI_ERR_NO_MEM;
      char why[200];
      free(p);
      if (st.MPI_TAG != PPM_TAG_RESULTS && st.MPI_TAG != PPM_TAG_BYE)
        continue; /* a line of output, lost */
      /* Results that cannot be read: the calls they finish would wait
       * for ever, and which calls they are is in the message.  The rank's
       * calls fail, and it gets nothing more. */
      snprintf(why, sizeof(why),
               nomem ? "rank 0 had no memory to receive a message of %d "
                       "bytes from it"
                     : "a message of %d bytes from it did not arrive whole",
               n);
      apply_outs(E);
      ppm_kill_rank(E, r, nomem ? PP_ENOMEM : PP_EWORKERDIED, why);
      /* Having just spoken, it lives, and is told to end its service. */
      if (nomem)
        ppm_stop_lost(E, r);
      continue;
    }
    if (st.MPI_TAG == PPM_TAG_BYE) {
      /* Unasked: the rank ended its service by itself, and says why. */
      int32_t status = PP_EWORKERDIED;
      char why[300] = "it ended its service by itself";
      if ((size_t)n > sizeof(status)) {
        memcpy(&status, p, sizeof(status));
        snprintf(why, sizeof(why), "it ended its service: %.*s",
                 (int)((size_t)n - sizeof(status) < 256
                           ? (size_t)n - sizeof(status)
                           : 256),
                 (const char *)p + sizeof(status));
      }
      if (status >= 0 || status <= PP_ERRNO_MIN)
        status = PP_EWORKERDIED;
      rk->bye = 1;
      apply_outs(E);
      ppm_kill_rank(E, r, status, why);
    } else {
      rk->heard = ppm_now_us();
      if (st.MPI_TAG == PPM_TAG_RESULTS) {
        size_t before = E->nouts;
        int broken = 0;
        handle_results(E, r, p, (size_t)n, &broken);
        E->n_results_msgs++;
        E->n_results += E->nouts - before;
        if (broken) {
          /* Its calls of this batch are finished first, the rest then. */
          apply_outs(E);
          ppm_kill_rank(E, r, PP_EWORKERDIED,
                        "a large result from it did not arrive");
        }
      } else if (st.MPI_TAG == PPM_TAG_LOG) {
        handle_log(E, r, p, (size_t)n);
      } else if (st.MPI_TAG == PPM_TAG_ASK) {
        ppm_answer_ask(E, r);
      }
    }
    free(p);
  }
  apply_outs(E);
  return any;
}

/* Ranks silent too long while they hold calls are dead. */
void ppm_check_deadlines(eng_t *E) {
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
    ppm_kill_rank(E, r, PP_EWORKERDIED, why);
  }
}
