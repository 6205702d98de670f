/*
 * internal.h - private declarations shared by the core's files.
 *
 * The files, in dependency order: each uses only those above it (and
 * platform/), never one below, so the core reads bottom-up.
 *
 *   error.c    status names, the thread's last error
 *   fault.c    fault injection (PROCPOOL_FAULT builds only; fault.h)
 *   blob.c     large results in shared memory, and pp_free
 *   clock.c    deadlines on the monotonic clock
 *   digest.c   a small digest for build ids
 *   wire.c     little-endian byte helpers
 *   tuple.c    pp_pack / pp_unpack
 *   arena.c    bytes freed together (a streaming map's arguments)
 *   progress.c pp_progress_bar: drawing a map's progress
 *   ring.c     the memory shared with a worker: control block, rings
 *   registry.c task tables, task libraries, APR set-up
 *   call.c     what a task uses: pp_call_*, running a task
 *   capture.c  a worker's stdout/stderr and its watch on the parent
 *   worker.c   pp_worker_main: the worker side of a pool
 *   output.c   the parent's side of output: lines, log callbacks
 *   source.c   sources of calls (futures, maps) and how calls finish
 *   inline.c   the inline (debug) executor
 *   log.c      pp_log: to the worker's ring, the inline log, or stderr
 *   record.c   what a worker's result ring brings: calls' outcomes, its
 *              log and output
 *   life.c     one worker process's life: spawn, hello, initializer,
 *              retire, death, reap
 *   dispatch.c handing calls to workers: plans, records, stealing
 *   loop.c     the pool's I/O thread: results, deadlines, sleeping
 *   callback.c the pool's callback thread: completion callbacks
 *   pool.c     pp_pool_create / pp_pool_destroy, statistics
 *   future.c   pp_pool_submit and pp_future_*
 *   wait.c     waiting for several futures: pp_future_wait_many, and
 *              completion queues (pp_cq_*)
 *   map.c      pp_pool_map, pp_pool_starmap, pp_pool_map_unordered
 *   imap.c     pp_pool_imap: a map over a producer, in bounded memory
 *   engine.c   engines: pools whose calls run elsewhere (the MPI backend)
 *
 * Threads and locks of a pool (the full rule is written at each field):
 *   - whoever holds io_lock owns the workers: their processes, rings and
 *     in-flight lists.  That is the pool's I/O thread (loop.c) in its
 *     rounds, or, briefly, a caller that hands out calls it submitted
 *     (pp__dispatch_try) or reads the result it waits for
 *     (pp__loop_assist); starting, burying and deadlines stay the I/O
 *     thread's alone;
 *   - pool->lock guards what callers and the I/O thread share: the queue of
 *     pending sources, every source's counters and outcomes, futures'
 *     state, statistics, and the few worker fields callers read (marked);
 *   - log_lock only serializes the log callback and is never taken with
 *     pool->lock held;
 *   - the callback thread (callback.c) runs completion callbacks with no
 *     lock held; its queue is guarded by pool->lock.
 *
 * Failures (error.h): a function that takes a pp__err_t fills it when it
 * fails; only the public functions write pp_last_error().
 */
#ifndef PP_INTERNAL_H
#define PP_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <apr_dso.h>
#include <apr_pools.h>
#include <apr_thread_proc.h>

#include "../platform/platform.h"
#include "error.h"
#include "fault.h"
#include "procpool.h"
#include "queue.h"
#include "ring.h"
#include "wire.h"

/* Deepest nesting of pools inside workers. */
#define PP__MAX_DEPTH 8
/* The reserved argument's prefix, and the worker host's library option. */
#define PP__WORKER_ARG "--procpool-worker="
#define PP__LIBRARY_ARG "--procpool-library="
/* Default grace of a cancelled running call. */
#define PP__DEFAULT_GRACE_MS 1000
/* How long a starting worker may take to say HELLO by default. */
#define PP__DEFAULT_START_TIMEOUT_MS 30000
/* Descriptors the parent holds per worker (POSIX: channel, stdout, stderr,
 * wake object, shared memory, pidfd), and a margin for the rest of the
 * program, for the check in pp_pool_create. */
#define PP__FDS_PER_WORKER 6
#define PP__FDS_SPARE 64
/* How long either side spins, looking at a ring, before it sleeps. */
#define PP__SPIN_US 20
/* How long a caller waiting for a call looks for its result itself
 * (future.c) before it sleeps. */
#define PP__WAIT_SPIN_US 100
/* The longest sleeps without a look at the rings (issue 17, items 3 and
 * 18): a side signals the other only when it sees it asleep in shared
 * memory, which a task can scribble over, and a signal can fail, so no
 * sleep may count on one.  The I/O thread sleeps at most
 * PP__LOOP_SLEEP_BUSY_US while a worker holds calls and
 * PP__LOOP_SLEEP_IDLE_US otherwise (a pool whose descriptors were closed
 * under it is noticed then); an idle worker looks every
 * PP__WORKER_SLEEP_MS.  Each costs microseconds per wake-up. */
#define PP__LOOP_SLEEP_BUSY_US 50000
#define PP__LOOP_SLEEP_IDLE_US 1000000
#define PP__WORKER_SLEEP_MS 1000

/* One turn of a spin-wait: a pause, and every 16th turn the CPU is
 * offered to other threads: the thread being waited for may need this
 * very CPU (a loaded machine, or fewer cores than busy threads), and a
 * spin that keeps it off would only delay what it waits for. */
