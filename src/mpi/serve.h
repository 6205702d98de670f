/*
 * serve.h - what the files of a serving rank (1..N-1) share.
 *
 *   serve.c     the service: its loop, rank 0's messages, its end
 *   group.c     the calls of a batch as groups (maps of the local pool),
 *               and their results on their way back to rank 0
 *
 * Everything here belongs to the rank's main thread, which makes every
 * MPI call, except the log lines (serve.c), which the local pool's I/O
 * thread appends under their own mutex.
 */
#ifndef PP_MPI_SERVE_H
#define PP_MPI_SERVE_H

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

typedef struct serve_s {
  MPI_Comm comm;
  int rank;
  int64_t deadline_us;     /* PROCPOOL_MPI_DEADLINE_MS */
  MPI_Request hello;       /* the HELLO, completed when rank 0 reads it */
  group_t *groups, **tail; /* running, oldest first */
  ppm_buf_t results;       /* result records to send */
  rdata_t *rdata;          /* their separate data, in record order */
  size_t nrdata, caprdata;
  /* Something the rank cannot get over (no memory to keep a result, or
   * to read a batch): it ends its service, and its BYE says why. */
  int broken;
  char why[256];
} serve_t;

extern serve_t S;

/* The service cannot go on: it ends, with `status` and this reason. */
void ppm_serve_break(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* group.c */
/* A batch of calls: each run of records of one group becomes a map of
 * `local`; a call that cannot start fails here.  Takes the batch `p`. */
void ppm_handle_calls(pp_pool_t *local, const pp_task_t *tasks, uint32_t ntasks,
                      unsigned char *p, size_t n);
/* Cancels the groups of the calls named in a CANCEL message. */
void ppm_handle_cancel(const unsigned char *p, size_t n);
/* Queues the results of the groups that have ended; returns 1 if any
 * had. */
int ppm_reap_groups(void);
/* Cancels every group, waits for them and queues their results. */
void ppm_cancel_groups(void);

#endif /* PP_MPI_SERVE_H */
