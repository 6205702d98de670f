/*
 * internal.h - private declarations shared by the core's files.
 *
 * The parent side of a pool is built from these pieces:
 *   pool.c    pp_pool_t: creation, the call queue, destruction, statistics
 *   slot.c    one thread per worker: send calls, read replies, notice
 *             death, replace
 *   start.c   starting a slot's worker: spawn, handshake, initializer
 *   watch.c   the timer thread: timeouts and the grace period of cancels
 *   future.c  pp_future_t: submit, wait, take, cancel, completion
 *   map.c     map, starmap and the unordered map on top of futures
 *   output.c  capture of worker stdout/stderr as tagged lines, log callbacks
 *   clock.c   deadlines on the monotonic clock
 *   digest.c  a small digest for build ids
 * and the worker side: worker.c (pp_worker_main and the serve loop) and
 * call.c (pp_call_* and pp_log in a worker, and the inline (debug) mode).
 */
#ifndef PP_INTERNAL_H
#define PP_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <apr_dso.h>
#include <apr_pools.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>

#include "../platform/platform.h"
#include "error.h"
#include "procpool.h"
#include "wire.h"


/* Deepest nesting of pools inside workers. */
#define PP__MAX_DEPTH 8
/* The reserved argument's prefix, and the worker host's library option. */
#define PP__WORKER_ARG "--procpool-worker="
#define PP__LIBRARY_ARG "--procpool-library="
/* Calls a worker may hold at once when a map pipelines them. */
#define PP__MAX_CHUNK 64
/* Default grace of a cancelled running call. */
#define PP__DEFAULT_GRACE_MS 1000
/* Output marker a worker writes to stdout and stderr when a call starts:
 * NUL "PP", 16 hex digits of the call id, 16 hex digits of the worker's
 * secret marker key (sent to the parent in HELLO, so a task that prints a
 * marker-like sequence cannot retag its lines), then a newline. */
#define PP__MARK_LEN 36
/* How long a starting worker may take to say HELLO by default. */
#define PP__DEFAULT_START_TIMEOUT_MS 30000

/* ---- clock.c ---- */

/* A deadline that never comes. */
#define PP__NEVER INT64_MAX
/* Returns the monotonic time (pp__now_us) `ms` milliseconds from now, or
 * PP__NEVER when that is beyond what the clock can count; ms <= 0 gives
 * now. */
int64_t pp__deadline_ms(int64_t ms);
/* Returns the microseconds until `deadline`, 0 if it has passed. */
int64_t pp__us_left(int64_t deadline);

/* ---- registry.c ---- */

/* Returns the entry called `name` in `table`, or NULL. */
const pp_task_t *pp__task_find(const pp_task_t *table, const char *name);
/* The process-wide table recorded by pp_worker_main(). */
void pp__tasks_set_default(const pp_task_t *table);
const pp_task_t *pp__tasks_default(void);
/* Loads a task library and returns its table (the library stays loaded for
 * the life of `mem`).  PP_EDSO with the loader's reason on failure. */
int pp__tasks_load(apr_pool_t *mem, const char *path, const pp_task_t **table);
/* Checks that a table is usable: names unique, non-empty, functions set. */
int pp__tasks_check(const pp_task_t *table);

/* ---- apr glue (registry.c) ---- */

/* Initializes APR once per process, from any number of threads at once.  It
 * is never terminated: pools may live until the process ends, and APR's
 * memory goes with the process. */
int pp__apr_init(void);
/* Translates an APR status into PP_* and records a message. */
int pp__from_apr(apr_status_t rv, const char *what);

/* ---- futures ---- */

typedef enum { PP__QUEUED = 0, PP__RUNNING = 1, PP__DONE = 2 } pp__state_t;

typedef struct pp__group_s pp__group_t;
typedef struct pp__slot_s pp__slot_t;

struct pp_future_s {
  pp_pool_t *pool;
  uint64_t id;
  const char *task;       /* name, owned by the task table */
  const void *arg;        /* the argument (borrowed or arg_owned) */
  size_t arg_len;
  void *arg_owned;
  int64_t timeout_ms;     /* effective; <= 0 means none */
  size_t chunk;           /* calls a slot may take together with this one */
  pp__state_t state;
  int refs;               /* the caller's and the pool's */
  int cancel;             /* cancel requested */
  pp_result_t res;
  pp__group_t *group;     /* the map it belongs to, or NULL */
  size_t index;           /* position in that map */
  pp_future_t *qnext;     /* the pool's queue, or a group's done list */
  pp_future_t *qprev;
  pp__slot_t *slot;       /* while running */
  int64_t deadline;       /* PP__NEVER = none; set when it starts running */
  int64_t cancel_deadline; /* PP__NEVER = none */
  int cancel_sent;
};

/* A map waiting for its calls. */
struct pp__group_s {
  pp_future_t *done_head;
  pp_future_t *done_tail;
};

/* Fills the outcome and marks the future finished; pool->lock is held.
 * Takes ownership of data and message.  Drops the pool's reference. */
void pp__future_finish(pp_future_t *f, int status, void *data, size_t len,
                       char *message, int exit_code, int term_signal);
