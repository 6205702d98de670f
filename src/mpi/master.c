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

#include "master.h"

/* The process' MPI backend on rank 0: one MPI pool per job. */
static pthread_mutex_t G_m = PTHREAD_MUTEX_INITIALIZER;
static struct {
  eng_t *world; /* the engine, once MPI has begun; lives until exit */
  int busy;     /* an MPI pool is attached to it */
  int done;     /* MPI has ended (or failed to begin) in this process */
} G;

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
  while (!E->kick && !E->stop && !E->exit)
    if (pthread_cond_timedwait(&E->cond, &E->m, &ts) == ETIMEDOUT)
      break;
  pthread_mutex_unlock(&E->m);
}

/* Serves the attached pool until it is done with the engine (its destroy,
 * every call finished) or the process ends. */
static void run_pool(eng_t *E) {
  ppm_idle_t idle;
  int64_t last = ppm_now_us();
  ppm_idle_reset(&idle);
  for (;;) {
    int did, stop_asked, quit, stop = 0, r;
    int64_t us, now = ppm_now_us();
    pthread_mutex_lock(&E->m);
    stop_asked = E->stop;
    quit = E->exit;
    E->kick = 0;
    pthread_mutex_unlock(&E->m);
    if (quit)
      return;
    if (now - last > PPM_GAP_US) {
      /* This thread did not run for a while (the process was stopped,
       * with the whole job perhaps): it cannot tell who was silent, so
       * every rank gets a whole deadline again to speak. */
      for (r = 1; r < E->size; r++)
        E->ranks[r].heard = now;
    }
    last = now;
    did = ppm_receive(E);
    ppm_check_deadlines(E);
    did |= ppm_hand_out(E, stop_asked, &stop);
    did |= ppm_sends_test(&E->sends);
    if (stop)
      return;
    if (did) {
      ppm_idle_reset(&idle);
      continue;
    }
    us = ppm_idle_next(&idle);
    if (us > 0) {
      E->n_naps++;
      nap(E, us);
    }
  }
}

/* Between pools: answers the ranks that ask whether rank 0 is still there
 * (a rank that was stopped or starved asks, and ends its service if
 * nobody answers); what else they send waits for the next pool. */
static void answer_asks(eng_t *E) {
  int k;
  for (k = 0; k < 64; k++) {
    MPI_Message msg;
    MPI_Status st;
    unsigned char *p;
    int flag = 0, n = 0, r;
    if (MPI_Improbe(MPI_ANY_SOURCE, PPM_TAG_ASK, E->comm, &flag, &msg, &st) !=
            MPI_SUCCESS ||
        !flag)
      break;
    r = st.MPI_SOURCE;
    if (ppm_recv_msg(&msg, &st, &p, &n) == MPI_SUCCESS && r > 0 &&
        r < E->size && E->ranks[r].hello)
      ppm_answer_ask(E, r);
    free(p);
  }
  ppm_sends_test(&E->sends);
}

/* Waits for the next pool or the process' end (E->m held), answering
 * asks meanwhile. */
static void wait_for_pool_locked(eng_t *E) {
  while (E->pool == NULL && !E->exit) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_nsec -= 1000000000L;
      ts.tv_sec++;
    }
    if (pthread_cond_timedwait(&E->cond, &E->m, &ts) != ETIMEDOUT)
      continue;
    pthread_mutex_unlock(&E->m);
    answer_asks(E);
    pthread_mutex_lock(&E->m);
  }
}

/* The engine thread: MPI's whole life on rank 0, serving the MPI pools of
 * the process one after the other. */