#define pp__spin_turn(turn)                                                    \
  do {                                                                         \
    pp__cpu_relax();                                                           \
    if ((++(turn) & 15) == 0)                                                  \
      apr_thread_yield();                                                      \
  } while (0)

/* ---- clock.c ---- */

/* A deadline that never comes. */
#define PP__NEVER INT64_MAX
/* Returns the monotonic time (pp__now_us) `ms` milliseconds from now, or
 * PP__NEVER when that is beyond what the clock can count; ms <= 0 gives
 * now. */
int64_t pp__deadline_ms(int64_t ms);
/* Returns the microseconds until `deadline`, 0 if it has passed. */
int64_t pp__us_left(int64_t deadline);

/* ---- arena.c: bytes that are freed together ---- */

/* Blocks are at least this large. */
#define PP__ARENA_BLOCK 65536

typedef struct pp__arena_block_s pp__arena_block_t;

/* An arena; zeroed = empty.  One thread fills it; what it gave out does
 * not move until the next reset. */
typedef struct pp__arena_s {
  pp__arena_block_t *blocks; /* in the order they were made */
  pp__arena_block_t *cur;    /* the block being filled */
} pp__arena_t;

/* Returns room for `len` bytes, or NULL when out of memory. */
void *pp__arena_alloc(pp__arena_t *a, size_t len);
/* Makes the whole arena free again, keeping its blocks. */
void pp__arena_reset(pp__arena_t *a);
/* Frees its blocks; the arena is empty again. */
void pp__arena_free(pp__arena_t *a);

/* ---- progress.c: when and what a map reports ---- */

/* A map's progress reports, as its options ask: the callback and its
 * schedule.  The map's calling thread alone uses it. */
typedef struct pp__reporter_s {
  pp_progress_cb cb;     /* NULL: no reports */
  void *data;
  int64_t every_us;
  int64_t next;          /* when the next report is due */
  int64_t due_at;        /* when the report being made fell due */
  int64_t started;
  pp_progress_bar_t bar; /* PP_MAP_PROGRESS_BAR's */
} pp__reporter_t;

/* Sets up a map's reports from its options (NULL: none); the map starts
 * now. */
void pp__reporter_init(pp__reporter_t *r, const pp_map_options_t *o);
/* Returns 1 if a report is to be made now (one is due, or `final`, and
 * there is a callback), and then schedules the next one. */
int pp__reporter_due(pp__reporter_t *r, int final);
/* Makes the report pp__reporter_due() allowed; returns the callback's
 * word (non-zero: stop).  No lock of the pool may be held. */
int pp__reporter_call(pp__reporter_t *r, size_t done, size_t failed,
                      size_t total, int final);

/* ---- blob.c: blobs handed to the caller ---- */

/* Hands the caller memory that lives in a shared mapping (a large result):
 * pp_free() of the returned address unmaps it.  Returns the address. */
void *pp__blob_adopt(pp__shm_t *shm);
/* Hands out one more pointer into a blob that is handed out already (a
 * result that is part of the caller's shared argument): returns base +
 * offset, which pp_free() takes back like any other, or NULL if the blob
 * is no longer there. */
void *pp__blob_share(pp__shm_t *shm, uint64_t offset);
/* Returns 1 if [ptr, ptr+len) lies in memory from pp_shared_alloc() (or a
 * blob result), with its mapping and the offset of ptr in it, and takes a
 * reference on that memory, which pp__blob_release(*shm) drops: a call
 * whose argument it is holds one until its worker is done with it, so a
 * pp_free() of the caller's pointer meanwhile neither unmaps the memory
 * under the worker nor lets the mapping be handed out again (a new
 * pp_shared_alloc() would otherwise get the very mapping the call still
 * reads).  The mapping may be sent, not closed. */
int pp__blob_hold(const void *ptr, size_t len, pp__shm_t **shm,
                  uint64_t *offset);
/* Drops a reference pp__blob_hold() took (NULL is ignored); the last one
 * gives the mapping back. */
void pp__blob_release(pp__shm_t *shm);

/* Spare mappings (any thread): at most PP__SPARE_MAX of them, and
 * PP__SPARE_BYTES in all; smaller ones than PP__SPARE_MIN are not kept. */
#define PP__SPARE_MAX 8
#define PP__SPARE_MIN (256 * 1024)
#define PP__SPARE_BYTES ((uint64_t)1 << 30)
/* Takes the smallest spare of min..max bytes, or returns NULL. */
pp__shm_t *pp__spare_take(uint64_t min, uint64_t max);
/* A spare of len..2*len bytes, or a new mapping of len bytes; NULL (with
 * the OS reason recorded, error.h) if neither. */
pp__shm_t *pp__spare_or_new(uint64_t len);
/* Keeps a mapping nobody uses any more as a spare, or closes it (NULL is
 * ignored). */
void pp__spare_give(pp__shm_t *shm);
/* Counts the pools alive (+1 at create, -1 at free): spares are kept only
 * while one is, and closed when the last one goes.  Returns 0, or
 * PP_ENOMEM (with the OS reason) when the spares' lock could not be made,
 * and then counts nothing. */
int pp__spare_users(int delta);

/* ---- registry.c ---- */

