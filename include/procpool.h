/**
 * @file procpool.h
 * procpool.h - a pool of worker processes that runs named C functions.
 *
 * procpool gives C programs what Python's multiprocessing.Pool.starmap gives
 * Python programs: a pool of worker *processes*, sized to the machine, that
 * runs many calls of a named function in parallel and hands back every
 * result in input order.  Workers are fresh processes (the program re-executed
 * with a reserved argument, never a bare fork), so a task may start threads
 * and pools of its own, and a task that crashes fails only its own call.
 *
 * The smallest program:
 *
 *     static int square(pp_call_t *call, const void *arg, size_t len) {
 *       int64_t x;
 *       if (pp_unpack(arg, len, "i", &x) != 0)
 *         return pp_call_fail(call, "square wants one int64");
 *       return pp_call_replyf(call, "i", x * x);
 *     }
 *     static const pp_task_t tasks[] = { PP_TASK(square), PP_TASK_END };
 *
 *     int main(int argc, char **argv) {
 *       int rc;
 *       if (pp_worker_main(argc, argv, tasks, &rc)) return rc;  // the guard
 *       ...pp_pool_create, pp_pool_map, pp_pool_destroy...
 *     }
 *
 * Conventions (as in libuv): every function that can fail returns 0 or a
 * negative PP_E* status; pp_strerror() names it and pp_last_error() gives the
 * detailed message of the last failure in the calling thread.  Handles are
 * opaque.  Options structs are valid when zeroed, and NULL means defaults.
 * Memory that procpool hands to the caller is released with pp_free() (or
 * pp_results_free() for arrays of results).  In a child forked without
 * exec from the process that created a pool, every function on that pool,
 * its futures and its maps returns PP_ECLOSED (see pp_pool_create()).
 */
#ifndef PROCPOOL_H
#define PROCPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @def PP_EXTERN
 * PP_EXTERN marks the public API.  A shared build defines
 * BUILDING_PROCPOOL_SHARED; its users get USING_PROCPOOL_SHARED from the
 * CMake target procpool::procpool (in procpool's build, as a subproject or
 * installed, through find_package) or from `pkg-config --cflags procpool`,
 * so on Windows they import the symbols without doing anything.  A static
 * build (procpool::procpool_static) defines neither.  A program may define
 * PP_EXTERN itself before including this header. */
#ifndef PP_EXTERN
#ifdef _WIN32
#if defined(BUILDING_PROCPOOL_SHARED)
#define PP_EXTERN __declspec(dllexport)
#elif defined(USING_PROCPOOL_SHARED)
#define PP_EXTERN __declspec(dllimport)
#else
#define PP_EXTERN
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define PP_EXTERN __attribute__((visibility("default")))
#else
#define PP_EXTERN
#endif
#endif

/** @def PP_PRINTF(fmt_index, args_index)
 * Marks a printf-style function for the compiler's format checks:
 * `fmt_index` is the position of the format argument, `args_index` that of
 * the first value.  Empty where the compiler has no such check.
 *
 * procpool formats with a C99 printf on every system (mingw builds use its
 * ANSI stdio), so GCC for mingw checks gnu_printf, not Microsoft's.  Clang
 * for mingw (llvm-mingw, MSYS2 CLANG64) does not know gnu_printf and warns
 * about the attribute; its printf check is the C99 one anyway. */
#if defined(__MINGW32__) && !defined(__clang__)
#define PP_PRINTF(fmt_index, args_index)                                       \
  __attribute__((format(gnu_printf, fmt_index, args_index)))
#elif defined(__GNUC__)
#define PP_PRINTF(fmt_index, args_index)                                       \
  __attribute__((format(printf, fmt_index, args_index)))
#else
#define PP_PRINTF(fmt_index, args_index)
#endif

/** The major version of this header.  From 1.0, versions with the same
 * major number are ABI compatible; before it, those with the same major and
 * minor numbers (the shared library's soname says which). */
#define PP_VERSION_MAJOR 0
/** The minor version of this header. */
#define PP_VERSION_MINOR 2
/** The patch version of this header. */
#define PP_VERSION_PATCH 0
/** The version of this header as one number, 0xMMmmpp (major, minor,
 * patch); compare it with pp_version(), the linked library's. */
#define PP_VERSION_HEX                                                         \
  ((PP_VERSION_MAJOR << 16) | (PP_VERSION_MINOR << 8) | (PP_VERSION_PATCH))
/** Non-zero if this header's version is at least major.minor.patch, for
 * preprocessor tests: `#if PP_VERSION_AT_LEAST(0, 1, 0)`. */
#define PP_VERSION_AT_LEAST(major, minor, patch)                               \
  (PP_VERSION_HEX >= (((major) << 16) | ((minor) << 8) | (patch)))

