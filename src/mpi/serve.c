/*
 * serve.c - a serving rank (1..N-1): runs rank 0's calls in a local pool.
 *
 * The local pool is created before MPI_Init: forking or spawning after
 * MPI_Init is unsafe with some transports (registered memory), and a
 * crash, timeout or cancel of a call then stays inside that pool's worker
 * processes, so the MPI job goes on (an MPI rank that dies takes the job
 * down under mpirun's defaults).  The calls themselves are group.c's.
 *
 * Threads: the main thread makes every MPI call (MPI_THREAD_FUNNELED is
 * enough) and runs the groups.  Only log lines come from another thread
 * (the local pool's I/O thread), appended under L.m.  Idle, the main
 * thread waits on its oldest group with a growing timeout, so a finished
 * group wakes it at once while an idle rank polls MPI at most every
 * millisecond.
 *
 * The service ends when rank 0 says STOP, when rank 0 does not answer an
 * ask (below), or when the rank cannot go on (no memory to keep a result
 * or to read a batch: ppm_serve_break).  Every step of the end is
 * bounded: rank 0 may be gone, and Open MPI's MPI_Finalize can wait for a
 * rank that is (docs/design.md, section 7).  The rank ends with rc 0
 * either way: a rank that leaves with another code makes mpirun end the
 * whole job, the application on rank 0 with it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, PATH_MAX for apr.h */
#endif
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

serve_t S;

/* The local pool's log lines, which its I/O thread appends. */
static struct {
  pthread_mutex_t m;
  ppm_buf_t *logs; /* LOG messages to send */
  size_t nlogs, caplogs;
} L = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

/* The BYE that ends the service, with what ended it (nothing after a
 * STOP); static, because its send may outlive serve_loop(). */
static struct {
  int32_t status;
  char why[256];
} bye;

static void release_free(void *mem) {
  free(mem);
}

static void release_pp(void *mem) {
  pp_free(mem);
}

void ppm_serve_break(int status, const char *fmt, ...) {
  va_list ap;
  if (S.broken)
    return;
  S.broken = status;
  va_start(ap, fmt);
  vsnprintf(S.why, sizeof(S.why), fmt, ap);
  va_end(ap);
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
  if (ppm_buf_put(&b, "log", &h, sizeof(h)) != 0 ||
      ppm_buf_put(&b, "log", rec->line, rec->len) != 0) {
    ppm_buf_free(&b);
    return;
  }
  pthread_mutex_lock(&L.m);
  if (L.nlogs == L.caplogs) {
    size_t cap = L.caplogs ? 2 * L.caplogs : 16;
    ppm_buf_t *v = realloc(L.logs, cap * sizeof(*v));
    if (v == NULL) {
      pthread_mutex_unlock(&L.m);
      ppm_buf_free(&b);
      return;
    }
    L.logs = v;
    L.caplogs = cap;
  }
  L.logs[L.nlogs++] = b;
  pthread_mutex_unlock(&L.m);
}

/* Sends the results of ended groups and the lines the local pool logged;
 * returns 1 if there were any.  Without memory for the list of sends, the
 * lines are dropped and the results stay for the next time. */
