/*
 * master.h - what the files of rank 0's engine share: its state, the calls
 * it has in flight and the ranks it serves with.
 *
 *   master.c    the engine thread and the engine's functions for the core
 *   world.c     MPI's start and end on rank 0 (hellos, STOP, BYEs)
 *   inbound.c   what comes from the ranks: results, lines, silence (the
 *               in-flight table and dead ranks)
 *   outbound.c  what goes to the ranks: batches of calls, cancels
 *
 * Only the engine thread touches an eng_t, except the fields under its
 * own mutex `m` and, under pool->lock, the sources it finishes.
 */
#ifndef PP_MPI_MASTER_H
#define PP_MPI_MASTER_H

#include <pthread.h>

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
  int workers;   /* of its local pool */
  int offset;    /* its first worker's number in log records */
  int hello;     /* it said hello: it serves, or did */
  int dead;      /* lost (or never said hello): it gets no calls */
  int stop_sent; /* a lost rank that spoke again was told to stop */
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
  pp_pool_t *pool; /* the MPI pool served now, or NULL (m) */
  pthread_t thread;
  pthread_mutex_t m; /* pool, kick, stop, exit, started; never held while
                        pool->lock is taken */
  pthread_cond_t cond;
  int kick;      /* new calls or cancels */
  int stop;      /* the pool is done with the engine */
  int exit;      /* the process ends */
  int started;   /* 1: MPI began and the ranks said hello; -1: failed */
  int ended;     /* the engine thread has done all it will do */
  pp__err_t err; /* how the start went */
  MPI_Comm comm;
  int we_init;
  int keep_mpi; /* the application ends MPI: world_end() must not */
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
  uint64_t hash; /* the ranks' task table */
  uint64_t n_batches, n_calls, n_results_msgs, n_results, n_naps;
} eng_t;

/* Outcomes kept for a round at first (the array grows from there). */
#define PPM_OUTS_MIN 64

/* world.c */
/* Begins MPI (unless the application did) and meets the serving ranks:
 * each says hello with its task table's hash and its local pool's size.
 * Returns 0, PP__ENGINE_FALLBACK, PP_ESPAWN or PP_ENOMEM, with the reason
 * in E->err; on failure the ranks have been let go and MPI has been ended
 * as far as procpool began it. */
int ppm_world_start(eng_t *E);
/* Ends the serving ranks' service, then MPI if procpool began it. */
void ppm_world_end(eng_t *E);

/* inbound.c */
/* Finds the call `id` in flight, or NULL. */
flight_t *ppm_fl_find(eng_t *E, uint64_t id);
/* Adds a call in flight; returns 0 or PP_ENOMEM. */
int ppm_fl_put(eng_t *E, const flight_t *f);
/* Receives a matched message into a new buffer (malloc; NULL for an empty
 * message).  With no memory for it, the message is dropped and
 * MPI_ERR_NO_MEM returned. */
int ppm_recv_msg(MPI_Message *msg, MPI_Status *st, unsigned char **p, int *n);
/* Receives what the ranks sent and finishes those calls; returns 1 if
 * anything came. */
int ppm_receive(eng_t *E);
/* Declares ranks dead that hold calls and have been silent too long. */
void ppm_check_deadlines(eng_t *E);
/* Rank r is lost (silent too long, MPI failed on it, it ended its
 * service, or rank 0 cannot read what it sent): its calls end with
 * `status` (PP_EWORKERDIED, or PP_ENOMEM) and `why`, it gets nothing more,
 * and one log line says so. */
void ppm_kill_rank(eng_t *E, int r, int status, const char *why);
/* Calls handed out in this round that cannot be sent end with `status`
 * and `why`. */
void ppm_fail_takes(eng_t *E, const take_t *t, size_t n, int status,
                    const char *why);
/* Rank r, declared lost, has sent a message: it lives after all, and is
 * told to end its service (once). */
void ppm_stop_lost(eng_t *E, int r);
/* Rank r asked whether rank 0 is there: a live rank is answered BEAT, a
 * lost one STOP. */
void ppm_answer_ask(eng_t *E, int r);

/* outbound.c */
/* One round of cancels and batches; returns 1 if it sent anything, and
 * sets *stop when the pool is done with the engine (stop_asked, nothing
 * queued or running). */
int ppm_hand_out(eng_t *E, int stop_asked, int *stop);

#endif /* PP_MPI_MASTER_H */
