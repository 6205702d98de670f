/*
 * ppm.h - what the files of the MPI backend share: the wire format between
 * rank 0 and the serving ranks, byte buffers, the idle-friendly wait, and
 * the few facts about the MPI world.
 *
 *   common.c    allocation (and its test hook), buffers, sends, the task
 *               table's hash, the world, waits, errors
 *   master.c    rank 0: the engine that runs a pool's calls on the ranks
 *   world.c     ... MPI's start and end there (master.h has what they
 *   inbound.c   ... what it receives                  share)
 *   outbound.c  ... what it sends
 *   serve.c     ranks 1..N-1: serving rank 0's calls in a local pool
 *   group.c     ... the calls as maps of it (serve.h has what they share)
 *   enable.c    pp_mpi_enable(): the engine table, registration
 *
 * Wire format: MPI_BYTE messages on a duplicate of MPI_COMM_WORLD, in the
 * byte order of the machines (a job of one architecture), records padded
 * to 8 bytes.  Rank 0 sends CALLS (a batch of call records), ARG (the
 * argument of a call record marked PPM_SEPARATE, in record order, right
 * after its batch), CANCEL (call ids), STOP (end your service: at rank 0's
 * end, or at once to a rank it declared lost that speaks again) and BEAT
 * (the answer to ASK: rank 0 is there and the rank is still one of its).
 * A serving rank sends HELLO once, RESULTS (a batch of result records),
 * RDATA (the data of a result marked PPM_SEPARATE, right after its batch),
 * LOG (one line of its local pool's output), BEAT (nothing happened for a
 * while: it is alive), ASK (it did not run for a while, so rank 0 may have
 * declared it lost or ended meanwhile: is rank 0 still there?) and, after
 * STOP, BYE.
 */
#ifndef PP_MPI_PPM_H
#define PP_MPI_PPM_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "../engine.h"

enum {
  PPM_TAG_HELLO = 1,
  PPM_TAG_CALLS = 2,
  PPM_TAG_ARG = 3,
  PPM_TAG_RESULTS = 4,
  PPM_TAG_RDATA = 5,
  PPM_TAG_CANCEL = 6,
  PPM_TAG_STOP = 7,
  PPM_TAG_BYE = 8,
  PPM_TAG_BEAT = 9,
  PPM_TAG_LOG = 10,
  PPM_TAG_ASK = 11
};

/* A serving rank whose loop did not run for this long (it was stopped, or
 * starved) asks rank 0 whether it is still there (PPM_TAG_ASK). */
#define PPM_GAP_US 1000000
/* Each step of the end is bounded: rank 0 waits this long for the BYEs,
 * and this long again for MPI_Finalize; a serving rank waits this long for
 * its last sends, and three times this long for MPI_Finalize (so that
 * rank 0 gives up first where MPI_Finalize waits for every rank). */
#define PPM_END_US 10000000

/* Arguments and results larger than this travel as messages of their own,
 * straight from and into the buffers that hold them (no copy into a
 * batch). */
#define PPM_BIG (64 * 1024)
/* Calls in one batch at most; a rank holds up to two batches. */
#define PPM_BATCH_MAX 256
/* The record's payload follows as a message of its own. */
#define PPM_SEPARATE 1u

typedef struct ppm_call_s {
  uint64_t id;
  uint64_t group;     /* the calls of one source on rank 0 share it: a
                         serving rank runs a batch's calls of one group as
                         one map */
  int64_t timeout_ms; /* <= 0: none */
  uint32_t task;      /* index in the task table */
  uint32_t flags;
  uint64_t len; /* argument bytes, which follow (padded) */
} ppm_call_t;

typedef struct ppm_result_s {
  uint64_t id;
  int32_t status;
  int32_t exit_code;
  int32_t term_signal;
  uint32_t flags;
  uint32_t msg_len; /* message bytes, which follow (padded) */
  uint32_t reserved;
  uint64_t len; /* data bytes, which follow the message (padded) */
} ppm_result_t;

typedef struct ppm_hello_s {
  uint64_t hash;   /* of the task table's names */
  int32_t workers; /* of its local pool; 0 if it has none */
  int32_t status;  /* why it has none */
  char why[256];
} ppm_hello_t;

typedef struct ppm_log_s {
  int32_t worker; /* in the rank's local pool */
  int32_t source; /* pp_log_source_t */
  int32_t level;
  uint32_t len; /* text bytes, which follow */
} ppm_log_t;

#define PPM_PAD8(x) (((x) + 7u) & ~(size_t)7u)

/* Allocation in the MPI backend, with a test hook: the variable
 * PROCPOOL_MPI_FAIL_ALLOC="SITE:RANK:N[,SITE:RANK:N...]" makes the N-th
 * allocation at SITE (a name the caller gives) on MPI rank RANK fail, once,
 * so that tests reach the code that handles a failed allocation.  Small
 * and local on purpose: the project-wide fault injection is to replace
 * it.  Sites: on rank 0 engine, world, flight, batch, outs, recv, rdata;
 * on a serving rank group, arg, results, msg; on both sends.  A site's
 * allocations are counted in the order the code makes them, so a test
 * that names the N-th one knows which it is. */
int ppm_fail_here(const char *site); /* 1: this allocation is to fail */
void *ppm_malloc(const char *site, size_t n);
void *ppm_calloc(const char *site, size_t count, size_t size);
void *ppm_realloc(const char *site, void *p, size_t n);