static int flush(ppm_sends_t *sends) {
  ppm_buf_t *logs;
  size_t nlogs, i;
  int any = S.results.len > 0;
  pthread_mutex_lock(&L.m);
  logs = L.logs;
  nlogs = L.nlogs;
  L.logs = NULL;
  L.nlogs = L.caplogs = 0;
  pthread_mutex_unlock(&L.m);
  /* Lines first: what a call printed comes before its result. */
  if (nlogs > 0 && ppm_sends_reserve(sends, nlogs) != 0) {
    for (i = 0; i < nlogs; i++)
      ppm_buf_free(&logs[i]);
    nlogs = 0;
  }
  for (i = 0; i < nlogs; i++)
    ppm_isend(sends, S.comm, 0, PPM_TAG_LOG, logs[i].p, logs[i].len, logs[i].p,
              release_free);
  free(logs);
  if (S.results.len == 0)
    return nlogs > 0;
  if (ppm_sends_reserve(sends, 1 + S.nrdata) != 0)
    return nlogs > 0;
  ppm_isend(sends, S.comm, 0, PPM_TAG_RESULTS, S.results.p, S.results.len,
            S.results.p, release_free);
  for (i = 0; i < S.nrdata; i++)
    ppm_isend(sends, S.comm, 0, PPM_TAG_RDATA, S.rdata[i].data, S.rdata[i].len,
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

/* Receives one message from rank 0 and acts on it; sets *stop on STOP. */
static void receive(MPI_Message *msg, MPI_Status *st, pp_pool_t *local,
                    const pp_task_t *tasks, uint32_t ntasks, int *stop) {
  static unsigned char none;
  unsigned char *p;
  int n = 0, tag = st->MPI_TAG;
  MPI_Get_count(st, MPI_BYTE, &n);
  if (n <= 0) {
    MPI_Mrecv(&none, 0, MPI_BYTE, msg, MPI_STATUS_IGNORE);
    if (tag == PPM_TAG_STOP)
      *stop = 1;
    return;
  }
  if (tag != PPM_TAG_CALLS && tag != PPM_TAG_CANCEL) {
    /* Nothing else carries data (an argument whose batch failed, say). */
    ppm_discard(msg, st, ppm_now_us() + S.deadline_us);
    return;
  }
  p = ppm_malloc("msg", (size_t)n);
  if (p == NULL) {
    ppm_discard(msg, st, ppm_now_us() + S.deadline_us);
    /* A lost cancel only lets its calls run to their end; a lost batch
     * would leave its calls without an outcome for ever. */
    if (tag == PPM_TAG_CALLS)
      ppm_serve_break(PP_ENOMEM,
                      "MPI rank %d had no memory to receive a batch of %d "
                      "bytes from rank 0",
                      S.rank, n);
    return;
  }
  MPI_Mrecv(p, n, MPI_BYTE, msg, MPI_STATUS_IGNORE);
  if (tag == PPM_TAG_CALLS) {
    /* It keeps the batch while its groups use it. */
    ppm_handle_calls(local, tasks, ntasks, p, (size_t)n);
    return;
  }
  ppm_handle_cancel(p, (size_t)n);
  free(p);
}

/* Sends what is left and the BYE (`n` bytes of `bye`), until rank 0 has
 * the BYE, for `us` at most: rank 0 may be gone.  The BYE has a request
 * of its own, so that no memory is needed to send it. */
static void end_sends(ppm_sends_t *sends, int n, int64_t us) {
  int64_t end = ppm_now_us() + us;
  MPI_Request req = MPI_REQUEST_NULL;
  int done = 0, hello = 0;
  if (MPI_Isend(&bye, n, MPI_BYTE, 0, PPM_TAG_BYE, S.comm, &req) != MPI_SUCCESS)
    done = 1;
  while (ppm_now_us() < end) {
    struct timespec ts = {0, 200000};
    int any = ppm_sends_test(sends);
    if (!done && MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      done = 1;
    if (!hello && MPI_Test(&S.hello, &hello, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      hello = 1;
    /* Rank 0 has read the BYE, and so everything sent before it: a send
     * still open is one it dropped unread. */
    if (done && hello)
      break;
    if (!any)
      nanosleep(&ts, NULL);
  }
  /* Sends that did not complete are forgotten (their memory leaked rather
   * than freed under MPI's feet). */
  sends->n = 0;
}

/* Serves until rank 0 says STOP, until rank 0 does not answer an ask
 * within the deadline, or until the rank cannot go on.  A rank asks when
 * its own loop did not run for PPM_GAP_US (it was stopped, or starved):
 * rank 0 may have declared it lost meanwhile, or ended, and in both cases
 * the rank must end its service (a lost rank is told so by a STOP when it
 * speaks; an ended rank 0 tells nobody anything).  It asks only once rank
 * 0 has spoken to it: before, rank 0 may not have begun MPI yet. */
static void serve_loop(pp_pool_t *local, const pp_task_t *tasks,
                       uint32_t ntasks) {
  ppm_sends_t sends = {0};
  ppm_idle_t idle;
  int64_t beat = ppm_now_us(), last = beat, asked = 0;
  int stop = 0, spoke = 0, nbye = 0;
  ppm_idle_reset(&idle);
  while (!stop && !S.broken) {
    MPI_Message msg;
    MPI_Status st;
    int flag = 0, did = 0;
    int64_t us, now = ppm_now_us();
    if (spoke && asked == 0 && now - last > PPM_GAP_US) {
      ppm_isend(&sends, S.comm, 0, PPM_TAG_ASK, NULL, 0, NULL, NULL);
      asked = now;
    } else if (asked != 0 && now - asked > S.deadline_us) {
      ppm_serve_break(PP_EWORKERDIED,
                      "MPI rank %d did not run for a while and rank 0 has "
                      "not answered it for %lld ms (rank 0 has ended, or "
                      "counts the rank lost)",
                      S.rank, (long long)((now - asked) / 1000));
      break;
    }
    last = now;
    if (ppm_reap_groups())
      did = 1;
    if (flush(&sends))
      did = 1, beat = ppm_now_us();
    ppm_sends_test(&sends);
    MPI_Improbe(0, MPI_ANY_TAG, S.comm, &flag, &msg, &st);
    if (flag) {
      did = 1;
      spoke = 1;
      /* Rank 0 answers an ask with BEAT (or STOP); what it sent before
       * the ask arrives before the answer and answers nothing. */
      if (st.MPI_TAG == PPM_TAG_BEAT)
        asked = 0;
      receive(&msg, &st, local, tasks, ntasks, &stop);
    }
    /* Rank 0 finds a rank that holds calls and is silent dead: such a
     * rank tells it that it lives.  (Between rank 0's pools nobody
     * listens, and a beat would only wait in its queue.) */
    if (S.groups != NULL && ppm_now_us() - beat > 500000) {
      ppm_isend(&sends, S.comm, 0, PPM_TAG_BEAT, NULL, 0, NULL, NULL);
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
   * lost, or the rank cannot go on) are cancelled. */
  ppm_cancel_groups();
  pp_pool_destroy(local, PP_DESTROY_CANCEL);
  flush(&sends);
  if (S.broken) {
    /* Said on this rank's stderr, and to rank 0 in the BYE, which fails
     * the rank's calls with the reason. */
    fprintf(stderr, "procpool: %s; the rank ends its service\n", S.why);
    bye.status = S.broken;
    snprintf(bye.why, sizeof(bye.why), "%s", S.why);
    nbye = (int)(sizeof(bye.status) + strlen(bye.why));
  }
  /* A rank 0 that answers nothing will not take them either. */
  end_sends(&sends, nbye, S.broken == PP_EWORKERDIED ? PPM_GAP_US : PPM_END_US);
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
  /* Static: its send may outlive this function's wait for it. */
  static ppm_hello_t hello;
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
  S.rank = rank;
  S.deadline_us = ppm_env_int("PROCPOOL_MPI_DEADLINE_MS", 10000) * 1000;
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
  S.comm = comm;
  /* Not a blocking send: rank 0 reads hellos only when it begins MPI (its
   * first MPI pool, or its end), and over shared memory a send completes
   * only when it is read. */
  if (MPI_Isend(&hello, (int)sizeof(hello), MPI_BYTE, 0, PPM_TAG_HELLO, comm,
                &S.hello) != MPI_SUCCESS)
    S.hello = MPI_REQUEST_NULL;
  if (local != NULL) {
    serve_loop(local, tasks, ntasks);
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