/* Returns the entry called `name` in `table`, or NULL. */
const pp_task_t *pp__task_find(const pp_task_t *table, const char *name);
/* The process-wide table recorded by pp_worker_main(). */
void pp__tasks_set_default(const pp_task_t *table);
const pp_task_t *pp__tasks_default(void);
/* Loads a task library and returns its table (the library stays loaded for
 * the life of `mem`).  PP_EDSO with the loader's reason on failure. */
int pp__tasks_load(apr_pool_t *mem, const char *path, const pp_task_t **table,
                   pp__err_t *err);
/* Checks that a table is usable: names unique, non-empty, functions set. */
int pp__tasks_check(const pp_task_t *table, pp__err_t *err);
/* Initializes APR once per process, from any number of threads at once.  It
 * is never terminated: pools may live until the process ends, and APR's
 * memory goes with the process. */
int pp__apr_init(pp__err_t *err);
/* Translates an APR status into PP_* and fills err with what failed. */
int pp__from_apr(pp__err_t *err, apr_status_t rv, const char *what);

/* ---- call.c: running a task (worker side, and inline mode) ---- */

/* Replies up to this size need no allocation. */
#define PP__CALL_SMALL 64

struct pp_call_s {
  uint64_t id;
  void *reply;
  size_t reply_len;
  pp__shm_t *reply_shm; /* the reply lives in this blob (a large one) */
  int reply_in_hint;    /* ... which is the call's reply hint */
  int reply_in_arg;     /* the reply is part of the argument's mapping:
                           nothing to copy or free */
  const unsigned char *arg_map; /* that mapping (a blob argument), or NULL */
  uint64_t arg_map_len;
  pp__shm_t *hint;      /* the reply hint the parent sent, unused so far;
                           borrowed from the worker (worker.c), which
                           closes or keeps it after the call */
  size_t blob_min;      /* replies this large go straight into a blob;
                           0 = never (inline mode) */
  char *fail_message;
  int failed;        /* pp_call_fail() was called */
  int reply_status;  /* a pp_call_reply*() that failed: PP_EINVAL, PP_ENOMEM */
  char *reply_error; /* and why */
  /* Small replies live here, so that a map of tiny calls allocates
   * nothing per call in the worker. */
  unsigned char small[PP__CALL_SMALL];
};

/* Runs a task with the usual result conventions and returns the status:
 * 0 (call->reply holds the result) or PP_E* (call->fail_message). */
int pp__call_run(const pp_task_t *task, pp_call_t *call, const void *arg,
                 size_t len);
/* Releases what a pp_call_t holds. */
void pp__call_clear(pp_call_t *call);
int pp__vpack(pp_buf_t *out, const char *fmt, va_list ap);

/* ---- capture.c and worker.c: the worker side ---- */

/* Publishes a record to the parent (pp__worker_put, which worker.c passes
 * in: capture.c sits below worker.c and does not call up to it). */
typedef int (*pp__put_fn)(int kind, uint16_t aux, uint64_t id, const void *p1,
                          size_t n1, const void *p2, size_t n2);
/* Starts the worker's watch thread and sets up its stdout and stderr (out
 * and err NULL: output is inherited); output goes out through `put`.
 * Returns 0, or a status with the reason in *why. */
int pp__capture_start(pp__chan_t *alive, pp__chan_t *out, pp__chan_t *err,
                      pp__put_fn put, pp__err_t *why);
/* Call `id` starts: notes where its output will begin, and that the watch
 * thread tags what it drains with `id` from now on. */
void pp__capture_call_start(uint64_t id);
/* A call ended: sends on what it printed, tagged with its id. */
void pp__capture_call_end(uint64_t id);
/* The worker is about to exit: sends what is left and stops the thread. */
void pp__capture_stop(void);

/* The worker's nesting depth (0 in a process that is no worker). */
int pp__worker_depth(void);
/* Puts a record (the concatenation of two parts) into the result ring,
 * from any thread of the worker, waiting for room if the ring is full.
 * Returns 0, or -1 in a process that is no worker. */
int pp__worker_put(int kind, uint16_t aux, uint64_t id, const void *p1,
                   size_t n1, const void *p2, size_t n2);
/* For the tests (tests/tasks.c, task "garble"): publishes a broken record
 * in the result ring, as memory corruption in a task might. */
void pp__worker_corrupt_results(void);
/* For the tests (tests/tasks_hostile.c): zeroes the control block and
 * the result ring of the mapping the worker shares with its parent, as a
 * stray write in a task might. */
void pp__worker_zero_shared(void);
/* For the tests: clears the flag that says the worker sleeps waiting for
 * calls, so the parent does not wake it, as if its signal were lost. */
void pp__worker_clear_sleep_flag(void);
/* For the tests (tests/tasks_hostile.c): the wake object this worker
 * signals its parent with; NULL in a process that is no worker. */
pp__wake_t *pp__worker_parent_wake(void);
/* Sends a LOG record if this process is a worker; returns 0 if it was
 * sent, else the caller handles the message. */
int pp__worker_log(int level, const char *text, size_t len);

/* ---- output.c: worker output in the parent ---- */

/* Assembles one stream's bytes into whole lines. */
typedef struct pp__lines_s pp__lines_t;
/* Delivers one record to the pool's callback, serialized by log_lock. */
void pp__log_deliver(pp_pool_t *pool, const pp_log_record_t *rec);
/* Splits text at newlines and delivers each line. */
void pp__log_text(pp_pool_t *pool, int worker, uint64_t call_id,
                  pp_log_source_t source, int level, const char *text,
                  size_t len);
