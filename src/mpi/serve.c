/*
 * serve.c - a serving rank (1..N-1): runs rank 0's calls in a local pool.
 *
 * The local pool is created before MPI_Init: forking or spawning after
 * MPI_Init is unsafe with some transports (registered memory), and a
 * crash, timeout or cancel of a call then stays inside that pool's worker
 * processes, so the MPI job goes on (an MPI rank that dies takes the job
 * down under mpirun's defaults).
 *
 * The calls of one batch that come from one source on rank 0 (a map's
 * calls, or a future's one) form a *group*, run as one async map of the
 * local pool: its calls go to the workers in chunks, as a local map's do,
 * without a future and a callback per call, which cost several thread
 * wake-ups each.  A group's results go back together when it has ended,
 * as the results of one chunk of Python's map do.  A cancel record cancels
 * its call's group, which rank 0 cancels as a whole anyway (a source).
 *
 * Threads: the main thread makes every MPI call (MPI_THREAD_FUNNELED is
 * enough) and runs the groups.  Only log lines come from another thread
 * (the local pool's I/O thread), appended under S_m.  Idle, the main
 * thread waits on its oldest group with a growing timeout, so a finished
 * group wakes it at once while an idle rank polls MPI at most every
 * millisecond.
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
#include <unistd.h>

#include "ppm.h"

/* The calls of one group, running as one map of the local pool. */
typedef struct group_s {
  struct group_s *next; /* S.groups, oldest first */
  uint64_t key;         /* rank 0's group */
  size_t n;
  uint64_t *ids;  /* rank 0's ids */
  pp_buf_t *args; /* into the batch, or large ones of their own */
  void **owned;   /* the large arguments (pp_free), or NULL */
  pp_result_t *res;
  unsigned char *batch; /* the batch message its arguments live in */
  int *batch_refs;      /* groups that still use it */
  pp_map_t *m;
} group_t;

/* A result's data that travels as a message of its own. */
typedef struct rdata_s {
  void *data;
  size_t len;
} rdata_t;

/* S_m guards the log lines, which another thread appends. */
static pthread_mutex_t S_m = PTHREAD_MUTEX_INITIALIZER;

static struct {
  group_t *groups, **tail; /* running, oldest first (main thread) */
  ppm_buf_t results;       /* result records to send (main thread) */
  rdata_t *rdata;          /* their separate data, in record order */
  size_t nrdata, caprdata;
  ppm_buf_t *logs; /* LOG messages to send (S_m) */
  size_t nlogs, caplogs;
} S;

static void release_free(void *mem) {
  free(mem);
}

static void release_pp(void *mem) {
  pp_free(mem);
}

/* Appends one result record, taking its data.  A result too large for
 * one MPI message (2 GiB) becomes a failure that says so. */
static void put_result(uint64_t id, pp_result_t *r) {
  ppm_result_t h;
  const char *msg = r->message;
  char why[160];
  memset(&h, 0, sizeof(h));
  if (r->len > INT_MAX) {
    snprintf(why, sizeof(why),
             "the result of %zu bytes is larger than the MPI backend "
             "sends in one message (2 GiB)",
             r->len);
    pp_free(r->data);
    r->data = NULL;
    r->len = 0;
    r->status = PP_EINVAL;
    msg = why;
  }
  h.id = id;
  h.status = r->status;
  h.exit_code = r->exit_code;
  h.term_signal = r->term_signal;
  h.msg_len = msg ? (uint32_t)strlen(msg) : 0;
  h.len = r->len;
  if (r->len > PPM_BIG) {
    h.flags = PPM_SEPARATE;
    if (S.nrdata == S.caprdata) {
      size_t cap = S.caprdata ? 2 * S.caprdata : 16;
      rdata_t *v = realloc(S.rdata, cap * sizeof(*v));
      if (v == NULL)
        abort(); /* nothing sane is left: the job ends */
      S.rdata = v;
      S.caprdata = cap;
    }
    S.rdata[S.nrdata].data = r->data;
    S.rdata[S.nrdata].len = r->len;
    S.nrdata++;
    r->data = NULL;
  }
  if (ppm_buf_put(&S.results, &h, sizeof(h)) != 0 ||
      ppm_buf_put(&S.results, msg, h.msg_len) != 0 ||
      (!(h.flags & PPM_SEPARATE) &&
       ppm_buf_put(&S.results, r->data, r->len) != 0))
    abort();
}

