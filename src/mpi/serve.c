/*
 * serve.c - a serving rank (1..N-1): runs rank 0's calls in a local pool.
 *
 * The local pool is created before MPI_Init: forking or spawning after
 * MPI_Init is unsafe with some transports (registered memory), and a
 * crash, timeout or cancel of a call then stays inside that pool's worker
 * processes, so the MPI job goes on (an MPI rank that dies takes the job
 * down under mpirun's defaults).
 *
 * Threads: the main thread makes every MPI call (MPI_THREAD_FUNNELED is
 * enough).  Outcomes come on the local pool's callback thread and log lines
 * on its I/O thread; both only append to the outgoing buffers under S_m and
 * signal S_cond, which the main thread sleeps on between polls, so a result
 * goes out at once while an idle rank polls MPI only every millisecond.
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

/* A call this rank runs. */
typedef struct entry_s {
  struct entry_s *prev, *next; /* on S.calls while it runs */
  uint64_t id;                 /* rank 0's id */
  pp_future_t *f;              /* set after the submit, under S_m */
  void *arg;                   /* a separate argument, borrowed by the
                                  call until it finishes */
  int submitted;               /* the main thread is done with it */
  int done;                    /* its callback has run */
} entry_t;

/* A result's data that travels as a message of its own. */
typedef struct rdata_s {
  void *data;
  size_t len;
} rdata_t;

/* S_m guards S; S_cond tells the main thread there is news. */
static pthread_mutex_t S_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t S_cond = PTHREAD_COND_INITIALIZER;

static struct {
  entry_t calls;          /* list head */
  ppm_buf_t results;      /* result records to send */
  rdata_t *rdata;         /* their separate data, in record order */
  size_t nrdata, caprdata;
  ppm_buf_t *logs;        /* LOG messages to send */
  size_t nlogs, caplogs;
  int news;
} S;

static void release_free(void *mem) {
  free(mem);
}

static void release_pp(void *mem) {
  pp_free(mem);
}

/* Appends one result record; S_m held.  A result too large for one MPI
 * message (2 GiB) becomes a failure that says so. */
static void put_result_locked(uint64_t id, pp_result_t *r) {
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
  S.news = 1;
  pthread_cond_signal(&S_cond);
}

/* The local pool's callback thread: a call of ours finished. */
static void on_done(void *data, pp_future_t *f) {
  entry_t *e = data;
  pp_result_t r;
  int owner;
  memset(&r, 0, sizeof(r));
  if (pp_future_take(f, &r) != 0) {
    r.status = PP_EPROTO;
    r.message = NULL;
  }
  pthread_mutex_lock(&S_m);
  e->prev->next = e->next;
  e->next->prev = e->prev;
  e->done = 1;
  owner = e->submitted;
  put_result_locked(e->id, &r);
  pthread_mutex_unlock(&S_m);
  pp_free(r.data);
  free(r.message);
  pp_future_free(f);
  free(e->arg);
  e->arg = NULL;
  /* Before the submit returned, the main thread still uses the entry. */
  if (owner)
    free(e);
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
  S.news = 1;
  pthread_cond_signal(&S_cond);
  pthread_mutex_unlock(&S_m);
}

/* A call that never reached the local pool fails with `status`. */
static void fail_call(uint64_t id, int status, const char *why) {
  pp_result_t r;
  memset(&r, 0, sizeof(r));
  r.status = status;
  r.message = (char *)why;
  pthread_mutex_lock(&S_m);
  put_result_locked(id, &r);
  pthread_mutex_unlock(&S_m);
}