/* pp__log_text for a line that came from MPI rank `rank` (engines). */
void pp__log_text_from(pp_pool_t *pool, int rank, int worker,
                       uint64_t call_id, pp_log_source_t source, int level,
                       const char *text, size_t len);
/* Feeds output bytes of `worker` (written during call `id`) into `*lines`
 * (created on first use) and delivers the lines they complete.  Returns 0
 * or PP_ENOMEM. */
int pp__lines_feed(pp_pool_t *pool, pp__lines_t **lines, int worker,
                   pp_log_source_t source, uint64_t id, const void *bytes,
                   size_t len);
/* Returns 1 if `lines` holds part of a line that call `id` wrote. */
int pp__lines_held(const pp__lines_t *lines, uint64_t id);
/* Call `id` has ended: delivers the part of a line it wrote without a
 * newline, so that all of a call's output is out before its result. */
void pp__lines_call_end(pp_pool_t *pool, pp__lines_t *lines, uint64_t id);
/* Delivers a last line without its newline, and frees. */
void pp__lines_end(pp_pool_t *pool, pp__lines_t *lines);

/* ---- source.c: where calls come from and where their outcomes go ---- */

typedef struct pp__src_s pp__src_t;

/* What a source's owner does with a call's outcome; pool->lock held.  It
 * takes ownership of the result's data and message, and returns 1 if a
 * thread waiting on pool->done_cond for this source may now go on (its
 * future is done, its map complete, or a callback has results to take),
 * 0 if waking it would only put it to sleep again. */
typedef int (*pp__src_done_fn)(pp__src_t *src, size_t index, pp_result_t *r);

/* A source of calls: a submitted future (one call) or a map (n calls).
 * Everything but the fixed part is guarded by pool->lock. */
struct pp__src_s {
  /* Fixed when it is queued. */
  pp_pool_t *pool;
  const char *task;         /* name, owned by the task table */
  size_t task_len;
  const pp_buf_t *args;     /* n arguments, borrowed until it finishes */
  size_t n;                 /* grows under pool->lock in a streaming map
                               (pp__src_grow_locked); else fixed */
  size_t cap;               /* ids kept for it: n may grow up to this */
  int64_t timeout_ms;       /* <= 0: none */
  size_t chunk;             /* calls of it a worker may hold at once */
  uint64_t first_id;        /* call i has id first_id + i */
  pp__src_done_fn done;
  /* pool->lock. */
  pp__queue_t link;         /* on pool->pending while it has calls to hand
                               out; a lone link when not */
  size_t next;              /* the first call never handed out */
  size_t *retry;            /* calls to hand out again (their worker died
                               before they started) */
  size_t nretry, capretry;
  size_t inflight;          /* calls on workers */
  size_t finished;          /* calls with an outcome */
  int cancel;               /* stop: calls not started end PP_ECANCELED */
};

/* The chunk a map of n calls gets by default: Python's map sends chunks of
 * about n / (4 * workers) calls; here that many calls may be in flight on
 * one worker, each with its own outcome.  At least 1. */
size_t pp__src_auto_chunk(size_t n, size_t workers);
/* Prepares a source (pool->lock NOT held; nothing is queued yet). */
void pp__src_init(pp__src_t *src, pp_pool_t *pool, const pp_task_t *task,
                  const pp_buf_t *args, size_t n, int64_t timeout_ms,
                  size_t chunk, pp__src_done_fn done);
/* Queues a source: assigns its ids, counts its calls; the caller then
 * hands them out or wakes the I/O thread.  Returns 0, or PP_ECLOSED if the
 * pool is being destroyed; pool->lock held. */
int pp__src_queue_locked(pp__src_t *src);
/* Adds calls args[n .. n + k) to a queued source of a streaming map
 * (imap.c), which wrote those arguments before; they count as submitted
 * and are handed out like the others.  Returns 0, or PP_ECLOSED if the
 * pool is being destroyed (nothing is added), or PP_EINVAL if the source
 * would outgrow its cap.  pool->lock held. */
int pp__src_grow_locked(pp__src_t *src, size_t k);
/* Takes the next call to hand to a worker; returns 1 and its index, or 0
 * when the source has none left.  pool->lock held. */
int pp__src_take_locked(pp__src_t *src, size_t *index);
/* A call that was handed out goes back, to be handed out again first
 * (its worker died before it started); pool->lock held. */
int pp__src_give_back_locked(pp__src_t *src, size_t index);
/* Gives a call its outcome and counts it; pool->lock held.  Takes
 * ownership of data and message (a message is made from the status if
 * there is none).  Returns 1 if the threads waiting on pool->done_cond
 * should be woken (the source's owner says so, or the pool has nothing
 * left to run, which pp_pool_destroy waits for); the caller broadcasts. */
int pp__src_finish_locked(pp__src_t *src, size_t index, int status,
                           void *data, size_t len, char *message,
                           int exit_code, int term_signal);
/* Cancels the source: calls not handed out end PP_ECANCELED now; those on
 * workers are told (by the I/O thread, which is woken).  pool->lock held. */
void pp__src_cancel_locked(pp__src_t *src);
/* Wakes the pool's I/O thread if it sleeps; pool->lock held. */
void pp__pool_wake_locked(pp_pool_t *pool);