/* The local pool's log callback (its I/O thread): lines go to rank 0. */
static void on_log(void *data, const pp_log_record_t *rec) {
  ppm_log_t h;
  ppm_buf_t b = {0};
  (void)data;
  h.worker = rec->worker;
  h.source = (int32_t)rec->source;
  h.level = rec->level;
  h.len = (uint32_t)rec->len;
  if (ppm_buf_put(&b, &h, sizeof(h)) != 0 ||
      ppm_buf_put(&b, rec->line, rec->len) != 0) {
    ppm_buf_free(&b);
    return;
  }
  pthread_mutex_lock(&S_m);
  if (S.nlogs == S.caplogs) {
    size_t cap = S.caplogs ? 2 * S.caplogs : 16;
    ppm_buf_t *v = realloc(S.logs, cap * sizeof(*v));
    if (v == NULL) {
      pthread_mutex_unlock(&S_m);
      ppm_buf_free(&b);
      return;
    }
    S.logs = v;
    S.caplogs = cap;
  }
  S.logs[S.nlogs++] = b;
  pthread_mutex_unlock(&S_m);
}

/* A call that never reached the local pool fails with `status`. */
static void fail_call(uint64_t id, int status, const char *why) {
  pp_result_t r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  r.message = (char *)why;
  put_result(id, &r);
}

/* Receives the large argument that follows its batch from rank 0 (it is
 * on its way).  It goes straight into shared memory, which the local pool
 * hands to its worker without a copy (pp_shared_alloc), and whose mappings
 * the pool keeps for reuse, so a stream of large arguments does not fault
 * in fresh pages every time.  Returns MPI's code. */