/* Drops one reference; pool->lock is held.  Frees at zero. */
void pp__future_unref(pp_future_t *f);
/* Returns 1 if the pool has been destroyed and no future of it is left, so
 * the caller must call pp__pool_free() once it has let go of the lock;
 * pool->lock is held.  Whoever drops the last reference frees the pool:
 * pp_pool_destroy(), pp_future_free() or a map that was running in another
 * thread. */
int pp__pool_unused_locked(pp_pool_t *pool);
/* Frees what is left of a destroyed pool; lock NOT held. */
void pp__pool_free(pp_pool_t *pool);
/* Pools allocated and not yet freed in this process (for leak tests). */
int pp__pool_count(void);
/* Creates a queued future (refs = 2: caller and pool); pool->lock NOT held. */
int pp__future_new(pp_pool_t *pool, const char *task, const void *arg,
                   size_t len, int64_t timeout_ms, int copy, pp_future_t **out);
/* Queues it (or runs it, inline); pool->lock NOT held. */
int pp__future_enqueue(pp_future_t *f);
/* Cancels; pool->lock held. */
void pp__future_cancel_locked(pp_future_t *f);

/* ---- output.c ---- */

typedef struct pp__drain_s pp__drain_t;

/* Starts a thread that reads a worker's stdout or stderr and delivers whole
 * lines to the pool's log callback.  Takes ownership of `chan`. */
int pp__drain_start(pp_pool_t *pool, int worker, pp_log_source_t source,
                    pp__chan_t *chan, pp__drain_t **drain);
/* Sets the worker's marker key (from its HELLO), before any call is sent;
 * markers with another key are text. */
void pp__drain_set_key(pp__drain_t *drain, uint64_t key);
/* The worker has ended: makes the drain deliver what the worker wrote and
 * stop, without waiting for processes its task started that may still hold
 * the stream.  Does not wait; NULL is ignored. */
void pp__drain_stop(pp__drain_t *drain);
/* Waits for a stopped (or ended) drain and frees it.  If `last` is not NULL
 * it gets the last line the drain delivered (cut to `cap`), "" if none, so a
 * start failure can quote the worker's last words.  NULL is ignored. */
void pp__drain_join(pp__drain_t *drain, char *last, size_t cap);
/* Delivers one record to the pool's callback, serialized. */
void pp__log_deliver(pp_pool_t *pool, const pp_log_record_t *rec);
/* Delivers the message of a LOG frame from `worker`. */
void pp__log_frame(pp_pool_t *pool, int worker, const pp__frame_t *fr,
                   const unsigned char *payload);
/* Splits text at newlines and delivers each line. */
void pp__log_text(pp_pool_t *pool, int worker, uint64_t call_id,
                  pp_log_source_t source, int level, const char *text,
                  size_t len);

/* ---- slots ---- */

/* Lock rules for a slot.  The slot thread owns the slot: it alone starts,
 * reaps and replaces the worker and reads the channel.  Other threads see:
 *   proc, chan, pid, ready, dying, inflight[], ninflight, kill_target,
 *   kill_status: written under pool->lock, read under it (the watch thread
 *   kills through proc and aborts chan under pool->lock, never blocking);
 *   chan writes: under wlock (the slot thread's calls and BYE, the watch
 *   thread's CANCEL, which only ever *tries* wlock so that a worker that
 *   stopped reading cannot stall the timer).
 * The rest (rd, out, err, calls, spawn_failures, key) is the slot thread's
 * alone. */
struct pp__slot_s {
  pp_pool_t *pool;
  int index;
  apr_thread_t *thread;
  pp__mutex_t *wlock;          /* serializes writes to chan */
  pp__proc_t *proc;
  pp__chan_t *chan;
  pp__reader_t *rd;            /* buffered reads of chan */
  pp__drain_t *out;
  pp__drain_t *err;
  int64_t pid;                 /* 0 when no worker runs */
  int ready;                   /* the worker said HELLO and ran the init */
  int dying;                   /* the slot thread is reaping: do not kill */
  pp_future_t *inflight[PP__MAX_CHUNK];
  size_t ninflight;
  pp_future_t *kill_target;    /* the call a kill was meant for */
  int kill_status;             /* what that call then reports */
  uint64_t calls;              /* calls run by the current worker */
  int started;                 /* first start-up finished (ok or not) */
  int start_status;
  char start_error[512];
  int spawn_failures;          /* consecutive */
  int broken;                  /* spawn_failures reached the give-up count */
};

int pp__slot_start(pp__slot_t *slot);
/* Starts the slot's worker, checks its hello, runs the initializer (start.c).
 * Returns 0, or PP_ESPAWN / PP_ETASK / ... with nothing left running. */
int pp__slot_spawn(pp__slot_t *s);
/* Publishes a started worker (or, with NULLs, its absence) under
 * pool->lock (slot.c). */
void pp__slot_publish(pp__slot_t *s, pp__proc_t *proc, pp__chan_t *chan);
/* Stops (killing it at once if kill_now, else after 2 s) and reaps the
 * slot's worker, stops and joins its output drains and fills *st.  If
 * `last_err` is not NULL it gets the worker's last line on stderr (slot.c). */