/* ---- inline.c ---- */

/* Runs call `index` of a source in the calling thread, through the same
 * record encoding as a worker, and finishes it; pool->lock NOT held. */
void pp__inline_run(pp__src_t *src, size_t index);
/* Runs the pool's initializer once in the calling thread, as every worker
 * would; returns 0 or the task's status, with its message in *err. */
int pp__inline_init(pp_pool_t *pool, pp__err_t *err);
/* Inline mode: the pool and call that pp_log() reports to. */
void pp__inline_enter(pp_pool_t *pool, uint64_t call_id);
void pp__inline_leave(void);
int pp__inline_log(int level, const char *text, size_t len);

/* ---- life.c, record.c and loop.c: workers ---- */

/* A worker's state, as the I/O thread sees it. */
typedef enum {
  PP__W_NONE = 0,     /* no process: start one (now or after a back-off) */
  PP__W_STARTING = 1, /* spawned, waiting for its HELLO */
  PP__W_INIT = 2,     /* running the initializer */
  PP__W_READY = 3,    /* serving calls */
  PP__W_RETIRING = 4, /* sent BYE, waiting for it to exit */
  PP__W_DEAD = 5      /* its process ended: to be settled and reaped */
} pp__wstate_t;

/* A call on a worker. */
typedef struct pp__flight_s {
  pp__src_t *src;
  size_t index;
  uint64_t id;
  uint64_t rec;    /* its record's position in the call ring */
  int cancelled;   /* the cancel word is set */
  pp__shm_t *arg_copy; /* our copy of a large argument, or NULL */
  pp__shm_t *arg_shared; /* or the caller's shared memory it is in,
                            with a reference of its own (pp__blob_hold) */
  pp__shm_t *hint;     /* the reply hint sent with it, or NULL */
  int withdrawn;       /* taken back before it started (dispatch.c): it is
                          another worker's now, and f->src may be gone;
                          its outcome is dropped */
  int refused;         /* its argument could not be sent: this status */
  char *refused_why;   /* ... and why (malloc'd) */
} pp__flight_t;

/* One worker of a pool.  Owned by whoever holds io_lock; the fields marked
 * "pool->lock" are also read by callers. */
typedef struct pp__slot_s {
  pp_pool_t *pool;
  int index;
  pp__wstate_t state;
  pp__proc_t *proc;
  pp__chan_t *chan;
  pp__chan_t *out, *err;     /* read ends of its stdout/stderr, or NULL */
  pp__shm_t *shm;
  pp__wake_t *wake;          /* the worker sleeps on it */
  pp__shm_ctl_t *ctl;
  pp__ring_t calls;          /* we produce */
  pp__ring_t results;        /* we consume */
  pp__mapcache_t maps;       /* the mappings the worker keeps (ring.h) */
  pp__flight_t *fl;          /* in flight, in ring order: a circular array */
  size_t fl_cap, fl_head, fl_n;
  int64_t head_since;        /* when the first call in flight started */
  int64_t cancel_deadline;   /* kill the head for its cancel then */
  int64_t deadline;          /* hello, retire, or a back-off's end */
  int kill_status;           /* why we killed it: PP_ETIMEDOUT, PP_ECANCELED,
                                0 if we did not */
  uint64_t kill_id;          /* the call the kill was for */
  uint64_t ran;              /* calls this worker finished */
  uint64_t spin_mark;        /* the I/O thread's alone: results.seen when it
                                last spun without io_lock (loop.c) */
  char why[512];             /* why its last start failed */
  int spawn_failures;        /* in a row */
  int outside_kills;         /* starts ended from outside, in a row (they
                                lengthen the back-off only) */
  int unclear_exits;         /* starts that ended maybe from outside
                                (Windows), in a row (life.c) */
  pp__lines_t *lines[2];     /* stdout, stderr */
  /* pool->lock. */
  int64_t pid;               /* 0 when no worker runs */
  int broken;                /* spawn_failures reached the give-up count */
  int started;               /* its first start is over (ok or not) */
  int start_status;          /* and how it went */
  char start_error[512];
} pp__slot_t;

/* life.c: starts a worker (spawn; the rest happens as its records come). */
void pp__life_spawn(pp__slot_t *s);
/* life.c: handles a record the worker sent while starting (HELLO, the
 * initializer's reply); a bad one fails the start. */
void pp__life_start_record(pp__slot_t *s, const pp__rec_t *rec);
/* life.c: the start went wrong (err says how and why); kills and reaps the
 * process and schedules the next attempt. */
void pp__life_start_failed(pp__slot_t *s, const pp__err_t *err);
/* life.c: the worker's process ended (status 0), or broke the protocol
 * (status PP_EPROTO or PP_ENOMEM, with `why`) and is killed now: settles its
 * calls (finished ones keep their results, the running one fails with the
 * reason, the others go back to their sources), delivers what it printed
 * last, reaps it and frees what it held.  The slot is NONE afterwards. */
void pp__life_bury(pp__slot_t *s, int status, const char *why);
/* life.c: asks a worker that has run its calls to exit (BYE). */
void pp__life_retire(pp__slot_t *s);
/* life.c: signals the worker's wake object; if that fails, the pool is
 * broken (pp__pool_break_locked).  pool->lock NOT held. */
void pp__life_wake(pp__slot_t *s);
/* life.c: fails every queued call if the pool is hopeless; pool->lock
 * held. */