/* A growing byte buffer. */
typedef struct ppm_buf_s {
  unsigned char *p;
  size_t len, cap;
} ppm_buf_t;

/* Appends n bytes, padded with zeros to 8; returns 0 or PP_ENOMEM.  `site`
 * names the allocation for the test hook (ppm_malloc). */
int ppm_buf_put(ppm_buf_t *b, const char *site, const void *data, size_t n);
void ppm_buf_free(ppm_buf_t *b);

/* Sends that are under way, each with the memory it reads, which is freed
 * (with `release`) when the send completes. */
typedef struct ppm_send_s {
  MPI_Request req;
  void *mem;
  void (*release)(void *mem);
  int peer;
} ppm_send_t;

typedef struct ppm_sends_s {
  ppm_send_t *v;
  size_t n, cap;
} ppm_sends_t;

/* Starts a send of n bytes (n <= INT_MAX) to `peer`; `mem` is released
 * when it completes (NULL: nothing to release).  Returns MPI's code. */
int ppm_isend(ppm_sends_t *s, MPI_Comm comm, int peer, int tag,
              const void *data, size_t n, void *mem,
              void (*release)(void *mem));
/* Makes room for k more sends, so that they cannot fail for want of
 * memory for the list; returns 0 or PP_ENOMEM. */
int ppm_sends_reserve(ppm_sends_t *s, size_t k);
/* Drops a matched message (no memory for it, or it comes from a rank that
 * is lost): one of up to PPM_SCRATCH bytes is received into a scratch
 * buffer, waiting until `until` (ppm_now_us) at most, since its sender
 * may be dead; a larger one is left matched and never received.  Needs no
 * memory.  Returns 0 (received), 1 (left) or -1 (not received in time). */
#define PPM_SCRATCH (64 * 1024)
int ppm_discard(MPI_Message *msg, MPI_Status *st, int64_t until);
/* Completes what has completed; returns 1 if any did. */
int ppm_sends_test(ppm_sends_t *s);
/* Forgets the sends to `peer` (it is dead: they may never complete; their
 * memory is leaked rather than freed under MPI's feet). */
void ppm_sends_drop(ppm_sends_t *s, int peer);
/* Frees the array (all sends completed or dropped). */
void ppm_sends_free(ppm_sends_t *s);

/* The task table's names, hashed (FNV-1a), and their number. */
uint64_t ppm_tasks_hash(const pp_task_t *tasks, uint32_t *n);

/* This process' rank and the world's size as the launcher says (Open MPI,
 * MPICH and its kin set them for every rank), or as MPI says if it is
 * initialised already.  Returns 0 if neither knows: no mpirun. */
int ppm_world(int *rank, int *size);

/* MPI's text for an error code, in buf. */
const char *ppm_strerror(int code, char *buf, size_t cap);

/* Sets Open MPI parameters the backend wants, where the user has not:
 * called before MPI_Init on every rank. */
void ppm_tune_before_init(void);

/* Blocks SIGPIPE in the calling thread (and the threads it starts): a
 * send over TCP to a rank that has ended then fails inside MPI instead of
 * killing the process (Open MPI 4.1 writes to its sockets without
 * MSG_NOSIGNAL).  Only threads of procpool's own call it. */
void ppm_block_sigpipe(void);

/* Microseconds on a monotonic clock. */
int64_t ppm_now_us(void);
/* An integer from the environment, or `def`. */
int64_t ppm_env_int(const char *name, int64_t def);

/* The idle-friendly wait: after work, spin PPM_SPIN_US of wall time (a
 * reply may be microseconds away), then sleep, doubling from
 * PPM_SLEEP_MIN_US up to PPM_SLEEP_MAX_US.  Open MPI's blocking calls
 * would poll a whole core while idle. */
#define PPM_SPIN_US 100
#define PPM_SLEEP_MIN_US 10
#define PPM_SLEEP_MAX_US 1000
typedef struct ppm_idle_s {
  int64_t active; /* when work was last done */
  int64_t sleep_us;
} ppm_idle_t;
/* Work was done: spin again next time. */
void ppm_idle_reset(ppm_idle_t *w);
/* Returns how long to sleep now (0: keep spinning, after offering the CPU
 * to other threads) and backs off. */
int64_t ppm_idle_next(ppm_idle_t *w);

/* enable.c: the core's functions (set by pp_mpi_enable). */
extern const pp__core_t *ppm_core;

/* master.c: the engine's functions on rank 0. */
int ppm_master_start(pp_pool_t *pool, pp__err_t *err);
void ppm_master_wake(pp_pool_t *pool);
void ppm_master_stop(pp_pool_t *pool);
int ppm_master_workers(const pp_pool_t *pool);
/* This process is rank 0 of a job whose other ranks serve: from now on
 * its end (exit, or the application's MPI_Finalize) releases them. */
void ppm_master_arm(void);
int ppm_master_armed(void);
/* Rank 0's end of the service: the engine thread stops, the serving ranks
 * are told to stop (also when no MPI pool ran), and MPI is finalised if
 * procpool began it and `finalize` is set.  Runs once; later calls do
 * nothing. */
void ppm_master_end(int finalize);
/* ppm_master_end(1), for atexit. */
void ppm_master_atexit(void);

/* serve.c: pp_worker_main()'s part; see pp__engine_t.serve. */
int ppm_serve(int argc, char **argv, const pp_task_t *tasks, int *rc);

#endif /* PP_MPI_PPM_H */
