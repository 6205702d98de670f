/*
 * platform.h - the contract between procpool's portable core (src/) and the
 * operating system (platform/posix, platform/win32).
 *
 * Each OS implements every function below once, in files of the same names.
 * Every function returns 0 or a negative PP_E* status that is already
 * translated from errno or GetLastError() where it was read, with the OS
 * reason recorded through pp__set_error() (src/error.h).  The core never
 * includes an OS header and never tests which OS it runs on.
 *
 * Threads: a channel may be read by one thread while another writes it, so
 * the parent can send a cancel message to a worker whose reply it is waiting
 * for.  Two threads never read (or write) the same channel at once: the core
 * serializes each direction.
 */
#ifndef PP_PLATFORM_H
#define PP_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* Thread-local storage (the last error message, inline mode's current call)
 * differs by compiler; like every other difference it is kept out of src/. */
#if defined(_MSC_VER)
#define PP__THREAD_LOCAL __declspec(thread)
#else
#define PP__THREAD_LOCAL _Thread_local
#endif

/* A function that never returns (C11 _Noreturn; MSVC spells it its own
 * way). */
#if defined(_MSC_VER)
#define PP__NORETURN __declspec(noreturn)
#else
#define PP__NORETURN _Noreturn
#endif

/* ---- time, locks and one-time set-up (thread.c) ---------------------- */

/* Returns a monotonic time in microseconds, counted from an arbitrary point.
 * Every deadline and timed wait in procpool is measured on this clock, never
 * on the wall clock, so a step of the system clock (NTP, an administrator, a
 * resumed virtual machine) neither ends a wait early nor stretches it. */
int64_t pp__now_us(void);

/* A mutex and a condition variable whose timed waits run on pp__now_us's
 * clock (APR's are timed on the wall clock).  Both are heap objects: *_new
 * returns 0 or PP_ENOMEM / PP_EIO, *_free accepts NULL. */
typedef struct pp__mutex_s pp__mutex_t;
typedef struct pp__cond_s pp__cond_t;
int pp__mutex_new(pp__mutex_t **mutex);
void pp__mutex_free(pp__mutex_t *mutex);
void pp__mutex_lock(pp__mutex_t *mutex);
/* Takes the mutex if it is free and returns 1; returns 0 at once if not. */
int pp__mutex_trylock(pp__mutex_t *mutex);
void pp__mutex_unlock(pp__mutex_t *mutex);
int pp__cond_new(pp__cond_t **cond);
void pp__cond_free(pp__cond_t *cond);
/* Waits until signalled (or woken spuriously); `mutex` is held. */
void pp__cond_wait(pp__cond_t *cond, pp__mutex_t *mutex);
/* Waits at most timeout_us (monotonic); returns 0 when woken (perhaps
 * spuriously) or PP_ETIMEDOUT.  Callers loop on their own deadline. */
int pp__cond_timedwait(pp__cond_t *cond, pp__mutex_t *mutex,
                       int64_t timeout_us);
void pp__cond_signal(pp__cond_t *cond);
void pp__cond_broadcast(pp__cond_t *cond);

/* Runs init() the first time any thread calls pp__once, while later callers
 * wait for it to finish, and returns its status then and on every later
 * call.  The core passes the same function every time (APR's set-up). */
int pp__once(int (*init)(void));

/* A worker process as seen by its parent (pid or process HANDLE). */
typedef struct pp__proc_s pp__proc_t;
/* One end of a byte stream: a worker's channel or captured stdout/stderr. */
typedef struct pp__chan_s pp__chan_t;

/* Reads and writes are cut to at most this much per system call, because
 * several systems fail or truncate single transfers above 2 GiB (macOS
 * read/write, Win32 DWORD lengths). */
#define PP__IO_CHUNK ((size_t)1 << 30)

/* The executable workers are started from, fixed when a pool is created.
 * Where the OS allows it (Linux), the file is held open and every worker is
 * started from that open file, so workers started later run the same
 * program even after the file was deleted or replaced on disk (an upgrade
 * installed while the application runs).  Elsewhere it is the path; the
 * build check in the handshake then refuses a worker of another build. */
typedef struct pp__image_s pp__image_t;

/* Opens `path` (UTF-8), or this program's own executable when path is NULL.
 * Returns 0, PP_ESPAWN with the OS reason (no such file, not executable),
 * or PP_ENOMEM. */
int pp__image_open(const char *path, pp__image_t **image);

/* Returns the image's path, for messages and the worker's argv[0]. */
const char *pp__image_path(const pp__image_t *image);

/* Closes the image.  NULL is ignored. */
void pp__image_close(pp__image_t *image);

/* The environment variable that marks a process as a pool's worker until
 * pp_worker_main() has taken its reserved argument (and removed the mark).
 * A process that still has it when it creates a pool was started as a
 * worker whose main() lacks the worker guard. */