/* Submits one call to the local pool. */
static void run_call(pp_pool_t *local, const pp_task_t *tasks,
                     uint32_t ntasks, const ppm_call_t *c, const void *arg,
                     void *owned) {
  pp_call_options_t co;
  pp_future_t *f = NULL;
  entry_t *e;
  int rc;
  if (c->task >= ntasks) {
    free(owned);
    fail_call(c->id, PP_EPROTO, "rank 0 named a task this rank lacks");
    return;
  }
  e = calloc(1, sizeof(*e));
  if (e == NULL) {
    free(owned);
    fail_call(c->id, PP_ENOMEM, "out of memory on the serving rank");
    return;
  }
  e->id = c->id;
  e->arg = owned;
  pthread_mutex_lock(&S_m);
  e->next = S.calls.next;
  e->prev = &S.calls;
  S.calls.next->prev = e;
  S.calls.next = e;
  pthread_mutex_unlock(&S_m);
  memset(&co, 0, sizeof(co));
  co.timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : -1;
  co.borrow_arg = owned != NULL;
  co.on_done = on_done;
  co.on_done_data = e;
  rc = pp_pool_submit(local, tasks[c->task].name, arg, (size_t)c->len, &co,
                      &f);
  pthread_mutex_lock(&S_m);
  if (rc != 0) {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    pthread_mutex_unlock(&S_m);
    free(e->arg);
    free(e);
    fail_call(c->id, rc, pp_last_error());
    return;
  }
  if (e->done) {
    pthread_mutex_unlock(&S_m);
    free(e);
    return;
  }
  e->f = f;
  e->submitted = 1;
  pthread_mutex_unlock(&S_m);
}

/* Receives the next message of `tag` from rank 0, which is on its way
 * (an argument right behind its batch).  Returns MPI's code. */
static int recv_next(MPI_Comm comm, int tag, void **out, int *n) {
  MPI_Message msg;
  MPI_Status st;
  int rc = MPI_Mprobe(0, tag, comm, &msg, &st);
  if (rc != MPI_SUCCESS)
    return rc;
  MPI_Get_count(&st, MPI_BYTE, n);
  *out = malloc(*n > 0 ? (size_t)*n : 1);
  if (*out == NULL)
    abort();
  return MPI_Mrecv(*out, *n, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
}

/* A batch of calls. */
static void handle_calls(MPI_Comm comm, pp_pool_t *local,
                         const pp_task_t *tasks, uint32_t ntasks,
                         const unsigned char *p, size_t n) {
  size_t off = 0;
  while (off + sizeof(ppm_call_t) <= n) {
    ppm_call_t c;
    memcpy(&c, p + off, sizeof(c));
    off += sizeof(c);
    if (c.flags & PPM_SEPARATE) {
      void *arg = NULL;
      int len = 0;
      if (recv_next(comm, PPM_TAG_ARG, &arg, &len) != MPI_SUCCESS ||
          (uint64_t)len != c.len) {
        free(arg);
        fail_call(c.id, PP_EPROTO, "the argument did not arrive whole");
        continue;
      }
      run_call(local, tasks, ntasks, &c, arg, arg);
    } else {
      if (c.len > n - off)
        return; /* a broken batch: nothing more in it can be trusted */
      run_call(local, tasks, ntasks, &c, p + off, NULL);
      off += PPM_PAD8(c.len);
    }
  }
}

/* Cancels the calls named in a CANCEL message that still run here. */
static void handle_cancel(const unsigned char *p, size_t n) {
  size_t off;
  pthread_mutex_lock(&S_m);
  for (off = 0; off + 8 <= n; off += 8) {
    uint64_t id;
    entry_t *e;
    memcpy(&id, p + off, 8);
    for (e = S.calls.next; e != &S.calls; e = e->next)
      if (e->id == id && e->f != NULL) {
        /* Takes the local pool's lock; its callback thread never holds
         * that while it waits for S_m. */
        pp_future_cancel(e->f);
        break;
      }
  }
  pthread_mutex_unlock(&S_m);
}

/* Sends what the local pool produced; returns 1 if there was any. */
static int flush(MPI_Comm comm, ppm_sends_t *sends) {
  ppm_buf_t results;
  rdata_t *rdata;
  ppm_buf_t *logs;
  size_t nrdata, nlogs, i;
  pthread_mutex_lock(&S_m);
  S.news = 0;
  results = S.results;
  rdata = S.rdata;
  nrdata = S.nrdata;
  logs = S.logs;
  nlogs = S.nlogs;
  memset(&S.results, 0, sizeof(S.results));
  S.rdata = NULL;
  S.nrdata = S.caprdata = 0;
  S.logs = NULL;
  S.nlogs = S.caplogs = 0;
  pthread_mutex_unlock(&S_m);
  /* Lines first: what a call printed comes before its result. */
  for (i = 0; i < nlogs; i++)
    ppm_isend(sends, comm, 0, PPM_TAG_LOG, logs[i].p, logs[i].len, logs[i].p,
              release_free);
  free(logs);
  if (results.len > 0)
    ppm_isend(sends, comm, 0, PPM_TAG_RESULTS, results.p, results.len,
              results.p, release_free);
  for (i = 0; i < nrdata; i++)
    ppm_isend(sends, comm, 0, PPM_TAG_RDATA, rdata[i].data, rdata[i].len,
              rdata[i].data, release_pp);
  free(rdata);
  return results.len > 0 || nlogs > 0;
}

/* Sleeps until the local pool has news or `us` have passed. */
static void nap(int64_t us) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += (long)(us * 1000);
  while (ts.tv_nsec >= 1000000000L) {
    ts.tv_nsec -= 1000000000L;
    ts.tv_sec++;
  }
  pthread_mutex_lock(&S_m);
  while (!S.news) {
    if (pthread_cond_timedwait(&S_cond, &S_m, &ts) == ETIMEDOUT)
      break;
  }
  pthread_mutex_unlock(&S_m);
}