void pp__pool_fail_queue_locked(pp_pool_t *pool);
/* record.c: handles a record that is not about a call's outcome (LOG,
 * OUTPUT); returns 1 if it was one of those. */
int pp__record_side(pp__slot_t *s, const pp__rec_t *rec);
/* record.c: turns a RESULT or ERROR record of the call `f` into an outcome
 * (copying or adopting the result) without finishing it yet; returns 0 or
 * PP_EPROTO for a bad record, with the reason in *err.  When this process
 * has no memory for the result, the outcome is PP_ENOMEM (the parent's
 * fault, not the worker's: the record is read and the worker kept). */
typedef struct pp__outcome_s {
  pp__flight_t f;
  int status;
  void *data;
  size_t len;
  char *message;
} pp__outcome_t;
int pp__record_outcome(pp__slot_t *s, const pp__rec_t *rec, pp__flight_t *f,
                       pp__outcome_t *out, pp__err_t *err);
/* record.c: frees what an outcome holds (one nobody will receive). */
void pp__outcome_drop(pp__outcome_t *out);
/* record.c: lets go of the blob a RESULT record names, for a record that
 * is read but never turned into an outcome (pp__shm_drop: on Windows the
 * blob is in this process already, and closed if its tag proves it is
 * the worker's and was never taken); any other record is ignored.  Also
 * the blob the control block names, once the worker has ended. */
void pp__record_drop(const pp__rec_t *rec);
void pp__record_drop_last(pp__slot_t *s);

/* life.c: the in-flight list (a circular array in ring order). */
pp__flight_t *pp__flight_at(pp__slot_t *s, size_t i);
/* Appends a call; returns 0, or PP_ENOMEM when the list cannot grow (the
 * caller keeps the call queued). */
int pp__flight_push(pp__slot_t *s, const pp__flight_t *f);
/* Drops the head; what it held in shared memory goes back to the spares
 * (the worker is done with it: its outcome came, or it died). */
void pp__flight_pop(pp__slot_t *s);
/* Drops every call in flight the same way. */
void pp__flight_clear(pp__slot_t *s);

/* dispatch.c: handing calls to workers.  All of it needs io_lock; the
 * _locked functions also pool->lock. */

/* Calls handed to one worker per plan. */
#define PP__TAKE_MAX 1024
/* Calls pp__dispatch_try hands out at most. */
#define PP__DISPATCH_MAX 16

/* A call a worker is to get, chosen under pool->lock, written after it. */
typedef struct pp__take_s {
  pp__slot_t *slot;
  pp__src_t *src;
  size_t index;
  size_t flight; /* its place in the slot's in-flight list */
} pp__take_t;

/* Hands queued calls to workers with room, up to `cap`, into `takes`
 * (their flights are pushed, their records not yet written).  Each worker
 * gets up to the chunk of the source at the queue's head in flight, plus
 * one, within its ring's room and its max_calls_per_worker; idle workers
 * are served first.  Returns how many. */
size_t pp__dispatch_plan_locked(pp_pool_t *pool, pp__take_t *takes,
                                size_t cap);
/* Writes the records of planned calls (after pool->lock is released) and
 * wakes the workers that sleep.  A call whose argument cannot be handed
 * over still gets its record, marked refused, and fails with the reason.
 * Returns 1 if there were any. */
int pp__dispatch_write(pp_pool_t *pool, pp__take_t *takes, size_t n);
/* Returns 1 if a queued call could be handed to a worker now (a plan made
 * before may have seen an empty queue). */
int pp__dispatch_can_take_locked(pp_pool_t *pool);
/* Returns 1 if a worker is idle while another holds a call it has not
 * started: a steal may become due, so the I/O thread must look even if
 * it would sleep. */
int pp__dispatch_steal_possible_locked(pp_pool_t *pool);
/* Takes back calls that wait behind a long one while a worker is idle and
 * the queue is empty (they go back to their sources' queues).  Returns 1
 * if it took any; sets *steal_at to when one may next become due. */
int pp__dispatch_steal_locked(pp_pool_t *pool, int64_t *steal_at);
/* Returns 1 if a worker has started call `id`, which one holds: the call
 * record's state word says STARTED, or the worker has given the record's
 * room back (it ran the call).  io_lock held, so the records of the calls
 * in flight are written. */
int pp__dispatch_started_locked(pp_pool_t *pool, uint64_t id);
/* Hands queued calls to workers with room from the caller's thread, when
 * the I/O thread is not in a round: a submitted call reaches its worker
 * without waking the I/O thread first.  Returns 1 if nothing is left for
 * the I/O thread to do about the queue, 0 if it must be woken.  Call
 * without pool->lock. */
int pp__dispatch_try(pp_pool_t *pool);

/* loop.c: the I/O thread's state, made before the thread starts so that
 * pp_pool_create() can report PP_ENOMEM (pool->io), and freed with the
 * pool (with a caller's round state, pool->assist). */
int pp__loop_new(pp_pool_t *pool, pp__err_t *err);
void pp__loop_free(pp_pool_t *pool);
/* The I/O thread's body; `data` is the pool, whose pool->io it uses. */
void *APR_THREAD_FUNC pp__loop_main(apr_thread_t *thread, void *data);
/* A caller that waits for a call does the I/O thread's collecting itself
 * when that thread is not in a round (io_lock is free): it reads the
 * results the workers have published, finishes their calls and hands out
 * queued ones, saving the hand-off to the I/O thread and back, the larger
 * part of a round trip.  Only plain outcomes are taken; anything else
 * (output, logs, starts, blob results, a broken record) is left to the I/O
 * thread, which is woken for it, so the log callback still runs only
 * there.  Never blocks.  Returns 1 if it finished any call (the caller
 * looks at its future again), 0 if not.  Called without pool->lock. */