void pp__slot_reap(pp__slot_t *s, int kill_now, pp__exit_t *st,
                   char *last_err, size_t cap);
/* Returns 1 when no slot of the pool can start a worker (each failed
 * several times in a row), so that calls fail at once; pool->lock held. */
int pp__pool_hopeless_locked(const pp_pool_t *pool);
/* Thread body, in slot.c. */
void *APR_THREAD_FUNC pp__slot_main(apr_thread_t *thread, void *data);

/* ---- watch.c ---- */

void *APR_THREAD_FUNC pp__watch_main(apr_thread_t *thread, void *data);
/* Wakes the watch thread after a deadline changed; pool->lock held. */
void pp__watch_poke(pp_pool_t *pool);

/* ---- the pool ---- */

/* How a pool checks the build of its workers (their HELLO carries the build
 * id of the module that holds their task table). */
typedef enum {
  PP__BUILD_ANY = 0,    /* the system cannot tell builds apart */
  PP__BUILD_PARENT = 1, /* same as the parent's (self re-exec, task library) */
  PP__BUILD_FIRST = 2   /* same as the pool's first worker (worker_exe) */
} pp__build_check_t;

/* Lock rule: pool->lock guards every field below that changes after
 * pp_pool_create() returns (the queue, counters, flags, stats, the futures'
 * state); the rest is fixed at creation.  log_lock only serializes calls of
 * the log callback and is never held with pool->lock. */
struct pp_pool_s {
  apr_pool_t *mem;
  pp__mutex_t *lock;
  pp__cond_t *work_cond;  /* slots wait for calls */
  pp__cond_t *done_cond;  /* callers wait for results */
  pp__cond_t *watch_cond; /* the watch thread waits for deadlines */
  pp__mutex_t *log_lock;  /* serializes the log callback */

  pp_future_t *q_head;
  pp_future_t *q_tail;
  size_t running;                /* calls on workers */

  pp__slot_t *slots;
  int nslots;
  int broken_slots;              /* slots whose worker cannot start */
  apr_thread_t *watch;

  int closing;                   /* no new calls */
  int stopping;                  /* slots must stop their workers */
  int inline_mode;
  int depth;                     /* nesting depth of its workers */
  int inherit_output;            /* PP_POOL_INHERIT_OUTPUT */

  const pp_task_t *tasks;
  pp__image_t *image;            /* the workers' executable */
  char *library;                 /* task library (host mode) or NULL */
  char *init_task;
  void *init_arg;
  size_t init_arg_len;
  int64_t call_timeout_ms;
  int64_t grace_ms;
  int64_t start_timeout_ms;
  uint64_t max_calls;
  pp_log_cb log_cb;
  void *log_data;

  pp__build_check_t build_check;
  int build_known;               /* build_id holds the id to match */
  unsigned char build_id[PP__BUILD_ID_LEN];

  unsigned char cookie[PP__COOKIE_LEN];
  char token_base[80];           /* cookie hex, parent pid, depth */
  char broken_reason[512];       /* why workers cannot start, for calls */
  uint64_t next_id;
  size_t live_futures;           /* futures not yet freed */
  int defer_wakeup;              /* finish: note a wake-up, do not do it */
  int wakeup_pending;            /* done_cond must be broadcast */
  int destroyed;                 /* pp_pool_destroy() is done; the struct
                                    lives on until the last future is freed */
  pp_pool_stats_t stats;
};

/* ---- inline.c ---- */

/* Runs one call in the calling thread through the wire encoding; pool->lock
 * NOT held.  Finishes the future. */
void pp__inline_run(pp_future_t *f);
/* Runs the pool's initializer once in the calling thread, as every worker
 * would; returns 0 or the task's status with its message recorded. */
int pp__inline_init(pp_pool_t *pool);

/* ---- worker side (worker.c, call.c) ---- */

struct pp_call_s {
  uint64_t id;
  void *reply;
  size_t reply_len;
  char *fail_message;
  int failed;        /* pp_call_fail() was called */
  int reply_status;  /* a pp_call_reply*() that failed: PP_EINVAL, PP_ENOMEM */
  char *reply_error; /* and why */
};

/* Runs a task with the usual result conventions and returns the status:
 * 0 (call->reply holds the result) or PP_E* (call->fail_message). */
int pp__call_run(const pp_task_t *task, pp_call_t *call, const void *arg,
                 size_t len);
/* Releases what a pp_call_t holds. */
void pp__call_clear(pp_call_t *call);

/* The worker's state, for pp_log() and pp_call_cancelled(). */
int pp__worker_depth(void);
/* Sends a LOG frame if this process is a worker; returns 0 if it was sent.
 * Otherwise the caller handles the message. */
int pp__worker_log(int level, const char *text, size_t len);
/* Inline mode: the pool and call that pp_log() should report to. */
void pp__inline_enter(pp_pool_t *pool, uint64_t call_id);
void pp__inline_leave(void);
int pp__inline_log(int level, const char *text, size_t len);

int pp__vpack(pp_buf_t *out, const char *fmt, va_list ap);

#endif /* PP_INTERNAL_H */