/** Returns PP_VERSION_HEX of the library that is linked, not the header. */
PP_EXTERN unsigned pp_version(void);
/** Returns the library version as "major.minor.patch" (static storage). */
PP_EXTERN const char *pp_version_string(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

/**
 * The status codes, one `XX(name, value, text)` entry each: the table that
 * drives the pp_errno_t enum (each entry is the enumerator `PP_` + name,
 * equal to value), pp_strerror() (text) and pp_err_name() (`"PP_"` +
 * name).  A program may use it with an XX of its own,
 * for example to build a switch over every status.
 *
 * | status | value | meaning |
 * |---|---|---|
 * | PP_EINVAL | -1 | invalid argument |
 * | PP_ENOMEM | -2 | out of memory |
 * | PP_ENOTASK | -3 | no task with that name is registered |
 * | PP_ETASK | -4 | the task reported an error |
 * | PP_EWORKERDIED | -5 | the worker process died during the call |
 * | PP_ETIMEDOUT | -6 | the call ran past its timeout |
 * | PP_ECANCELED | -7 | the call was cancelled |
 * | PP_ESPAWN | -8 | a worker process could not be started |
 * | PP_ENESTED | -9 | pool creation inside a worker was not allowed |
 * | PP_EPROTO | -10 | malformed message between parent and worker |
 * | PP_EIO | -11 | input/output error on a worker channel |
 * | PP_ECLOSED | -12 | the pool or channel is closed |
 * | PP_EBADARGS | -13 | argument buffer does not have the expected shape |
 * | PP_EDSO | -14 | the task library could not be loaded |
 * | PP_EAGAIN | -15 | the call has not finished yet |
 */
#define PP_ERRNO_MAP(XX)                                                       \
  XX(EINVAL, -1, "invalid argument")                                           \
  XX(ENOMEM, -2, "out of memory")                                              \
  XX(ENOTASK, -3, "no task with that name is registered")                      \
  XX(ETASK, -4, "the task reported an error")                                  \
  XX(EWORKERDIED, -5, "the worker process died during the call")              \
  XX(ETIMEDOUT, -6, "the call ran past its timeout")                           \
  XX(ECANCELED, -7, "the call was cancelled")                                  \
  XX(ESPAWN, -8, "a worker process could not be started")                     \
  XX(ENESTED, -9, "pool creation inside a worker was not allowed")            \
  XX(EPROTO, -10, "malformed message between parent and worker")              \
  XX(EIO, -11, "input/output error on a worker channel")                       \
  XX(ECLOSED, -12, "the pool or channel is closed")                            \
  XX(EBADARGS, -13, "argument buffer does not have the expected shape")        \
  XX(EDSO, -14, "the task library could not be loaded")                        \
  XX(EAGAIN, -15, "the call has not finished yet")

/** The statuses procpool returns: PP_OK (0), or one of the negative PP_E*
 * codes listed in PP_ERRNO_MAP. */
typedef enum {
  PP_OK = 0, /**< success */
#define PP__ERRNO_ENUM(name, value, text) PP_##name = (value),
  PP_ERRNO_MAP(PP__ERRNO_ENUM)
#undef PP__ERRNO_ENUM
  PP_ERRNO_MIN = -16 /**< below every status: every PP_E* code lies
                          between PP_ERRNO_MIN and 0 (exclusive); as a
                          status it is unknown ("PP_UNKNOWN") */
} pp_errno_t;

/** Returns a static English description of a PP_* status (0 is "success";
 * an unknown value gives "unknown error"). */
PP_EXTERN const char *pp_strerror(int status);
/** Returns the status' name, e.g. "PP_ETIMEDOUT" (static storage). */
PP_EXTERN const char *pp_err_name(int status);
/**
 * Returns the detailed message of the last failing procpool call made by the
 * calling thread, e.g. "pp_pool_submit: no task named 'sqaure'", or "" if
 * none failed yet.  The string is thread-local and valid until the next
 * failing procpool call in this thread: only a procpool call that fails
 * writes it (calls that succeed, and the pool's own threads, leave it
 * alone), so it always tells of the call whose status you hold.
 */
PP_EXTERN const char *pp_last_error(void);

/** Releases memory that procpool allocated for the caller (result data, packed
 * argument buffers, pp_shared_alloc() memory).  NULL is ignored. */
PP_EXTERN void pp_free(void *ptr);

/**
 * Allocates `len` bytes of shared memory, for large arguments: a worker maps
 * this memory instead of receiving a copy of it.  Pass it, or any part of
 * it, as an argument (pp_pool_submit, the map functions): arguments too
 * large for a pool's ring (a quarter of a MiB and more) then reach the
 * worker without a single copy; smaller ones are copied into the ring, which
 * is faster for them.  Large results come back the same way, in memory
 * that pp_free() releases.  The worker sees the memory itself, so it must
 * not change while a call that uses it runs.  A task that replies with
 * (part of) such an argument unchanged (pp_call_reply() with a pointer into
 * it) returns that very memory: the result is a view of the argument, not
 * a copy, and each of the two is given to pp_free() on its own (the memory
 * goes when both are).  A call holds the memory it was given until the
 * call has ended: a pp_free() while it runs releases the caller's pointer
 * only, and the call still reads (and may answer with a view of) its own
 * bytes, never those of a later allocation.  Its contents are unspecified
 * (it may be reused memory, like malloc's).  Returns the memory, or NULL
 * (len 0: PP_EINVAL; no memory: PP_ENOMEM, with pp_last_error()).
 */
PP_EXTERN void *pp_shared_alloc(size_t len);

/* ------------------------------------------------------------------------ */
/* Tasks (the worker side)                                                  */
/* ------------------------------------------------------------------------ */

/** A running call, handed to a task.  Only valid inside the task function. */
typedef struct pp_call_s pp_call_t;

/**
 * A task: called with the argument bytes of one call.  It reports its result
 * with pp_call_reply(), pp_call_reply_alloc() or pp_call_replyf() and returns
 * 0, or reports a failure with pp_call_fail() and returns its value.  Any
 * other non-zero return (say `return -5;`) becomes PP_ETASK with a message
 * that names the value.  If a pp_call_reply*() failed (bad format, out of
 * memory), the call reports that status (PP_EINVAL, PP_ENOMEM) and its
 * reason even when the task returns 0.  The
 * argument buffer is owned by procpool and valid until the task returns.
 * A task runs in a worker process (or, in inline mode, in the caller's
 * process), so it must not rely on the parent's memory.
 */
typedef int (*pp_task_fn)(pp_call_t *call, const void *arg, size_t arg_len);

/** One entry of a task table: a unique name and its function. */
typedef struct pp_task_s {
  const char *name; /**< the name calls use; unique in its table, not empty;
                         NULL only in PP_TASK_END */
  pp_task_fn fn;    /**< the function; NULL only in PP_TASK_END */
} pp_task_t;

/** A table entry named after the function itself. */
#define PP_TASK(fn) {#fn, fn}
/** The entry that ends every task table. */
#define PP_TASK_END {NULL, NULL}

/**
 * The worker guard; it must be the first statement of main():
 *
 *     int rc;
 *     if (pp_worker_main(argc, argv, tasks, &rc)) return rc;
 *
 * In the parent (no reserved --procpool-worker argument) it only records
 * `tasks` as the process' task table, used by every pool created without an
 * explicit table, and returns 0.  In a worker it serves calls from its pool
 * until the pool sends it away or the parent dies, stores the process exit
 * status in *rc and returns 1; main should return *rc at once.
 *
 * If a worker cannot start (a broken channel argument, an unloadable task
 * library) it prints the reason on stderr and returns 1 with *rc set to a
 * non-zero status, which the parent reports as PP_ESPAWN.
 *
 * On Windows the arguments are read from the wide command line
 * (GetCommandLineW) in UTF-8, not from `argv`, whose strings are in the
 * ANSI code page: a wmain() program passes argc 0 and argv NULL.
 *
 * With the MPI backend enabled (pp_mpi_enable() in include/procpool_mpi.h,
 * or PROCPOOL_BACKEND=mpi with a shared procpool_mpi), in a job launched by
 * `mpirun -n N` with N > 1, it returns 0 on rank 0 only; on every other rank
 * it serves rank 0's MPI pools, then returns 1 with *rc 0, so code after the
 * guard runs on rank 0 alone.
 *
 * Environment: PROCPOOL_WAIT_DEBUGGER=1 makes every worker print its pid on
 * stderr and wait (up to 5 minutes) for a debugger to attach before it takes
 * work.  The table must stay valid for the life of the process.
 */
PP_EXTERN int pp_worker_main(int argc, char **argv, const pp_task_t *tasks,
                             int *rc);

/**
 * Sets the call's result to a copy of `len` bytes at `data` (replacing any
 * earlier reply) and returns 0, or PP_ENOMEM.  PP_EINVAL if call is NULL or
 * data is NULL with len > 0.  A failure also fails the call with that status
 * (a later successful reply clears it).  A large reply that is part of a
 * large argument (the argument itself, or a slice of it) is not copied: the
 * caller gets a view of the argument's shared memory (see
 * pp_shared_alloc()).
 */
PP_EXTERN int pp_call_reply(pp_call_t *call, const void *data, size_t len);
/**
 * Returns a buffer of `len` bytes that becomes the call's result, for results
 * that are built in place (no copy).  Returns NULL if memory is short, in
 * which case the call fails with PP_ENOMEM.  The buffer is owned by procpool.
 */
PP_EXTERN void *pp_call_reply_alloc(pp_call_t *call, size_t len);
/** Sets the call's result to the tuple that pp_pack() would build from
 * `fmt` and the arguments; returns 0, PP_EINVAL (bad format, sizes that
 * overflow) or PP_ENOMEM.  A failure also fails the call with that status
 * and reason (a later successful reply clears it). */
PP_EXTERN int pp_call_replyf(pp_call_t *call, const char *fmt, ...);
/**
 * Marks the call as failed with a printf-style message and returns PP_ETASK,
 * so a task can end with `return pp_call_fail(call, "bad input %d", x);`.
 * The caller sees status PP_ETASK and this message.
 */
PP_EXTERN int pp_call_fail(pp_call_t *call, const char *fmt, ...)
    PP_PRINTF(2, 3);
/** Returns the id of the call (unique in its pool, as shown in log lines). */
PP_EXTERN uint64_t pp_call_id(const pp_call_t *call);
/**
 * Returns 1 if the parent asked the current call of this worker to stop
 * (pp_future_cancel, a map stopping at a failure, a cancelling destroy);
 * a long task should check it now and then and return early.  Returns 0
 * otherwise, and always 0 outside a worker.  Callable from any thread.
 */
PP_EXTERN int pp_call_cancelled(void);
/** Returns the number of this worker in its pool (0-based), or -1 when the
 * process is not a worker. */
PP_EXTERN int pp_worker_index(void);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

/** Where a line given to a pp_log_cb comes from. */
typedef enum {
  PP_LOG_STDOUT = 0, /**< a line a worker wrote to its standard output */
  PP_LOG_STDERR = 1, /**< a line a worker wrote to its standard error */
  PP_LOG_TASK = 2    /**< a message a task sent with pp_log() */
} pp_log_source_t;

/** The longest line of worker output delivered in one record; longer lines
 * arrive in pieces of this size (see pp_log_record_t.more). */
#define PP_LOG_LINE_MAX 65536

/** One whole line of worker output, as given to a pp_log_cb. */
typedef struct pp_log_record_s {
  int worker;              /**< worker number in its pool, 0-based (an
                                MPI pool numbers the workers of all its
                                ranks in rank order); -1 for a line of
                                the pool itself (the MPI backend's
                                fallback and lost-rank notices) */
  uint64_t call_id;        /**< call that was running, 0 if none */
  pp_log_source_t source;  /**< where the line came from */
  int level;               /**< pp_log() level; 0 for stdout/stderr lines */
  const char *line;        /**< the line without its newline,
                                NUL-terminated */
  size_t len;              /**< bytes in line: a task that writes binary
                                output may put NUL bytes in a line, so use
                                len, not strlen(line) */
  int more;                /**< 1 if the line was longer than
                                PP_LOG_LINE_MAX and goes on in the next
                                record of the same worker and source; 0 on
                                a line's last piece */
  int rank;                /**< the MPI rank the line came from: a
                                serving rank of an MPI pool (1, 2, ...);
                                0 for rank 0's own lines and in a local
                                pool */
} pp_log_record_t;

/**
 * Receives worker output, one whole line per call (or a piece of a line
 * longer than PP_LOG_LINE_MAX), never two at once for a pool (calls are
 * serialized), from one of the pool's threads.  The record is only valid
 * during the call.  It must not call back into the same pool.  Output a
 * worker wrote before it died is delivered; output that processes its task
 * started write after the worker has ended is not.
 */
typedef void (*pp_log_cb)(void *data, const pp_log_record_t *record);

/**
 * From inside a task (or any thread of a worker): sends one message to the
 * parent's log callback, tagged with the worker number and current call id.
 * Outside a worker it writes the line to stderr.  Embedded newlines split the
 * message into several records.  `level` is free for the application (the
 * default callback prints it).
 */
PP_EXTERN void pp_log(int level, const char *fmt, ...) PP_PRINTF(2, 3);

/** The default log callback: writes "[procpool w<N> c<ID> <src>] line\n" to
 * the parent's stderr with one write per line. */
PP_EXTERN void pp_log_stderr(void *data, const pp_log_record_t *record);

/* ------------------------------------------------------------------------ */
/* Pools                                                                    */
/* ------------------------------------------------------------------------ */

/** A pool of worker processes (opaque): made by pp_pool_create(), ended by
 * pp_pool_destroy(). */
typedef struct pp_pool_s pp_pool_t;

/** Pool flags. */
enum {
  /** Run every call in the calling thread, through the same serialization
   * path, instead of in workers: for debuggers and sanitizers.  Also turned
   * on by the environment variable PROCPOOL_INLINE=1. */
  PP_POOL_INLINE = 1u << 0,
  /** Allow pp_pool_create() inside a worker (a nested pool).  Without it a
   * worker's pool creation fails with PP_ENESTED, which stops fork bombs by
   * accident.  Nesting is limited to 8 levels. */
  PP_POOL_NESTED = 1u << 1,
  /** Workers write straight to the parent's stdout and stderr instead of
   * through the log callback, as a program run in a terminal would: lines
   * from several workers may mix mid-line and carry no worker or call tag.
   * pp_log() still reaches the log callback.  (Not a speed switch: tagging
   * costs a call nothing unless it prints.) */
  PP_POOL_INHERIT_OUTPUT = 1u << 2
};

/** The most workers a pool may have. */
#define PP_POOL_MAX_WORKERS 4096

/** Options for pp_pool_create(); all-zero (or NULL) means defaults.
 * Timeouts are in milliseconds and measured on a monotonic clock, so a step
 * of the system clock does not affect them; one too long to ever expire
 * (up to INT64_MAX) means no limit. */
typedef struct pp_pool_options_s {
  /** Number of worker processes, at most PP_POOL_MAX_WORKERS; 0 = the
   * number of CPUs this process may run on. */
  int workers;
  /** PP_POOL_* flags. */
  unsigned flags;
  /** The task table; NULL = the table given to pp_worker_main(). */
  const pp_task_t *tasks;
  /** Default timeout of each call in milliseconds; 0 = none.  A call past it
   * ends PP_ETIMEDOUT and its worker is killed and replaced. */
  int64_t call_timeout_ms;
  /** Calls a worker runs before it is replaced by a fresh one; 0 = no limit
   * (Python's maxtasksperchild). */
  uint64_t max_calls_per_worker;
  /** How long a cancelled running call may take to stop by itself before its
   * worker is killed; 0 = 1000 ms. */
  int64_t cancel_grace_ms;
  /** Name of a task run once in every worker when it starts, with
   * `init_arg`; a failure makes pp_pool_create() fail with its message. */
  const char *initializer;
  /** The initializer's argument bytes, copied by pp_pool_create(); NULL
   * only with init_arg_len 0. */
  const void *init_arg;
  /** The length of init_arg. */
  size_t init_arg_len;
  /** Receives worker output lines; NULL = pp_log_stderr. */
  pp_log_cb log_cb;
  /** Passed to log_cb as its `data` (ignored when log_cb is NULL). */
  void *log_data;
  /** Executable to start as worker; NULL = this program (self re-exec), or
   * the worker host when `task_library` is set. */
  const char *worker_exe;
  /** Path of a shared library whose tasks the workers run (the worker-host
   * mode, for programs that cannot own main).  The library exports its table
   * with PP_TASK_LIBRARY(); the parent loads it too, to check task names.
   * A relative path is made absolute against the current directory.  The
   * default worker host is the procpool-worker installed with procpool,
   * found next to the library at run time (PROCPOOL_WORKER_EXE or
   * worker_exe override it). */
  const char *task_library;
  /** How long a starting worker may take to connect and say hello; 0 =
   * 30000 ms.  A worker that takes longer is killed and its start fails
   * with PP_ESPAWN ("did not say hello within N ms", whether it was still
   * running or how it ended, and its last line on stderr).  The
   * initializer is not bounded by it. */
  int64_t start_timeout_ms;
  /** Where the calls run: a pp_backend_t; 0 (PP_BACKEND_DEFAULT) = as the
   * environment variable PROCPOOL_BACKEND says ("mpi" or "local"), local
   * when it is not set.  See pp_backend_t. */
  int backend;
} pp_pool_options_t;

/**
 * Where a pool runs its calls (pp_pool_options_t.backend).
 *
 * PP_BACKEND_MPI runs them on the other ranks of an MPI job started with
 * `mpirun -n N ./app`: every rank but 0 serves rank 0's pool from inside
 * pp_worker_main() (the worker guard), each in a local pool of its own, so
 * a call that crashes, times out or is cancelled fails alone, as in a
 * local pool.  It needs the component procpool_mpi (include/procpool_mpi.h:
 * pp_mpi_enable()).  Without it, or when the program was not launched by
 * mpirun (an MPI world of one process), pp_pool_create() makes a local
 * pool instead and says why in one line to the pool's log callback
 * (worker -1, source PP_LOG_STDERR).
 * Inline mode (PP_POOL_INLINE, PROCPOOL_INLINE) wins over the backend, and
 * pools created inside a worker are always local.  An MPI pool's
 * pp_pool_workers() counts the workers of all its ranks; it has no worker
 * processes of its own, so pp_pool_worker_pids() finds none and the
 * worker counters of pp_pool_stats() stay 0 (the call counters count).
 */
typedef enum {
  /** PROCPOOL_BACKEND decides; local when it is not set. */
  PP_BACKEND_DEFAULT = 0,
  /** Worker processes of this process (whatever PROCPOOL_BACKEND says). */
  PP_BACKEND_LOCAL = 1,
  /** The other ranks of the MPI job (see above). */
  PP_BACKEND_MPI = 2
} pp_backend_t;

/**
 * Creates a pool and starts its workers; returns when every worker is ready
 * (and its initializer has run), so start-up failures are reported here.
 *
 * Returns 0 and sets *pool, or: PP_EINVAL (pool NULL, workers negative or
 * above PP_POOL_MAX_WORKERS, negative timeouts, no task table, unknown
 * flags), PP_ENOTASK (unknown initializer), PP_ENESTED (called inside a
 * worker without PP_POOL_NESTED, nested too deep, or in a process that was
 * started as a worker but whose main() lacks the worker guard),
 * PP_ESPAWN (a worker could not be started: the message has the OS reason,
 * or the worker's last line on stderr; also when this process has run
 * out of file descriptors, EMFILE or ENFILE, or the pool needs more than
 * its descriptor limit), PP_ETASK (the initializer failed: the message is
 * the task's), PP_EDSO (task_library could not be loaded), PP_ENOMEM (out
 * of memory, or of what the system hands out like it: threads or
 * processes (EAGAIN), epoll watches (ENOSPC); the message names the call
 * that failed), PP_EIO (any other failure of a system call, named in the
 * message).  None of these is kept: a later pp_pool_create() tries
 * everything again.
 *
 * Pools may be created and destroyed from any number of threads at once.
 * A closed stdin, stdout or stderr (descriptor 0, 1 or 2) is reopened on the
 * null device first, so that no worker channel can take its number.
 *
 * A pool serves only the process that created it.  In a child forked
 * without exec (POSIX fork()), which inherits a copy of it but none of its
 * threads, every function on the pool, its futures and its maps returns
 * PP_ECLOSED at once with a sentence that says so, and touches nothing:
 * pp_pool_destroy() too (the parent's workers and calls go on), and
 * pp_future_free() and pp_map_free() do nothing there.
 *
 * Workers are started from the executable as it was when the pool was
 * created: on Linux the file is held open, so an upgrade that replaces or
 * deletes it does not change what later workers run (and the running
 * program may even have been deleted before the pool is created).
 * Elsewhere, a worker whose build differs from the parent's (or, with
 * worker_exe, from the pool's first worker) is refused.  When no worker of
 * the pool can be started at all, calls fail at once with PP_ESPAWN; while
 * some can, calls wait for them.
 */
PP_EXTERN int pp_pool_create(pp_pool_t **pool, const pp_pool_options_t *options);

/** How pp_pool_destroy() treats calls that are not finished. */
typedef enum {
  /** Wait for every pending and running call to finish. */
  PP_DESTROY_WAIT = 0,
  /** Pending calls end PP_ECANCELED without running; running calls are
   * cancelled (message, grace period, kill). */
  PP_DESTROY_CANCEL = 1
} pp_destroy_mode_t;

/**
 * Stops the workers, waits for them to exit (none is left behind) and frees
 * the pool.  Futures the caller still holds stay valid and finished.  The
 * completion callbacks (pp_future_cb) of the pool's calls all run before it
 * returns, and none runs after; new calls they submit fail with PP_ECLOSED.
 * Returns 0, or PP_EINVAL for an unknown mode, when called from a
 * completion callback of this very pool, or from a callback of another
 * pool whose destroy this pool's callback thread is waiting in (pools
 * whose callbacks destroy each other, see pp_future_cb); the pool is then
 * left untouched.  PP_ECLOSED in a child forked from the pool's process:
 * it touches nothing there, and the parent's workers go on.
 * NULL is ignored.  Must not be called from a log callback or a map callback.
 */
PP_EXTERN int pp_pool_destroy(pp_pool_t *pool, pp_destroy_mode_t mode);

/** Returns the number of workers of the pool (1 in inline mode), or
 * PP_EINVAL for NULL. */
PP_EXTERN int pp_pool_workers(const pp_pool_t *pool);

/** Statistics for tests and dashboards. */
typedef struct pp_pool_stats_s {
  uint64_t calls_submitted;   /**< calls queued (a map counts each call) */
  uint64_t calls_completed;   /**< calls finished, with any status */
  uint64_t workers_started;   /**< worker processes spawned, including
                                   replacements */
  uint64_t workers_died;      /**< workers that crashed, exited or were
                                   killed (timeout, cancel) during a call,
                                   failing it */
} pp_pool_stats_t;

/** Fills *stats; returns 0 or PP_EINVAL. */
PP_EXTERN int pp_pool_stats(pp_pool_t *pool, pp_pool_stats_t *stats);

/**
 * Fills `pids` with the process ids of the pool's live workers (at most `n`)
 * and returns how many there are, or PP_EINVAL.  For tests and monitoring.
 */
PP_EXTERN int pp_pool_worker_pids(pp_pool_t *pool, int64_t *pids, size_t n);

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/** A byte buffer: one call's argument. */
typedef struct pp_buf_s {
  const void *data; /**< the bytes (borrowed: not owned by the buffer) */
  size_t len;       /**< how many */
} pp_buf_t;

/** The outcome of one call. */
typedef struct pp_result_s {
  /** 0, or the call's PP_E* status (see the failure contract in README). */
  int status;
  /** Result bytes (status 0), owned by the result: pp_results_free(). */
  void *data;
  /** The number of result bytes. */
  size_t len;
  /** NULL on success; otherwise a human-readable reason: the task's message,
   * the signal or exit code of a dead worker, the timeout, ...  Also NULL
   * when this process had no memory left even for the message (the status
   * still says what happened). */
  char *message;
  /** For PP_EWORKERDIED: the worker's exit code, or -1 if it was killed. */
  int exit_code;
  /** For PP_EWORKERDIED: the signal that killed it (POSIX), or the exception
   * code (Windows, e.g. 0xC0000005 as int), or 0. */
  int term_signal;
} pp_result_t;

/** Frees data and message of `n` results (not the array itself) and zeroes
 * them.  NULL is ignored. */
PP_EXTERN void pp_results_free(pp_result_t *results, size_t n);

/* ------------------------------------------------------------------------ */
/* Futures: one call at a time                                              */
/* ------------------------------------------------------------------------ */

/** One submitted call (opaque): made by pp_pool_submit(), released with
 * pp_future_free().  It stays valid after its pool is destroyed. */
typedef struct pp_future_s pp_future_t;

/**
 * A completion callback (Future.add_done_callback, apply_async's callback
 * and error_callback in one): called once when the call of `future` has
 * finished, with the `data` given when it was added.  pp_future_status()
 * tells success (0) from failure, and pp_future_take() gets the outcome.
 *
 * **Which thread.**  Callbacks of a pool run on that pool's *callback
 * thread*, started by the first callback added to an unfinished call: not
 * on the pool's I/O thread, not in the program's threads that submit or
 * wait, and never under one of the pool's locks.  They run one at a time,
 * in the order their calls finished, and the callbacks of one call in the
 * order they were added.  This holds in inline mode too (PP_POOL_INLINE: the
 * call runs in the caller, its callbacks still on the callback thread).
 * A callback added to a call that has already finished is the exception:
 * pp_future_on_done() runs it at once, in the calling thread (as Python
 * does), possibly before callbacks of the same call queued earlier.
 *
 * **What it may do.**  Any procpool function but one.  On `future` it may
 * call pp_future_status(), pp_future_take() and pp_future_wait(), and
 * pp_future_free() to release the program's own reference, unless the
 * program has released it already (the callback thread holds a reference
 * of its own while the callback runs, so the future stays valid until the
 * callback returns, even if the program freed it before).  It
 * may submit new calls (chained work; during pp_pool_destroy() they fail
 * with PP_ECLOSED), wait on other futures and use other pools, including
 * destroying another pool (which waits for that pool's callbacks).  It
 * must not destroy the pool `future` belongs to: pp_pool_destroy() refuses
 * that with PP_EINVAL.  Nor can callbacks of pools destroy each other in a
 * ring (pool A's callback destroys B while B's destroys A): each destroy
 * would wait for the other's callback for ever, so the destroy that would
 * close the ring is refused with PP_EINVAL (that pool is left untouched,
 * for the program to destroy later) and the others go through.  A
 * callback that blocks holds up the pool's later callbacks, not its
 * calls.
 *
 * **At destroy.**  pp_pool_destroy() (either mode) lets every call finish
 * or end cancelled, runs every callback that is due, then stops the
 * callback thread: once it returns, no callback of the pool runs any more,
 * and `data` may be freed.
 */
typedef void (*pp_future_cb)(void *data, pp_future_t *future);

/** Options for one submitted call; zeroed = defaults. */
typedef struct pp_call_options_s {
  /** Timeout in ms (monotonic; INT64_MAX = none); 0 = the pool's
   * call_timeout_ms; negative = none. */
  int64_t timeout_ms;
  /** Non-zero: do not copy the argument; the caller keeps `arg` valid and
   * unchanged until the future is finished. */
  int borrow_arg;
  /** A completion callback added before the call can finish (apply_async's
   * callback and error_callback: the status tells them apart), as
   * pp_future_on_done() would add it; NULL = none.  See pp_future_cb. */
  pp_future_cb on_done;
  /** The `data` passed to on_done. */
  void *on_done_data;
} pp_call_options_t;

/**
 * Queues one call of task `task` with the argument bytes and returns its
 * future.  The argument is copied unless options->borrow_arg is set.
 * With options->on_done, that callback is added first (see pp_future_cb).
 * Returns 0, or PP_EINVAL (NULL pool/task/future, arg NULL with len > 0),
 * PP_ENOTASK (unknown name: nothing is queued), PP_ECLOSED (pool is being
 * destroyed), PP_ENOMEM, or the reason the callback thread could not
 * start; on failure nothing is queued and no callback runs.  The future
 * must be released with pp_future_free().
 */
PP_EXTERN int pp_pool_submit(pp_pool_t *pool, const char *task, const void *arg,
                             size_t len, const pp_call_options_t *options,
                             pp_future_t **future);

/**
 * Waits until the call has finished, at most `timeout_ms` on a monotonic
 * clock (negative or INT64_MAX = no limit).  Returns 0 when finished (whatever its status), PP_ETIMEDOUT if it
 * has not finished in time (the call goes on), PP_EINVAL for NULL.
 */
PP_EXTERN int pp_future_wait(pp_future_t *future, int64_t timeout_ms);

/** Returns the call's status if it finished (0 or PP_E*), PP_EAGAIN if it
 * has not, PP_EINVAL for NULL. */
PP_EXTERN int pp_future_status(pp_future_t *future);

/**
 * Adds a completion callback to the call: `cb(data, future)` runs once when
 * the call finishes, on the pool's callback thread, after the callbacks
 * added before it (see pp_future_cb for the thread, the order and what a
 * callback may do).  If the call has already finished, `cb` runs at once in
 * the calling thread, before this function returns.  Several callbacks per
 * future are allowed.  `data` stays the caller's; it must stay valid until
 * the callback has run (at the latest, until pp_pool_destroy() returns).
 * Returns 0, PP_EINVAL (future or cb NULL), PP_ENOMEM, or the reason the
 * callback thread could not be started.
 */
PP_EXTERN int pp_future_on_done(pp_future_t *future, pp_future_cb cb,
                                void *data);

/** What pp_future_wait_many() waits for (concurrent.futures.wait). */
typedef enum {
  /** Any one of the futures to finish. */
  PP_WAIT_FIRST_COMPLETED = 0,
  /** Any one to finish with a status but 0, or all to finish. */
  PP_WAIT_FIRST_FAILED = 1,
  /** All of them to finish. */
  PP_WAIT_ALL_COMPLETED = 2
} pp_wait_mode_t;

/**
 * Waits for several calls at once, at most `timeout_ms` on a monotonic
 * clock (negative or INT64_MAX = no limit).  NULL entries of
 * `futures[0..n)` are skipped.  Each wait looks at all n futures, so it
 * suits a few of them; to take many futures as they finish
 * (as_completed), use a completion queue (pp_cq_t), which costs the same
 * for each finished future however many there are.
 *
 * On return 0, *index (if not NULL) is the position of a finished future
 * the wait was for: the lowest finished one (FIRST_COMPLETED), the lowest
 * failed one (FIRST_FAILED, ALL_COMPLETED), or `n` when all finished and
 * none failed.  Returns 0, PP_ETIMEDOUT (the calls go on; *index is `n`),
 * or PP_EINVAL: `futures` NULL, no future in it, or an unknown mode.  The
 * futures may belong to different pools (as_completed over any futures);
 * waiting on one pool's is the cheaper case.  The futures stay the
 * caller's.
 */
PP_EXTERN int pp_future_wait_many(pp_future_t *const *futures, size_t n,
                                  pp_wait_mode_t mode, int64_t timeout_ms,
                                  size_t *index);

/**
 * A completion queue (opaque): futures go in with pp_cq_add() and come out
 * with pp_cq_next() as their calls finish, in the order they finished,
 * each once (Python's concurrent.futures.as_completed).  It costs O(1)
 * per future, however many are in it, and its futures may belong to any
 * pools:
 *
 *     pp_cq_t *cq;
 *     pp_cq_create(&cq);
 *     for (i = 0; i < n; i++) {
 *       pp_pool_submit(pool, "task", args[i].data, args[i].len, NULL, &f);
 *       pp_cq_add(cq, f);
 *     }
 *     while ((rc = pp_cq_next(cq, -1, &f)) == 1) {
 *       pp_future_take(f, &r);  ...use r...;  pp_results_free(&r, 1);
 *       pp_future_free(f);
 *     }
 *     pp_cq_free(cq);
 *
 * Made by pp_cq_create(), released with pp_cq_free().  Any number of
 * threads may add and take at once; pp_cq_free() must not run while
 * another thread uses the queue.
 */
typedef struct pp_cq_s pp_cq_t;

/** Creates an empty completion queue in *cq.  Returns 0, PP_EINVAL (cq
 * NULL), PP_ENOMEM. */
PP_EXTERN int pp_cq_create(pp_cq_t **cq);

/**
 * Adds a future, of any pool, to the queue: once its call has finished
 * (at once if it has already), pp_cq_next() hands it out.  The future
 * stays the caller's: it may be looked at, waited for or cancelled
 * meanwhile (a cancelled call comes out with PP_ECANCELED), and freed:
 * pp_future_free() takes it out of the queue.  A future is in one queue
 * at a time, until pp_cq_next() has handed it out (then it may be added
 * again).  Returns 0, or PP_EINVAL (NULL, or the future is in a queue
 * already), PP_ECLOSED (a child forked from the queue's or the future's
 * process).
 */
PP_EXTERN int pp_cq_add(pp_cq_t *cq, pp_future_t *future);

/**
 * Takes the future whose call finished first among those in the queue,
 * waiting at most `timeout_ms` on a monotonic clock for one (negative or
 * INT64_MAX = no limit; 0 = only looks).  Returns 1 with the future in
 * *future (it has left the queue and is finished: pp_future_take() gets
 * its outcome; it is still the caller's to free); 0, with *future NULL,
 * when the queue holds no future (every future added has been handed
 * out or freed); PP_ETIMEDOUT if none finished in time (they stay in the
 * queue); PP_EINVAL for NULL; PP_ECLOSED in a child forked from the
 * queue's process.  Several threads may take from one queue; each future
 * goes to one of them.
 */
PP_EXTERN int pp_cq_next(pp_cq_t *cq, int64_t timeout_ms, pp_future_t **future);

/** Releases the queue.  The futures still in it leave it and stay the
 * caller's (valid, and running on; free them with pp_future_free()).
 * NULL is ignored; in a child forked from the queue's process it does
 * nothing. */
PP_EXTERN void pp_cq_free(pp_cq_t *cq);

/** Where a call is, as pp_future_state() tells. */
typedef enum {
  /** Waiting: in the pool's queue, or handed to a worker that has not
   * started it yet (it may still be cancelled without running at all). */
  PP_FUTURE_QUEUED = 0,
  /** Started by a worker and not finished yet (or finished there, with
   * its outcome on the way). */
  PP_FUTURE_RUNNING = 1,
  /** Finished: pp_future_status() gives its status. */
  PP_FUTURE_DONE = 2
} pp_future_state_t;

/**
 * Tells a queued call from a running one (concurrent.futures' running()):
 * returns PP_FUTURE_QUEUED, PP_FUTURE_RUNNING or PP_FUTURE_DONE, or
 * PP_EINVAL for NULL.  The answer is a snapshot: a queued call may start
 * right after.  In inline mode a call runs inside pp_pool_submit(), so it
 * is always done.  It may wait briefly for the pool's I/O thread to end a
 * round (it reads the worker's side of the call).
 */
PP_EXTERN int pp_future_state(pp_future_t *future);

/**
 * Moves the finished call's outcome into *result (the caller then owns its
 * data and message: pp_results_free()).  A second take gets the status with
 * no data.  Returns 0, PP_EAGAIN if the call has not finished, PP_EINVAL.
 */
PP_EXTERN int pp_future_take(pp_future_t *future, pp_result_t *result);

/**
 * Asks the call to stop: a pending call is removed and never runs; for a
 * running call a word in the memory it shares with its worker is set
 * (pp_call_cancelled() turns 1 there), then after cancel_grace_ms its
 * worker is killed.  Either way it finishes
 * with PP_ECANCELED (unless it finished first).  Returns 0 or PP_EINVAL.
 */
PP_EXTERN int pp_future_cancel(pp_future_t *future);

/** Releases the future.  A call not yet finished is cancelled first, and
 * a future in a completion queue leaves it (pp_cq_next() never hands it
 * out).  NULL is ignored. */
PP_EXTERN void pp_future_free(pp_future_t *future);

/* ------------------------------------------------------------------------ */
/* map and starmap: many calls, ordered                                     */
/* ------------------------------------------------------------------------ */

/** Map flags. */
enum {
  /** Stop at the first failing call: pending calls end PP_ECANCELED without
   * running, running ones are cancelled.  The map then returns the status
   * of the failure that stopped it, even where a call it cancelled comes
   * earlier in input order.  Without it every call runs and reports its
   * own status. */
  PP_MAP_STOP_ON_ERROR = 1u << 0,
  /** Show a progress bar on stderr while the map runs: pp_progress_bar()
   * with a zeroed pp_progress_bar_t, unless `progress` is set.  The
   * environment variable PROCPOOL_PROGRESS=0 silences it, so a script can
   * quiet a program without rebuilding it. */
  PP_MAP_PROGRESS_BAR = 1u << 1,
  /** pp_pool_imap() only: hand results over as they complete, not in
   * input order (Python's imap_unordered). */
  PP_MAP_UNORDERED = 1u << 2
};

/** How far a map has come, as given to a pp_progress_cb. */
typedef struct pp_progress_s {
  /** Calls finished, successfully or not. */
  size_t done;
  /** Of those, the calls that failed (any status but 0). */
  size_t failed;
  /** Calls in the map; 0 while a streaming map (pp_pool_imap()) has not
   * reached the end of its input, since nobody knows the total yet. */
  size_t total;
  /** Time since the map started, in ms. */
  int64_t elapsed_ms;
  /** 1 in the last report, made once when the map has ended (every call
   * finished); 0 before. */
  int final;
} pp_progress_t;

/**
 * Receives a map's progress, in the thread that called the map (for an
 * async map: the thread waiting in pp_map_wait()), while no lock of the
 * pool is held: at most once per `progress_interval_ms`, and once more
 * with `final` set when the map ends.  It may call any procpool function
 * except a blocking wait on the same map (nor pp_map_free() of it).
 * Returning non-zero
 * stops the map like PP_MAP_STOP_ON_ERROR (the calls not yet run end
 * PP_ECANCELED; every result already computed is kept); the final report
 * is still made.
 */
typedef int (*pp_progress_cb)(void *data, const pp_progress_t *progress);

/** How pp_progress_bar() shows progress. */
typedef enum {
  /** A bar redrawn in place on a terminal, plain lines otherwise. */
  PP_PROGRESS_AUTO = 0,
  /** Always the redrawn bar. */
  PP_PROGRESS_BAR = 1,
  /** Always plain lines, one per `line_interval_ms` and a last one. */
  PP_PROGRESS_LINES = 2,
  /** Nothing. */
  PP_PROGRESS_QUIET = 3
} pp_progress_mode_t;

/** State of a pp_progress_bar(); zeroed = stderr, PP_PROGRESS_AUTO.  One
 * per map that shows it. */
typedef struct pp_progress_bar_s {
  /** Where it draws (a FILE *); NULL = stderr. */
  void *out;
  /** How it draws. */
  pp_progress_mode_t mode;
  /** Plain lines: one at most this often; 0 = every 10 s. */
  int64_t line_interval_ms;
  /** Private: when the last plain line went out. */
  int64_t last_line_ms;
  /** Private: 1 while a bar is on the screen, not ended by a newline. */
  int drawn;
} pp_progress_bar_t;

/**
 * A ready pp_progress_cb: counts, percent, rate, estimated time left and
 * failures, e.g. "[#######.............]  35%  350000/1000000  1.2M/s
 * ETA 0:01  2 failed".  On a terminal the line is redrawn in place (and
 * ended with a newline by the final report); elsewhere (a file, a pipe, a
 * CI log) it prints a plain line every `line_interval_ms` and at the end.
 * `bar` is a pp_progress_bar_t, or NULL for one on stderr that only draws
 * the final line.  Always returns 0 (it never stops the map).  Write
 * errors are ignored: progress is not worth failing a map for.
 */
PP_EXTERN int pp_progress_bar(void *bar, const pp_progress_t *progress);

/** Options for the map family; zeroed = defaults. */
typedef struct pp_map_options_s {
  /** PP_MAP_* flags. */
  unsigned flags;
  /** Per-call timeout in ms; 0 = the pool's; negative = none. */
  int64_t timeout_ms;
  /** Calls sent to a worker at once (pipelined; each still reports its own
   * status, and a crash fails only the call that was running).  0 = chosen
   * from the number of calls and workers, as Python's map does.  A worker
   * is also handed one call more, so that it never waits for the parent
   * between two (concurrent.futures does the same); a call that waits
   * behind one running for over a millisecond while another worker has
   * nothing to do is taken back and runs there instead, once.  So 1 suits
   * long or uneven calls. */
  size_t chunksize;
  /** Called with the map's progress (see pp_progress_cb); NULL = none. */
  pp_progress_cb progress;
  /** Passed to `progress` as is. */
  void *progress_data;
  /** The least time between two progress reports; 0 = 200 ms. */
  int64_t progress_interval_ms;
  /** pp_pool_imap() only: the most arguments held at once, read from the
   * producer and not yet handed over as results (the bound on its
   * memory); 0 = 256 per worker, at least 4096. */
  size_t max_in_flight;
} pp_map_options_t;

/**
 * Runs `task` once per argument in `args[0..n)`, in parallel over the pool,
 * and waits for all of them.  results[i] gets the outcome of args[i]; the
 * caller frees them with pp_results_free(results, n).  The arguments are
 * borrowed (not copied) and must stay valid during the call.
 *
 * Returns 0 if every call succeeded; otherwise the status of the first
 * failing call in input order (each results[i].status tells its own), or
 * PP_EINVAL / PP_ENOTASK / PP_ECLOSED before anything ran (results are then
 * zeroed).  A worker that dies fails only its own call.
 */
PP_EXTERN int pp_pool_map(pp_pool_t *pool, const char *task,
                          const pp_buf_t *args, size_t n, pp_result_t *results,
                          const pp_map_options_t *options);

/**
 * Like pp_pool_map(), for arguments that are tuples packed with pp_pack():
 * the C form of Python's pool.starmap(f, params).  Every argument is checked
 * to be a well-formed tuple first; a malformed one gives PP_EBADARGS and
 * nothing runs.
 */
PP_EXTERN int pp_pool_starmap(pp_pool_t *pool, const char *task,
                              const pp_buf_t *tuples, size_t n,
                              pp_result_t *results,
                              const pp_map_options_t *options);

/**
 * Receives each result of pp_pool_map_unordered() as soon as it is ready,
 * in the calling thread.  `index` is the argument's position.  The callback
 * owns `result` (free its data and message with pp_results_free(result, 1)
 * or keep them).  Returning non-zero stops the map like
 * PP_MAP_STOP_ON_ERROR; the remaining results are still delivered.
 */
typedef int (*pp_result_cb)(void *data, size_t index, pp_result_t *result);

/**
 * Python's imap_unordered: runs `task` over `args` and hands every result
 * to `cb` in the order they complete.  Returns like pp_pool_map().
 */
PP_EXTERN int pp_pool_map_unordered(pp_pool_t *pool, const char *task,
                                    const pp_buf_t *args, size_t n,
                                    pp_result_cb cb, void *cb_data,
                                    const pp_map_options_t *options);

/** What a pp_producer_cb fills in for the next argument of a streaming
 * map. */
typedef struct pp_next_arg_s {
  /** In: the argument's position in the map (0, 1, 2, ...). */
  size_t index;
  /** Out: the argument.  Its bytes are copied before the producer is
   * called again, so the producer may reuse one buffer. */
  pp_buf_t arg;
  /** Out, on failure: why, as a sentence (NUL-terminated; longer text is
   * cut).  The map's pp_last_error() then reads "pp_pool_imap: the
   * producer failed at argument <index>: <message>". */
  char message[256];
} pp_next_arg_t;

/**
 * Gives the next argument of pp_pool_imap(), in the thread that called the
 * map, while no lock of the pool is held: returns 1 with next->arg set, 0
 * when there are no more arguments, or a negative PP_E* status when it
 * fails (with next->message set): the map then reads no more, lets every
 * call already read finish and hands over its result, and returns that
 * status.  It may call any procpool function but a blocking wait on the
 * same map.
 */
typedef int (*pp_producer_cb)(void *data, pp_next_arg_t *next);

/**
 * Python's imap with bounded memory: runs `task` over arguments read one
 * at a time from `producer`, while at most options->max_in_flight
 * arguments are held (read and not yet handed over as a result): when
 * that many are out, the producer is not called until results have been
 * handed over (backpressure).  So a map over a stream of any length, or
 * over arguments made on the fly, needs memory for max_in_flight
 * arguments and results only.  Each argument is copied.
 *
 * Every result goes to `cb` in the calling thread (the callback owns it,
 * as with pp_pool_map_unordered()), in input order, or as calls complete
 * with PP_MAP_UNORDERED.  Input order holds results that finished early
 * until the ones before them are handed over, within the same bound.
 * `cb` returning non-zero, a progress callback returning non-zero, or
 * PP_MAP_STOP_ON_ERROR and a failed call stop the map: the producer is
 * not called again, calls not run end PP_ECANCELED, and every result is
 * still handed over.  Progress reports have `total` 0 until the producer
 * has given its last argument.
 *
 * Returns 0 when every call succeeded; the producer's status if it
 * failed (every call read before it still ran and was handed over);
 * otherwise the status of the first failing call in input order.  Before
 * anything runs: PP_EINVAL (NULL pool, task, producer or cb; unknown
 * flags), PP_ENOTASK, PP_ECLOSED, PP_ENOMEM.  PP_ECLOSED also when the
 * pool is destroyed by another thread while the map reads its input (the
 * calls read so far are handed over).  In inline mode each call runs as
 * soon as it is read.
 */
PP_EXTERN int pp_pool_imap(pp_pool_t *pool, const char *task,
                           pp_producer_cb producer, void *producer_data,
                           pp_result_cb cb, void *cb_data,
                           const pp_map_options_t *options);

/* ------------------------------------------------------------------------ */
/* async maps: a map that does not block (Python's map_async)               */
/* ------------------------------------------------------------------------ */

/** An ordered map that runs while the caller does something else, from
 * pp_pool_map_async() or pp_pool_starmap_async().  Released with
 * pp_map_free(); it stays valid after its pool is destroyed, like a
 * future.  One thread at a time should use it; pp_map_free() must not run
 * while another thread is in a pp_map_* call on the same map. */
typedef struct pp_map_s pp_map_t;

/**
 * Python's map_async: queues `task` over `args[0..n)` like pp_pool_map()
 * and returns at once with the map in *map; pp_map_wait() waits for it.
 *
 * `args` and the buffers they point to are borrowed, and the pool writes
 * results[i] (the outcome of args[i], zeroed first) from its own thread;
 * both must stay valid, and `results` untouched, until the map has ended:
 * until pp_map_wait() returned anything but PP_ETIMEDOUT, pp_map_status()
 * anything but PP_EAGAIN, or pp_map_free() returned.  The results are
 * then the caller's (pp_results_free(results, n)); pp_map_free() does not
 * free them.
 *
 * The options work as in pp_pool_map(), but progress (`progress`,
 * PP_MAP_PROGRESS_BAR) is reported only while a thread waits in
 * pp_map_wait(), from that thread, plus the final report once, from the
 * first pp_map_wait() that sees the map ended; a map that nobody waits for
 * reports nothing.  In inline mode (PP_POOL_INLINE) the calls run in the
 * calling thread, so this runs the whole map (with its progress reports)
 * before it returns.
 *
 * Returns 0, or PP_EINVAL (NULL pool, task or map, NULL results or args
 * with n > 0, an argument with NULL data, unknown flags), PP_ENOTASK,
 * PP_ECLOSED (the pool is being destroyed), PP_ENOMEM; then nothing was
 * queued and *map is NULL.  The map holds one small allocation; the calls
 * themselves allocate nothing more than pp_pool_map()'s.
 */
PP_EXTERN int pp_pool_map_async(pp_pool_t *pool, const char *task,
                                const pp_buf_t *args, size_t n,
                                pp_result_t *results,
                                const pp_map_options_t *options,
                                pp_map_t **map);

/**
 * Python's starmap_async: pp_pool_map_async() for arguments that are
 * tuples packed with pp_pack().  Every argument is checked first; a
 * malformed one gives PP_EBADARGS, nothing runs and *map is NULL.
 */
PP_EXTERN int pp_pool_starmap_async(pp_pool_t *pool, const char *task,
                                    const pp_buf_t *tuples, size_t n,
                                    pp_result_t *results,
                                    const pp_map_options_t *options,
                                    pp_map_t **map);

/**
 * Waits for every call of the map, at most `timeout_ms` (negative: no
 * limit; 0: only looks), making its progress reports meanwhile (see
 * pp_pool_map_async()).  Returns, once the map has ended, what
 * pp_pool_map() would: 0 if every call succeeded, else the status of the
 * first failing call in input order; PP_ETIMEDOUT if calls are still left
 * at the time limit (the map goes on; wait again, or cancel it); PP_EINVAL
 * for a NULL map.  A map whose first failing call timed out also returns
 * PP_ETIMEDOUT: pp_map_status() tells the two apart (PP_EAGAIN while calls
 * are left).  It may be called again after the map ended, and returns
 * the same status.  A progress callback must not call it on its own map.
 */
PP_EXTERN int pp_map_wait(pp_map_t *map, int64_t timeout_ms);

/**
 * Looks without waiting: PP_EAGAIN while calls of the map are left, else
 * the map's status as pp_map_wait() returns it (no progress report is
 * made).  PP_EINVAL for a NULL map.
 */
PP_EXTERN int pp_map_status(pp_map_t *map);

/**
 * Reads how far the map has come without waiting: *progress gets the
 * counts a progress callback would, `final` 1 when every call has
 * finished.  Returns 0, or PP_EINVAL for a NULL argument.
 */
PP_EXTERN int pp_map_progress(pp_map_t *map, pp_progress_t *progress);

/**
 * Stops the map like PP_MAP_STOP_ON_ERROR: calls not yet run end
 * PP_ECANCELED without running, running ones are cancelled as by
 * pp_future_cancel() (they end within the pool's cancel_grace_ms), and
 * every result already computed is kept.  Wait with pp_map_wait() before
 * using the results.  Does nothing to a map that has ended.  Returns 0, or
 * PP_EINVAL for a NULL map.
 */
PP_EXTERN int pp_map_cancel(pp_map_t *map);

/**
 * Releases the map.  One that has not ended is cancelled first
 * (pp_map_cancel()) and waited for, because the pool reads its arguments
 * and writes its results until every call has finished; this takes at most
 * the pool's cancel grace period.  The results stay the caller's.  No
 * final progress report is made.  Must not be called from the map's
 * progress callback.  NULL is ignored.
 */
PP_EXTERN void pp_map_free(pp_map_t *map);

/* ------------------------------------------------------------------------ */
/* Tuples: typed argument buffers                                           */
/* ------------------------------------------------------------------------ */

/*
 * A tuple is a self-describing byte buffer of typed values.  The format
 * string has one letter per value:
 *
 *   i  int64_t           pack: int64_t          unpack: int64_t *
 *   d  double            pack: double           unpack: double *
 *   s  string (UTF-8)    pack: const char *     unpack: const char ** (into
 *                                                the buffer, NUL-terminated)
 *   b  bytes             pack: const void *, size_t
 *                                               unpack: const void **, size_t *
 *
 * Spaces in the format are ignored.  Values are stored little-endian with a
 * type tag each, so a buffer unpacked with the wrong format is refused.
 */

/**
 * Packs the values into a new buffer: out->data (free with pp_free()) and
 * out->len.  Returns 0, PP_EINVAL (bad format letter, NULL string, NULL
 * bytes with a length, or lengths whose sum does not fit in a size_t or
 * makes a tuple larger than a call can carry, 2^46 bytes), PP_ENOMEM; on
 * failure out->data is NULL and out->len 0.
 */
PP_EXTERN int pp_pack(pp_buf_t *out, const char *fmt, ...);

/**
 * Unpacks a tuple.  Pointers that are set point into `buf`, which must
 * outlive them.  Returns 0, or PP_EBADARGS (the buffer is not a tuple of
 * exactly that shape: wrong count, wrong type, truncated), PP_EINVAL (bad
 * format letter, NULL format or NULL buf).  Never reads outside
 * [buf, buf+len).
 */
PP_EXTERN int pp_unpack(const void *buf, size_t len, const char *fmt, ...);

/** Returns the number of values in a tuple, or PP_EBADARGS if `buf` is not a
 * well-formed tuple. */
PP_EXTERN int pp_tuple_count(const void *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Task libraries (the worker-host mode)                                    */
/* ------------------------------------------------------------------------ */

/** The name of the function a task library exports (PP_TASK_LIBRARY()):
 * `const pp_task_t *procpool_task_table(void)`, which returns the table. */
#define PP_TASK_LIBRARY_SYMBOL "procpool_task_table"

#ifdef _WIN32
#define PP__DSO_EXPORT __declspec(dllexport)
#else
#define PP__DSO_EXPORT __attribute__((visibility("default")))
#endif

/** In a task library: exports `table` for the procpool-worker host and for
 * parents that name the library in pp_pool_options_t.task_library. */
#define PP_TASK_LIBRARY(table)                                                 \
  PP__DSO_EXPORT const pp_task_t *procpool_task_table(void);                   \
  PP__DSO_EXPORT const pp_task_t *procpool_task_table(void) { return (table); }

#ifdef __cplusplus
}
#endif
#endif /* PROCPOOL_H */