int pp__loop_assist(pp_pool_t *pool);

/* ---- callback.c: the pool's callback thread ---- */

/* A job for the callback thread: `run` is called once, with no lock held,
 * and owns the job from then on (it frees it). */
typedef struct pp__cbjob_s pp__cbjob_t;
struct pp__cbjob_s {
  pp__queue_t link; /* on pool->cb_queue (pool->lock) */
  void (*run)(pp__cbjob_t *job);
};
/* Starts the pool's callback thread unless it runs; returns 0, or a status
 * with the reason in *err (PP_ECLOSED once pp_pool_destroy has stopped it).
 * pool->lock held. */
int pp__cb_start_locked(pp_pool_t *pool, pp__err_t *err);
/* Queues a job for the callback thread (started already) and wakes it;
 * jobs run in the order they are posted.  pool->lock held. */
void pp__cb_post_locked(pp_pool_t *pool, pp__cbjob_t *job);
/* Returns 1 if the calling thread is the pool's callback thread. */
int pp__cb_in_thread(const pp_pool_t *pool);
/* pp_pool_destroy(pool) is about to wait for the pool's callback thread:
 * returns 0, or PP_EINVAL (with the reason in *err; nothing is changed)
 * if the calling thread is a callback thread that this wait would never
 * let go: the pool's own, or one the pool's callback thread waits for,
 * maybe through others, in a destroy of its own.  pp__cb_wait_end(pool)
 * ends the wait once the join is over. */
int pp__cb_wait_begin(pp_pool_t *pool, pp__err_t *err);
void pp__cb_wait_end(pp_pool_t *pool);
/* Runs the jobs left, then stops and joins the callback thread, if it was
 * started; the pool is closing and all its calls have finished, so no job
 * can come after.  pool->lock NOT held. */
void pp__cb_stop(pp_pool_t *pool);

/* ---- future.c and wait.c: futures ---- */

/* Something to tell when a future finishes: `fn` is called once, under
 * pool->lock, in whatever thread finishes the call (future.c). */
typedef struct pp__watch_s pp__watch_t;
struct pp__watch_s {
  pp__queue_t link; /* on the future's watchers until it fires */
  void (*fn)(pp__watch_t *w, pp_future_t *f);
};

/* A future: a source of one call.  Every field but the fixed ones is
 * guarded by pool->lock, but cq_link, which its queue's lock guards. */
struct pp_future_s {
  pp__src_t src;   /* its one call */
  pp_buf_t arg;    /* the argument src.args points to */
  void *arg_owned; /* a copy of it, unless borrowed */
  int refs;        /* the caller's, the pool's while the call runs,
                      a callback's, a completion queue's */
  int done;
  pp_result_t res;
  pp__queue_t watchers; /* pp__watch_t, called in order when it finishes */
  pp_cq_t *cq;          /* the completion queue it is in, or NULL */
  pp__watch_t cq_watch; /* its watcher there, while it runs */
  int cq_freed;         /* pp_future_free() came while its queue was
                           handing it out: the queue drops it instead */
  pp__queue_t cq_link;  /* cq->lock: on the queue's pending or ready
                           list; a lone link once taken off */
};

/* A completion queue (wait.c).  Its lock is taken under pool->lock (by
 * a future's watcher), never the other way round. */
struct pp_cq_s {
  int64_t owner_pid; /* the process that created it */
  pp__mutex_t *lock;
  pp__cond_t *cond;    /* pp_cq_next waits on it */
  pp__queue_t pending; /* cq->lock: futures not finished (cq_link) */
  pp__queue_t ready;   /* cq->lock: finished, oldest first */
  size_t n;            /* cq->lock: futures on either list */
  uint32_t nready;     /* cq->lock to write; read without it (atomic) by a
                          taker that spins: futures on the ready list */
  pp_pool_t *assist;   /* cq->lock, set once: the pool of the first future
                          added whose results a taker may collect itself
                          (pp__loop_assist); the queue holds it as a map
                          does (live_futures) until pp_cq_free */
};

/* Drops one reference of a future; pool->lock held.  Frees it at zero
 * (its pool's live_futures counts one less: see pp__pool_unused_locked). */
void pp__future_unref_locked(pp_future_t *f);

/* ---- engine.h / engine.c: pools whose calls run elsewhere ---- */

struct pp__engine_s;
/* How many calls a pool runs at once: its workers, or its engine's. */
int pp__pool_width(const pp_pool_t *pool);

/* ---- the pool ---- */

/* How a pool checks the build of its workers (their HELLO carries the build
 * id of the module that holds their task table). */
typedef enum {
  PP__BUILD_ANY = 0,    /* the system cannot tell builds apart */
  PP__BUILD_PARENT = 1, /* same as the parent's (self re-exec, task library) */
  PP__BUILD_FIRST = 2   /* same as the pool's first worker (worker_exe) */
} pp__build_check_t;

