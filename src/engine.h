/*
 * engine.h - the private interface between the core and an engine: a
 * backend that runs a pool's calls somewhere else than in the pool's own
 * worker processes (src/mpi/: other MPI ranks).  engine.c holds the
 * core's side: registration, choosing the backend, the table of core
 * functions handed to an engine.
 */
#ifndef PP_ENGINE_H
#define PP_ENGINE_H

#include "internal.h"

/* An engine replaces a pool's I/O thread and workers: it takes the calls
 * of the pool's sources (pool->pending) and gives them their outcomes,
 * through the core functions it is given (pp__core_t), so that futures,
 * maps, imap, async maps and callbacks work unchanged above it.  The MPI
 * backend (src/mpi/, library procpool_mpi) is one.  An engine may live in
 * another shared library, where the core's hidden functions cannot be
 * called: hence the tables, whose layout is checked by PP__ENGINE_ABI. */
#define PP__ENGINE_ABI 2

/* What an engine's start says when the pool is to be a local one after
 * all (not launched by mpirun, say); err holds the reason, which the pool
 * logs. */
#define PP__ENGINE_FALLBACK 1

typedef struct pp__engine_s {
  int abi;          /* PP__ENGINE_ABI */
  const char *name; /* "mpi", for log lines */
  /* pp_worker_main() in a process that is no worker: returns 1 (with *rc)
   * if this process served another one's pool and must end, 0 if the
   * application goes on. */
  int (*serve)(int argc, char **argv, const pp_task_t *tasks, int *rc);
  /* pp_pool_create(): sets pool->engine_state and starts; returns 0,
   * PP__ENGINE_FALLBACK, or a status with the reason in *err.  No lock
   * held. */
  int (*start)(pp_pool_t *pool, pp__err_t *err);
  /* pool->lock held: calls were queued or cancelled (pool->news,
   * pool->cancel_all).  Must be quick and take no lock the engine holds
   * while it takes pool->lock. */
  void (*wake)(pp_pool_t *pool);
  /* pp_pool_destroy(), every call finished: stops and frees the engine's
   * state.  No lock held. */
  void (*stop)(pp_pool_t *pool);
  /* How many calls the engine runs at once (pp_pool_workers, auto
   * chunks).  Any thread. */
  int (*workers)(const pp_pool_t *pool);
} pp__engine_t;

/* The core functions an engine uses; pool->lock held where the name says
 * _locked (see source.c for what each does). */
typedef struct pp__core_s {
  int abi;
  void (*lock)(pp_pool_t *pool);
  void (*unlock)(pp_pool_t *pool);
  /* Wakes the threads that wait for outcomes (after unlock). */
  void (*broadcast)(pp_pool_t *pool);
  int (*take_locked)(pp__src_t *src, size_t *index);
  int (*finish_locked)(pp__src_t *src, size_t index, int status, void *data,
                       size_t len, char *message, int exit_code,
                       int term_signal);
  int (*give_back_locked)(pp__src_t *src, size_t index);
  /* Delivers text (lines) to the pool's log callback; no lock held. */
  void (*log)(pp_pool_t *pool, int rank, int worker, uint64_t call_id,
              pp_log_source_t source, int level, const char *text, size_t len);
  /* The process' default task table (pp_worker_main's). */
  const pp_task_t *(*default_tasks)(void);
} pp__core_t;

/* Registers the engine of a backend (one per process; a second call
 * replaces the first) and returns the core's functions for it.  Exported
 * from the shared library for procpool_mpi, but no public API. */
PP_EXTERN const pp__core_t *pp__engine_register(const pp__engine_t *engine);
/* The registered engine, or the one PROCPOOL_BACKEND names loaded now
 * (a shared procpool_mpi found by the loader); NULL if none. */
const pp__engine_t *pp__engine_get(int load);
/* Returns which backend a pool with these options uses: PP_BACKEND_LOCAL
 * or PP_BACKEND_MPI (the option, else PROCPOOL_BACKEND). */
int pp__engine_backend(const pp_pool_options_t *o);

#endif /* PP_ENGINE_H */