/* Serves until rank 0 says STOP. */
static void serve_loop(MPI_Comm comm, pp_pool_t *local,
                       const pp_task_t *tasks, uint32_t ntasks) {
  ppm_sends_t sends = {0};
  ppm_idle_t idle;
  int64_t beat = ppm_now_us();
  int stop = 0;
  ppm_idle_reset(&idle);
  while (!stop) {
    MPI_Message msg;
    MPI_Status st;
    int flag = 0, did = 0, n = 0;
    int64_t us;
    if (flush(comm, &sends))
      did = 1, beat = ppm_now_us();
    ppm_sends_test(&sends);
    MPI_Improbe(0, MPI_ANY_TAG, comm, &flag, &msg, &st);
    if (flag) {
      unsigned char *p;
      did = 1;
      MPI_Get_count(&st, MPI_BYTE, &n);
      p = malloc(n > 0 ? (size_t)n : 1);
      if (p == NULL)
        abort();
      MPI_Mrecv(p, n, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
      if (st.MPI_TAG == PPM_TAG_CALLS)
        handle_calls(comm, local, tasks, ntasks, p, (size_t)n);
      else if (st.MPI_TAG == PPM_TAG_CANCEL)
        handle_cancel(p, (size_t)n);
      else if (st.MPI_TAG == PPM_TAG_STOP)
        stop = 1;
      free(p);
    }
    /* Rank 0 finds a rank that holds calls and is silent dead: an idle
     * rank tells it that it lives. */
    if (ppm_now_us() - beat > 500000) {
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
   * here (rank 0 ends without destroying its pool) are cancelled. */
  pp_pool_destroy(local, PP_DESTROY_CANCEL);
  flush(comm, &sends);
  MPI_Send(NULL, 0, MPI_BYTE, 0, PPM_TAG_BYE, comm);
  while (sends.n > 0)
    ppm_sends_test(&sends);
  ppm_sends_free(&sends);
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
    atexit(ppm_master_atexit);
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
  S.calls.next = S.calls.prev = &S.calls;
  status = pp_pool_create(&local, &o);
  if (status != 0) {
    hello.status = status;
    snprintf(hello.why, sizeof(hello.why), "%s", pp_last_error());
  } else {
    hello.workers = pp_pool_workers(local);
  }
  MPI_Initialized(&init);
  if (!init &&
      MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) !=
          MPI_SUCCESS) {
    fprintf(stderr, "procpool: rank %d: MPI_Init_thread failed\n", rank);
    *rc = 70;
    return 1;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  MPI_Send(&hello, (int)sizeof(hello), MPI_BYTE, 0, PPM_TAG_HELLO, comm);
  if (local != NULL) {
    serve_loop(comm, local, tasks, ntasks);
  } else {
    /* Nothing to serve with: wait for the STOP rank 0 sends when it has
     * read why. */
    MPI_Recv(NULL, 0, MPI_BYTE, 0, PPM_TAG_STOP, comm, MPI_STATUS_IGNORE);
    MPI_Send(NULL, 0, MPI_BYTE, 0, PPM_TAG_BYE, comm);
  }
  MPI_Comm_free(&comm);
  if (!init)
    MPI_Finalize();
  *rc = 0;
  return 1;
}