struct pp_pool_s {
  /* Fixed at creation. */
  int64_t owner_pid; /* the process that created it (pp__pool_forked) */
  apr_pool_t *mem;
  pp__mutex_t *lock;
  pp__cond_t *done_cond;  /* callers wait for outcomes and start-up */
  pp__mutex_t *log_lock;  /* serializes the log callback */
  pp__wake_t *wake;       /* the I/O thread sleeps on it */
  pp__mutex_t *io_lock;   /* held by whoever touches the workers: the I/O
                             thread in its rounds, or a caller in
                             pp__dispatch_try or pp__loop_assist; taken
                             before pool->lock */
  void *assist;           /* io_lock: a caller's round state (loop.c) */
  void *io;               /* the I/O thread's round state (loop.c) */
  int spare_user;         /* counted by pp__spare_users (blob.c) */
  pp__poller_t *poller;   /* the I/O thread's */
  apr_thread_t *loop;
  pp__slot_t *slots;
  int nslots;
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
  uint64_t ring_size;
  pp_log_cb log_cb;
  void *log_data;
  pp__build_check_t build_check;
  unsigned char cookie[PP__COOKIE_LEN];
  char token_base[80];           /* cookie hex, parent pid, depth */

  /* The I/O thread's. */
  int build_known;               /* build_id holds the id to match */
  int ever_ready;                /* a worker has been ready: the program
                                    is known to start (life.c) */
  unsigned char build_id[PP__BUILD_ID_LEN];

  /* pool->lock. */
  pp__queue_t pending;           /* sources with calls to hand out */
  uint64_t queued;               /* calls not yet handed out */
  uint64_t running;              /* calls on workers */
  uint64_t next_id;
  int news;                      /* a caller cancelled something: the I/O
                                    thread must look */
  int cancel_all;                /* a cancelling destroy: every call on a
                                    worker is to be cancelled */
  int loop_asleep;               /* the I/O thread sleeps (or is about to) */
  int closing;                   /* no new calls */
  int stopping;                  /* the I/O thread must stop the workers */
  int broken_slots;              /* slots whose worker cannot start */
  char broken_reason[512];       /* why, for calls that fail */
  int fatal;                     /* the pool itself broke (its poller or wake
                                    object failed: its descriptors were
                                    closed behind its back): this status,
                                    for every call from then on */
  char fatal_why[512];           /* ... and why */
  size_t live_futures;           /* futures not yet freed */
  int destroyed;                 /* pp_pool_destroy() is done; the struct
                                    lives on until the last future is freed */
  pp_pool_stats_t stats;

  /* The callback thread (callback.c), started by the first completion
   * callback.  pool->lock, but cb_mem, which only the starter and
   * pp__pool_free touch. */
  apr_pool_t *cb_mem;            /* the thread's memory */
  apr_thread_t *cb_thread;       /* NULL until started */
  pp__cond_t *cb_cond;           /* the thread waits on it for jobs */
  pp__queue_t cb_queue;          /* jobs (pp__cbjob_t), oldest first */
  int cb_stop;                   /* pp_pool_destroy stops it */
  pp_pool_t *cb_waits_for;       /* the pool whose callback thread this
                                    pool's callback thread waits for in a
                                    pp_pool_destroy(), or NULL (callback.c,
                                    its own lock) */

  /* Fixed at creation: an engine that runs the calls instead of the I/O
   * thread and workers (engine.c), NULL for a local pool, and its state. */
  const struct pp__engine_s *engine;
  void *engine_state;
};

/* Returns 0 if the calling process created the pool; else PP_ECLOSED,
 * raised with a sentence that names `fn`.  A child forked without exec
 * holds only a copy of the pool's memory: no I/O thread, callback thread
 * or workers of its own, locks that another thread may have held at the
 * fork (held for ever there), and the workers' rings, which are shared
 * with the parent's workers.  So every public function that touches a
 * pool (or its futures and maps) checks this before anything else. */
int pp__pool_forked(const pp_pool_t *pool, const char *fn);
/* Returns 1 if the pool has been destroyed and no future of it is left, so
 * the caller must call pp__pool_free() once it has let go of the lock;
 * pool->lock is held. */
int pp__pool_unused_locked(pp_pool_t *pool);
/* A map or future that held the pool (live_futures) lets go of it and
 * releases pool->lock, which it holds; if the pool was destroyed meanwhile
 * and this was its last user, the pool is freed. */
void pp__pool_leave_unlock(pp_pool_t *pool);
/* Frees what is left of a destroyed pool; lock NOT held. */
void pp__pool_free(pp_pool_t *pool);
/* Pools allocated and not yet freed in this process (for leak tests). */
int pp__pool_count(void);
/* Returns 1 when no slot of the pool can start a worker (each failed
 * several times in a row) or the pool broke (pool->fatal), so that calls
 * fail at once; pool->lock held. */
int pp__pool_hopeless_locked(const pp_pool_t *pool);
/* The status and a new sentence (NULL if memory is short) for a call that
 * fails because the pool is hopeless; pool->lock held. */
int pp__pool_hopeless_why_locked(const pp_pool_t *pool, char **message);
/* The pool cannot go on (`status`, `why`): records it once; the I/O
 * thread then fails every call and ends the workers (loop.c), and every
 * later call fails at once with the reason.  pool->lock held. */
void pp__pool_break_locked(pp_pool_t *pool, int status, const char *why);

#endif /* PP_INTERNAL_H */