#define PP__WORKER_ENV "PROCPOOL_WORKER"

/* What a worker launch needs. */
typedef struct pp__spawn_req_s {
  /* The executable to start. */
  const pp__image_t *image;
  /* Core's part of the reserved argument; the worker's argv[1] becomes
   * "--procpool-worker=<platform channel spec>:<token>".  Plain ASCII
   * without spaces or quotes.  The worker's environment also gets
   * PP__WORKER_ENV=<token>. */
  const char *token;
  /* More arguments after the reserved one (NULL-terminated; may be NULL). */
  const char *const *extra_args;
  /* Non-zero: the worker's stdout and stderr are the parent's own (nothing
   * is captured, and *out and *err are set to NULL). */
  int inherit_output;
} pp__spawn_req_t;

/* Starts a worker and returns only once the program has been executed (or
 * failed to be).  On success sets *proc and the parent's ends of the duplex
 * channel and of the worker's stdout and stderr (NULL with inherit_output);
 * the worker's stdin is the null device.  Nothing else of the parent
 * (descriptor or handle) reaches the worker.  On POSIX the worker leads a
 * process group of its own; on Windows it is in a kill-on-close job object
 * before it runs.  PP_ESPAWN with the OS reason on failure (exec failed, no
 * such file), with nothing left open. */
int pp__spawn(const pp__spawn_req_t *req, pp__proc_t **proc, pp__chan_t **chan,
              pp__chan_t **out, pp__chan_t **err);

/* Returns the worker's process id. */
int64_t pp__proc_pid(const pp__proc_t *proc);

/* How a worker ended. */
typedef struct pp__exit_s {
  int exit_code;   /* exit status, or -1 if ended by a signal / exception */
  int term_signal; /* POSIX signal number, Windows exception code, or 0 */
  int killed;      /* 1 if pp__proc_kill ended it */
  char reason[256]; /* e.g. "killed by signal 11 (SIGSEGV)" */
} pp__exit_t;

/* Waits up to timeout_ms (negative = no limit) for the worker to end.
 * Returns 0 and fills *st, or PP_ETIMEDOUT.  Reaps the process: after 0 it
 * may only be freed. */
int pp__proc_wait(pp__proc_t *proc, int64_t timeout_ms, pp__exit_t *st);

/* Ends the worker at once (SIGKILL, TerminateProcess), and on POSIX every
 * process left in its process group (what its task started and did not
 * detach), so that a timeout or cancel ends all the call's work; harmless
 * if it has already ended.  Never blocks.  Safe to call from any thread
 * while another waits. */
int pp__proc_kill(pp__proc_t *proc);

/* Frees the handle; a worker not yet waited for is killed and reaped first,
 * so none is ever left behind.  NULL is ignored. */
void pp__proc_free(pp__proc_t *proc);

/* Ties a worker's channel to its process: from now on a read (and
 * pp__chan_wait) also ends when the process has ended, after the bytes it
 * wrote before it ended have been read.  The end of the stream alone is not
 * enough, because a process the task forked may hold the worker's end open
 * long after the worker died.  `proc` must outlive the channel's use. */
void pp__chan_bind_proc(pp__chan_t *chan, pp__proc_t *proc);

/* Reads exactly `len` bytes.  Returns 0, PP_ECLOSED on end of stream (also
 * mid-way), or PP_EIO. */
int pp__chan_read(pp__chan_t *chan, void *buf, size_t len);

/* Reads what is available, at least 1 byte, at most `cap`; sets *got.
 * Returns 0, PP_ECLOSED at end of stream, or PP_EIO. */
int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got);

/* Writes all `len` bytes.  Returns 0, PP_ECLOSED if the peer has gone
 * (never raises SIGPIPE), or PP_EIO. */
int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len);

/* Writes a small message (at most 64 bytes) without ever blocking: returns
 * 0 once it is sent or queued whole, PP_EAGAIN if that cannot be done now
 * (the peer is not reading; try again later), PP_ECLOSED or PP_EIO.  For a
 * thread that must not wait for a worker (the timer thread's cancels).  The
 * caller serializes it with the other writers of the channel. */
int pp__chan_try_write(pp__chan_t *chan, const void *buf, size_t len);

/* Waits up to timeout_ms (0 = just look) until a read would not block:
 * data is there, the other end has gone, or the bound process has ended.
 * Returns 1 if so, 0 if not.  Reads nothing, so another thread may read
 * afterwards. */
int pp__chan_wait(pp__chan_t *chan, int64_t timeout_ms);

/* Ends the stream for the reader: reads (one blocked in another thread, and
 * every later one) return the bytes already received and then PP_ECLOSED,
 * without waiting for more; writes fail.  Used once a worker has ended or
 * been killed, when a process its task started may still hold the other
 * end open.  Safe from any thread while another reads. */