static void *engine_main(void *arg) {
  eng_t *E = arg;
  int rc;
  ppm_block_sigpipe();
  rc = ppm_world_start(E);
  pthread_mutex_lock(&E->m);
  E->started = rc == 0 ? 1 : -1;
  pthread_cond_broadcast(&E->cond);
  pthread_mutex_unlock(&E->m);
  if (rc != 0)
    return NULL;
  for (;;) {
    int quit;
    pthread_mutex_lock(&E->m);
    wait_for_pool_locked(E);
    quit = E->exit;
    pthread_mutex_unlock(&E->m);
    if (quit)
      break;
    run_pool(E);
    if (getenv("PROCPOOL_MPI_DEBUG") != NULL)
      fprintf(stderr,
              "procpool mpi: %llu calls in %llu batches, %llu results in "
              "%llu messages, %llu naps\n",
              (unsigned long long)E->n_calls, (unsigned long long)E->n_batches,
              (unsigned long long)E->n_results,
              (unsigned long long)E->n_results_msgs,
              (unsigned long long)E->n_naps);
    pthread_mutex_lock(&E->m);
    if (E->stop) {
      /* The pool is done with the engine: the next one may come. */
      E->pool = NULL;
      E->stop = 0;
      pthread_cond_broadcast(&E->cond);
    }
    quit = E->exit;
    pthread_mutex_unlock(&E->m);
    if (quit)
      break;
  }
  ppm_world_end(E);
  pthread_mutex_lock(&E->m);
  E->ended = 1;
  pthread_cond_broadcast(&E->cond);
  pthread_mutex_unlock(&E->m);
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

/* Starts the engine thread for the process' first MPI pool; returns 0, or
 * PP__ENGINE_FALLBACK, PP_ESPAWN or PP_ENOMEM with the reason in *err.
 * G_m held. */
static int first_start(pp_pool_t *pool, pp__err_t *err) {
  eng_t *E;
  int rank = 0, size = 0, rc;
  if (!ppm_world(&rank, &size) || size <= 1 || rank != 0) {
    if (size > 1)
      snprintf(err->text, sizeof(err->text),
               "this is MPI rank %d; MPI pools run on rank 0", rank);
    else
      snprintf(err->text, sizeof(err->text),
               "the program was not launched by mpirun (an MPI world of "
               "one process)");
    return PP__ENGINE_FALLBACK;
  }
  E = ppm_calloc("engine", 1, sizeof(*E));
  if (E == NULL) {
    err->code = PP_ENOMEM;
    snprintf(err->text, sizeof(err->text),
             "no memory for the MPI engine (%zu bytes)", sizeof(*E));
    return PP_ENOMEM;
  }
  pthread_mutex_init(&E->m, NULL);
  pthread_cond_init(&E->cond, NULL);
  E->pool = pool;
  E->deadline_us = ppm_env_int("PROCPOOL_MPI_DEADLINE_MS", 10000) * 1000;
  E->hello_us =
      (pool->start_timeout_ms > 0 ? pool->start_timeout_ms : 30000) * 1000;
  if (pthread_create(&E->thread, NULL, engine_main, E) != 0) {
    eng_free(E);
    snprintf(err->text, sizeof(err->text),
             "the MPI engine's thread could not start");
    return PP__ENGINE_FALLBACK;
  }
  pthread_mutex_lock(&E->m);
  while (E->started == 0)
    pthread_cond_wait(&E->cond, &E->m);
  pthread_mutex_unlock(&E->m);
  if (E->started > 0) {
    G.world = E;
    return 0;
  }
  pthread_join(E->thread, NULL);
  *err = E->err;
  rc = E->err.code;
  /* A failed start ended MPI, unless it never began. */
  if (rc != PP__ENGINE_FALLBACK || E->we_init)
    G.done = 1;
  eng_free(E);
  return rc;
}

int ppm_master_start(pp_pool_t *pool, pp__err_t *err) {
  eng_t *E;
  uint32_t ntasks;
  int rc = 0;
  err->code = PP__ENGINE_FALLBACK;
  pthread_mutex_lock(&G_m);
  if (G.busy) {
    snprintf(err->text, sizeof(err->text),
             "another MPI pool of this process is running (one at a time)");
    rc = PP__ENGINE_FALLBACK;
  } else if (G.done) {
    snprintf(err->text, sizeof(err->text), "MPI has ended in this process");
    rc = PP__ENGINE_FALLBACK;
  } else if (G.world == NULL) {
    rc = first_start(pool, err);
  } else if (ppm_tasks_hash(pool->tasks, &ntasks) != G.world->hash) {
    err->code = PP_ESPAWN;
    snprintf(err->text, sizeof(err->text),
             "the pool's task table is not the one the serving MPI ranks "
             "have (the table given to pp_worker_main)");
    rc = PP_ESPAWN;
  } else {
    /* The engine thread waits for its next pool. */
    E = G.world;
    pthread_mutex_lock(&E->m);
    E->pool = pool;
    E->next_rank = 0;
    E->n_batches = E->n_calls = E->n_results = E->n_results_msgs = 0;
    E->n_naps = 0;
    pthread_cond_broadcast(&E->cond);
    pthread_mutex_unlock(&E->m);
  }
  if (rc == 0) {
    G.busy = 1;
    pool->engine_state = G.world;
  }
  pthread_mutex_unlock(&G_m);
  return rc;
}

void ppm_master_wake(pp_pool_t *pool) {
  eng_t *E = pool->engine_state;
  pthread_mutex_lock(&E->m);
  E->kick = 1;
  pthread_cond_signal(&E->cond);
  pthread_mutex_unlock(&E->m);
}

void ppm_master_stop(pp_pool_t *pool) {
  eng_t *E = pool->engine_state;
  /* Every call has finished: the engine thread lets go of the pool and
   * waits for the next one; MPI and the ranks stay. */
  pthread_mutex_lock(&E->m);
  E->stop = 1;
  pthread_cond_broadcast(&E->cond);
  while (E->pool == pool && !E->exit)
    pthread_cond_wait(&E->cond, &E->m);
  pthread_mutex_unlock(&E->m);
  pool->engine_state = NULL;
  pthread_mutex_lock(&G_m);
  G.busy = 0;
  pthread_mutex_unlock(&G_m);
}

int ppm_master_workers(const pp_pool_t *pool) {
  const eng_t *E = pool->engine_state;
  int w = E != NULL ? E->workers : 0;
  return w > 0 ? w : 1;
}

/* Rank 0 of a job whose other ranks serve: set by ppm_master_arm(). */
static int armed;

void ppm_master_arm(void) {
  int init = 0;
  armed = 1;
  /* An application that begins MPI itself does so after the guard: it
   * gets the settings the serving ranks have (a job skips Open MPI's
   * barrier in MPI_Finalize on every rank or on none). */
  MPI_Initialized(&init);
  if (!init)
    ppm_tune_before_init();
  atexit(ppm_master_atexit);
}

int ppm_master_armed(void) {
  return armed;
}

void ppm_master_end(int finalize) {
  eng_t *E, local;
  int done, fin = 0;
  pthread_mutex_lock(&G_m);
  E = G.world;
  G.world = NULL;
  done = G.done;
  G.done = 1;
  pthread_mutex_unlock(&G_m);
  if (E != NULL) {
    /* The ranks are stopped and MPI ends, on the engine thread, which
     * began it.  A pool still alive (its program did not destroy it) has
     * its calls on the ranks cancelled there; the pool itself is left to
     * the process' end. */
    struct timespec ts;
    int ended = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 2 * PPM_END_US / 1000000 + 1;
    pthread_mutex_lock(&E->m);
    E->keep_mpi = !finalize;
    E->exit = 1;
    pthread_cond_broadcast(&E->cond);
    while (!E->ended)
      if (pthread_cond_timedwait(&E->cond, &E->m, &ts) == ETIMEDOUT)
        break;
    ended = E->ended;
    pthread_mutex_unlock(&E->m);
    if (ended) {
      pthread_join(E->thread, NULL);
      return;
    }
    /* MPI_Finalize waits for something that does not come (a rank that
     * is gone, where the user turned Open MPI's barrier back on): the
     * program ends without it.  The engine thread and its state are left
     * to the process' end. */
    pthread_detach(E->thread);
    fprintf(stderr,
            "procpool: MPI has not ended on rank 0 within %d s (MPI_Finalize "
            "waits for a rank that is gone); the program ends without it\n",
            2 * PPM_END_US / 1000000 + 1);
    return;
  }
  if (done)
    return;
  /* No MPI pool ran: the ranks wait in their service (or in MPI_Init)
   * for rank 0, which meets them only to let them go.  Nothing can be
   * done if the application has ended MPI itself. */
  MPI_Finalized(&fin);
  if (fin)
    return;
  memset(&local, 0, sizeof(local));
  local.hello_us = 30000000;
  local.keep_mpi = !finalize;
  if (ppm_world_start(&local) == 0)
    ppm_world_end(&local);
  free(local.ranks);
  free(local.takes);
  free(local.outs);
}

void ppm_master_atexit(void) {
  ppm_master_end(1);
}
