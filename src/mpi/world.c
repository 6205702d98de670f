/*
 * world.c - rank 0: the MPI world's start and end (MPI_Init_thread, the
 * ranks' hellos; STOP, the ranks' BYEs, MPI_Finalize).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* clock_gettime, PATH_MAX for apr.h */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "master.h"

/* Lets the serving ranks go without any state: the engine could not
 * allocate its own.  Every rank is sent STOP (they all said hello or are
 * about to, and a STOP waits in a rank's queue until it reads it), what
 * they send is read and dropped until each has said BYE (a send over
 * shared memory completes only when it is read), at most PPM_END_US, and
 * MPI ends if procpool began it.  Needs no memory. */
static void release_blind(eng_t *E) {
  int64_t end = ppm_now_us() + PPM_END_US;
  MPI_Request reqs[64];
  int r, k, n, byes = 0;
  for (r = 1; r < E->size; r += n) {
    n = E->size - r < 64 ? E->size - r : 64;
    for (k = 0; k < n; k++)
      if (MPI_Isend(NULL, 0, MPI_BYTE, r + k, PPM_TAG_STOP, E->comm,
                    &reqs[k]) != MPI_SUCCESS)
        reqs[k] = MPI_REQUEST_NULL;
    for (k = 0; k < n;) {
      struct timespec ts = {0, 200000};
      int done = 0;
      if (MPI_Test(&reqs[k], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done ||
          ppm_now_us() > end) {
        k++;
        continue;
      }
      nanosleep(&ts, NULL);
    }
  }
  while (byes < E->size - 1 && ppm_now_us() < end) {
    MPI_Message msg;
    MPI_Status st;
    int flag = 0;
    if (MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, E->comm, &flag, &msg, &st) !=
            MPI_SUCCESS ||
        !flag) {
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
      continue;
    }
    byes += st.MPI_TAG == PPM_TAG_BYE;
    ppm_discard(&msg, &st, end);
  }
  MPI_Comm_free(&E->comm);
  if (E->we_init && !E->keep_mpi)
    PMPI_Finalize();
}

/* Ranks world_end() still waits for: those told to stop that have not
 * said BYE. */
static int end_waiting(const eng_t *E) {
  int r, n = 0;
  for (r = 1; r < E->size; r++) {
    const rank_t *rk = &E->ranks[r];
    n += rk->hello && !rk->bye && (!rk->dead || rk->stop_sent);
  }
  return n;
}

/* STOP goes to every live rank that said hello, then what they still send
 * is read (and dropped) until each says BYE, at most PPM_END_US; then MPI
 * ends, if procpool began it.  A rank declared lost is sent nothing unless
 * it speaks again (it may be dead, and a send to a dead rank can go wrong
 * inside MPI); one that comes back later finds rank 0 silent and ends by
 * itself (serve.c). */
void ppm_world_end(eng_t *E) {
  int64_t end = ppm_now_us() + PPM_END_US;
  int r, fin = 0;
  /* An application that owns MPI may have ended it already: then nothing
   * can be said to anyone. */
  MPI_Finalized(&fin);
  if (fin)
    return;
  for (r = 1; r < E->size; r++) {
    rank_t *rk = &E->ranks[r];
    if (!rk->hello || rk->dead || rk->bye)
      continue;
    /* A STOP that cannot be tracked (no memory for the list of sends)
     * goes as a blocking send: it has no data, and the rank is live. */
    if (ppm_isend(&E->sends, E->comm, r, PPM_TAG_STOP, NULL, 0, NULL, NULL) !=
            MPI_SUCCESS &&
        MPI_Send(NULL, 0, MPI_BYTE, r, PPM_TAG_STOP, E->comm) != MPI_SUCCESS)
      rk->dead = 1;
  }
  do {
    MPI_Message msg;
    MPI_Status st;
    unsigned char *p;
    int flag = 0, n;
    ppm_sends_test(&E->sends);
    /* A rank that said BYE has read everything sent to it before the
     * STOP: a send to it still open is one it dropped unread. */
    if (end_waiting(E) == 0)
      break;
    if (MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, E->comm, &flag, &msg, &st) !=
            MPI_SUCCESS ||
        !flag) {
      struct timespec ts = {0, 200000};
      nanosleep(&ts, NULL);
      continue;
    }
    r = st.MPI_SOURCE;
    if (ppm_recv_msg(&msg, &st, &p, &n) == MPI_SUCCESS && r > 0 &&
        r < E->size && E->ranks[r].hello) {
      if (st.MPI_TAG == PPM_TAG_BYE)
        E->ranks[r].bye = 1;
      else if (E->ranks[r].dead)
        ppm_stop_lost(E, r);
    }
    free(p);
  } while (ppm_now_us() < end);
  for (r = 1; r < E->size; r++) {
    rank_t *rk = &E->ranks[r];
    /* Sends still open may never complete: forgotten. */
    ppm_sends_drop(&E->sends, r);
    if (!rk->hello || rk->bye)
      continue;
    if (rk->dead && !rk->stop_sent)
      fprintf(stderr,
              "procpool: MPI rank %d was lost during the job and has not "
              "spoken since; MPI ends without it (should it come back, it "
              "ends by itself)\n",
              r);
    else
      fprintf(stderr,
              "procpool: MPI rank %d did not answer STOP within %d s; MPI "
              "ends without it\n",
              r, PPM_END_US / 1000000);
  }
  ppm_sends_free(&E->sends);
  MPI_Comm_free(&E->comm);
  /* PMPI: procpool_mpi's own MPI_Finalize (enable.c) would come here
   * again.  It does not wait for lost ranks: the serving ranks and rank 0
   * skip Open MPI's barrier at its start (ppm_tune_before_init). */
  if (E->we_init && !E->keep_mpi)
    PMPI_Finalize();
}

int ppm_world_start(eng_t *E) {
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
    ppm_tune_before_init();
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
    snprintf(E->err.text, sizeof(E->err.text), "the MPI world has one process");
    if (E->we_init)
      PMPI_Finalize();
    E->we_init = 0;
    return PP__ENGINE_FALLBACK;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &E->comm);
  MPI_Comm_set_errhandler(E->comm, MPI_ERRORS_RETURN);
  E->ranks = ppm_calloc("world", (size_t)E->size, sizeof(rank_t));
  E->takes =
      ppm_calloc("world", (size_t)E->size * 2 * PPM_BATCH_MAX, sizeof(take_t));
  E->outs = ppm_calloc("world", PPM_OUTS_MIN, sizeof(out_t));
  if (E->ranks == NULL || E->takes == NULL || E->outs == NULL) {
    E->err.code = PP_ENOMEM;
    snprintf(E->err.text, sizeof(E->err.text),
             "no memory for the MPI engine's state (%d ranks)", E->size);
    release_blind(E);
    return PP_ENOMEM;
  }
  E->capouts = PPM_OUTS_MIN;
  hash = ppm_tasks_hash(
      E->pool != NULL ? E->pool->tasks : ppm_core->default_tasks(), &ntasks);
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
    E->ranks[r].hello = 1;
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
    ppm_world_end(E);
    return E->err.code;
  }
  E->hash = hash;
  for (r = 1; r < E->size; r++) {
    E->ranks[r].offset = offset;
    offset += E->ranks[r].workers;
  }
  E->workers = offset;
  return 0;
}