static int recv_arg(MPI_Comm comm, void **out, int *n) {
  MPI_Message msg;
  MPI_Status st;
  int rc = MPI_Mprobe(0, PPM_TAG_ARG, comm, &msg, &st);
  if (rc != MPI_SUCCESS)
    return rc;
  MPI_Get_count(&st, MPI_BYTE, n);
  *out = pp_shared_alloc(*n > 0 ? (size_t)*n : 1);
  if (*out == NULL)
    *out = malloc(*n > 0 ? (size_t)*n : 1);
  if (*out == NULL)
    abort();
  return MPI_Mrecv(*out, *n, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
}

static void batch_unref(group_t *g) {
  if (--*g->batch_refs == 0) {
    free(g->batch);
    free(g->batch_refs);
  }
}

static void group_free(group_t *g) {
  size_t i;
  for (i = 0; g->owned != NULL && i < g->n; i++)
    pp_free(g->owned[i]);
  batch_unref(g);
  free(g->ids);
  free(g->args);
  free(g->owned);
  free(g->res);
  free(g);
}

/* Starts a group as a map; if it cannot start, its calls fail here. */
static void group_start(pp_pool_t *local, const pp_task_t *tasks,
                        uint32_t ntasks, group_t *g, uint32_t task,
                        int64_t timeout_ms) {
  pp_map_options_t mo;
  size_t i;
  int rc = PP_EPROTO;
  const char *why = "rank 0 named a task this rank lacks";
  memset(&mo, 0, sizeof(mo));
  mo.timeout_ms = timeout_ms > 0 ? timeout_ms : -1;
  if (task < ntasks) {
    rc = pp_pool_map_async(local, tasks[task].name, g->args, g->n, g->res, &mo,
                           &g->m);
    why = pp_last_error();
  }
  if (rc == 0) {
    g->next = NULL;
    *S.tail = g;
    S.tail = &g->next;
    return;
  }
  for (i = 0; i < g->n; i++)
    fail_call(g->ids[i], rc, why);
  group_free(g);
}

/* A batch of calls: each run of records of one group becomes a map.  The
 * batch's memory stays while a group uses arguments in it. */
static void handle_calls(MPI_Comm comm, pp_pool_t *local,
                         const pp_task_t *tasks, uint32_t ntasks,
                         unsigned char *p, size_t n) {
  size_t off = 0;
  int *refs = malloc(sizeof(*refs));
  if (refs == NULL)
    abort();
  *refs = 1; /* this function's */
  while (off + sizeof(ppm_call_t) <= n) {
    ppm_call_t first, c;
    size_t k = 0, at = off, count = 0;
    group_t *g;
    /* How many records of this group follow (they are contiguous). */
    memcpy(&first, p + off, sizeof(first));
    while (at + sizeof(c) <= n) {
      memcpy(&c, p + at, sizeof(c));
      if (c.group != first.group || c.task != first.task ||
          c.timeout_ms != first.timeout_ms)
        break;
      at += sizeof(c) + ((c.flags & PPM_SEPARATE) ? 0 : PPM_PAD8(c.len));
      if (at > n)
        break;
      count++;
    }
    if (count == 0)
      break; /* a broken batch: nothing more in it can be trusted */
    g = calloc(1, sizeof(*g));
    if (g == NULL || (g->ids = calloc(count, sizeof(uint64_t))) == NULL ||
        (g->args = calloc(count, sizeof(pp_buf_t))) == NULL ||
        (g->res = calloc(count, sizeof(pp_result_t))) == NULL)
      abort();
    g->key = first.group;
    g->n = count;
    g->batch = p;
    g->batch_refs = refs;
    (*refs)++;
    for (k = 0; k < count; k++) {
      memcpy(&c, p + off, sizeof(c));
      off += sizeof(c);
      g->ids[k] = c.id;
      if (c.flags & PPM_SEPARATE) {
        void *arg = NULL;
        int len = 0;
        if (g->owned == NULL &&
            (g->owned = calloc(count, sizeof(void *))) == NULL)
          abort();
        if (recv_arg(comm, &arg, &len) != MPI_SUCCESS ||
            (uint64_t)len != c.len) {
          /* The stream from rank 0 is broken: the job cannot go on. */
          fprintf(stderr, "procpool: an argument from MPI rank 0 did not "
                          "arrive whole\n");
          abort();
        }
        g->owned[k] = arg;
        g->args[k].data = arg;
        g->args[k].len = (size_t)len;
      } else {
        g->args[k].data = p + off;
        g->args[k].len = (size_t)c.len;
        off += PPM_PAD8(c.len);
      }
    }
    group_start(local, tasks, ntasks, g, first.task, first.timeout_ms);
  }
  if (--*refs == 0) {
    free(p);
    free(refs);
  }
}

/* Cancels the groups of the calls named in a CANCEL message. */
static void handle_cancel(const unsigned char *p, size_t n) {
  size_t off, i;
  for (off = 0; off + 8 <= n; off += 8) {
    uint64_t id;
    group_t *g;
    memcpy(&id, p + off, 8);
    for (g = S.groups; g != NULL; g = g->next)
      for (i = 0; i < g->n; i++)
        if (g->ids[i] == id) {
          pp_map_cancel(g->m);
          goto next;
        }
  next:;
  }
}

/* Hands back the results of the groups that have ended; returns 1 if
 * any had. */
static int reap_groups(void) {
  group_t **pg = &S.groups, *g;
  size_t i;
  int any = 0;
  while ((g = *pg) != NULL) {
    if (pp_map_status(g->m) == PP_EAGAIN) {
      pg = &g->next;
      continue;
    }
    *pg = g->next;
    if (S.tail == &g->next)
      S.tail = pg;
    for (i = 0; i < g->n; i++) {
      put_result(g->ids[i], &g->res[i]);
      pp_free(g->res[i].data);
      free(g->res[i].message);
    }
    pp_map_free(g->m);
    group_free(g);
    any = 1;
  }
  return any;
}

/* Sends the results of ended groups and the lines the local pool logged;
 * returns 1 if there were any. */
static int flush(MPI_Comm comm, ppm_sends_t *sends) {
  ppm_buf_t *logs;
  size_t nlogs, i;
  int any = S.results.len > 0;
  pthread_mutex_lock(&S_m);
  logs = S.logs;
  nlogs = S.nlogs;
  S.logs = NULL;
  S.nlogs = S.caplogs = 0;
  pthread_mutex_unlock(&S_m);
  /* Lines first: what a call printed comes before its result. */
  for (i = 0; i < nlogs; i++)
    ppm_isend(sends, comm, 0, PPM_TAG_LOG, logs[i].p, logs[i].len, logs[i].p,
              release_free);
  free(logs);
  if (S.results.len > 0)
    ppm_isend(sends, comm, 0, PPM_TAG_RESULTS, S.results.p, S.results.len,
              S.results.p, release_free);
  for (i = 0; i < S.nrdata; i++)
    ppm_isend(sends, comm, 0, PPM_TAG_RDATA, S.rdata[i].data, S.rdata[i].len,
              S.rdata[i].data, release_pp);
  free(S.rdata);
  memset(&S.results, 0, sizeof(S.results));
  S.rdata = NULL;
  S.nrdata = S.caprdata = 0;
  return any || nlogs > 0;
}

/* Sleeps about `us`: on the oldest running group, which wakes it as soon
 * as it ends (a map's wait counts in milliseconds), or plainly. */
static void nap(int64_t us) {
  struct timespec ts = {0, 0};
  if (S.groups != NULL && us >= 500) {
    pp_map_wait(S.groups->m, 1);
    return;
  }
  ts.tv_nsec = (long)us * 1000;
  nanosleep(&ts, NULL);
}

/* Sends what is left, for `us` at most: rank 0 may be gone. */
static void drain(ppm_sends_t *sends, int64_t us) {
  int64_t end = ppm_now_us() + us;
  while (sends->n > 0 && ppm_now_us() < end) {
    struct timespec ts = {0, 200000};
    if (!ppm_sends_test(sends))
      nanosleep(&ts, NULL);
  }
  /* Sends that did not complete are forgotten (their memory leaked rather
   * than freed under MPI's feet). */
  sends->n = 0;
}

/* Serves until rank 0 says STOP, or until rank 0 does not answer an ask
 * within the deadline.  A rank asks when its own loop did not run for
 * PPM_GAP_US (it was stopped, or starved): rank 0 may have declared it
 * lost meanwhile, or ended, and in both cases the rank must end its
 * service (a lost rank is told so by a STOP when it speaks; an ended
 * rank 0 tells nobody anything).  It asks only once rank 0 has spoken to
 * it: before, rank 0 may not have begun MPI yet. */
static void serve_loop(MPI_Comm comm, int rank, pp_pool_t *local,
                       const pp_task_t *tasks, uint32_t ntasks) {
  ppm_sends_t sends = {0};
  ppm_idle_t idle;
  group_t *g;
  int64_t deadline = ppm_env_int("PROCPOOL_MPI_DEADLINE_MS", 10000) * 1000;
  int64_t beat = ppm_now_us(), last = beat, asked = 0;
  int stop = 0, spoke = 0, abandoned = 0;
  ppm_idle_reset(&idle);
  while (!stop) {
    MPI_Message msg;
    MPI_Status st;
    int flag = 0, did = 0, n = 0;
    int64_t us, now = ppm_now_us();
    if (spoke && asked == 0 && now - last > PPM_GAP_US) {
      ppm_isend(&sends, comm, 0, PPM_TAG_ASK, NULL, 0, NULL, NULL);
      asked = now;
    } else if (asked != 0 && now - asked > deadline) {
      fprintf(stderr,
              "procpool: MPI rank %d did not run for a while and rank 0 has "
              "not answered it for %lld ms: rank 0 has ended or counts this "
              "rank lost; it ends its service\n",
              rank, (long long)((now - asked) / 1000));
      abandoned = 1;
      break;
    }
    last = now;
    if (reap_groups())
      did = 1;
    if (flush(comm, &sends))
      did = 1, beat = ppm_now_us();
    ppm_sends_test(&sends);
    MPI_Improbe(0, MPI_ANY_TAG, comm, &flag, &msg, &st);
    if (flag) {
      unsigned char *p;
      did = 1;
      spoke = 1;
      /* Rank 0 answers an ask with BEAT (or STOP); what it sent before
       * the ask arrives before the answer and answers nothing. */
      if (st.MPI_TAG == PPM_TAG_BEAT)
        asked = 0;
      MPI_Get_count(&st, MPI_BYTE, &n);
      p = malloc(n > 0 ? (size_t)n : 1);
      if (p == NULL)
        abort();
      MPI_Mrecv(p, n, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
      if (st.MPI_TAG == PPM_TAG_CALLS) {
        /* It keeps the batch while its groups use it. */
        handle_calls(comm, local, tasks, ntasks, p, (size_t)n);
        p = NULL;
      } else if (st.MPI_TAG == PPM_TAG_CANCEL) {
        handle_cancel(p, (size_t)n);
      } else if (st.MPI_TAG == PPM_TAG_STOP) {
        stop = 1;
      }
      free(p);
    }
    /* Rank 0 finds a rank that holds calls and is silent dead: such a
     * rank tells it that it lives.  (Between rank 0's pools nobody
     * listens, and a beat would only wait in its queue.) */
    if (S.groups != NULL && ppm_now_us() - beat > 500000) {
      ppm_isend(&sends, comm, 0, PPM_TAG_BEAT, NULL, 0, NULL, NULL);
      beat = ppm_now_us();
    }
    if (did) {
      ppm_idle_reset(&idle);
      continue;
    }
    us = ppm_idle_next(&idle);
    if (us > 0)
      nap(us);
  }
  /* Rank 0 stops us only when no call of its pool is left; calls still
   * here (rank 0 ends without destroying its pool, or counts this rank
   * lost) are cancelled. */
  for (g = S.groups; g != NULL; g = g->next) {
    pp_map_cancel(g->m);
    pp_map_wait(g->m, -1);
  }
  reap_groups();
  pp_pool_destroy(local, PP_DESTROY_CANCEL);
  flush(comm, &sends);
  ppm_isend(&sends, comm, 0, PPM_TAG_BYE, NULL, 0, NULL, NULL);
  /* A rank 0 that answers nothing will not take them either. */
  drain(&sends, abandoned ? PPM_GAP_US : PPM_END_US);
  ppm_sends_free(&sends);
}

/* The watchdog of a serving rank's MPI_Finalize (below). */
static pthread_mutex_t W_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t W_cond = PTHREAD_COND_INITIALIZER;
static int W_done, W_rank;

static void *finalize_watchdog(void *arg) {
  struct timespec ts;
  int done;
  (void)arg;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 3 * PPM_END_US / 1000000;
  pthread_mutex_lock(&W_m);
  while (!W_done)
    if (pthread_cond_timedwait(&W_cond, &W_m, &ts) == ETIMEDOUT)
      break;
  done = W_done;
  pthread_mutex_unlock(&W_m);
  if (!done) {
    /* The service has ended; only MPI's own end waits for something that
     * does not come.  This process is procpool's (the application's code
     * never runs on a serving rank), and nothing of it is left to do. */
    fprintf(stderr,
            "procpool: MPI rank %d: MPI_Finalize has not returned within "
            "%d s (it waits for a rank that is gone); the rank ends without "
            "it\n",
            W_rank, 3 * PPM_END_US / 1000000);
    _exit(0);
  }
  return NULL;
}

/* Ends MPI on a serving rank, within a bound (Open MPI's MPI_Finalize can
 * wait for a dead rank: docs/design.md, section 7). */
static void finalize_bounded(int rank) {
  pthread_t t;
  int watched;
  W_rank = rank;
  watched = pthread_create(&t, NULL, finalize_watchdog, NULL) == 0;
  /* PMPI: the application's code after the guard never runs on this
   * rank, so MPI ends here even if the application began it (enable.c's
   * MPI_Finalize is rank 0's). */
  PMPI_Finalize();
  if (!watched)
    return;
  pthread_mutex_lock(&W_m);
  W_done = 1;
  pthread_cond_signal(&W_cond);
  pthread_mutex_unlock(&W_m);
  pthread_join(t, NULL);
}

int ppm_serve(int argc, char **argv, const pp_task_t *tasks, int *rc) {
  pp_pool_options_t o;
  pp_pool_t *local = NULL;
  ppm_hello_t hello;
  MPI_Comm comm;
  uint32_t ntasks;
  int rank, size, init = 0, provided, status;
  (void)argc;
  (void)argv;
  if (!ppm_world(&rank, &size) || size <= 1)
    return 0;
  if (rank == 0) {
    /* The serving ranks wait for rank 0 until it ends; if it never runs
     * an MPI pool, it must still tell them to stop. */
    ppm_master_arm();
    return 0;
  }
  if (tasks == NULL)
    tasks = ppm_core->default_tasks();
  memset(&hello, 0, sizeof(hello));
  hello.hash = ppm_tasks_hash(tasks, &ntasks);
  memset(&o, 0, sizeof(o));
  o.backend = PP_BACKEND_LOCAL;
  o.tasks = tasks;
  o.workers = (int)ppm_env_int("PROCPOOL_MPI_WORKERS", 0);
  o.log_cb = on_log;
  S.tail = &S.groups;
  status = pp_pool_create(&local, &o);
  if (status != 0) {
    hello.status = status;
    snprintf(hello.why, sizeof(hello.why), "%s", pp_last_error());
  } else {
    hello.workers = pp_pool_workers(local);
  }
  /* The main thread makes every MPI call of a serving rank (and MPI's
   * threads, started by MPI_Init, inherit its mask). */
  ppm_block_sigpipe();
  MPI_Initialized(&init);
  if (!init)
    ppm_tune_before_init();
  if (!init && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) !=
                   MPI_SUCCESS) {
    fprintf(stderr, "procpool: rank %d: MPI_Init_thread failed\n", rank);
    *rc = 70;
    return 1;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_Send(&hello, (int)sizeof(hello), MPI_BYTE, 0, PPM_TAG_HELLO, comm);
  if (local != NULL) {
    serve_loop(comm, rank, local, tasks, ntasks);
  } else {
    /* Nothing to serve with: wait for the STOP rank 0 sends when it has
     * read why. */
    MPI_Recv(NULL, 0, MPI_BYTE, 0, PPM_TAG_STOP, comm, MPI_STATUS_IGNORE);
    MPI_Send(NULL, 0, MPI_BYTE, 0, PPM_TAG_BYE, comm);
  }
  MPI_Comm_free(&comm);
  finalize_bounded(rank);
  *rc = 0;
  return 1;
}