void pp__chan_abort(pp__chan_t *chan);

/* Closes and frees the channel.  NULL is ignored. */
void pp__chan_close(pp__chan_t *chan);

/* pp__worker_attach flag: the worker writes to the parent's own stdout and
 * stderr, which may be a terminal. */
#define PP__ATTACH_INHERIT_OUTPUT 1

/* Worker side: parses the platform part of the reserved argument (the text
 * before the first ':'), opens the channel to the parent, closes every other
 * inherited descriptor, keeps the channel out of processes a task forks
 * (where the OS lets it), and arranges to die with the parent where the OS
 * can (PR_SET_PDEATHSIG with a re-check of the parent pid `parent_pid`; the
 * job object on Windows).  It also turns off crash dialogs and debugger
 * start-up on Windows.  With PP__ATTACH_INHERIT_OUTPUT on POSIX it ignores
 * SIGTTOU: the worker leads its own process group, which is a background
 * group on the parent's terminal, and with `stty tostop` its first write
 * would stop it.  Returns 0 and sets *chan, or PP_EINVAL / PP_EIO. */
int pp__worker_attach(const char *spec, int64_t parent_pid, unsigned flags,
                      pp__chan_t **chan);

/* Worker side, right after pp__worker_attach: sets the buffering of
 * stdout so that the lines a task prints reach the parent while it runs.
 * POSIX: line buffering (with a real size: a size of 0 is not portable).
 * Windows: no buffering, because the Microsoft C runtimes treat _IOLBF as
 * full buffering, and the Universal CRT ends the process (fast fail
 * 0xC0000409) for _IOLBF with a size below 2.  Returns 0, or PP_EIO when
 * the C runtime refuses the mode (which would end the process on real
 * Windows, so the worker refuses to start). */
int pp__worker_stdio(void);

/* Worker side: ends this process at once with `code`, like _Exit: stdio
 * buffers are not flushed (the caller flushes what must go out; a flush
 * could block on a parent that no longer reads), atexit handlers do not run
 * (they may wait for work that will never come) and, on Windows, neither
 * does the DLL detach code that ExitProcess runs while the other threads
 * are frozen, perhaps holding the locks that code needs (the process
 * terminates itself). */
PP__NORETURN void pp__exit_now(int code);

/* Gives pp_worker_main the program's arguments in UTF-8.  POSIX: argc and
 * argv as they are.  Windows: the narrow argv is in the ANSI code page
 * (characters outside it become '?') and a wmain program has none, so the
 * arguments are read from GetCommandLineW() and converted; the copy lives
 * as long as the process.  argv may be NULL on entry. */
void pp__worker_args(int *argc, char ***argv);

/* Sets *path (malloc'd, UTF-8) to the default worker host, the
 * procpool-worker program installed with procpool, found at run time
 * relative to the module that holds procpool (the shared library, or the
 * program it is linked into), so that an install that was moved still
 * works; else the path of the install it was built for.  Returns 0, or
 * PP_ESPAWN / PP_ENOMEM. */
int pp__worker_host_path(char **path);

/* Sets *out (malloc'd, UTF-8) to `path` made absolute against the current
 * directory, so that workers, the system's loader and the parent read the
 * same file.  Returns 0, PP_EINVAL or PP_ENOMEM. */
int pp__path_absolute(const char *path, char **out);

/* Removes an environment variable from this process (before any thread of
 * the application could read the environment). */
void pp__env_unset(const char *name);

/* Makes sure descriptors 0, 1 and 2 are open (on the null device if they
 * were closed), so that no channel procpool creates later gets one of those
 * numbers and receives what the application writes to its stdout or stderr.
 * Nothing to do on Windows, whose handles have no such numbers. */
void pp__stdio_ensure(void);

/* The length of a build id. */
#define PP__BUILD_ID_LEN 32

/* Fills `id` with an identity of the build of the loaded module (executable
 * or shared library) that contains `addr`: the linker's build id where there
 * is one (ELF NT_GNU_BUILD_ID), else a digest of the module's code or
 * headers.  Two builds of different code give different ids.  All zero if
 * the system cannot tell, which turns the build check off. */
void pp__module_build_id(const void *addr, unsigned char id[PP__BUILD_ID_LEN]);

/* Returns the number of CPUs this process may run on (at least 1). */
int pp__cpu_count(void);

/* Returns the id of the calling process. */
int64_t pp__self_pid(void);

/* Returns 1 once a debugger is attached to this process, else 0. */
int pp__debugger_attached(void);

/* Returns free physical memory in bytes, or 0 if unknown (tests use it to
 * skip huge payloads on small machines). */
uint64_t pp__mem_available(void);

#endif /* PP_PLATFORM_H */
