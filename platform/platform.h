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

/* A worker process as seen by its parent (pid or process HANDLE). */
typedef struct pp__proc_s pp__proc_t;
/* One end of a byte stream: a worker's channel or captured stdout/stderr. */
typedef struct pp__chan_s pp__chan_t;

/* Reads and writes are cut to at most this much per system call, because
 * several systems fail or truncate single transfers above 2 GiB (macOS
 * read/write, Win32 DWORD lengths). */
#define PP__IO_CHUNK ((size_t)1 << 30)

/* What a worker launch needs. */
typedef struct pp__spawn_req_s {
  /* Full path (UTF-8) of the executable to start. */
  const char *exe;
  /* Core's part of the reserved argument; the worker's argv[1] becomes
   * "--procpool-worker=<platform channel spec>:<token>".  Plain ASCII
   * without spaces or quotes. */
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
 * the worker's stdin is the null device.  Nothing else of the parent (descriptor or handle) reaches the
 * worker.  On Windows the worker is in a kill-on-close job object before it
 * runs.  PP_ESPAWN with the OS reason on failure (exec failed, no such file),
 * with nothing left open. */
int pp__spawn(const pp__spawn_req_t *req, pp__proc_t **proc, pp__chan_t **chan,
              pp__chan_t **out, pp__chan_t **err);

/* Returns the worker's process id. */
int64_t pp__proc_pid(const pp__proc_t *proc);

/* How a worker ended. */
typedef struct pp__exit_s {
  int exit_code;   /* exit status, or -1 if ended by a signal / exception */
  int term_signal; /* POSIX signal number, Windows exception code, or 0 */
  int killed;      /* 1 if pp__proc_kill ended it */
  char reason[96]; /* e.g. "killed by signal 11 (SIGSEGV)" */
} pp__exit_t;

/* Waits up to timeout_ms (negative = no limit) for the worker to end.
 * Returns 0 and fills *st, or PP_ETIMEDOUT.  Reaps the process: after 0 it
 * may only be freed. */
int pp__proc_wait(pp__proc_t *proc, int64_t timeout_ms, pp__exit_t *st);

/* Ends the worker at once (SIGKILL, TerminateProcess); harmless if it has
 * already ended.  Safe to call from any thread while another waits. */
int pp__proc_kill(pp__proc_t *proc);

/* Frees the handle; a worker not yet waited for is killed and reaped first,
 * so none is ever left behind.  NULL is ignored. */
void pp__proc_free(pp__proc_t *proc);

/* Reads exactly `len` bytes.  Returns 0, PP_ECLOSED on end of stream (also
 * mid-way), or PP_EIO. */
int pp__chan_read(pp__chan_t *chan, void *buf, size_t len);

/* Reads what is available, at least 1 byte, at most `cap`; sets *got.
 * Returns 0, PP_ECLOSED at end of stream, or PP_EIO. */
int pp__chan_read_some(pp__chan_t *chan, void *buf, size_t cap, size_t *got);

/* Writes all `len` bytes.  Returns 0, PP_ECLOSED if the peer has gone
 * (never raises SIGPIPE), or PP_EIO. */
int pp__chan_write(pp__chan_t *chan, const void *buf, size_t len);

/* Waits up to timeout_ms (0 = just look) until a read would not block:
 * data is there, or the other end has gone.  Returns 1 if so, 0 if not.
 * Reads nothing, so another thread may read afterwards. */
int pp__chan_wait(pp__chan_t *chan, int64_t timeout_ms);

/* Makes a read blocked on this channel in another thread return PP_ECLOSED
 * soon, and every later read too.  Used to stop reading a dead worker's
 * output when a process the task started still holds it open. */
void pp__chan_abort(pp__chan_t *chan);

/* Closes and frees the channel.  NULL is ignored. */
void pp__chan_close(pp__chan_t *chan);

/* Worker side: parses the platform part of the reserved argument (the text
 * before the first ':'), opens the channel to the parent, closes every other
 * inherited descriptor, and arranges to die with the parent where the OS can
 * (PR_SET_PDEATHSIG with a re-check of the parent pid `parent_pid`; the job
 * object on Windows).  It also turns off crash dialogs and debugger
 * start-up on Windows.  Returns 0 and sets *chan, or PP_EINVAL / PP_EIO. */
int pp__worker_attach(const char *spec, int64_t parent_pid, pp__chan_t **chan);

/* Returns the full path (UTF-8, malloc'd) of the running executable. */
int pp__exe_path(char **path);

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
